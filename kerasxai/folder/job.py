"""The folder job: what to compute for every image, checked once, and one batch explained.

Both runners use what is here, and nothing else of each other: the local one
(:mod:`kerasxai.folder.runner`) and the one on Ray Data
(:mod:`kerasxai.folder.ray_runner`, where each worker holds a
:class:`BatchExplainer` of its own model copy).

- :func:`prepare_job` checks the arguments once, before any image is read, into a :class:`Job`;
- :class:`BatchExplainer` plans the job's methods on a model once
  (:func:`kerasxai.methods.explain.plan_explain`: one compiled pass for the
  maps, the logits the top-k classes are read from, and the class each map
  explains) and explains batches with that plan;
- :func:`batch_for_writer` / :func:`error_batch` are what
  :class:`kerasxai.folder.runfolder.Writer` takes; :func:`to_columns` and
  :func:`from_columns` carry a batch's result across processes as flat columns.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from kerasxai import _warn
from kerasxai.data.images import model_input_size, preprocess_function
from kerasxai.data.predictions import pixel_share_rows, rows_from_logits
from kerasxai.folder.sources import DISPLAY_SIDE
from kerasxai.methods import engine
from kerasxai.methods.explain import plan_explain
from kerasxai.methods.table import ATTENTION_METHODS, INPUT_METHODS, check_methods
from kerasxai.probe import get_probe
from kerasxai.probe.regions import Detection, Segmentation

REFUSED = "not explained: "  # starts the error of an image read but refused by the model or the core


@dataclasses.dataclass
class Job:
    """What to compute for every image, checked once before a run starts."""

    methods: tuple
    target: object  # None, int, "label" or a Segmentation (one class's region in every image)
    layer: object
    layer_name: str | None
    class_names: list | None
    k: int
    size: tuple
    preprocess: object  # a function or None
    display_side: int
    overlays: bool


def prepare_job(model, methods, target, layer, class_names, top, preprocess, images, overlays) -> Job:
    """The run's settings, checked against the model before any image is read; a ``ValueError`` says what is wrong."""
    methods = check_methods(methods)
    if isinstance(target, Detection):
        raise ValueError("A folder run explains every image with the same target, and a Detection box belongs to its "
                         "image: explain boxes on arrays with kerasxai.explain(model, images, target=Detection(...)), "
                         "or kerasxai.drise. A segmenter's folder takes target=Segmentation(class).")
    if isinstance(target, Segmentation):
        if target.mask is not None and target.mask.ndim != 2:
            raise ValueError("A folder run's Segmentation target takes mask=None (each image's predicted region) or one "
                             f"(H, W) mask for every image; received a mask of shape {target.mask.shape}.")
        target.check(get_probe(model, (), target=target))  # a classifier, a class out of range: before any image
    elif not (target is None or target == "label" or isinstance(target, (int, np.integer))):
        raise ValueError("target must be None (each image's top class), a class index, 'label' or a "
                         f"kerasxai.targets.Segmentation (a segmenter's class). Received: {target!r}")
    n_classes = model.outputs[0].shape[-1]
    if isinstance(target, (int, np.integer)) and not (n_classes == 1 and target in (0, 1)) and not (
            0 <= target < (n_classes or 0)):
        raise ValueError(f"target {target} is not a class of the model, which has {n_classes} outputs.")
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        expected = 2 if n_classes == 1 else n_classes
        if len(class_names) != expected:
            raise ValueError(f"{len(class_names)} class names given but the model has {expected} classes.")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"top is the number of classes kept per image, at least 1. Received: {top!r}")
    layer_name = None
    if engine.is_layer_list(layer):  # before the run folder exists: one layer for every method of a run
        layer = engine.one_layer("a folder run", layer)
    if any(m not in INPUT_METHODS and m not in ATTENTION_METHODS for m in methods):
        names = get_probe(model, layer).layer_names  # an unknown layer fails here, before any work
        layer_name = ",".join(names) if names else None
    if overlays and not images:
        raise ValueError("overlays are drawn on the display photos: keep images=True to write overlays.")
    return Job(methods, None if target is None else target if target == "label" or isinstance(target, Segmentation)
               else int(target), layer,
               layer_name, class_names, int(top), tuple(model_input_size(model)),
               preprocess_function(preprocess, model), DISPLAY_SIDE if images else 0, bool(overlays))


def target_meta(target):
    """The run's target as ``run.json`` records it (and a resumed run must match): JSON.

    Examples:
        >>> target_meta(3), target_meta(Segmentation(2))
        (3, {'segmentation': 2, 'mask': 'predicted'})
    """
    if isinstance(target, Segmentation):
        mask = "predicted" if target.mask is None else f"given {int(target.mask.sum())} of {target.mask.size} pixels"
        return {"segmentation": target.class_index, "mask": mask}
    return target


def preprocess_batch(fn, pixels):
    """The family's ``preprocess_input`` on a float32 batch of pixels 0..255, as ``load_images`` applies it.

    Examples:
        >>> import keras
        >>> preprocess_batch(keras.applications.mobilenet_v2.preprocess_input, np.full((1, 2, 2, 3), 255.0))[0, 0, 0]
        array([1., 1., 1.], dtype=float32)
    """
    x = np.asarray(pixels, np.float32)
    return x if fn is None else np.asarray(fn(x.copy()), np.float32)


class BatchExplainer:
    """A job's methods planned on one model, once; then one preprocessed batch at a time.

    Examples:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, name="conv"),
        ...                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
        >>> job = prepare_job(model, ("gradcam",), None, None, None, 2, None, True, False)
        >>> out = BatchExplainer(model, job).explain(np.random.rand(4, 8, 8, 3).astype("float32"), None)
        >>> out["maps"]["gradcam"].shape, len(out["top_k"][0])
        ((4, 8, 8), 2)
    """

    def __init__(self, model, job: Job):
        self.model, self.job = model, job
        # Planned for class targets: every folder-job target (None, an int, the labels) is one, and the
        # steps of a plan are the same for all of them; each batch's classes come with the batch.
        # A segmenter's run plans its Segmentation target (its step takes each batch's regions).
        self.segmentation = isinstance(job.target, Segmentation)
        self.probe, self.compute = plan_explain(model, job.methods, job.target if self.segmentation else None, job.layer)
        # whether an image was explained (by this explainer, or before a resumed run): until then a batch whose
        # every image is refused stops the run (the model, not the images, is likelier to be wrong)
        self.explained = False

    def explain(self, x, target):
        """Top-k classes and every method's maps for one preprocessed batch ``x`` ``(B, H, W, C)``.

        ``target``: None (each image's top class), an int, or one int per image. Returns a dict:
        ``maps`` {method: float32 ``(B, H, W)`` in [0, 1]}; ``top_k`` (per image a list of
        ``(class, name, probability)``); ``targets`` (ints); ``target_names``; ``flat`` {method:
        ``(B,)`` bool, True where the map is flat}.
        """
        job = self.job
        if target is not None and not isinstance(target, (int, np.integer, Segmentation)):
            target = [int(t) for t in target]
        out, _ = engine.run("explain", self.probe, x, target, self.compute, batch_size=max(1, len(x)),
                            progress=False, warn=False)
        rows = pixel_share_rows if self.segmentation else rows_from_logits
        top = rows(self.probe.head, out["logits"], job.k, job.class_names)
        targets = [int(c) for c in out["classes"]]
        if self.segmentation:  # the region explained, drawn on the overlays; named as a region
            names = [(job.class_names[t] if job.class_names and 0 <= t < len(job.class_names) else f"class {t}")
                     + (" region" if job.target.mask is not None else " (predicted region)") for t in targets]
            nothing = np.asarray(out.get("nothing_to_explain", np.zeros(len(targets), bool)), bool)
            return {"maps": {m: out[f"map:{m}"] for m in job.methods}, "top_k": top, "targets": targets,
                    "target_names": names, "regions": np.asarray(out["target_data_0"]) > 0.5, "nothing": nothing,
                    "flat": {m: np.asarray(out[f"flat:{m}"], bool) for m in job.methods}}
        names = []
        for row, t in zip(top, targets):
            name = next((nm for c, nm, _ in row if c == t), None)
            if name is None and job.class_names is not None and 0 <= t < len(job.class_names):
                name = job.class_names[t]
            names.append(name)
        return {"maps": {m: out[f"map:{m}"] for m in job.methods}, "top_k": top, "targets": targets,
                "target_names": names, "flat": {m: np.asarray(out[f"flat:{m}"], bool) for m in job.methods}}

    def _one_by_one(self, x, target, first_error):
        """The batch explained image by image, after it failed as a whole: the images that fail alone get an error.

        If every image fails, the first error is raised (a setting, not an image, is wrong), unless each
        was refused for itself (:class:`kerasxai._warn.ImagesRefused`: NaN or infinite values) after some
        image was explained: a batch of bad images alone (the last one, or the images a resumed run tries
        again) is rows with errors, while a model whose first images are all refused stops the run.
        """
        methods = self.job.methods
        parts, errors, own = [], [], []
        for i in range(len(x)):
            t = target if target is None or isinstance(target, (int, np.integer, Segmentation)) else [target[i]]
            try:
                parts.append(self.explain(x[i:i + 1], t))
                errors.append(None)
            except ValueError as err:
                parts.append(None)
                # the call was of this image alone: its index there (0) says nothing of the file
                errors.append(REFUSED + str(err).splitlines()[0].replace("image(s) 0", "this image"))
                own.append(isinstance(err, _warn.ImagesRefused))
        if all(p is None for p in parts):
            if not (all(own) and self.explained):
                raise first_error
            n = len(x)
            return {"maps": {m: np.zeros((n, 1), np.float32) for m in methods}, "regions": None, "nothing": None,
                    "top_k": [[]] * n, "targets": [None] * n, "target_names": [None] * n,
                    "flat": {m: np.zeros(n, bool) for m in methods}, "errors": errors}
        shape = next(p for p in parts if p is not None)["maps"]
        maps = {m: np.stack([p["maps"][m][0] if p else np.zeros_like(shape[m][0]) for p in parts]) for m in methods}
        regions = nothing = None
        if self.segmentation:
            first = next(p for p in parts if p is not None)["regions"][0]
            regions = np.stack([p["regions"][0] if p else np.zeros_like(first) for p in parts])
            nothing = np.array([bool(p["nothing"][0]) if p else False for p in parts])
        return {"maps": maps, "regions": regions, "nothing": nothing, "top_k": [p["top_k"][0] if p else [] for p in parts],
                "targets": [p["targets"][0] if p else None for p in parts],
                "target_names": [p["target_names"][0] if p else None for p in parts],
                "flat": {m: np.array([bool(p["flat"][m][0]) if p else False for p in parts]) for m in methods},
                "errors": errors}

    def explain_quietly(self, x, target):
        """:meth:`explain`, with kerasxai's warnings collected instead of shown, and per-image errors.

        Per-image warnings (:class:`kerasxai._warn.PerImageWarning`: flat maps, a
        region with nothing to explain) would name images by their place in the batch;
        the run records those per image and names the files once at the end. Returns
        ``(result, messages)`` with the other warnings' messages. When the core
        refuses the batch (a ``ValueError``, e.g. outputs that are not finite for
        one image), the images are explained one by one and those refused alone get
        their message in ``result["errors"]``, so one bad image does not stop a run.

        Thread-safe: the warnings are collected for this thread's call only
        (:func:`kerasxai._warn.collecting`), so batches explained on several threads, or a
        call another thread makes meanwhile, keep their own.
        """
        with _warn.collecting() as caught:
            try:
                result = self.explain(x, target)
            except ValueError as err:
                if len(x) == 1 and not isinstance(err, _warn.ImagesRefused):
                    raise
                result = self._one_by_one(x, target, err)
            self.explained = self.explained or not all(result.get("errors") or [None])
        return result, [message for category, message in caught if not issubclass(category, _warn.PerImageWarning)]


def batch_for_writer(ids, files, labels, result, jpegs, sizes, errors=None) -> dict:
    """One explained batch as :meth:`kerasxai.folder.runfolder.Writer.put` takes it."""
    n = len(ids)
    return {"ids": ids, "files": files, "labels": labels, "errors": errors or [None] * n, "sizes": sizes,
            "jpegs": jpegs, "maps": result["maps"], "flat": result["flat"], "top_k": result["top_k"],
            "targets": result["targets"], "target_names": result["target_names"], "regions": result.get("regions"),
            "nothing": result.get("nothing")}


def error_batch(ids, files, labels, messages) -> dict:
    """Images that could not be read, as :meth:`kerasxai.folder.runfolder.Writer.put` takes them."""
    n = len(ids)
    return {"ids": ids, "files": files, "labels": labels, "errors": messages, "sizes": [None] * n,
            "jpegs": [b""] * n, "maps": {}, "flat": {}, "top_k": [[]] * n, "targets": [None] * n,
            "target_names": [None] * n}


def to_columns(methods, result, n, shape, rows=None) -> dict:
    """A batch's result as flat columns (NumPy arrays, JSON strings) that cross processes (Ray Data).

    ``rows``: the batch positions of the ``result``'s images (default all ``n``); the other
    rows are left empty (images that could not be read). :func:`from_columns` undoes it.

    Examples:
        >>> result = {"maps": {"gradcam": np.ones((1, 2, 2))}, "flat": {"gradcam": np.array([False])},
        ...           "top_k": [[(1, "b", 0.9)]], "targets": [1], "target_names": ["b"]}
        >>> back = from_columns(("gradcam",), to_columns(("gradcam",), result, 2, (2, 2), rows=[1]))
        >>> back["targets"], back["top_k"][1], back["maps"]["gradcam"].shape
        ([None, 1], [(1, 'b', 0.9)], (2, 2, 2))
    """
    rows = list(range(n)) if rows is None else list(rows)
    out = {"top_k": np.array(["[]"] * n, dtype=object), "target": np.full(n, -1, np.int64),
           "target_name": np.array([""] * n, dtype=object), "row_error": np.array([""] * n, dtype=object)}
    for m in methods:
        out[f"map:{m}"] = np.zeros((n,) + tuple(shape), np.float16)
        out[f"flat:{m}"] = np.zeros(n, bool)
    errors = result.get("errors") or [None] * len(rows)
    for j, i in enumerate(rows):
        if errors[j]:
            out["row_error"][i] = errors[j]
            continue
        out["top_k"][i] = json.dumps(result["top_k"][j])
        out["target"][i] = result["targets"][j]
        out["target_name"][i] = result["target_names"][j] or ""
        for m in methods:
            out[f"map:{m}"][i] = result["maps"][m][j]
            out[f"flat:{m}"][i] = result["flat"][m][j]
        if result.get("regions") is not None:
            out.setdefault("region", np.zeros((n,) + result["regions"].shape[1:], bool))[i] = result["regions"][j]
        if result.get("nothing") is not None:
            out.setdefault("nothing", np.zeros(n, bool))[i] = result["nothing"][j]
    return out


def from_columns(methods, columns) -> dict:
    """The result dict of :meth:`BatchExplainer.explain` back from :func:`to_columns`'s columns."""
    return {"maps": {m: columns[f"map:{m}"] for m in methods},
            "flat": {m: columns[f"flat:{m}"] for m in methods},
            "top_k": [[tuple(r) for r in json.loads(t)] for t in columns["top_k"]],
            "targets": [None if t < 0 else int(t) for t in columns["target"]],
            "target_names": [t or None for t in columns["target_name"]],
            "errors": [e or None for e in columns["row_error"]], "regions": columns.get("region"),
            "nothing": columns.get("nothing")}
