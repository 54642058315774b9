"""Is the explanation right? Faithfulness, localisation and sanity metrics.

- :func:`deletion_insertion`: pixels removed from (deletion) or added to
  (insertion) the image in the order of the map, the target probability after
  each step, and the area under each curve (Petsiuk et al. 2018, RISE). A
  faithful map has a low deletion AUC and a high insertion AUC.
- :func:`pointing_game` and :func:`energy_pointing_game`: does the map's peak
  fall on the object; what share of the map's energy lies on it.
- :func:`average_drop_increase`: confidence when only the map's region is
  shown (Chattopadhay et al. 2018).
- :func:`randomization_check`: cascading randomisation of the layers from the
  top (Adebayo et al. 2018): a map that barely changes when the weights are
  destroyed does not explain the model. Runs on a copy; your model is untouched.

Maps are ``(N, H, W)`` arrays as kerasxai's methods return; masks are
``(N, H, W)`` booleans (boxes can be turned into masks with :func:`box_masks`).
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from kerasxai import backend
from kerasxai.methods import engine
from kerasxai.probe import get_probe
from kerasxai.probe.heads import probabilities


def _probabilities(probe, x, classes, batch_size=64):
    """Target-class probability of each input (softmax, or sigmoid for one or several sigmoid units)."""
    out = engine.predict(probe, x, classes, batch_size=batch_size)
    probs = probabilities(probe.head, out["logits"])
    return probs[np.arange(len(probs)), out["classes"]]


def _images(probe, images) -> np.ndarray:
    """The explained input as one float32 array ``(N, spatial..., C)`` (metrics take arrays)."""
    if len(probe.input_specs) != 1:
        raise ValueError("The metrics take models with one input; give the images as one array.")
    x = np.asarray(images, np.float32)
    if x.ndim == len(probe.input_shape) - 1:
        x = x[None]
    return x


def _box_blur(images, k: int):
    """Box blur of width ``k`` along every spatial axis, edges mirrored (any number of spatial axes)."""
    out = images.astype(np.float64)
    for axis in range(1, images.ndim - 1):
        pad = [(0, 0)] * images.ndim
        pad[axis] = (k // 2, k // 2)
        padded = np.pad(out, pad, mode="symmetric")
        csum = np.cumsum(padded, axis=axis)
        zero = np.zeros_like(np.take(csum, [0], axis=axis))
        csum = np.concatenate([zero, csum], axis=axis)
        n = images.shape[axis]
        out = (np.take(csum, np.arange(k, k + n), axis=axis) - np.take(csum, np.arange(0, n), axis=axis)) / k
    return out.astype(images.dtype)


def _baseline(images, baseline):
    spatial = tuple(range(1, images.ndim - 1))
    if isinstance(baseline, str):
        if baseline == "black":
            return np.zeros_like(images)
        if baseline == "mean":
            return np.broadcast_to(images.mean(axis=spatial, keepdims=True), images.shape).copy()
        if baseline == "blur":
            return _box_blur(images, max(3, images.shape[1] // 8) | 1)
        raise ValueError(f"baseline must be 'blur', 'black', 'mean' or an array. Received: {baseline!r}")
    return np.broadcast_to(np.asarray(baseline, np.float32), images.shape).copy()


def _auc(curve):
    """Area under a curve sampled at evenly spaced fractions 0..1 (trapezoid)."""
    curve = np.asarray(curve, np.float64)
    return ((curve[..., 1:] + curve[..., :-1]) / 2).mean(axis=-1)


def deletion_insertion(model, images, maps, target=None, *, steps: int = 20, baseline="blur", batch_size=64):
    """Deletion and insertion curves and their AUCs.

    The pixels of each image are ranked by its map (highest first). Deletion
    replaces the top fraction ``k / steps`` of pixels by the baseline,
    insertion starts from the baseline and puts the top fraction back; each of
    the ``steps + 1`` images is scored by the target class's probability. The
    class is fixed on the original image.

    Args:
        model: the classifier.
        images: ``(N, H, W, C)`` preprocessed inputs.
        maps: ``(N, H, W)`` explanations of them.
        target: as in ``kerasxai.gradcam``.
        steps: number of pixel fractions after 0.
        baseline: "blur", "black" (zeros), "mean" (each image's mean colour) or an array.
        batch_size: images per forward pass.

    Returns:
        dict with ``deletion`` and ``insertion`` curves ``(N, steps + 1)`` and
        ``deletion_auc``, ``insertion_auc`` ``(N,)`` (mean over the fractions, in [0, 1]).

    Examples:
        >>> import keras, numpy as np
        >>> import kerasxai
        >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=3)
        >>> x = np.random.rand(2, 32, 32, 3).astype("float32")
        >>> out = deletion_insertion(model, x, kerasxai.gradcam(model, x), steps=4)
        >>> out["deletion"].shape
        (2, 5)

    Reference: Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of
    Black-box Models", BMVC 2018. https://arxiv.org/abs/1806.07421
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1. Received: {steps}")
    probe = get_probe(model, ())
    x = _images(probe, images)
    maps = np.asarray(maps, np.float32).reshape(x.shape[:-1])
    classes = engine.predict(probe, x, target, batch_size=batch_size)["classes"]
    base = _baseline(x, baseline)
    n, positions = len(x), int(np.prod(x.shape[1:-1]))
    order = np.argsort(-maps.reshape(n, -1), axis=1, kind="stable")
    rank = np.empty_like(order)
    rank[np.arange(n)[:, None], order] = np.arange(positions)[None]
    rank = rank.reshape(x.shape[:-1] + (1,))
    fractions = np.arange(steps + 1) / steps
    curves = {}
    for name in ("deletion", "insertion"):
        inputs, owners = [], []
        for i in range(n):
            for f in fractions:
                top = rank[i] < int(round(f * positions))
                keep_original = ~top if name == "deletion" else top
                inputs.append(np.where(keep_original, x[i], base[i]))
                owners.append(i)
        scores = np.concatenate([
            _probabilities(probe, np.stack(inputs[s : s + batch_size]), classes[owners[s : s + batch_size]].tolist(),
                           batch_size)
            for s in range(0, len(inputs), batch_size)
        ])
        curves[name] = scores.reshape(n, steps + 1)
    return {
        "deletion": curves["deletion"],
        "insertion": curves["insertion"],
        "deletion_auc": _auc(curves["deletion"]),
        "insertion_auc": _auc(curves["insertion"]),
    }


def box_masks(boxes, size):
    """Boxes ``(N, 4)`` as ``(y0, x0, y1, x1)`` pixel corners (end exclusive) -> masks ``(N, H, W)``.

    Examples:
        >>> box_masks([(0, 0, 2, 2)], (3, 3)).astype(int).tolist()
        [[[1, 1, 0], [1, 1, 0], [0, 0, 0]]]
    """
    h, w = size
    masks = np.zeros((len(boxes), h, w), bool)
    for m, (y0, x0, y1, x1) in zip(masks, boxes):
        m[int(y0) : int(y1), int(x0) : int(x1)] = True
    return masks


def pointing_game(maps, masks, tolerance: int = 0) -> np.ndarray:
    """Per image, True when the map's maximum lies on the object (within ``tolerance`` pixels).

    Examples:
        >>> maps = np.zeros((1, 4, 4)); maps[0, 0, 0] = 1
        >>> masks = np.zeros((1, 4, 4), bool); masks[0, 1, 1] = True
        >>> pointing_game(maps, masks).tolist(), pointing_game(maps, masks, tolerance=1).tolist()
        ([False], [True])

    Reference: Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016.
    """
    maps, masks = np.asarray(maps), np.asarray(masks, bool)
    n = len(maps)
    peaks = np.unravel_index(maps.reshape(n, -1).argmax(axis=1), maps.shape[1:])
    hits = np.zeros(n, bool)
    for i in range(n):
        window = tuple(slice(max(0, int(p[i]) - tolerance), int(p[i]) + tolerance + 1) for p in peaks)
        hits[i] = masks[i][window].any()
    return hits


def energy_pointing_game(maps, masks) -> np.ndarray:
    """Per image, the share of the map's total (non-negative) energy that lies on the object.

    A map concentrated on the object scores 1; a uniform map scores the object's
    area fraction; an all-zero map scores 0.

    Reference: Wang et al., "Score-CAM", CVPR workshops 2020. https://arxiv.org/abs/1910.01279
    """
    maps = np.clip(np.asarray(maps, np.float64), 0, None)
    masks = np.asarray(masks, bool)
    total = maps.reshape(len(maps), -1).sum(axis=1)
    inside = (maps * masks).reshape(len(maps), -1).sum(axis=1)
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


def average_drop_increase(model, images, maps, target=None):
    """Average drop and increase in confidence when only the explained region is shown.

    Each image is multiplied by its map (in [0, 1]); with Y the target
    probability on the image and O on the masked image,
    drop = mean(max(0, Y - O) / Y) * 100 and increase = % of images with O > Y.

    Returns:
        ``(average_drop, increase_in_confidence)``, both in percent.

    Reference: Chattopadhay et al., "Grad-CAM++", WACV 2018. https://arxiv.org/abs/1710.11063
    """
    probe = get_probe(model, ())
    x = _images(probe, images)
    classes = engine.predict(probe, x, target)["classes"].tolist()
    y = _probabilities(probe, x, classes)
    masked = x * np.asarray(maps, np.float32).reshape(x.shape[:-1])[..., None]
    o = _probabilities(probe, masked, classes)
    drop = float(np.mean(np.maximum(0.0, y - o) / np.maximum(y, 1e-12)) * 100)
    increase = float(np.mean(o > y) * 100)
    return drop, increase


def rank_correlation(a, b) -> float:
    """Spearman rank correlation of two arrays (ties get their average rank).

    Identical arrays give 1 (constant ones too); otherwise a constant array gives 0.

    Examples:
        >>> rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]), rank_correlation([1, 2, 3], [3, 2, 1])
        (1.0, -1.0)
    """

    def ranks(v):
        v = np.asarray(v, np.float64).ravel()
        _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
        ends = np.cumsum(counts)
        return ((ends - counts + ends - 1) / 2.0)[inverse]

    if np.array_equal(np.asarray(a), np.asarray(b)):
        return 1.0
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def _weighted_layers(model):
    """Leaf layers with weights, in order, nested models flattened."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out += _weighted_layers(layer)
        elif layer.weights:
            out.append(layer)
    return out


def randomization_check(model, images, method: Callable, target=None, *, seed: int = 0, max_steps=None, **kwargs):
    """Cascading model randomisation (Adebayo et al. 2018), on a copy of ``model``.

    Step 0 is the map of the intact copy; step k has the top k weighted layers
    (from the output down) re-drawn at random with each weight tensor's own
    standard deviation. The rank correlation of each step's map with the
    original map should fall as layers are destroyed; a method whose maps stay
    the same does not depend on what the model learnt.

    Args:
        model: the model (left unchanged).
        images: ``(N, H, W, C)`` preprocessed inputs.
        method: a kerasxai method, e.g. ``kerasxai.gradcam``; extra ``kwargs`` go to it.
        target: as in the method; fixed on the intact model.
        seed: seed of the random weights.
        max_steps: randomise at most this many layers.

    Returns:
        list of ``(layer_name, mean rank correlation over images)``, starting
        with ``("none", 1.0)``-like step 0 on the intact copy.

    Reference: Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018.
    https://arxiv.org/abs/1810.03292
    """
    copy = keras.models.clone_model(model)
    copy.build(model.inputs[0].shape) if not copy.built else None
    copy.set_weights(model.get_weights())
    probe = get_probe(model, ())
    x = _images(probe, images)
    classes = engine.predict(probe, x, target)["classes"].tolist() if not callable(target) else target
    original = method(model, x, classes, **kwargs)
    rng = np.random.default_rng(seed)
    results = [("none", float(np.mean([rank_correlation(a, b) for a, b in zip(original, method(copy, x, classes, **kwargs))])))]
    layers = _weighted_layers(copy)[::-1]
    for layer in layers[: max_steps or len(layers)]:
        for w in layer.weights:
            value = backend.to_numpy(w)
            scale = value.std() or 0.05
            w.assign(rng.normal(0.0, scale, value.shape).astype(value.dtype))
        maps = method(copy, x, classes, **kwargs)
        results.append((layer.name, float(np.mean([rank_correlation(a, b) for a, b in zip(original, maps)]))))
    return results
