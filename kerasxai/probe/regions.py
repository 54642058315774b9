"""Targets beyond classification: a region of a segmentation, a box of a detector.

A class target picks one logit per image. These pick a *sum*: a segmentation
target sums a class's logits over a region of a per-pixel output, a detection
target sums, over the predicted boxes that overlap a given box, their overlap
and class score. Both carry per-image data (a mask, a box) that follows its
image through batches, copies (SmoothGrad, Integrated Gradients, Score-CAM) and
perturbed inputs (occlusion, RISE): it is resolved once per batch on the clean
images (:meth:`Segmentation.resolve`) into a :class:`TargetBatch`, which the
compiled step takes as arguments, so one traced step serves every class,
mask and box.

Passed as ``target=`` to every method (except CAM, which weighs a classifier's
column)::

    kerasxai.gradcam(unet, images, target=kerasxai.targets.Segmentation(1))
    kerasxai.saliency(detector, images, target=kerasxai.targets.Detection(box, 2, decode))
"""

from __future__ import annotations

import dataclasses
import numbers

import keras
import numpy as np
from keras import ops

from kerasxai import _warn
from kerasxai.probe.inputs import check_per_image


@dataclasses.dataclass
class TargetBatch:
    """A structured target resolved for a batch: a class per image and per-image arrays (masks, boxes).

    Indexing picks images (``tb[[0, 0, 1]]``: the target of copies of images 0, 0, 1), so the
    methods that run copies of an image give each copy its image's mask or box.
    """

    classes: np.ndarray  # (n,) int32
    data: tuple  # per-image float32 arrays, (n, ...)
    empty: np.ndarray | None = None  # (n,) True where there is nothing to explain (warned about once)

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, index) -> "TargetBatch":
        return TargetBatch(self.classes[index], tuple(d[index] for d in self.data),
                           None if self.empty is None else self.empty[index])


def is_structured(target) -> bool:
    """Whether ``target`` is a segmentation or detection target (it resolves itself per batch)."""
    return isinstance(target, (Segmentation, Detection, _PredictedRegion))


def fixed(classes, chosen):
    """The target of copies of a batch's images (noisy, masked, occluded): a structured target's batch
    as it is (its class and region are given), else the classes the clean pass ``chosen`` (int32)."""
    if isinstance(classes, TargetBatch):
        return classes
    return np.asarray(chosen).astype(np.int32)


def check_class_index(value, name="class_index") -> int:
    """``value`` as an int class index >= 0, or a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an int >= 0 (a class of the output's last axis). Received: {value!r}")
    return int(value)


def _per_image(name, values, batch, total, unit, units):
    """A ``(N, ...)`` per-image array's slice for ``batch`` (checked against the number of images)."""
    check_per_image(name, len(values), batch.start, batch.size, total, unit, units, f"one {unit}")
    return values[batch.start : batch.start + batch.size]


def _logits_shape(probe):
    shape = getattr(probe.net, "logits_shape", None)
    return None if shape is None else tuple(shape)


# --------------------------------------------------------------------------- segmentation


class Segmentation:
    """A segmentation target: the sum of a class's logits over a region of a per-pixel output.

    For a model whose output is per pixel, ``(N, H, W, K)`` (or ``(N, T, K)`` for signals,
    ``(N, D, H, W, K)`` for volumes), the score explained is Σ over the ``mask``'s pixels of
    class ``class_index``'s logit (a final softmax/sigmoid left out, as for classifiers; for
    a one-channel output, class 1 is the logit — positive where it is predicted — and class 0
    its negative).

    Args:
        class_index: the class (channel of the output's last axis).
        mask: booleans ``(H, W)`` for every image or ``(N, H, W)`` one per image, at the
            output's resolution; ``None`` (default): the pixels each image's output predicts
            as ``class_index`` (argmax, or logit > 0 for a sigmoid), decided on the clean image
            once per image (never re-decided on noisy or masked copies).

    A mask with no pixel (no pixel predicted as the class) gives nothing to explain: a
    warning names the images, and their maps are flat.

    Examples:
        >>> import keras, numpy as np
        >>> import kerasxai
        >>> from kerasxai.targets import Segmentation
        >>> unet = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, padding="same"),
        ...                          keras.layers.Conv2D(3, 1, activation="softmax")])
        >>> region = np.zeros((16, 16), bool); region[4:8, 4:8] = True
        >>> kerasxai.gradcam(unet, np.random.rand(2, 16, 16, 3).astype("float32"),
        ...                  target=Segmentation(2, mask=region)).shape
        (2, 16, 16)
    """

    reads_all_outputs = False

    def __init__(self, class_index, mask=None):
        self.class_index = check_class_index(class_index)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype != bool:
                if not (np.issubdtype(mask.dtype, np.number) and np.isin(mask, (0, 1)).all()):
                    raise ValueError("mask must hold booleans (or 0/1): the pixels whose logits are summed. "
                                     f"Received values like {np.unique(mask)[:4]!r}.")
                mask = mask.astype(bool)
        self.mask = mask

    def __repr__(self):
        mask = "None" if self.mask is None else f"<{'x'.join(map(str, self.mask.shape))} bool>"
        return f"Segmentation(class_index={self.class_index}, mask={mask})"

    step_key = ("segmentation",)

    def describe(self, index=None) -> str:
        """How the target reads in figure titles."""
        return f"class {self.class_index} {'given region' if self.mask is not None else 'predicted region'}"

    def outline(self, index: int):
        """The mask drawn on image ``index`` of a figure (None when it is predicted: see ``kerasxai.targets.regions``)."""
        if self.mask is None:
            return None
        return self.mask if self.mask.ndim == 2 else self.mask[index]

    def check(self, probe, rank=None) -> tuple:
        """The output's spatial shape, after refusing an output that is not per pixel: no class axis after
        spatial axes like the input's (``rank``: the explained input's spatial axes, when known)."""
        shape = _logits_shape(probe)
        head = probe.head
        per_pixel = head.kind == "dense" and (shape is None or len(shape) >= 3)
        if per_pixel and shape is not None and rank is not None and len(shape) - 2 != rank:
            raise ValueError(
                f"Output '{head.name}' of model '{probe.model_name}' is {shape}: after the batch axis a per-pixel output "
                f"has the input's {rank} spatial axes, then one axis of class scores (N, {', '.join('HWD'[:rank])}, K). "
                "An output reshaped (to pixels x classes, or without its class axis) cannot be read as a map: explain "
                "the layer before the reshape as the output, or give a callable target.")
        if not per_pixel:
            shown = "" if shape is None else f" {shape}"
            raise ValueError(
                f"A Segmentation target sums a class's logits over pixels of a per-pixel output (N, H, W, K); output "
                f"'{head.name}'{shown} of model '{probe.model_name}' is not per pixel (a classifier's (N, K)): give "
                "target=<class index> for a classifier, or pick the per-pixel output with output=.")
        if shape is not None and shape[-1] is not None:
            k = shape[-1]
            valid = 2 if k == 1 else k
            if self.class_index >= valid:
                raise ValueError(f"Segmentation(class_index={self.class_index}) is out of range: output '{head.name}' "
                                 f"has {k} channel(s), so a class must be in 0..{valid - 1}"
                                 + (" (one channel: 1 = where its logit is positive, 0 = elsewhere)." if k == 1 else "."))
        return None if shape is None else tuple(shape[1:-1])

    def resolve(self, probe, batch, total=None) -> TargetBatch:
        """The batch's classes and float32 masks ``(n, spatial...)``: given, or predicted on the clean images."""
        rank = len(probe.spatial_shape(batch.inputs[probe.explained_input]))
        spatial = self.check(probe, rank)
        n = batch.size
        classes = np.full((n,), self.class_index, np.int32)
        if self.mask is None:
            head = probe.head
            post = _Predicted(sigmoid=head.removed_activation == "sigmoid" or head.kept == "sigmoid",
                              probabilities=head.kept is not None)
            out = probe.step(None, post, target=PREDICTED_REGION)(batch.inputs, (), TargetBatch(classes, ()))
            masks = np.asarray(out["predicted"], np.float32)
        else:
            if self.mask.ndim == rank:
                masks = np.broadcast_to(self.mask, (n,) + self.mask.shape)
            elif self.mask.ndim == rank + 1:
                try:
                    masks = _per_image("mask", self.mask, batch, total, "mask", "masks")
                except ValueError as err:
                    hint = " (a trailing axis of size 1? give mask[..., 0])" if self.mask.shape[-1] == 1 else ""
                    raise ValueError(f"{err}{hint}") from None
            else:
                axes = ", ".join("HWD"[:rank]) if rank <= 3 else f"{rank} spatial axes"
                raise ValueError(f"mask has shape {self.mask.shape}; for inputs with {rank} spatial axes it must be "
                                 f"one mask ({axes}) for every image or one per image (N, {axes}), at the output's "
                                 "resolution" + (" (drop the trailing axis of size 1: mask[..., 0])"
                                                  if self.mask.shape[-1] == 1 else "") + ".")
            if spatial is not None and None not in spatial and tuple(masks.shape[1:]) != spatial:
                raise ValueError(f"mask has spatial shape {tuple(masks.shape[1:])} but output '{probe.head.name}' of "
                                 f"model '{probe.model_name}' is {spatial} per image: give the mask at the output's "
                                 "resolution.")
            masks = masks.astype(np.float32)
        nothing = masks.reshape(n, -1).sum(axis=1) == 0
        empty = np.flatnonzero(nothing) + batch.start
        if empty.size:
            what = "no pixel is predicted as" if self.mask is None else "the mask selects no pixel for"
            _warn.warn(f"kerasxai: Segmentation target: {what} class {self.class_index} in image(s) "
                       f"{empty.tolist()[:20]}: there is nothing to explain, and their maps are flat (zeros).",
                       _warn.PerImageWarning)
        return TargetBatch(classes, (masks,), nothing)

    @staticmethod
    def scores(head, logits, classes, mask):
        """Σ over ``mask`` of each image's class logit, in ``keras.ops`` (inside the step)."""
        spatial = tuple(logits.shape[1:-1])
        if tuple(mask.shape[1:]) != spatial and None not in spatial:
            raise ValueError(f"mask has spatial shape {tuple(mask.shape[1:])}, the output {spatial}: give the mask at "
                             "the output's resolution.")
        k = logits.shape[-1]
        if k == 1:  # one channel: class 1 = the logit (positive: predicted), class 0 = its negative
            sign = ops.where(classes == 1, 1.0, -1.0)
            z = logits[..., 0] * ops.reshape(sign, (-1,) + (1,) * len(spatial))
        else:
            index = ops.reshape(classes, (-1,) + (1,) * (len(spatial) + 1))
            z = ops.take_along_axis(logits, index, axis=-1)[..., 0]
        axes = tuple(range(1, len(spatial) + 1))
        return ops.sum(z * ops.cast(mask, z.dtype), axis=axes), classes


class _PredictedRegion:
    """The step of ``Segmentation(mask=None)``'s resolution: a forward pass whose score is unused (zeros)."""

    step_key = ("segmentation: the predicted region",)

    @staticmethod
    def scores(head, logits, classes):
        return ops.zeros((ops.shape(logits)[0],), "float32"), classes


PREDICTED_REGION = _PredictedRegion()


@dataclasses.dataclass(frozen=True)
class _Predicted:
    """A step's post: the pixels each image's output predicts as its target class (on the clean images):
    the argmax; with ``sigmoid``, each class's own logit > 0 (probability > 0.5 with ``probabilities``,
    a squashing that could not be left out); one channel: class 1 where it is positive."""

    sigmoid: bool
    probabilities: bool

    def __call__(self, p):
        logits, classes = p.logits, p.classes
        spatial = len(logits.shape) - 2
        threshold = 0.5 if self.probabilities else 0.0
        if logits.shape[-1] == 1:
            positive = logits[..., 0] > threshold
            predicted = ops.where(ops.reshape(classes == 1, (-1,) + (1,) * spatial), positive,
                                  ops.logical_not(positive))
        elif self.sigmoid:  # multi-label: each class its own logit
            index = ops.reshape(classes, (-1,) + (1,) * (spatial + 1))
            predicted = ops.take_along_axis(logits, index, axis=-1)[..., 0] > threshold
        else:
            predicted = ops.cast(ops.argmax(logits, axis=-1), "int32") == ops.reshape(classes, (-1,) + (1,) * spatial)
        return {"predicted": ops.cast(predicted, "float32")}


# --------------------------------------------------------------------------- detection


def box_iou(box, boxes):
    """IoU of one box per image ``(N, 4)`` with each of ``(N, M, 4)`` boxes (y1, x1, y2, x2), in ``keras.ops``.

    Examples:
        >>> import numpy as np
        >>> iou = box_iou(np.array([[0., 0., 2., 2.]]), np.array([[[0., 0., 2., 2.], [1., 1., 3., 3.], [5., 5., 6., 6.]]]))
        >>> np.round(keras.ops.convert_to_numpy(iou).astype(float), 4).tolist()
        [[1.0, 0.1429, 0.0]]
    """
    box = ops.expand_dims(ops.cast(box, "float32"), 1)
    boxes = ops.cast(boxes, "float32")
    y1, x1 = ops.maximum(box[..., 0], boxes[..., 0]), ops.maximum(box[..., 1], boxes[..., 1])
    y2, x2 = ops.minimum(box[..., 2], boxes[..., 2]), ops.minimum(box[..., 3], boxes[..., 3])
    inter = ops.maximum(y2 - y1, 0.0) * ops.maximum(x2 - x1, 0.0)

    def area(b):
        return ops.maximum(b[..., 2] - b[..., 0], 0.0) * ops.maximum(b[..., 3] - b[..., 1], 0.0)

    union = area(box) + area(boxes) - inter
    return inter / ops.maximum(union, 1e-12)


def box_iou_numpy(box, boxes) -> np.ndarray:
    """:func:`box_iou` in NumPy for one box ``(4,)`` and boxes ``(M, 4)``: ``(M,)``."""
    box, boxes = np.asarray(box, np.float64), np.asarray(boxes, np.float64).reshape(-1, 4)
    y1, x1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    y2, x2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(y2 - y1, 0, None) * np.clip(x2 - x1, 0, None)
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def check_boxes(box, name="box") -> np.ndarray:
    """``box`` as float32 ``(4,)`` or ``(N, 4)`` y1, x1, y2, x2, finite and not empty."""
    array = np.asarray(box, np.float32)
    if array.shape[-1:] != (4,) or array.ndim not in (1, 2):
        raise ValueError(f"{name} must be y1, x1, y2, x2 in pixels: shape (4,) for every image or (N, 4) one per image. "
                         f"Received shape {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values: give pixel coordinates y1, x1, y2, x2.")
    flat = array.reshape(-1, 4)
    bad = np.flatnonzero((flat[:, 2] <= flat[:, 0]) | (flat[:, 3] <= flat[:, 1]))
    if bad.size:
        raise ValueError(f"{name} {flat[bad[0]].tolist()} is empty: boxes are y1, x1, y2, x2 with y2 > y1 and x2 > x1 "
                         "(top, left, bottom, right in pixels).")
    return array


class Detection:
    """A detection target: the detector's evidence for one box of one class.

    ``decode(outputs) -> (boxes, class_scores)`` turns the model's raw outputs, as the model
    returns them (a tensor, list or dict; nothing left out), into boxes ``(N, M, 4)`` as
    y1, x1, y2, x2 in pixels and class scores ``(N, M, K)``, written with ``keras.ops`` (it
    runs inside the compiled step on every backend). The score explained is the sum, over the
    predicted boxes whose IoU with ``box`` is at least ``iou``, of IoU + the box's score for
    ``class_index`` — the box-score target of pytorch-grad-cam, summed over the matches.

    Args:
        box: y1, x1, y2, x2 in pixels, ``(4,)`` for every image or ``(N, 4)`` one per image.
        class_index: the class (an int, or one per image).
        decode: the decoding function above (required; :func:`kerasxai.targets.retinanet_decode`
            makes one for keras-hub's RetinaNet).
        iou: the overlap a predicted box needs to count, in (0, 1].

    ``decode`` is traced once per ``(decode, iou)`` and its compiled step reused: it must not read
    Python state that changes between calls (give a new function instead).

    When no predicted box overlaps ``box`` enough in an image, a warning names it: there is
    nothing to explain and its map is flat.

    Examples:
        >>> import keras, numpy as np
        >>> import kerasxai
        >>> from kerasxai.targets import Detection
        >>> inp = keras.Input((16, 16, 3))
        >>> feat = keras.layers.Conv2D(4, 3, strides=4, padding="same", name="feat")(inp)
        >>> det = keras.Model(inp, {"box": keras.layers.Conv2D(4, 1)(feat), "cls": keras.layers.Conv2D(2, 1)(feat)})
        >>> def decode(out):  # every cell's box: its own 4x4 cell, moved by the regression (toy)
        ...     n = keras.ops.shape(out["box"])[0]
        ...     cells = np.array([[y, x, y + 4, x + 4] for y in range(0, 16, 4) for x in range(0, 16, 4)], "float32")
        ...     boxes = cells[None] + keras.ops.reshape(out["box"], (n, 16, 4))
        ...     return boxes, keras.ops.reshape(out["cls"], (n, 16, 2))
        >>> target = Detection([0, 0, 8, 8], 1, decode, iou=0.1)
        >>> kerasxai.saliency(det, np.random.rand(2, 16, 16, 3).astype("float32"), target=target).shape
        (2, 16, 16)
    """

    reads_all_outputs = True

    def __init__(self, box, class_index, decode=None, iou=0.5):
        self.box = check_boxes(box)
        if isinstance(class_index, numbers.Integral):
            self.class_index = check_class_index(class_index)
        else:
            values = np.asarray(class_index)
            if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer) or (values < 0).any():
                raise ValueError(f"class_index must be an int >= 0, or one per image. Received: {class_index!r}")
            self.class_index = values.astype(np.int32)
        if decode is None or not callable(decode):
            raise ValueError(
                "Detection needs decode: a keras.ops function from the model's raw outputs (as the model returns "
                "them) to (boxes (N, M, 4) as y1, x1, y2, x2 in pixels, class scores (N, M, K)), e.g. "
                "decode=lambda out: (out['boxes'], out['class_logits']); for keras-hub's RetinaNet, "
                "decode=kerasxai.targets.retinanet_decode(model). See the docs' 'Segmenters and detectors'.")
        if isinstance(iou, bool) or not isinstance(iou, numbers.Real) or not 0 < iou <= 1:
            raise ValueError(f"iou is the overlap a predicted box needs to count, in (0, 1]. Received: iou={iou!r}")
        self.decode, self.iou = decode, float(iou)

    def __repr__(self):
        return f"Detection(box={self.box.tolist()}, class_index={self.class_index}, iou={self.iou})"

    @property
    def step_key(self):
        return ("detection", self.decode, self.iou)

    def describe(self, index=None) -> str:
        """How the target reads in figure titles (for image ``index`` when each image has its class)."""
        if isinstance(self.class_index, int):
            return f"box of class {self.class_index}"
        return "each row's box" if index is None else f"box of class {int(self.class_index[index])}"

    def outline(self, index: int):
        """The box drawn on image ``index`` of a figure."""
        return self.box if self.box.ndim == 1 else self.box[index]

    def resolve(self, probe, batch, total=None) -> TargetBatch:
        """The batch's classes and boxes; warns about images where no predicted box matches."""
        n = batch.size
        boxes = (np.broadcast_to(self.box, (n, 4)) if self.box.ndim == 1
                 else _per_image("box", self.box, batch, total, "box", "boxes"))
        if isinstance(self.class_index, int):
            classes = np.full((n,), self.class_index, np.int32)
        else:
            classes = _per_image("class_index", self.class_index, batch, total, "class", "classes")
        resolved = TargetBatch(np.ascontiguousarray(classes, np.int32), (np.ascontiguousarray(boxes, np.float32),))
        out = probe.step(None, _Matches(self.decode, self.iou), target=self)(batch.inputs, (), resolved)
        k = int(out["n_classes"][0]) if len(out["n_classes"]) else 0
        if (classes >= k).any():
            raise ValueError(f"class_index {int(classes[classes >= k][0])} is out of range: decode gives class scores "
                             f"for {k} classes (0..{k - 1}).")
        bad = np.flatnonzero(~np.asarray(out["decoded_finite"], bool)) + batch.start
        if bad.size:
            raise _warn.ImagesRefused(
                f"decode gave NaN or infinite boxes or class scores for image(s) {bad.tolist()[:20]} (an exp of a large "
                "regression, a division by zero?): their matches would be meaningless. Clip the regression inside "
                "decode (e.g. ops.clip(deltas, -4, 4) before ops.exp).", bad)
        resolved.empty = np.asarray(out["matches"]) == 0
        unmatched = np.flatnonzero(resolved.empty) + batch.start
        if unmatched.size:
            _warn.warn(f"kerasxai: Detection target: no predicted box overlaps the box with IoU >= {self.iou} in "
                       f"image(s) {unmatched.tolist()[:20]}: there is nothing to explain, and their maps are flat "
                       "(check the box's pixel coordinates y1, x1, y2, x2, or lower iou=).", _warn.PerImageWarning)
        return resolved

    def scores(self, head, outputs, classes, box):
        """The summed box scores of each image, in ``keras.ops`` (inside the step)."""
        per_box, _, _, _ = match(self.decode, self.iou, outputs, classes, box)
        return ops.sum(per_box, axis=1), classes


def _structure(outputs) -> str:
    """What ``decode`` received, in words: ``a dict {'box': (None, 4, 4, 4), ...}``."""
    if isinstance(outputs, dict):
        return "a dict {" + ", ".join(f"'{k}': {tuple(v.shape)}" for k, v in outputs.items()) + "}"
    if isinstance(outputs, (list, tuple)):
        return "a list [" + ", ".join(str(tuple(v.shape)) for v in outputs) + "]"
    return f"one tensor {tuple(outputs.shape)}"


def decoded(decode, outputs):
    """``decode(outputs)`` checked: float32 boxes ``(N, M, 4)`` and class scores ``(N, M, K)``."""
    try:
        result = decode(outputs)
    except (NotImplementedError, TypeError, RuntimeError, KeyError, IndexError, AttributeError) as err:
        first = (str(err).splitlines() or [""])[0][:200]
        numpy = any(word in first.lower() for word in ("numpy", "__array__", "tracer", "symbolic", "requires grad"))
        raise ValueError(
            f"decode failed on the model's outputs ({type(err).__name__}: {first}). It received "
            f"{_structure(outputs)}: the model's outputs as the model returns them (or the one named by output=), "
            "as backend tensors inside the compiled step" + ("; write it with keras.ops, not NumPy." if numpy else ".")
        ) from err
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise ValueError(f"decode must return (boxes (N, M, 4), class_scores (N, M, K)). Received: {type(result).__name__}")
    boxes, class_scores = result
    bs, cs = tuple(boxes.shape), tuple(class_scores.shape)
    if len(bs) != 3 or bs[-1] != 4 or len(cs) != 3 or (None not in (bs[1], cs[1]) and bs[1] != cs[1]):
        raise ValueError(f"decode returned boxes of shape {bs} and class scores of shape {cs}; they must be "
                         "(N, M, 4) and (N, M, K) for the same M predicted boxes.")
    return ops.cast(boxes, "float32"), ops.cast(class_scores, "float32")


def match(decode, threshold, outputs, classes, box):
    """Per predicted box ``(N, M)``: IoU + class score where the IoU with ``box`` is >= ``threshold``
    (else 0), which boxes match; and the decoded boxes and class scores."""
    boxes, class_scores = decoded(decode, outputs)
    iou = box_iou(box, boxes)
    index = ops.reshape(ops.maximum(classes, 0), (-1, 1, 1))
    score = ops.take_along_axis(class_scores, index, axis=-1)[..., 0]
    keep = iou >= threshold
    return ops.where(keep, iou + score, 0.0), keep, boxes, class_scores


@dataclasses.dataclass(frozen=True)
class _Matches:
    """A step's post: how many predicted boxes match each image's box, and how many classes decode gives."""

    decode: object
    iou: float

    def __call__(self, p):
        _, keep, boxes, class_scores = match(self.decode, self.iou, p.logits, p.classes, p.target_data[0])
        n = ops.shape(keep)[0]
        finite = ops.logical_and(ops.all(ops.isfinite(ops.reshape(boxes, (n, -1))), axis=1),
                                 ops.all(ops.isfinite(ops.reshape(class_scores, (n, -1))), axis=1))
        return {"matches": ops.sum(ops.cast(keep, "int32"), axis=1), "decoded_finite": finite,
                "n_classes": ops.ones((n,), "int32") * ops.cast(ops.shape(class_scores)[-1], "int32")}
