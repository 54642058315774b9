"""Black-box methods: maps from the scores of perturbed copies of the input, no gradient.

They need only forward passes, so they explain what gradient methods cannot: a
model with an ``argmax`` or integer cast inside, one whose gradient is cut. The
copies are made on the host and go through the probe's compiled forward step
``batch_size`` at a time; the class explained is resolved once on the clean
image (``target=None`` is never re-picked on a perturbed copy), and the score
is the logit, as for every other method.
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
from keras import ops

from kerasxai import _warn
from kerasxai.methods import engine
from kerasxai.methods import maps as maps_lib
from kerasxai.methods.engine import DEFAULT_BATCH_SIZE
from kerasxai.probe import Fn, get_probe
from kerasxai.probe import regions
from kerasxai.probe.regions import fixed

CHANNELS_FIRST = "channels_first"


def _scores_post(p):
    return {"scores": p.scores, "classes": p.classes, "finite": maps_lib.logits_finite(p.logits)}


def _warn_unreachable_logits(method, probe, target):
    head = probe.head
    if head.kept and not callable(target):
        _warn.warn(f"kerasxai.{method}: output '{head.name}' of model '{probe.model_name}' ends in a {head.kept} "
                   "whose logits cannot be reached (a quantized layer): the score is the probability, which "
                   "saturates, not the logit.")


def _spatial_input(batch, probe, method):
    x = np.asarray(batch.inputs[probe.explained_input])
    if x.ndim < 3:
        raise ValueError(f"{method} hides parts of an input with spatial axes (batch, spatial..., channels); "
                         f"the explained input has shape {x.shape}: use saliency or integrated_gradients for it.")
    return x


def _pairs(n_images: int, n_copies: int):
    """``(owner, which)``: the image and the copy of every (image, copy) pair, image by image."""
    return np.repeat(np.arange(n_images), n_copies), np.tile(np.arange(n_copies), n_images)


def _bar(progress, total: int, batch_size: int, unit: str):
    show = progress if progress is not None else -(-total // batch_size) > 8
    return keras.utils.Progbar(total, unit_name=unit) if show else None


def _copy_scores(method, step, probe, batch, classes, batch_size, bar, done, make):
    """The target scores of perturbed copies, ``batch_size`` per forward pass.

    ``make(part)`` gives the copies of the explained input for the pairs ``part`` (a slice of
    ``classes``' pairs, whose owners are ``batch``'s images); the other inputs follow their image.
    """
    owner = np.repeat(np.arange(batch.size), len(classes) // batch.size)
    dtype = np.asarray(batch.inputs[probe.explained_input]).dtype
    scores = np.empty(len(classes), np.float32)
    for start in range(0, len(classes), batch_size):
        part = slice(start, min(start + batch_size, len(classes)))
        inputs = [make(part).astype(dtype) if i == probe.explained_input else np.asarray(a)[owner[part]]
                  for i, a in enumerate(batch.inputs)]
        out = step(inputs, (), classes[part])
        maps_lib.check_finite(method, out["finite"], batch.start)
        scores[part] = out["scores"]
        if bar is not None:
            bar.update(done + part.stop)
    return scores


def _sizes(value, rank: int, name: str) -> tuple:
    values = (value,) * rank if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else tuple(value)
    if len(values) != rank or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values):
        raise ValueError(f"{name} must be an int >= 1, or one per spatial axis ({rank}). Received: {name}={value!r}")
    return tuple(int(v) for v in values)


def occlusion_windows(size, window, stride) -> np.ndarray:
    """The occlusion masks of an input of spatial ``size``: ``(W, *size)`` booleans.

    Windows start every ``stride`` pixels on each axis from 0 and are cut at the border (the
    last ones are smaller), so every pixel is covered when ``stride <= window``.

    Examples:
        >>> occlusion_windows((4,), 2, 2).astype(int).tolist()
        [[1, 1, 0, 0], [0, 0, 1, 1]]
        >>> occlusion_windows((5, 5), 3, 2).shape
        (9, 5, 5)
    """
    size = tuple(int(s) for s in size)
    window, stride = _sizes(window, len(size), "window"), _sizes(stride, len(size), "stride")
    bad = [i for i, (w, s) in enumerate(zip(window, stride)) if s > w]
    if bad:
        raise ValueError(f"stride {stride} is larger than window {window} on axis {bad[0] + 1}: pixels between "
                         "windows would never be occluded. Use stride <= window.")
    starts = [range(0, n, s) for n, s in zip(size, stride)]
    masks = []
    for corner in itertools.product(*starts):
        mask = np.zeros(size, bool)
        mask[tuple(slice(c, c + w) for c, w in zip(corner, window))] = True
        masks.append(mask)
    return np.stack(masks)


def _baseline(baseline, example_shape) -> np.ndarray:
    base = np.asarray(baseline, np.float32)
    if not np.isfinite(base).all():
        raise ValueError("baseline holds NaN or infinite values: the occluded copies would have no score. "
                         "Give a finite value, e.g. 0.0 or the data set's mean pixel.")
    try:
        return np.broadcast_to(base, example_shape)
    except ValueError:
        raise ValueError(f"baseline has shape {base.shape}; it must broadcast to one example {example_shape} "
                         "(a number, one value per channel, or a whole example).") from None


def occlusion(model, images, target=None, *, output=None, input=None, window=8, stride=4, baseline=0.0,
              batch_size=DEFAULT_BATCH_SIZE, progress=None, raw=False):
    """Occlusion maps: how much the target score drops when a window of the input is hidden.

    Each window (``window`` pixels a side, starting every ``stride`` pixels and cut at
    the border) is replaced by ``baseline`` in a copy of the image; a pixel's value is
    the mean score drop over the windows that cover it. Forward passes only: it works
    where gradients do not (an ``argmax`` or integer cast inside the model). For a
    32x32 image, ``window=8, stride=4`` is 64 copies; 224x224 at ``window=32,
    stride=16`` is 196.

    Args:
        window, stride: pixels per spatial axis (an int, or one per axis); ``stride <= window``.
        baseline: what hides a window: a number, one value per channel, or a whole
            example, in the model's input units (0.0 is black for 0..1 inputs, the mean
            pixel for inputs centred by ``preprocess_input``).
        batch_size: copies per forward pass.
        raw: the signed mean score drop (a negative value: hiding the window raised
            the score) instead of its positive part normalised to [0, 1].
        Other arguments as in :func:`kerasxai.gradcam`.

    Returns:
        float32 ``(N, spatial...)`` maps at the input's resolution.

    Examples:
        >>> import keras, numpy as np
        >>> from kerasxai import occlusion
        >>> model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3),
        ...                           keras.layers.Flatten(), keras.layers.Dense(2)])
        >>> occlusion(model, np.random.rand(2, 16, 16, 3).astype("float32"), window=4, stride=4).shape
        (2, 16, 16)

    Reference: Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks",
    ECCV 2014. https://arxiv.org/abs/1311.2901
    """
    planned = plan_occlusion(model, target, None, output, input, window=window, stride=stride, baseline=baseline,
                             batch_size=batch_size, progress=progress, raw=raw)
    return engine.explain_with("occlusion", planned, images, target, batch_size=batch_size, progress=progress)


def plan_occlusion(model, target, layer=None, output=None, input=None, *, window=8, stride=4, baseline=0.0,
                   batch_size=DEFAULT_BATCH_SIZE, progress=None, raw=False):
    """``(probe, compute)`` of occlusion (at the input: ``layer`` is not used)."""
    engine.check_count("batch_size", batch_size)
    probe = get_probe(model, (), output=output, input=input, target=target)
    if isinstance(window, (int, np.integer)) and isinstance(stride, (int, np.integer)):
        occlusion_windows((max(window, stride),), window, stride)  # checked before any pass (else per batch)
    _warn_unreachable_logits("occlusion", probe, target)
    step = probe.step(None, Fn(_scores_post), target=target)
    channels_first = probe.input_layout == CHANNELS_FIRST

    def compute(batch, classes):
        clean = step(batch.inputs, (), classes)
        used = fixed(classes, clean["classes"])
        x = _spatial_input(batch, probe, "occlusion")
        size = x.shape[2:] if channels_first else x.shape[1:-1]
        masks = occlusion_windows(size, window, stride)
        hidden = np.expand_dims(masks, 1 if channels_first else -1)  # (W, [1,] spatial... [, 1])
        fill = _baseline(baseline, x.shape[1:])
        owner, which = _pairs(len(x), len(masks))
        bar = _bar(progress, len(owner), batch_size, "occluded copy")
        scores = _copy_scores("occlusion", step, probe, batch, used[owner], batch_size, bar, 0,
                              lambda part: np.where(hidden[which[part]], fill, x[owner[part]]))
        drops = clean["scores"][owner] - scores
        weights = drops.reshape(len(x), len(masks))
        covered = masks.reshape(len(masks), -1).astype(np.float32)
        raw_map = (weights @ covered) / covered.sum(axis=0)  # mean drop over the windows covering a pixel
        raw_map = raw_map.reshape((len(x),) + tuple(size))
        finished = maps_lib.finish(raw_map if raw else ops.relu(raw_map), None, raw_output=raw)
        result = {k: np.asarray(ops.convert_to_numpy(v)) for k, v in finished.items()}
        result["raw_max"] = raw_map.reshape(len(x), -1).max(axis=1)
        return {**{k: clean[k] for k in ("scores", "classes", "finite")}, **result}

    return probe, compute


# --------------------------------------------------------------------------- RISE


def rise_masks(size, first: int, count: int, *, cells=7, p=0.5, seed=0) -> np.ndarray:
    """RISE's masks ``first .. first + count - 1`` for an input of spatial ``size``: ``(count, *size)`` float32.

    Mask j is drawn from its own generator ``(seed, j)``, so it is the same whatever the batch
    size, the image or the backend: a ``cells`` grid per axis of ones with probability ``p``,
    upsampled (linearly) to ``(cells + 1) * ceil(size / cells)`` and cropped at a random shift
    of up to one cell (Petsiuk et al. 2018).

    Examples:
        >>> m = rise_masks((32, 32), 0, 4, cells=4, seed=1)
        >>> m.shape, bool(((m >= 0) & (m <= 1)).all())
        ((4, 32, 32), True)
    """
    size = tuple(int(s) for s in size)
    cells = _sizes(cells, len(size), "cells")
    cell = tuple(-(-s // c) for s, c in zip(size, cells))
    big = tuple((c + 1) * w for c, w in zip(cells, cell))
    grids, shifts = [], []
    for j in range(first, first + count):
        rng = np.random.default_rng([seed, j])
        grids.append((rng.random(cells) < p).astype(np.float32))
        shifts.append([int(rng.integers(0, w)) for w in cell])
    upsampled = ops.convert_to_numpy(maps_lib.resize_linear(np.stack(grids), big))
    return np.stack([m[tuple(slice(s, s + n) for s, n in zip(shift, size))] for m, shift in zip(upsampled, shifts)])


def _check_masks(n, cells, p, seed):
    """RISE's and D-RISE's mask options, checked before any pass."""
    engine.check_count("n", n)
    if isinstance(cells, (int, np.integer)):
        _sizes(cells, 1, "cells")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
        raise ValueError(f"p is the probability that a cell is kept, in (0, 1]. Received: p={p!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0. Received: seed={seed!r}")


def rise(model, images, target=None, *, output=None, input=None, n=2000, cells=7, p=0.5, seed=0,
         batch_size=DEFAULT_BATCH_SIZE, progress=None, raw=False):
    """RISE maps: the score of the image seen through random masks, averaged per pixel.

    ``n`` random masks (a ``cells`` x ``cells`` grid of ones drawn with probability ``p``,
    smoothly upsampled and shifted) each multiply the image; the map is
    Σ_j score(x ⊙ m_j) m_j / (n p), the expected score when a pixel is visible. Forward
    passes only (see :func:`occlusion`); the same masks for every image of a call, drawn
    from ``seed``; the class explained is chosen on the clean image.

    Args:
        n: masks per image (the map's noise falls as 1/√n; 2000 is the paper's 224x224 choice).
        cells: grid cells per spatial axis (an int, or one per axis).
        p: probability that a cell is kept.
        seed: the masks' seed: the same seed, the same map.
        batch_size: masked copies per forward pass.
        raw: the un-normalised map (in the score's units) instead of min-max scaled to [0, 1].
        Other arguments as in :func:`kerasxai.gradcam`.

    Examples:
        >>> import keras, numpy as np
        >>> from kerasxai import rise
        >>> model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3),
        ...                           keras.layers.Flatten(), keras.layers.Dense(2)])
        >>> rise(model, np.random.rand(2, 16, 16, 3).astype("float32"), n=64, cells=4).shape
        (2, 16, 16)

    Reference: Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of
    Black-box Models", BMVC 2018. https://arxiv.org/abs/1806.07421
    """
    planned = plan_rise(model, target, None, output, input, n=n, cells=cells, p=p, seed=seed,
                        batch_size=batch_size, progress=progress, raw=raw)
    return engine.explain_with("rise", planned, images, target, batch_size=batch_size, progress=progress)


def plan_rise(model, target, layer=None, output=None, input=None, *, n=2000, cells=7, p=0.5, seed=0,
              batch_size=DEFAULT_BATCH_SIZE, progress=None, raw=False):
    """``(probe, compute)`` of RISE (at the input: ``layer`` is not used)."""
    engine.check_count("batch_size", batch_size)
    _check_masks(n, cells, p, seed)
    probe = get_probe(model, (), output=output, input=input, target=target)
    _warn_unreachable_logits("rise", probe, target)
    step = probe.step(None, Fn(_scores_post), target=target)
    channels_first = probe.input_layout == CHANNELS_FIRST

    def compute(batch, classes):
        clean = step(batch.inputs, (), classes)
        used = fixed(classes, clean["classes"])
        x = _spatial_input(batch, probe, "rise")
        size = x.shape[2:] if channels_first else x.shape[1:-1]
        total = np.zeros((len(x),) + tuple(size), np.float64)
        per_chunk = max(1, batch_size // len(x))  # masks per pass: every image of the batch through each
        bar = _bar(progress, n * len(x), batch_size, "masked copy")
        for first in range(0, n, per_chunk):
            count = min(per_chunk, n - first)
            masks = rise_masks(size, first, count, cells=cells, p=p, seed=seed)
            shaped = np.expand_dims(masks, 1 if channels_first else -1)  # (count, [1,] spatial... [, 1])
            owner, which = _pairs(len(x), count)
            scores = _copy_scores("rise", step, probe, batch, used[owner], batch_size, bar, first * len(x),
                                  lambda part: x[owner[part]] * shaped[which[part]])
            total += np.tensordot(scores.reshape(len(x), count).astype(np.float64), masks, 1)
        raw_map = (total / (n * p)).astype(np.float32)
        finished = maps_lib.finish(raw_map, None, raw_output=raw)
        result = {k: np.asarray(ops.convert_to_numpy(v)) for k, v in finished.items()}
        return {**{k: clean[k] for k in ("scores", "classes", "finite")}, **result}

    return probe, compute


# --------------------------------------------------------------------------- D-RISE


def _detections(result, n_copies: int):
    """A detector's output for ``n_copies`` images as a list of ``(boxes (M, 4), probs (M, K), objectness (M,))``."""
    if isinstance(result, dict):
        raise ValueError(f"fn returned a dict (keys {sorted(result)[:6]}): D-RISE needs, per image, (boxes (M, 4), "
                         "class_probs (M, K)[, objectness (M,)]) — a list, or padded arrays (B, M, 4), (B, M, K). Wrap "
                         "the detector: fn = lambda x: [(d['boxes'], d['class_probs']) for d in ...].")
    if isinstance(result, tuple) and len(result) in (2, 3) and np.ndim(result[0]) == 3:  # padded arrays (B, M, ...)
        parts = [np.asarray(r) for r in result]
        result = [tuple(part[i] for part in parts) for i in range(len(parts[0]))]
    result = list(result)
    if len(result) != n_copies:
        raise ValueError(f"fn returned detections for {len(result)} images, given {n_copies}: it must return, per "
                         "image, (boxes (M, 4), class_probs (M, K)[, objectness (M,)]) — a list, or padded arrays "
                         "(B, M, 4), (B, M, K)[, (B, M)].")
    out = []
    for item in result:
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise ValueError("fn must return, per image, (boxes (M, 4), class_probs (M, K)) or (boxes, class_probs, "
                             f"objectness (M,)). Received an item of type {type(item).__name__}.")
        boxes = np.asarray(item[0], np.float64).reshape(-1, 4)
        probs = np.asarray(item[1], np.float64)
        if probs.ndim != 2 and len(boxes):
            raise ValueError(f"fn's class_probs have shape {probs.shape} for {len(boxes)} boxes: D-RISE compares class "
                             "vectors, so give (M, K) probabilities per detection (not class ids or one confidence; a "
                             "one-class detector: (M, 1), its confidence as objectness).")
        probs = probs.reshape(len(boxes), -1) if probs.size or len(boxes) else probs.reshape(0, 1)
        objectness = np.ones(len(boxes)) if len(item) == 2 else np.asarray(item[2], np.float64).reshape(-1)
        if len(probs) != len(boxes) or len(objectness) != len(boxes):
            raise ValueError(f"fn returned {len(boxes)} boxes but {len(probs)} class vectors and {len(objectness)} "
                             "objectness values for one image: give one of each per detection.")
        if not (np.isfinite(boxes).all() and np.isfinite(probs).all() and np.isfinite(objectness).all()):
            raise ValueError("fn returned NaN or infinite boxes or scores: D-RISE's weights would be meaningless.")
        out.append((boxes, probs, objectness))
    return out


def drise_weight(box, class_index: int, detections) -> float:
    """D-RISE's weight of one masked image: the best match over its detections of
    IoU(box, detection) x cosine(one-hot class, detection's class vector) x objectness.

    Examples:
        >>> dets = (np.array([[0, 0, 10, 10], [0, 0, 5, 10]]), np.array([[0.1, 0.9], [0.9, 0.1]]), np.ones(2))
        >>> round(drise_weight(np.array([0, 0, 10, 10]), 1, dets), 4)
        0.9939
    """
    boxes, probs, objectness = detections
    if not len(boxes):
        return 0.0
    if class_index >= probs.shape[1]:
        raise ValueError(f"class_index {class_index} is out of range: fn gives class vectors of {probs.shape[1]} "
                         f"classes (0..{probs.shape[1] - 1}).")
    norms = np.linalg.norm(probs, axis=1)
    cosine = np.divide(probs[:, class_index], norms, out=np.zeros(len(probs)), where=norms > 0)
    return float(np.max(regions.box_iou_numpy(box, boxes) * cosine * objectness))


def drise(fn, images, box, class_index, *, n=2000, cells=7, p=0.5, seed=0, batch_size=DEFAULT_BATCH_SIZE,
          progress=None, raw=False):
    """D-RISE maps: where a black-box detector looks to find one box of one class.

    ``fn(images) -> detections`` is any detector, post-processing (non-maximum suppression)
    included: given a batch ``(B, H, W, C)`` as NumPy, it returns per image ``(boxes (M, 4)
    as y1, x1, y2, x2 in pixels, class_probs (M, K)[, objectness (M,)])`` (a list, or
    padded arrays ``(B, M, 4), (B, M, K)[, (B, M)]``). Each of ``n`` RISE masks (the same as
    :func:`rise`'s for a seed) multiplies the image; the mask's weight is how well the
    masked image's detections still find the target: the best over them of IoU with ``box``
    × cosine similarity of their class vector with ``class_index``'s one-hot vector
    (× objectness). The map is Σ weight_j m_j / n.

    Args:
        fn: the detector as a function of NumPy images (a ``keras.Model`` plus decoding and NMS, an
            exported model, anything).
        images: ``(N, H, W, C)`` (or one ``(H, W, C)``), as ``fn`` takes them.
        box: the explained box, y1, x1, y2, x2 in pixels: ``(4,)`` for every image or ``(N, 4)``.
        class_index: its class (an int, or one per image).
        n, cells, p, seed: as in :func:`rise` (the defaults suit 32-pixel images; more cells for
            large images with small objects).
        batch_size: masked images per call of ``fn``.
        raw: the un-normalised map instead of min-max scaled to [0, 1].

    Returns:
        float32 ``(N, H, W)`` maps (``(H, W)`` for one image).

    Examples:
        >>> import numpy as np
        >>> from kerasxai import drise
        >>> def bright_spot(images):  # a toy "detector": one box of class 0 where the image is bright
        ...     out = []
        ...     for im in images:
        ...         score = float(im[4:12, 4:12].mean())
        ...         out.append((np.array([[4, 4, 12, 12]]), np.array([[score, 1 - score]])))
        ...     return out
        >>> drise(bright_spot, np.random.rand(16, 16, 3), box=[4, 4, 12, 12], class_index=0, n=64).shape
        (16, 16)

    Reference: Petsiuk et al., "Black-box Explanation of Object Detectors via Saliency Maps",
    CVPR 2021. https://arxiv.org/abs/2006.03204
    """
    engine.check_count("batch_size", batch_size)
    _check_masks(n, cells, p, seed)
    if not callable(fn):
        raise ValueError(f"fn must be a function images -> detections (D-RISE treats the detector as a black box). "
                         f"Received: {type(fn).__name__}")
    x = np.asarray(images)
    single = x.ndim == 3
    if single and x.shape[-1] > 4:
        raise ValueError(f"images of shape {x.shape}: give a batch (N, H, W, C), or one image (H, W, C) with its channel "
                         "axis (C = 1 for grayscale: images[..., None]).")
    x = x[None] if single else x
    if x.ndim != 4 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"images must be (N, H, W, C) (or one (H, W, C)) numbers. Received shape {np.shape(images)}.")
    if not np.isfinite(x).all():
        raise ValueError(f"images {sorted(set(np.flatnonzero(~np.isfinite(x).reshape(len(x), -1).all(axis=1))))[:20]} "
                         "hold NaN or infinite values: nothing can be explained on them.")
    boxes = regions.check_boxes(box)
    boxes = np.broadcast_to(boxes, (len(x), 4)) if boxes.ndim == 1 else boxes
    classes = np.asarray(class_index)
    if classes.ndim == 0:
        classes = np.full(len(x), regions.check_class_index(class_index))
    elif classes.ndim != 1 or not np.issubdtype(classes.dtype, np.integer) or (classes < 0).any():
        raise ValueError(f"class_index must be an int >= 0, or one per image. Received: {class_index!r}")
    for name, given in (("box", len(boxes)), ("class_index", len(classes))):
        if given != len(x):
            raise ValueError(f"{name} gives {given} values but there are {len(x)} images: give one per image, or one "
                             "for all.")
    size = x.shape[1:-1]
    total = np.zeros((len(x),) + tuple(size), np.float64)
    per_chunk = max(1, batch_size // len(x))
    bar = _bar(progress, n * len(x), batch_size, "masked copy")
    for first in range(0, n, per_chunk):
        count = min(per_chunk, n - first)
        masks = rise_masks(size, first, count, cells=cells, p=p, seed=seed)
        owner, which = _pairs(len(x), count)
        weights = np.empty(len(owner))
        for start in range(0, len(owner), batch_size):
            part = slice(start, min(start + batch_size, len(owner)))
            copies = (x[owner[part]] * masks[which[part]][..., None]).astype(x.dtype)
            found = _detections(fn(copies), len(copies))
            weights[part] = [drise_weight(boxes[o], int(classes[o]), d) for o, d in zip(owner[part], found)]
            if bar is not None:
                bar.update(first * len(x) + part.stop)
        total += np.tensordot(weights.reshape(len(x), count), masks, 1)
    raw_map = (total / n).astype(np.float32)
    flat = np.flatnonzero(raw_map.reshape(len(x), -1).max(axis=1) <= 0)
    if flat.size:
        _warn.warn(f"kerasxai.drise: no masked copy of image(s) {flat.tolist()[:20]} has a detection overlapping the "
                   "box with the class: the map is flat (returned as all zeros). Check the box (y1, x1, y2, x2 in "
                   "pixels) and that the detector finds the object in the clean image.", _warn.PerImageWarning)
    maps = raw_map if raw else np.asarray(ops.convert_to_numpy(maps_lib.finish(raw_map, None)["map"]))
    return maps[0] if single else maps
