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
import warnings

import keras
import numpy as np
from keras import ops

from kerasxai.methods import engine
from kerasxai.methods import maps as maps_lib
from kerasxai.methods.engine import DEFAULT_BATCH_SIZE
from kerasxai.probe import Fn, get_probe

CHANNELS_FIRST = "channels_first"


def _scores_post(p):
    return {"scores": p.scores, "classes": p.classes, "finite": maps_lib.logits_finite(p.logits)}


def _warn_unreachable_logits(method, probe, target):
    head = probe.head
    if head.kind in ("softmax", "binary", "multilabel") and not head.removed_activation and not callable(target):
        warnings.warn(f"kerasxai.{method}: output '{head.name}' of model '{probe.model_name}' ends in a "
                      f"{'softmax' if head.kind == 'softmax' else 'sigmoid'} whose logits cannot be reached (a quantized "
                      "layer): the score is the probability, which saturates, not the logit.", UserWarning, stacklevel=4)


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
    probe = get_probe(model, (), output=output, input=input)
    if isinstance(window, (int, np.integer)) and isinstance(stride, (int, np.integer)):
        occlusion_windows((max(window, stride),), window, stride)  # checked before any pass (else per batch)
    _warn_unreachable_logits("occlusion", probe, target)
    step = probe.step(None, Fn(_scores_post), target=target)
    channels_first = probe.input_layout == CHANNELS_FIRST

    def compute(batch, classes):
        clean = step(batch.inputs, (), classes)
        used = clean["classes"].astype(np.int32)
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
    engine.check_count("n", n)
    if isinstance(cells, (int, np.integer)):
        _sizes(cells, 1, "cells")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
        raise ValueError(f"p is the probability that a cell is kept, in (0, 1]. Received: p={p!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0. Received: seed={seed!r}")
    probe = get_probe(model, (), output=output, input=input)
    _warn_unreachable_logits("rise", probe, target)
    step = probe.step(None, Fn(_scores_post), target=target)
    channels_first = probe.input_layout == CHANNELS_FIRST

    def compute(batch, classes):
        clean = step(batch.inputs, (), classes)
        used = clean["classes"].astype(np.int32)
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
