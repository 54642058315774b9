"""Shared post-processing of maps: upsampling, normalising, flat-map warnings.

Methods return *raw* maps, ``(N, h, w)`` float32 tensors at the resolution of
the explained layer (or of the input, for gradient methods). Everything that
turns them into what users look at lives here, once:

- :func:`upsample`: bilinear resize to the input size (``tf.image.resize``);
- :func:`normalize`: per-image min-max to ``[0, 1]``; a flat map becomes all
  zeros, never NaN;
- :func:`finish`: both, plus a warning that names the images whose map is flat.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import tensorflow as tf


def upsample(maps, size):
    """Bilinear resize of ``(N, h, w)`` maps to ``size = (H, W)``.

    Example:
        >>> upsample(tf.ones((2, 7, 7)), (224, 224)).shape
        TensorShape([2, 224, 224])
    """
    maps = tf.convert_to_tensor(maps, tf.float32)
    if tuple(maps.shape[1:3]) == tuple(size):
        return maps
    return tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]


def _minmax(maps, eps: float = 1e-12):
    """Per-image min-max of ``(N, ...)`` maps; returns ``(normalized, flat)`` tensors."""
    axes = list(range(1, len(maps.shape)))
    low = tf.reduce_min(maps, axis=axes, keepdims=True)
    high = tf.reduce_max(maps, axis=axes, keepdims=True)
    spread = high - low
    scale = tf.maximum(tf.abs(high), tf.abs(low))
    flat = (spread <= eps * scale) | (spread <= 1e-30) | ~tf.math.is_finite(spread)
    safe = tf.where(flat, tf.ones_like(spread), spread)
    return tf.where(flat, tf.zeros_like(maps), (maps - low) / safe), tf.reshape(flat, [-1])


def normalize(maps, eps: float = 1e-12):
    """Per-image min-max scaling of ``(N, ...)`` maps to ``[0, 1]``.

    Returns ``(normalized, flat)`` where ``flat`` is an ``(N,)`` bool array,
    True for maps whose range is below ``eps`` relative to their magnitude;
    those become all zeros.

    Example:
        >>> m, flat = normalize(tf.constant([[[1., 3.]], [[2., 2.]]]))
        >>> m.numpy().tolist(), flat.tolist()
        ([[[0.0, 1.0]], [[0.0, 0.0]]], [False, True])
    """
    out, flat = _minmax(tf.convert_to_tensor(maps, tf.float32), eps)
    return out, flat.numpy()


def warn_flat(method: str, flat, classes, scores) -> None:
    """Warns, naming the images whose ``method`` map is flat and their target scores."""
    idx = np.flatnonzero(flat)
    if idx.size == 0:
        return
    classes, scores = np.asarray(classes), np.asarray(scores)
    shown = ", ".join(
        f"image {i} (target {'score' if classes[i] < 0 else f'class {classes[i]}'}, "
        f"score {scores[i]:.4g})"
        for i in idx[:10]
    )
    more = f" and {idx.size - 10} more" if idx.size > 10 else ""
    warnings.warn(
        f"kerasxai.{method}: the map is flat (returned as all zeros) for {shown}{more}. "
        "The target score's gradient is zero there, or every contribution is negative; "
        "a saturated softmax/sigmoid output, dead ReLUs or a class the model scores "
        "very low are the usual causes.",
        RuntimeWarning,
        stacklevel=_caller_stacklevel(),
    )


def _caller_stacklevel() -> int:
    """Stack level of the first frame outside kerasxai, so warnings point at the user's line."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


@tf.function(reduce_retracing=True, autograph=False)
def _upsample_normalize(raw, size):
    """Compiled :func:`upsample` then :func:`normalize` core: one graph, no eager ops per call."""
    return _minmax(tf.image.resize(raw[..., None], size, method="bilinear")[..., 0])


def finish(method, raw, size, result, *, raw_output=False, single=False):
    """Upsamples and normalises ``raw`` maps, warns about flat ones, returns NumPy.

    Args:
        method: the method's name, for the warning.
        raw: ``(N, h, w)`` raw maps.
        size: ``(H, W)`` of the input images.
        result: the probe's ``Gradients`` (for target classes and scores).
        raw_output: return the raw maps as they are instead.
        single: the caller gave one image: drop the batch axis.
    """
    raw = tf.convert_to_tensor(raw, tf.float32)
    if raw_output:
        out = raw.numpy()
    else:
        maps, flat = _upsample_normalize(raw, tf.constant(tuple(size), tf.int32))
        warn_flat(method, flat.numpy(), result.classes, result.scores)
        out = maps.numpy()
    out = out.astype(np.float32, copy=False)
    return out[0] if single else out
