"""Explaining a whole folder or data set at the speed of prediction, into a run folder.

:func:`explain_folder` and :func:`explain_dataset` stream images through

1. ``tf.data`` (:func:`file_batches`, over the files :mod:`kerasxai.folder.sources` lists):
   files read and decoded in parallel (``tf.io.decode_image``, by :mod:`kerasxai.data.images`,
   the one decode/resize of kerasxai), resized to the model's input with the op
   ``keras.utils.image_dataset_from_directory`` uses (bilinear, no antialiasing,
   on float32 pixels 0..255), the photo shrunk for display and JPEG-encoded,
   batches prefetched;
2. the explanation, one batch at a time (:class:`kerasxai.folder.job.BatchExplainer`,
   the only place that calls into the core, planned once per run), after the
   model family's ``preprocess_input``; on a GPU under JAX or PyTorch two batches at
   once, so that one's maps come back while the next one's step runs;
3. a writer (:class:`kerasxai.folder.runfolder.Writer`) behind a bounded queue
   that writes the maps, photos, overlays and one ``predictions.jsonl`` row per
   image, so the model never waits for encoding, and memory stays bounded for
   any number of images.

The run folder's layout is described in :mod:`kerasxai.folder.runfolder`. With
``ray=True`` the same job runs on Ray Data (:mod:`kerasxai.folder.ray_runner`): the
same per-batch function on one model per worker, the same files written.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from kerasxai import _warn
from kerasxai._version import __version__
from kerasxai.folder import ray_runner, runfolder
from kerasxai.folder.job import (REFUSED, BatchExplainer, batch_for_writer, error_batch, preprocess_batch, prepare_job,
                                 target_meta)
from kerasxai.data.images import decode_file, image_tensors, read_error
from kerasxai.folder.sources import list_images
from kerasxai.methods import engine


def _meta(model, job, model_name, weights, n_images):
    return {"model": model_name or model.name, "weights": weights, "methods": list(job.methods),
            "layer": job.layer_name, "target": target_meta(job.target), "class_names": job.class_names,
            "kerasxai_version": __version__, "started": runfolder.now(), "finished": None,
            "images": 0, "errors": 0, "listed": n_images, "overlays": job.overlays,
            "display_images": bool(job.display_side)}


class _Warnings:
    """Warnings of a run, each shown once; flat maps and empty target regions summarised by image id at the end."""

    def __init__(self, where, target=None):
        self.where, self.target = where, target
        self.seen = set()

    def add(self, messages):
        for message in messages:
            if message not in self.seen:
                self.seen.add(message)
                warnings.warn(message, RuntimeWarning, stacklevel=_warn.caller_stacklevel())

    def summary(self, rows):
        """The end-of-run warnings, read from every row of the run folder: a resumed run counts the
        images of its earlier part too (a row holds all the run knows of its image)."""
        rows = [r for r in rows if isinstance(r, dict)]  # what a damaged line holds is the report's to show
        total = len(rows)
        name = lambda r: str(r.get("id"))  # noqa: E731
        refused = [(name(r), str(r["error"])) for r in rows if str(r.get("error") or "").startswith(REFUSED)]
        if refused:
            shown = "; ".join(f"{i}: {e[len(REFUSED):]}" for i, e in refused[:3]) + (" ..." if len(refused) > 3 else "")
            warnings.warn(f"kerasxai.{self.where}: {len(refused)} of {total} images were read but could not be "
                          f"explained (rows with an error; errors.txt): {shown}", RuntimeWarning, stacklevel=_warn.caller_stacklevel())
        good = [r for r in rows if not r.get("error")]
        nothing = {name(r) for r in good if r.get("nothing") is True}
        if nothing:
            ids = sorted(nothing)
            shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
            what = ("no pixel is predicted as" if getattr(self.target, "mask", None) is None
                    else "the mask selects no pixel for")
            warnings.warn(f"kerasxai.{self.where}: Segmentation target: {what} class "
                          f"{getattr(self.target, 'class_index', '?')} in {len(ids)} of {total} images: {shown}. There is "
                          "nothing to explain there, and their maps are flat (zeros, marked \"flat\" in predictions.jsonl).",
                          RuntimeWarning, stacklevel=_warn.caller_stacklevel())
        flat: dict = {}
        for r in good:
            methods = r.get("methods")
            for method, stats in (methods.items() if isinstance(methods, dict) else ()):
                if isinstance(stats, dict) and stats.get("flat") is True and name(r) not in nothing:
                    flat.setdefault(method, []).append(name(r))
        for method, ids in flat.items():
            ids = sorted(ids)
            shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
            warnings.warn(
                f"kerasxai.{self.where}: the {method} map is flat (all zeros, marked \"flat\" in predictions.jsonl) "
                f"for {len(ids)} of {total} images: {shown}. The target score's gradient is zero there, or every "
                "contribution is negative: a saturated output, dead ReLUs or a class the model scores very low.",
                RuntimeWarning, stacklevel=_warn.caller_stacklevel())
        nonfinite = sorted(name(r) for r in good if isinstance(r.get("top_k"), list)
                           and any(isinstance(t, dict) and t.get("probability") is None for t in r["top_k"]))
        if nonfinite:
            warnings.warn(
                f"kerasxai.{self.where}: the model's outputs are not finite (NaN or inf) for "
                f"{len(nonfinite)} images ({', '.join(nonfinite[:10])}): their probabilities are "
                "recorded as null and their maps mean nothing. Check the inputs and the model's weights.",
                RuntimeWarning, stacklevel=_warn.caller_stacklevel())


def file_batches(items, size, batch_size, display_side):
    """Batches of ``{index, x, jpeg, size}`` for ``items`` (numpy), decoded in parallel; unreadable files left out."""
    @tf.autograph.experimental.do_not_convert  # plain TF ops: nothing for AutoGraph to rewrite
    def load(index, path):
        x, jpeg, hw = image_tensors(decode_file(path), size, display_side)
        return {"index": index, "x": x, "jpeg": jpeg, "size": hw}

    if not items:
        return iter(())
    files = tf.constant([it.file for it in items], tf.string)
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(items), dtype=np.int64), files))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.ignore_errors()  # unreadable files drop out here; the run finds and reports them afterwards
    return ds.batch(batch_size).prefetch(2).as_numpy_iterator()


def _explain_all(writer, warn, bar, explainer, batches):
    """Each decoded batch ``(batch, target, ids, files, labels)`` (``batch``: ``x`` pixels, ``jpeg``,
    ``size``) preprocessed here, explained, and handed to the writer in the batches' order.

    On a GPU or TPU under JAX or PyTorch, two batches are explained at once on worker threads
    (:func:`kerasxai.methods.engine.in_order`, ``kerasxai.backend.set_overlap``): one batch's maps come
    back from the device while the next one's step runs. Each batch's warnings are its own.
    """
    def preprocessed():
        for batch, target, ids, files, labels in batches:
            yield preprocess_batch(explainer.job.preprocess, batch["x"]), batch, target, ids, files, labels

    with contextlib.closing(engine.in_order(lambda item: explainer.explain_quietly(item[0], item[2]),
                                            preprocessed())) as results:
        for (_, batch, _, ids, files, labels), (result, messages) in results:
            warn.add(messages)
            writer.put(batch_for_writer(ids, files, labels, result, list(batch["jpeg"]), batch["size"].tolist(),
                                        result.get("errors")))
            bar.add(len(ids))


def _run(out, job, meta, resume, force, progress, compute, where):
    """Opens the run folder, streams ``compute(run, writer, bar, warn)``, then finishes the folder."""
    run = runfolder.RunFolder.open(out, meta, resume=resume, force=force)
    if meta["weights"] == "none":
        warnings.warn(f"kerasxai.{where}: the model's weights are random (weights='none'): its predictions are at "
                      "chance and the maps explain an untrained network.", RuntimeWarning, stacklevel=_warn.caller_stacklevel())
    writer = runfolder.Writer(run, layer=job.layer_name, overlays=job.overlays)
    warn = _Warnings(where, job.target)
    total = meta["listed"] or None  # None: a data set of unknown length
    bar = keras.utils.Progbar(total, unit_name="image", verbose=1 if progress else 0)
    if run.done:
        bar.update(len(run.done))
    try:
        compute(run, writer, bar, warn)
    except BaseException:
        try:  # keep what was computed; the exception that stopped the run is the one to see
            writer.close()
            run.finish(interrupted=True)
        except Exception:
            pass
        raise
    writer.close()
    rows = run.finish()
    warn.summary(rows)
    return run.meta


def explain_folder(model, sources, out, methods=("gradcam",), target=None, layer=None, batch_size=16,
                   overlays=False, resume=False, class_names=None, *, top=5, preprocess="auto", images=True,
                   weights=None, model_name=None, force=False, progress=True, ray=False, ray_address=None,
                   workers=None):
    """Explains every image in folders or files, streamed, into the run folder ``out``.

    Files are decoded and resized in parallel by ``tf.data``, explained in
    batches, and written by a background thread; memory stays bounded for any
    number of images. Unreadable files do not stop the run: they are listed in
    ``errors.txt`` and as rows with an ``"error"``. See :mod:`kerasxai.folder.runfolder`
    for what ``out`` holds.

    Args:
        model: a Keras classifier (its input size and ``keras.applications``
            family set the resizing and ``preprocess_input``).
        sources: a folder, a file, or a list of them; folders are searched
            recursively. Class sub-folders (``DIR/cat/*.jpg``) give each image
            its true ``label``.
        out: the run folder (created).
        methods: method names, as in :func:`kerasxai.explain`.
        target: None (each image's top class), a class index, or ``"label"``
            (the class named by the image's sub-folder; needs ``class_names``).
        layer: the layer explained (default: the last spatial layer).
        batch_size: images per batch.
        overlays: also write ``overlays/<id>_<method>.png``.
        resume: continue the run in ``out``: images already written are
            skipped, unfinished ones redone; each image gets one row.
        class_names: names of the model's classes (for ``top_k`` and labels).
        top: how many classes ``top_k`` keeps.
        preprocess: "auto" (the model family's), a family name, a function or None.
        images: write the display photos ``images/<id>.jpg``.
        weights: recorded in run.json: "imagenet", "none" (random: a warning
            says so) or a path.
        model_name: recorded in run.json (default ``model.name``).
        force: allow a non-empty folder that is not a kerasxai run.
        progress: show a progress bar.
        ray, ray_address, workers: run on Ray Data (see
            :func:`kerasxai.folder.ray_runner.explain_items`): a local Ray started
            in-process, or the cluster at ``ray_address``; ``workers`` model
            replicas (default: one per GPU, else one per node).

    Returns:
        The run's ``run.json`` as a dict (``images`` explained, ``errors``, ...).

    Examples:
        >>> import keras, numpy as np, tempfile, json
        >>> from PIL import Image
        >>> folder, out = tempfile.mkdtemp(), tempfile.mkdtemp() + "/run"
        >>> for i, size in enumerate([(40, 60), (50, 30), (32, 32)]):
        ...     Image.fromarray(np.random.default_rng(i).integers(0, 255, size + (3,), np.uint8)).save(f"{folder}/{i}.png")
        >>> model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, name="conv"),
        ...                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
        >>> explain_folder(model, folder, out, batch_size=2, progress=False)["images"]
        3
        >>> row = json.loads(open(f"{out}/predictions.jsonl").readline())
        >>> row["layer"], row["size"] in ([40, 60], [50, 30], [32, 32]), np.load(f"{out}/{row['maps']}")["gradcam"].shape
        ('conv', True, (32, 32))
    """
    items = list_images(sources)
    job = prepare_job(model, methods, target, layer, class_names, top, preprocess, images, overlays)
    if job.target == "label":
        unlabelled = [it.file for it in items if it.label is None]
        unknown = sorted({it.label for it in items if it.label is not None and it.label not in (job.class_names or [])})
        if job.class_names is None or unlabelled or unknown:
            shown = ("no class_names given" if job.class_names is None else
                     f"{unlabelled[0]} is in no class sub-folder" if unlabelled else
                     f"sub-folder(s) {', '.join(unknown[:5])} not among the {len(job.class_names)} class_names "
                     f"({', '.join(job.class_names[:5])}{', ...' if len(job.class_names) > 5 else ''})")
            raise ValueError("target='label' explains each image's true class: it needs folders of class "
                             f"sub-folders named after class_names ({shown}).")
    meta = _meta(model, job, model_name, weights, len(items))

    def compute(run, writer, bar, warn):
        todo = [it for it in items if it.id not in run.done]
        if ray:
            ray_runner.explain_items(model, todo, job, writer, bar, warn, batch_size=batch_size,
                                     address=ray_address, workers=workers, explained=bool(run.done))
            return
        explainer = BatchExplainer(model, job)
        explainer.explained = bool(run.done)  # a resumed run explained images before
        seen = np.zeros(len(todo), bool)

        def batches():
            for batch in file_batches(todo, job.size, batch_size, job.display_side):
                index = batch["index"]
                seen[index] = True
                chosen = [todo[i] for i in index]
                labels = [it.label for it in chosen]
                tgt = [job.class_names.index(lb) for lb in labels] if job.target == "label" else job.target
                yield batch, tgt, [it.id for it in chosen], [it.file for it in chosen], labels

        _explain_all(writer, warn, bar, explainer, batches())
        failed = [todo[i] for i in np.flatnonzero(~seen)]
        if failed:
            writer.put(error_batch([it.id for it in failed], [it.file for it in failed],
                                    [it.label for it in failed], [read_error(it.file) for it in failed]))
            bar.add(len(failed))
            warnings.warn(f"kerasxai.explain_folder: {len(failed)} of {len(todo)} files could not be read "
                          f"(listed in {os.path.join(os.fspath(out), runfolder.ERRORS)}): "
                          + ", ".join(it.file for it in failed[:5]) + (" ..." if len(failed) > 5 else ""),
                          RuntimeWarning, stacklevel=_warn.caller_stacklevel())

    return _run(out, job, meta, resume, force, progress, compute, "explain_folder")


def explain_dataset(model, dataset, out, methods=("gradcam",), target=None, layer=None, batch_size=16,
                    overlays=False, resume=False, class_names=None, *, top=5, preprocess="auto", images=True,
                    weights=None, model_name=None, force=False, progress=True):
    """Explains every image of a ``tf.data.Dataset`` into the run folder ``out``, as :func:`explain_folder`.

    ``dataset`` yields images, or ``(images, labels)``, batched or not: pixels
    0..255 (uint8 or float), as ``keras.utils.image_dataset_from_directory``
    gives them (before any preprocessing: the model family's
    ``preprocess_input`` is applied here, as ``preprocess`` says). Images of
    another size are resized to the model's input. Labels are class indices
    (or one-hot rows); with ``class_names`` they are recorded by name.

    Images are numbered in the dataset's order: ids are ``"000000"``,
    ``"000001"``, ... and ``file`` is ``"dataset[i]"``, so resuming needs the
    dataset in the same order (no reshuffling between runs).

    Examples:
        >>> import keras, numpy as np, tensorflow as tf, tempfile
        >>> model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, name="conv"),
        ...                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
        >>> pixels = np.random.default_rng(0).uniform(0, 255, (5, 32, 32, 3)).astype("float32")
        >>> ds = tf.data.Dataset.from_tensor_slices((pixels, [0, 1, 2, 0, 1])).batch(2)
        >>> out = tempfile.mkdtemp() + "/run"
        >>> explain_dataset(model, ds, out, class_names=["a", "b", "c"], progress=False)["images"]
        5
    """
    job = prepare_job(model, methods, target, layer, class_names, top, preprocess, images, overlays)
    spec = dataset.element_spec
    has_labels = isinstance(spec, tuple)
    image_spec = spec[0] if has_labels else spec
    if not isinstance(image_spec, tf.TensorSpec) or image_spec.shape.rank not in (3, 4):
        raise ValueError("dataset must yield images (H, W, C) or batches (N, H, W, C), optionally with labels. "
                         f"Received element_spec: {spec}")
    if job.target == "label" and not has_labels:
        raise ValueError("target='label' needs a dataset of (images, labels).")
    ds = dataset.unbatch() if image_spec.shape.rank == 4 else dataset
    n = int(ds.cardinality())
    meta = _meta(model, job, model_name, weights, n if n >= 0 else 0)

    @tf.autograph.experimental.do_not_convert
    def to_label(label):
        label = tf.convert_to_tensor(label)
        if label.shape.rank and label.shape[-1] > 1:
            return tf.argmax(label, axis=-1, output_type=tf.int64)  # one-hot
        label = tf.reshape(label, [])
        return tf.cast(tf.round(tf.cast(label, tf.float32)), tf.int64) if label.dtype.is_floating \
            else tf.cast(label, tf.int64)

    @tf.autograph.experimental.do_not_convert
    def load(index, element):
        pixels, label = (element if has_labels else (element, tf.constant(-1, tf.int64)))
        pixels = tf.convert_to_tensor(pixels)
        if pixels.shape[-1] == 1:
            pixels = tf.image.grayscale_to_rgb(pixels)
        x, jpeg, hw = image_tensors(pixels, job.size, job.display_side)
        return {"index": index, "x": x, "jpeg": jpeg, "size": hw, "label": to_label(label) if has_labels else label}

    def compute(run, writer, bar, warn):
        data = ds.enumerate()
        numbers = [int(i) for i in run.done if i.isdigit()]
        if numbers:
            done = np.zeros(max(numbers) + 1, bool)
            done[numbers] = True
            mask = tf.constant(done)
            data = data.filter(tf.autograph.experimental.do_not_convert(lambda i, _: tf.logical_or(
                i >= len(done), tf.logical_not(tf.gather(mask, tf.minimum(i, len(done) - 1))))))
        batches = data.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(2)
        explainer = BatchExplainer(model, job)
        explainer.explained = bool(run.done)  # a resumed run explained images before

        def numbered():
            for batch in batches.as_numpy_iterator():
                index = batch["index"]
                label_idx = batch["label"].tolist()
                labels = [None if lb < 0 else (job.class_names[lb] if job.class_names and lb < len(job.class_names)
                                                else str(lb)) for lb in label_idx]
                tgt = label_idx if job.target == "label" else job.target
                yield batch, tgt, [f"{i:06d}" for i in index], [f"dataset[{i}]" for i in index], labels

        _explain_all(writer, warn, bar, explainer, numbered())

    return _run(out, job, meta, resume, force, progress, compute, "explain_dataset")
