"""The folder job on Ray Data: one model per worker actor, the same batches and files as on one machine.

``explain_folder(..., ray=True)`` (``kerasxai explain ... --ray``) lands here.
The images are split into batches by Ray Data and sent to ``workers`` actors
(``map_batches`` with the callable class :class:`ExplainWorker`), each holding
one copy of the model — a whole GPU each where the cluster has GPUs. A worker
decodes its batch with :func:`kerasxai.data.images.image_tensors` and explains it
with a :class:`kerasxai.folder.job.BatchExplainer` of its own model: the same
functions, so the same numbers, as the local runner. The results stream back to this process,
whose writer thread writes the run folder exactly as locally (resuming too).

Ray is started in-process (``ray.init()``: nothing to set up) unless it is
already running or ``address`` names a cluster (``"ray://head:10001"``,
``"auto"``). On a cluster, the image files must be readable at the same paths
on every node (a shared file system) and kerasxai installed there.
Install with ``pip install "kerasxai[ray]"``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from kerasxai import _warn
from kerasxai.data.images import decode_file, image_tensors, read_error
from kerasxai.folder.job import REFUSED, BatchExplainer, batch_for_writer, from_columns, preprocess_batch, to_columns


def _import_ray():
    # Ray is an optional dependency (the "ray" extra): imported only when a run asks for it.
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError('Running on Ray needs Ray Data: pip install "kerasxai[ray]" (or "ray[data]").') from None
    return ray


def start(address=None):
    """Connects to Ray (``address``), or starts a local Ray in this process; returns True if it started one.

    An already running Ray (``ray.init`` called before) is used as it is.

    Example (starts Ray: seconds; ``tests/test_pipeline.py`` runs it through ``explain_folder``):
        >>> started = start()  # doctest: +SKIP
    """
    ray = _import_ray()
    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    return address is None


class _Quiet:
    """Ray Data without its own progress bars and INFO lines while a run shows its progress bar."""

    def __enter__(self):
        ray = _import_ray()
        self.ctx = ray.data.DataContext.get_current()
        self.logger = logging.getLogger("ray.data")
        self.saved = (self.ctx.enable_progress_bars, self.logger.level)
        self.ctx.enable_progress_bars = False
        self.logger.setLevel(logging.ERROR)  # also its "Progress bars disabled" notice

    def __exit__(self, *exc):
        self.ctx.enable_progress_bars, level = self.saved
        self.logger.setLevel(level)


class ExplainWorker:
    """A Ray Data worker: builds its model once, then decodes and explains one batch per call."""

    def __init__(self, model_bytes, job):
        # A worker is a process of its own: TensorFlow's start-up lines would repeat once per worker.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        ray = _import_ray()
        if isinstance(model_bytes, ray.ObjectRef):  # the model is shipped once, through the object store
            model_bytes = ray.get(model_bytes)
        self.explainer = BatchExplainer(pickle.loads(model_bytes), job)
        # a batch whose every image is refused comes back as rows with errors: whether the run stops (no image
        # explained before it, on any worker) is the driver's to say (explain_items)
        self.explainer.explained = True
        self.job = job
        self.pool = ThreadPoolExecutor(4)  # TF's decode ops release the GIL

    def _load(self, path):
        try:
            x, jpeg, hw = image_tensors(decode_file(path), self.job.size, self.job.display_side)
            return x.numpy(), jpeg.numpy(), hw.numpy(), None
        except Exception:
            return None, b"", np.zeros(2, np.int64), read_error(path)

    def __call__(self, batch):
        job = self.job
        loaded = list(self.pool.map(self._load, [str(f) for f in batch["file"]]))
        ok = [i for i, item in enumerate(loaded) if item[3] is None]
        result, messages = {"maps": {}, "flat": {}}, []
        if ok:
            x = preprocess_batch(job.preprocess, np.stack([loaded[i][0] for i in ok]))
            target = [int(batch["label_index"][i]) for i in ok] if job.target == "label" else job.target
            result, messages = self.explainer.explain_quietly(x, target)
        out = to_columns(job.methods, result, len(loaded), job.size, rows=ok)
        out["index"] = np.asarray(batch["index"], np.int64)
        out["read_error"] = np.array([item[3] or "" for item in loaded], dtype=object)
        out["size"] = np.stack([item[2] for item in loaded]).astype(np.int64)
        out["jpeg"] = np.array([item[1] for item in loaded], dtype=object)
        out["warnings"] = np.array([json.dumps(messages)] + ["[]"] * (len(loaded) - 1), dtype=object)
        return out


def _resources(ray, workers):
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if workers is None:
        workers = gpus or max(1, len([n for n in ray.nodes() if n.get("Alive")]))
    if gpus:
        return workers, {"num_gpus": 1}
    return workers, {"num_cpus": 1}


def _refused_first(refused) -> ValueError:
    file, error = refused[0]
    return ValueError(f"kerasxai.explain_folder: the model refused the first {len(refused)} images it was given, "
                      f"so the run stopped (the model is likelier to be wrong than the images): {file}: "
                      f"{error[len(REFUSED):]}")


def explain_items(model, items, job, writer, bar, warn, *, batch_size=16, address=None, workers=None,
                  explained=False):
    """Explains ``items`` (:class:`kerasxai.folder.sources.ImageItem`) on Ray, handing each result batch to ``writer``.

    ``explained``: images were explained before (a resumed run). Until an image is, the run stops once
    ``batch_size`` decoded images (or all of them, if fewer) were refused (NaN or infinite values), as the
    local pipeline stops on a first batch refused whole: the model, not the images, is likelier to be
    wrong. Ray groups files before they are decoded, and its workers finish in any order, so the images
    are counted as they come back. After an image is explained, refused ones are rows with errors.
    """
    ray = _import_ray()
    if not items:
        return
    started = start(address)
    quiet = _Quiet()
    quiet.__enter__()
    try:
        workers, resources = _resources(ray, workers)
        label_index = [job.class_names.index(it.label) if job.target == "label" else -1 for it in items]
        ds = ray.data.from_items([{"index": i, "file": it.file, "label_index": label_index[i]}
                                  for i, it in enumerate(items)])
        try:
            model_bytes = pickle.dumps(model)  # Keras 3 pickles a model as its .keras archive
        except Exception as err:
            raise ValueError(f"the model cannot be sent to Ray workers: pickling it failed ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:200]}). Custom layers must be serializable "
                             "(keras.saving.register_keras_serializable) and importable on the workers.") from err
        ds = ds.map_batches(ExplainWorker, fn_constructor_args=(ray.put(model_bytes), job),
                            batch_size=batch_size, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=workers), **resources)
        failed, refused = [], []
        for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
            chosen = [items[i] for i in out["index"]]
            for e in out["warnings"]:
                warn.add(json.loads(e))
            result = from_columns(job.methods, out)
            errors = [read or row for read, row in zip(out["read_error"], result["errors"])]
            if not explained:  # the images decoded, in the order they came back, until one is explained
                for it, read, e in zip(chosen, out["read_error"], result["errors"]):
                    if not read and not explained:
                        explained = not e
                        refused += [(it.file, e)] if e and e.startswith(REFUSED) else []
                if not explained and len(refused) >= batch_size:
                    raise _refused_first(refused)
            writer.put(batch_for_writer([it.id for it in chosen], [it.file for it in chosen],
                                        [it.label for it in chosen], result, list(out["jpeg"]), out["size"].tolist(),
                                        [e or None for e in errors]))
            failed += [it.file for it, e in zip(chosen, out["read_error"]) if e]
            bar.add(len(chosen))
        if refused and not explained:  # fewer images than a batch, every one refused
            raise _refused_first(refused)
        if failed:
            warnings.warn(f"kerasxai.explain_folder: {len(failed)} of {len(items)} files could not be read "
                          "(listed in errors.txt): " + ", ".join(failed[:5]) + (" ..." if len(failed) > 5 else ""),
                          RuntimeWarning, stacklevel=_warn.caller_stacklevel())
    finally:
        quiet.__exit__()
        if started:
            ray.shutdown()
