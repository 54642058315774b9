"""Explaining a whole folder or data set at the speed of prediction, into a run folder.

:func:`explain_folder` and :func:`explain_dataset` stream images through

1. ``tf.data`` (:mod:`kerasxai.folder.sources`): files read and decoded in parallel
   (``tf.io.decode_image``), resized to the model's input with the op
   ``keras.utils.image_dataset_from_directory`` uses (bilinear, no antialiasing,
   on float32 pixels 0..255), the photo shrunk for display and JPEG-encoded,
   batches prefetched;
2. the explanation, one batch at a time (:func:`_explain_batch`, the only place
   that calls into the core), after the model family's ``preprocess_input``;
3. a writer (:class:`kerasxai.folder.runfolder.Writer`) behind a bounded queue
   that writes the maps, photos, overlays and one ``predictions.jsonl`` row per
   image, so the model never waits for encoding, and memory stays bounded for
   any number of images.

The run folder's layout is described in :mod:`kerasxai.folder.runfolder`. With
``ray=True`` the same job runs on Ray Data (:mod:`kerasxai.folder.ray_runner`): the
same per-batch function on one model per worker, the same files written.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np

from kerasxai.folder import runfolder
from kerasxai.folder.sources import DISPLAY_SIDE, file_batches, image_tensors, list_images, read_error

PIXEL_METHODS = ("saliency", "smoothgrad", "integrated_gradients", "guided_backprop")
REFUSED = "not explained: "  # starts the error of an image read but refused by the model or the core


# ------------------------------------------------------------------ the core


def _explain_batch(model, x, methods, target, layer, class_names, k=5):
    """Top-k classes and the maps of ``methods`` for one preprocessed batch ``x`` ``(B, H, W, C)``.

    The one place the pipeline calls the explaining core: one compiled pass
    (:func:`kerasxai.methods.explain.plan_explain`) gives every method's maps,
    the logits the top-k classes are read from, and the class each image's maps
    explain (``target`` = None: each image's top class, an int, or one int per image).

    Returns a dict: ``maps`` {method: float32 ``(B, H, W)`` in [0, 1]}; ``top_k``
    (per image a list of ``(class, name, probability)``); ``targets`` (ints);
    ``target_names``; ``flat`` {method: ``(B,)`` bool, True where the map is flat}.
    """
    from kerasxai.methods import engine
    from kerasxai.methods.explain import plan_explain
    from kerasxai.data.predictions import rows_from_logits

    if target is not None and not isinstance(target, (int, np.integer)):
        target = [int(t) for t in target]
    probe, compute = plan_explain(model, methods, target, layer)
    out, _ = engine.run("explain", probe, x, target, compute, batch_size=max(1, len(x)), progress=False, warn=False)
    top = rows_from_logits(probe.head, out["logits"], k, class_names)
    targets = [int(c) for c in out["classes"]]
    names = []
    for row, t in zip(top, targets):
        name = next((nm for c, nm, _ in row if c == t), None)
        if name is None and class_names is not None and 0 <= t < len(class_names):
            name = class_names[t]
        names.append(name)
    maps = {m: out[f"map:{m}"] for m in methods}
    flat = {m: np.asarray(out[f"flat:{m}"], bool) for m in methods}
    return {"maps": maps, "top_k": top, "targets": targets, "target_names": names, "flat": flat}


def _one_by_one(model, x, methods, target, layer, class_names, k, first_error):
    """The batch explained image by image, after it failed as a whole: the images that fail alone get an error.

    If every image fails, the first error is raised (a setting, not an image, is wrong).
    """
    parts, errors = [], []
    for i in range(len(x)):
        t = target if target is None or isinstance(target, (int, np.integer)) else [target[i]]
        try:
            parts.append(_explain_batch(model, x[i:i + 1], methods, t, layer, class_names, k))
            errors.append(None)
        except ValueError as err:
            parts.append(None)
            errors.append(REFUSED + str(err).splitlines()[0])
    if all(p is None for p in parts):
        raise first_error
    shape = next(p for p in parts if p is not None)["maps"]
    maps = {m: np.stack([p["maps"][m][0] if p else np.zeros_like(shape[m][0]) for p in parts]) for m in methods}
    return {"maps": maps, "top_k": [p["top_k"][0] if p else [] for p in parts],
            "targets": [p["targets"][0] if p else None for p in parts],
            "target_names": [p["target_names"][0] if p else None for p in parts],
            "flat": {m: np.array([bool(p["flat"][m][0]) if p else False for p in parts]) for m in methods},
            "errors": errors}


def explain_quietly(model, x, methods, target, layer, class_names, k=5):
    """:func:`_explain_batch`, with the core's warnings collected instead of shown, and per-image errors.

    Per-batch warnings would name images by their place in the batch; the run
    records flat maps per image and warns once at the end instead. Returns
    ``(result, messages)`` with the other warnings' messages. When the core
    refuses the batch (a ``ValueError``, e.g. outputs that are not finite for
    one image), the images are explained one by one and those refused alone get
    their message in ``result["errors"]``, so one bad image does not stop a run.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = _explain_batch(model, x, methods, target, layer, class_names, k)
        except ValueError as err:
            if len(x) == 1:
                raise
            result = _one_by_one(model, x, methods, target, layer, class_names, k, err)
    hidden = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)  # off by default
    return result, [str(w.message) for w in caught
                    if not issubclass(w.category, hidden) and "map is flat" not in str(w.message)]


def preprocess_batch(fn, pixels):
    """The family's ``preprocess_input`` on a float32 batch of pixels 0..255, as ``load_images`` applies it.

    Example:
        >>> import keras
        >>> preprocess_batch(keras.applications.mobilenet_v2.preprocess_input, np.full((1, 2, 2, 3), 255.0))[0, 0, 0]
        array([1., 1., 1.], dtype=float32)
    """
    x = np.asarray(pixels, np.float32)
    return x if fn is None else np.asarray(fn(x.copy()), np.float32)


# ------------------------------------------------------------------ the job


@dataclasses.dataclass
class Job:
    """What to compute for every image, checked once before a run starts."""

    methods: tuple
    target: object  # None, int or "label"
    layer: object
    layer_name: str | None
    class_names: list | None
    k: int
    size: tuple
    preprocess: object  # a function or None
    display_side: int
    overlays: bool


def _prepare_job(model, methods, target, layer, class_names, top, preprocess, images, overlays):
    import kerasxai
    from kerasxai.data.images import model_input_size, preprocess_function
    from kerasxai.methods.explain import METHODS

    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    if not methods:
        raise ValueError("no methods given: name at least one, e.g. methods=('gradcam',).")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method '{unknown[0]}': choose from {', '.join(METHODS)}")
    if not (target is None or target == "label" or isinstance(target, (int, np.integer))):
        raise ValueError(f"target must be None (each image's top class), a class index or 'label'. Received: {target!r}")
    n_classes = model.outputs[0].shape[-1]
    if isinstance(target, (int, np.integer)) and not (n_classes == 1 and target in (0, 1)) and not (
            0 <= target < (n_classes or 0)):
        raise ValueError(f"target {target} is not a class of the model, which has {n_classes} outputs.")
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        expected = 2 if n_classes == 1 else n_classes
        if len(class_names) != expected:
            raise ValueError(f"{len(class_names)} class names given but the model has {expected} classes.")
    layer_name = None
    if any(m not in PIXEL_METHODS for m in methods):
        names = kerasxai.get_probe(model, layer).layer_names  # an unknown layer fails here, before any work
        layer_name = ",".join(names) if names else None
    if overlays and not images:
        raise ValueError("overlays are drawn on the display photos: keep images=True to write overlays.")
    return Job(methods, None if target is None else target if target == "label" else int(target), layer,
               layer_name, class_names, int(top), tuple(model_input_size(model)),
               preprocess_function(preprocess, model), DISPLAY_SIDE if images else 0, bool(overlays))


def _meta(model, job, model_name, weights, n_images):
    import kerasxai

    return {"model": model_name or model.name, "weights": weights, "methods": list(job.methods),
            "layer": job.layer_name, "target": job.target, "class_names": job.class_names,
            "kerasxai_version": kerasxai.__version__, "started": runfolder.now(), "finished": None,
            "images": 0, "errors": 0, "listed": n_images, "overlays": job.overlays,
            "display_images": bool(job.display_side)}


def _batch_for_writer(ids, files, labels, result, jpegs, sizes, errors=None):
    n = len(ids)
    return {"ids": ids, "files": files, "labels": labels, "errors": errors or [None] * n, "sizes": sizes,
            "jpegs": jpegs, "maps": result["maps"], "flat": result["flat"], "top_k": result["top_k"],
            "targets": result["targets"], "target_names": result["target_names"]}


def _error_batch(ids, files, labels, messages):
    n = len(ids)
    return {"ids": ids, "files": files, "labels": labels, "errors": messages, "sizes": [None] * n,
            "jpegs": [b""] * n, "maps": {}, "flat": {}, "top_k": [[]] * n, "targets": [None] * n,
            "target_names": [None] * n}


class _Warnings:
    """Warnings of a run, each shown once, flat maps summarised by image id at the end."""

    def __init__(self, where):
        self.where = where
        self.seen = set()

    def add(self, messages):
        for message in messages:
            if message not in self.seen:
                self.seen.add(message)
                warnings.warn(message, RuntimeWarning, stacklevel=4)

    def summary(self, writer, total):
        refused = sorted(writer.refused)
        if refused:
            shown = "; ".join(f"{i}: {e[len(REFUSED):]}" for i, e in refused[:3]) + (" ..." if len(refused) > 3 else "")
            warnings.warn(f"kerasxai.{self.where}: {len(refused)} of {total} images were read but could not be "
                          f"explained (rows with an error; errors.txt): {shown}", RuntimeWarning, stacklevel=3)
        for method, ids in writer.flat.items():
            ids = sorted(ids)
            shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
            warnings.warn(
                f"kerasxai.{self.where}: the {method} map is flat (all zeros, marked \"flat\" in predictions.jsonl) "
                f"for {len(ids)} of {total} images: {shown}. The target score's gradient is zero there, or every "
                "contribution is negative: a saturated output, dead ReLUs or a class the model scores very low.",
                RuntimeWarning, stacklevel=3)
        if writer.nonfinite:
            warnings.warn(
                f"kerasxai.{self.where}: the model's outputs are not finite (NaN or inf) for "
                f"{len(writer.nonfinite)} images ({', '.join(sorted(writer.nonfinite)[:10])}): their probabilities are "
                "recorded as null and their maps mean nothing. Check the inputs and the model's weights.",
                RuntimeWarning, stacklevel=3)


def _run(out, job, meta, resume, force, progress, compute, where):
    """Opens the run folder, streams ``compute(run, writer, bar, warn)``, then finishes the folder."""
    import keras

    run = runfolder.RunFolder.open(out, meta, resume=resume, force=force)
    if meta["weights"] == "none":
        warnings.warn(f"kerasxai.{where}: the model's weights are random (weights='none'): its predictions are at "
                      "chance and the maps explain an untrained network.", RuntimeWarning, stacklevel=3)
    writer = runfolder.Writer(run, layer=job.layer_name, overlays=job.overlays)
    warn = _Warnings(where)
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
    warn.summary(writer, len(rows))
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

    Example:
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
    job = _prepare_job(model, methods, target, layer, class_names, top, preprocess, images, overlays)
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
            from kerasxai.folder import ray_runner as pipeline_ray

            pipeline_ray.explain_items(model, todo, job, writer, bar, warn, batch_size=batch_size,
                                       address=ray_address, workers=workers)
            return
        seen = np.zeros(len(todo), bool)
        for batch in file_batches(todo, job.size, batch_size, job.display_side):
            index = batch["index"]
            seen[index] = True
            chosen = [todo[i] for i in index]
            labels = [it.label for it in chosen]
            tgt = [job.class_names.index(lb) for lb in labels] if job.target == "label" else job.target
            x = preprocess_batch(job.preprocess, batch["x"])
            result, messages = explain_quietly(model, x, job.methods, tgt, job.layer, job.class_names, job.k)
            warn.add(messages)
            writer.put(_batch_for_writer([it.id for it in chosen], [it.file for it in chosen], labels,
                                         result, list(batch["jpeg"]), batch["size"].tolist(), result.get("errors")))
            bar.add(len(index))
        failed = [todo[i] for i in np.flatnonzero(~seen)]
        if failed:
            writer.put(_error_batch([it.id for it in failed], [it.file for it in failed],
                                    [it.label for it in failed], [read_error(it.file) for it in failed]))
            bar.add(len(failed))
            warnings.warn(f"kerasxai.explain_folder: {len(failed)} of {len(todo)} files could not be read "
                          f"(listed in {os.path.join(os.fspath(out), runfolder.ERRORS)}): "
                          + ", ".join(it.file for it in failed[:5]) + (" ..." if len(failed) > 5 else ""),
                          RuntimeWarning, stacklevel=4)

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

    Example:
        >>> import keras, numpy as np, tensorflow as tf, tempfile
        >>> model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, name="conv"),
        ...                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
        >>> pixels = np.random.default_rng(0).uniform(0, 255, (5, 32, 32, 3)).astype("float32")
        >>> ds = tf.data.Dataset.from_tensor_slices((pixels, [0, 1, 2, 0, 1])).batch(2)
        >>> out = tempfile.mkdtemp() + "/run"
        >>> explain_dataset(model, ds, out, class_names=["a", "b", "c"], progress=False)["images"]
        5
    """
    import tensorflow as tf

    job = _prepare_job(model, methods, target, layer, class_names, top, preprocess, images, overlays)
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
        for batch in batches.as_numpy_iterator():
            index = batch["index"]
            label_idx = batch["label"].tolist()
            labels = [None if lb < 0 else (job.class_names[lb] if job.class_names and lb < len(job.class_names)
                                            else str(lb)) for lb in label_idx]
            tgt = label_idx if job.target == "label" else job.target
            x = preprocess_batch(job.preprocess, batch["x"])
            result, messages = explain_quietly(model, x, job.methods, tgt, job.layer, job.class_names, job.k)
            warn.add(messages)
            ids = [f"{i:06d}" for i in index]
            writer.put(_batch_for_writer(ids, [f"dataset[{i}]" for i in index], labels, result,
                                         list(batch["jpeg"]), batch["size"].tolist(), result.get("errors")))
            bar.add(len(index))

    return _run(out, job, meta, resume, force, progress, compute, "explain_dataset")
