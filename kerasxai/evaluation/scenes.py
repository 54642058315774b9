"""Beyond classification: generated two-object scenes, a small U-Net segmenter and a small grid detector.

Each scene holds exactly one disc (class 1) and one cross (class 2), drawn as
in :mod:`~kerasxai.evaluation.synthetic` (random colour, size and position, on
textured noise with a few small bright distractor squares), their boxes apart.
Both objects are in every image, so an explanation of *one* of them is right
only where it points at that object and not at the other one.

- :func:`two_object_scenes`: images, class maps, per-object boxes, classes and masks;
- :func:`small_unet`, :func:`train_unet`, :func:`segmentation_scores`: a segmenter
  ``(N, H, W, 3)`` softmax output, last layer ``"mask"``;
- :func:`small_detector`, :func:`detector_decode`, :func:`train_detector`,
  :func:`detection_scores`: a single-shot detector on a stride-8 grid, outputs
  ``{"box_deltas", "class_logits"}``, and the ``keras.ops`` decoder to pixel boxes;
- :func:`nms_detector`: the detector as a NumPy black box (boxes and class
  probabilities per image, after non-maximum suppression), as D-RISE takes it.

Both models train offline in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from kerasxai.probe.regions import box_iou_numpy

CLASS_NAMES = ("background", "disc", "cross")
STRIDE = 8  # the detector's cell size in pixels; the two objects' centres lie in different cells


@dataclasses.dataclass
class Scenes:
    """Generated scenes and their answers; ``n`` images of ``size x size`` pixels.

    Attributes:
        images: ``(n, size, size, 3)`` float32 in [0, 1].
        labels: ``(n, size, size)`` int32 class map: 0 background, 1 disc, 2 cross.
        boxes: ``(n, 2, 4)`` float32 ``(y1, x1, y2, x2)`` pixel corners of each object, end
            exclusive (``labels[i, y1:y2, x1:x2]`` holds the whole object), as
            :func:`~kerasxai.evaluation.metrics.box_masks` takes them.
        classes: ``(n, 2)`` int32: each object's class (one 1 and one 2 per image, in random order).
        masks: ``(n, 2, size, size)`` bool: each object's pixels.
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


def _shape_mask(kind: int, cy: float, cx: float, r: float, yy, xx) -> np.ndarray:
    """A disc (1) or a cross (2) of radius ``r`` centred at ``(cy, cx)``, as in ``synthetic.shapes_dataset``."""
    if kind == 1:
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    arm = max(1.5, r / 3)
    inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
    return inside & ((np.abs(yy - cy) <= arm) | (np.abs(xx - cx) <= arm))


def _box_of(mask) -> np.ndarray:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], np.float32)


def _apart(a, b, margin: int = 1) -> bool:
    """The boxes do not touch (``margin`` pixels between them) and their centres lie in different cells."""
    separated = a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1]
    cells = [tuple(((box[:2] + box[2:]) / 2 // STRIDE).astype(int)) for box in (a, b)]
    return separated and cells[0] != cells[1]


def two_object_scenes(n: int, size: int = 32, seed: int = 0, clutter: int = 2) -> Scenes:
    """``n`` scenes of one disc and one cross each, boxes apart, centres in different 8-pixel cells.

    Radii are 12-20 % of ``size``; ``clutter`` small bright squares per image lie away from both
    objects (a model must find the objects among other bright things). See :class:`Scenes`.

    Examples:
        >>> s = two_object_scenes(4, seed=1)
        >>> s.images.shape, s.labels.shape, s.boxes.shape, s.classes.shape, s.masks.shape
        ((4, 32, 32, 3), (4, 32, 32), (4, 2, 4), (4, 2), (4, 2, 32, 32))
        >>> sorted(s.classes[0].tolist()), sorted(np.unique(s.labels).tolist())
        ([1, 2], [0, 1, 2])
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images = rng.uniform(0.0, 0.35, (n, size, size, 3)).astype(np.float32)
    labels = np.zeros((n, size, size), np.int32)
    boxes = np.zeros((n, 2, 4), np.float32)
    classes = np.zeros((n, 2), np.int32)
    masks = np.zeros((n, 2, size, size), bool)
    for i in range(n):
        kinds = rng.permutation([1, 2])
        while True:  # redraw until the two boxes are apart
            drawn = []
            for kind in kinds:
                r = rng.uniform(0.12, 0.2) * size
                cy, cx = rng.uniform(r + 1, size - r - 1, 2)
                drawn.append(_shape_mask(kind, cy, cx, r, yy, xx))
            found = [_box_of(m) for m in drawn]
            if _apart(*found):
                break
        occupied = np.zeros((size, size), bool)
        for box in found:
            occupied[max(0, int(box[0]) - 2) : int(box[2]) + 2, max(0, int(box[1]) - 2) : int(box[3]) + 2] = True
        for _ in range(clutter):  # distractors: small bright squares away from both objects
            side = int(rng.integers(2, max(3, size // 10) + 1))
            for _attempt in range(20):
                y, x = rng.integers(0, size - side, 2)
                if not occupied[y : y + side, x : x + side].any():
                    images[i, y : y + side, x : x + side] = rng.uniform(0.5, 1.0, 3).astype(np.float32)
                    break
        for k, (kind, mask, box) in enumerate(zip(kinds, drawn, found)):
            colour = rng.uniform(0.6, 1.0, 3) + rng.normal(0.0, 0.03, (int(mask.sum()), 3))
            images[i][mask] = np.clip(colour, 0.0, 1.0).astype(np.float32)
            labels[i][mask] = kind
            boxes[i, k], classes[i, k], masks[i, k] = box, kind, mask
    return Scenes(images, labels, boxes, classes, masks)


# --------------------------------------------------------------------------- the segmenter


def small_unet(size: int = 32, classes: int = 3, seed: int = 0) -> keras.Model:
    """A tiny U-Net: two poolings down, two upsamplings up, skip connections; output ``(N, size, size, classes)``.

    Encoder ``enc1`` (size) -> ``enc2`` (size/2) -> ``bottleneck`` (size/4); decoder ``dec2``
    (size/2, concatenated with ``enc2``) -> ``dec1`` (size, with ``enc1``); the last layer
    ``Conv2D(classes, 1, activation="softmax", name="mask")``.

    Examples:
        >>> model = small_unet()
        >>> model.output.shape, model.get_layer("bottleneck").output.shape
        ((None, 32, 32, 3), (None, 8, 8, 64))
    """
    keras.utils.set_random_seed(seed)
    layers = keras.layers

    def conv(filters, name):
        return layers.Conv2D(filters, 3, padding="same", activation="relu", name=name)

    inputs = keras.Input((size, size, 3))
    e1 = conv(16, "enc1")(inputs)
    e2 = conv(32, "enc2")(layers.MaxPooling2D(name="pool1")(e1))
    x = conv(64, "bottleneck_in")(layers.MaxPooling2D(name="pool2")(e2))
    x = conv(64, "bottleneck")(x)
    x = layers.Concatenate(name="skip2")([layers.UpSampling2D(name="up2")(x), e2])
    x = conv(32, "dec2")(x)
    x = layers.Concatenate(name="skip1")([layers.UpSampling2D(name="up1")(x), e1])
    x = conv(16, "dec1")(x)
    outputs = layers.Conv2D(classes, 1, activation="softmax", name="mask")(x)
    return keras.Model(inputs, outputs, name="small_unet")


def _pixel_cross_entropy(labels, probs):
    """Per image, the mean over pixels of -log(probability of the pixel's class). (Keras's
    ``"sparse_categorical_crossentropy"`` on a softmax output fails on PyTorch 2.13: "grad_input
    must be contiguous".)"""
    picked = ops.take_along_axis(probs, ops.expand_dims(ops.cast(labels, "int32"), -1), axis=-1)[..., 0]
    return -ops.mean(ops.log(ops.clip(picked, 1e-7, 1.0)), axis=(1, 2))


def train_unet(scenes: Scenes | None = None, *, n: int = 2000, epochs: int = 10, batch_size: int = 32,
               seed: int = 0, verbose: int = 0) -> keras.Model:
    """:func:`small_unet` trained on ``scenes`` (default: ``two_object_scenes(n, seed=seed)``), pixel cross-entropy.

    30-60 s on 2 CPU cores with the defaults (TensorFlow, JAX or PyTorch); on fresh scenes pixel
    accuracy and both shapes' IoU above 0.99 (:func:`segmentation_scores`).
    """
    scenes = two_object_scenes(n, seed=seed) if scenes is None else scenes
    keras.utils.set_random_seed(seed)
    model = small_unet(scenes.images.shape[1], len(CLASS_NAMES), seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=_pixel_cross_entropy)
    model.fit(scenes.images, scenes.labels, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=verbose)
    return model


def segmentation_scores(model, scenes: Scenes, batch_size: int = 128) -> dict:
    """``{"pixel_accuracy": float, "iou": {"disc": float, "cross": float}}`` of the predicted class map.

    Examples:
        >>> s = two_object_scenes(2)
        >>> sorted(segmentation_scores(small_unet(), s)["iou"])
        ['cross', 'disc']
    """
    predicted = model.predict(scenes.images, batch_size=batch_size, verbose=0).argmax(-1)
    iou = {}
    for k in range(1, len(CLASS_NAMES)):
        p, t = predicted == k, scenes.labels == k
        iou[CLASS_NAMES[k]] = float((p & t).sum() / max(1, (p | t).sum()))
    return {"pixel_accuracy": float((predicted == scenes.labels).mean()), "iou": iou}


# --------------------------------------------------------------------------- the detector


def small_detector(size: int = 32, classes: int = 2, seed: int = 0) -> keras.Model:
    """A tiny single-shot detector on a ``size/8`` grid: outputs ``{"box_deltas", "class_logits"}``.

    Per cell, ``box_deltas`` ``(N, g, g, 4)`` are the box's centre offset in the cell (before a
    sigmoid) and its log height and width over the anchor; ``class_logits`` ``(N, g, g,
    classes + 1)`` are softmax logits with the background first, as in SSD, so class ``c`` is the
    scene's class ``c`` (1 disc, 2 cross). :func:`detector_decode` turns both into pixel boxes.
    The last backbone layer, ``"features"``, is ``(N, g, g, 64)``.

    Examples:
        >>> model = small_detector()
        >>> {k: v.shape for k, v in model.output.items()}
        {'box_deltas': (None, 4, 4, 4), 'class_logits': (None, 4, 4, 3)}
    """
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((size, size, 3))
    x = inputs
    for filters, name in ((16, "conv1"), (32, "conv2"), (64, "conv3")):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=name)(x)
        x = layers.MaxPooling2D(name=name.replace("conv", "pool"))(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="features")(x)
    outputs = {
        "box_deltas": layers.Conv2D(4, 1, name="box_deltas")(x),
        "class_logits": layers.Conv2D(classes + 1, 1, name="class_logits")(x),
    }
    return keras.Model(inputs, outputs, name="small_detector")


def _anchor(size: int) -> float:
    return 0.32 * size  # the typical object's box side (radius 16 % of the image)


def detector_decode(size: int = 32, grid: int | None = None, anchor: float | None = None):
    """``decode(outputs) -> (boxes (N, g*g, 4), class_scores (N, g*g, classes))`` for :func:`small_detector`.

    Cell ``k = row * g + col`` predicts a box centred at ``((row, col) + sigmoid(deltas[:2])) *
    cell`` pixels, of height and width ``anchor * exp(deltas[2:])``, as ``(y1, x1, y2, x2)``
    pixels; its class scores are the class logits. Written in ``keras.ops`` only: it runs inside
    a compiled step on every backend.

    Args:
        size: the image side in pixels.
        grid: cells per side (default ``size // 8``).
        anchor: the box side in pixels for zero log-size deltas (default ``0.32 * size``).

    Examples:
        >>> decode = detector_decode(32)
        >>> zeros = {"box_deltas": np.zeros((1, 4, 4, 4), "float32"),
        ...          "class_logits": np.zeros((1, 4, 4, 3), "float32")}
        >>> boxes, scores = decode(zeros)
        >>> ops.convert_to_numpy(boxes)[0, 5].astype(float).round(2).tolist(), tuple(scores.shape)
        ([6.88, 6.88, 17.12, 17.12], (1, 16, 3))
    """
    grid = size // STRIDE if grid is None else grid
    cell = size / grid
    anchor = _anchor(size) if anchor is None else float(anchor)
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    corners = (np.stack([rows, cols], axis=-1) * cell).astype(np.float32)  # (g*g, 2) each cell's top-left

    def decode(outputs):
        deltas, logits = outputs["box_deltas"], outputs["class_logits"]
        deltas = ops.reshape(deltas, (-1, grid * grid, 4))
        logits = ops.reshape(logits, (-1, grid * grid, logits.shape[-1]))
        centre = ops.convert_to_tensor(corners, deltas.dtype) + ops.sigmoid(deltas[..., :2]) * cell
        half = anchor * ops.exp(ops.clip(deltas[..., 2:], -4.0, 4.0)) / 2
        return ops.concatenate([centre - half, centre + half], axis=-1), logits

    return decode


def _detector_targets(scenes: Scenes, grid: int, anchor: float):
    """Training targets: ``(N, g, g, 5)`` (offsets in the cell, log sizes, 1 where an object's centre lies)
    and the ``(N, g, g)`` class of each cell (0 background)."""
    n = len(scenes)
    cell = scenes.images.shape[1] / grid
    boxes = np.zeros((n, grid, grid, 5), np.float32)
    classes = np.zeros((n, grid, grid), np.int32)
    for i in range(n):
        for box, kind in zip(scenes.boxes[i], scenes.classes[i]):
            centre, sides = (box[:2] + box[2:]) / 2, box[2:] - box[:2]
            row, col = np.minimum((centre // cell).astype(int), grid - 1)
            boxes[i, row, col] = [*(centre / cell - (row, col)), *np.log(sides / anchor), 1.0]
            classes[i, row, col] = kind
    return boxes, classes


def _box_loss(y_true, y_pred):
    """L1 of the centre offsets (after the sigmoid) and log sizes, summed over the cells that hold an object."""
    found = y_true[..., 4]
    pred = ops.concatenate([ops.sigmoid(y_pred[..., :2]), y_pred[..., 2:]], axis=-1)
    error = ops.sum(ops.abs(pred - y_true[..., :4]), axis=-1)
    return ops.sum(found * error, axis=(1, 2))


def train_detector(scenes: Scenes | None = None, *, n: int = 2000, epochs: int = 15, batch_size: int = 32,
                   seed: int = 0, verbose: int = 0):
    """:func:`small_detector` trained on ``scenes`` (default ``two_object_scenes(n, seed=seed)``); returns
    ``(model, decode)``.

    Loss: softmax cross-entropy of every cell's class logits (the class of the object whose box
    centre lies in the cell, background elsewhere) plus the L1 box loss on those cells. About 20 s on
    2 CPU cores (TensorFlow); about 0.98 of fresh objects found (:func:`detection_scores`).
    """
    scenes = two_object_scenes(n, seed=seed) if scenes is None else scenes
    size = scenes.images.shape[1]
    grid, anchor = size // STRIDE, _anchor(size)
    keras.utils.set_random_seed(seed)
    model = small_detector(size, len(CLASS_NAMES) - 1, seed=seed)
    boxes, classes = _detector_targets(scenes, grid, anchor)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss={"box_deltas": _box_loss, "class_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
        loss_weights={"box_deltas": 1.0, "class_logits": float(grid * grid)},  # a mean over the cells
    )
    model.fit(scenes.images, {"box_deltas": boxes, "class_logits": classes}, epochs=epochs, batch_size=batch_size,
              shuffle=True, verbose=verbose)
    return model, detector_decode(size, grid, anchor)


def _decoded(model, decode, images, batch_size: int):
    """NumPy ``(boxes (N, g*g, 4), class probabilities (N, g*g, classes))``."""
    boxes, probs = [], []
    for start in range(0, len(images), batch_size):
        out = model.predict_on_batch(np.asarray(images[start : start + batch_size], np.float32))
        b, logits = decode(out)
        boxes.append(ops.convert_to_numpy(b))
        probs.append(ops.convert_to_numpy(ops.softmax(logits, axis=-1)))
    return np.concatenate(boxes), np.concatenate(probs)


def detection_scores(model, decode, scenes: Scenes, batch_size: int = 128) -> dict:
    """How well the detector finds the objects, per cell (before NMS).

    ``"hit_rate"``: the fraction of objects whose best cell — of the cells whose box overlaps the
    object, the one with the highest score for the object's class — has IoU >= 0.5 with it and
    names the right class (its top class); ``"mean_iou"``: that cell's IoU, averaged.

    Examples:
        >>> model, s = small_detector(), two_object_scenes(2)
        >>> sorted(detection_scores(model, detector_decode(32), s))
        ['hit_rate', 'mean_iou']
    """
    boxes, probs = _decoded(model, decode, scenes.images, batch_size)
    hits, ious = [], []
    for i in range(len(scenes)):
        for box, kind in zip(scenes.boxes[i], scenes.classes[i]):
            iou = box_iou_numpy(box, boxes[i])
            score = np.where(iou > 0, probs[i, :, kind], -1.0)
            best = int(score.argmax())
            hits.append(iou[best] >= 0.5 and probs[i, best].argmax() == kind)
            ious.append(iou[best])
    return {"hit_rate": float(np.mean(hits)), "mean_iou": float(np.mean(ious))}


def _nms(boxes, scores, iou: float) -> list:
    """Indices kept by greedy non-maximum suppression, best score first."""
    order, keep = np.argsort(-scores), []
    while len(order):
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[box_iou_numpy(boxes[best], boxes[order]) < iou]
    return keep


def nms_detector(model, decode, *, score_threshold: float = 0.5, iou: float = 0.5, batch_size: int = 64):
    """The detector as a NumPy black box ``fn(images) -> [(boxes (M, 4), class_probs (M, K)) per image]``.

    ``class_probs`` are the softmax over background (column 0) and the classes. Each cell whose
    best object class has probability at least ``score_threshold`` is a detection; greedy non-maximum suppression over all classes keeps, of boxes overlapping
    with IoU >= ``iou``, the best-scoring one. Boxes are ``(y1, x1, y2, x2)`` pixels clipped to
    the image. This is what D-RISE explains: it sees only these detections, no gradient.

    Examples:
        >>> fn = nms_detector(small_detector(), detector_decode(32), score_threshold=0.0)
        >>> found = fn(two_object_scenes(3).images)
        >>> len(found), found[0][0].shape[1], found[0][1].shape[1]
        (3, 4, 3)
    """

    def detections(images) -> list:
        images = np.asarray(images, np.float32)
        boxes, probs = _decoded(model, decode, images, batch_size)
        h, w = images.shape[1:3]
        boxes = np.clip(boxes, 0, np.array([h, w, h, w], np.float32))
        found = []
        for b, p in zip(boxes, probs):
            score = p[:, 1:].max(axis=-1)
            candidates = np.flatnonzero(score >= score_threshold)
            keep = candidates[_nms(b[candidates], score[candidates], iou)] if len(candidates) else candidates
            found.append((b[keep].astype(np.float32), p[keep].astype(np.float32)))
        return found

    return detections
