"""Shared post-processing of maps: upsampling, normalising, and what is wrong with a map.

Methods compute *raw* maps ``(N, spatial...)`` at the resolution of the
explained layer (or of the input, for gradient methods). Inside the compiled
step, in ``keras.ops`` (so on every backend, for 1-D, 2-D and 3-D maps alike):

- :func:`resize_linear`: separable linear interpolation with half-pixel centres
  over every spatial axis (bilinear for images, trilinear for volumes; the same
  values as ``tf.image.resize(..., "bilinear")`` for 2-D);
- :func:`minmax`: per-image min-max to ``[0, 1]``; a flat map becomes all zeros, never NaN;
- :func:`finish`: both, plus the statistics that say *why* a map is flat.

On the host, :class:`Collector` gathers the batches of a call, raises for
images whose model output is not finite, and warns about flat maps naming
the images and the likeliest cause seen (a zero gradient, negative evidence
only, a negative target score).
"""

from __future__ import annotations

import functools

import numpy as np
import keras
from keras import ops

from kerasxai import _warn, backend


# --------------------------------------------------------------------------- in the compiled step


def _interpolation_matrix(n_in, out: int):
    """``(out, n_in)`` weights of linear interpolation with half-pixel centres (as ``tf.image.resize``)."""
    scale = ops.cast(n_in, "float32") / float(out)
    pos = (ops.arange(out, dtype="float32") + 0.5) * scale - 0.5
    pos = ops.clip(pos, 0.0, ops.cast(n_in, "float32") - 1.0)
    low = ops.floor(pos)
    weight = ops.expand_dims(pos - low, 1)
    low = ops.cast(low, "int32")
    high = ops.minimum(low + 1, ops.cast(n_in, "int32") - 1)
    return ops.one_hot(low, n_in) * (1.0 - weight) + ops.one_hot(high, n_in) * weight


_CONSTANT_WEIGHTS = 1 << 18  # values: a (n_in, out) matrix of at most 1 MB is a constant of the step


@functools.lru_cache(maxsize=32)
def _constant_weights(n_in: int, out: int) -> np.ndarray:
    """``(n_in, out)`` weights of :func:`_interpolation_matrix` for a size known when the step is
    traced, computed once in NumPy (the same float32 arithmetic): a constant in the step instead of
    a dozen ops to trace and optimise at a method's first call."""
    scale = np.float32(n_in) / np.float32(out)
    pos = (np.arange(out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    pos = np.clip(pos, np.float32(0.0), np.float32(n_in - 1))
    low = np.floor(pos)
    weight = (pos - low)[:, None]
    low = low.astype(np.int64)
    high = np.minimum(low + 1, n_in - 1)
    eye = np.eye(n_in, dtype=np.float32)
    matrix = eye[low] * (np.float32(1.0) - weight) + eye[high] * weight
    return np.ascontiguousarray(matrix.T)  # never written to (PyTorch would warn about a read-only array)


def _resize_axis(x, axis: int, out: int):
    """Linear resize along ``axis``: one matrix product with two weights per row.

    A product writes the output once; gathering both neighbours and blending them took
    several passes over the full-size output, a measurable part of a small model's step.
    """
    size = x.shape[axis]
    if size is not None and size == out:
        return x
    if size is not None and size * out <= _CONSTANT_WEIGHTS:
        weights = ops.convert_to_tensor(_constant_weights(int(size), out))  # (n_in, out)
    else:  # a size open until run time, or a matrix too large to embed in the step (a long 1-D signal)
        weights = ops.transpose(_interpolation_matrix(ops.shape(x)[axis], out))
    last = len(x.shape) - 1
    if axis == last:
        return ops.matmul(x, weights)
    return ops.moveaxis(ops.matmul(ops.moveaxis(x, axis, last), weights), last, axis)


def resize_linear(maps, size):
    """Linear resize of ``(N, spatial...)`` maps to ``size`` (one entry per spatial axis).

    Examples:
        >>> import numpy as np
        >>> ops.convert_to_numpy(resize_linear(np.array([[0.0, 1.0]], "float32"), (4,))).tolist()
        [[0.0, 0.25, 0.75, 1.0]]
    """
    maps = ops.convert_to_tensor(maps, "float32")
    if len(size) != len(maps.shape) - 1:
        raise ValueError(
            f"Maps of shape {tuple(maps.shape)} have {len(maps.shape) - 1} spatial axes, but the input's size "
            f"{tuple(size)} has {len(size)}: the explained layer's map cannot be drawn on the input. Explain a layer "
            "with the input's spatial axes (kerasxai.explainable_layers(model) lists them), or pass raw=True for "
            "the map at the layer.")
    for axis, out in enumerate(size, start=1):
        maps = _resize_axis(maps, axis, int(out))
    return maps


upsample = resize_linear


def minmax(maps, eps: float = 1e-12):
    """Per-image min-max of ``(N, ...)`` maps: ``(normalized, flat)``, flat maps all zeros.

    Examples:
        >>> m, flat = minmax(np.array([[1.0, 3.0], [2.0, 2.0]], "float32"))
        >>> ops.convert_to_numpy(m).tolist(), ops.convert_to_numpy(flat).tolist()
        ([[0.0, 1.0], [0.0, 0.0]], [False, True])
    """
    maps = ops.convert_to_tensor(maps, "float32")
    axes = tuple(range(1, len(maps.shape)))
    low = ops.min(maps, axis=axes, keepdims=True)
    high = ops.max(maps, axis=axes, keepdims=True)
    spread = high - low
    scale = ops.maximum(ops.abs(high), ops.abs(low))
    flat = ops.logical_or(ops.logical_or(spread <= eps * scale, spread <= 1e-30), ops.logical_not(ops.isfinite(spread)))
    safe = ops.where(flat, ops.ones_like(spread), spread)
    normalized = ops.where(flat, ops.zeros_like(maps), (maps - low) / safe)
    return normalized, ops.reshape(flat, (-1,))


def normalize(maps, eps: float = 1e-12):
    """Per-image min-max scaling of ``(N, ...)`` maps to ``[0, 1]``, as NumPy: ``(normalized, flat)``.

    Examples:
        >>> m, flat = normalize(np.array([[[1., 3.]], [[2., 2.]]], "float32"))
        >>> m.tolist(), flat.tolist()
        ([[[0.0, 1.0]], [[0.0, 0.0]]], [False, True])
    """
    out, flat = minmax(maps, eps)
    return backend.to_numpy(out), backend.to_numpy(flat)


def finish(raw, size=None, *, raw_output: bool = False):
    """Upsamples ``raw`` maps to ``size`` and normalises them; the statistics for the flat-map check.

    Returns a dict: ``map`` (normalised, or ``raw`` itself with ``raw_output``), ``flat``
    ``(N,)`` and ``raw_max`` ``(N,)`` (the largest raw value: <= 0 means no positive evidence).
    """
    raw = ops.cast(raw, "float32")
    axes = tuple(range(1, len(raw.shape)))
    stats = {"raw_max": ops.max(raw, axis=axes)}
    if raw_output:
        _, flat = minmax(raw)
        return {"map": raw, "flat": flat, **stats}
    up = resize_linear(raw, size) if size is not None else raw
    normalized, flat = minmax(up)
    return {"map": normalized, "flat": flat, **stats}


def gradient_is_zero(gradient):
    """``(N,)`` True where a gradient tensor is exactly zero everywhere."""
    axes = tuple(range(1, len(gradient.shape)))
    return ops.max(ops.abs(gradient), axis=axes) == 0


def logits_finite(logits):
    """``(N,)`` True where every logit of the image is finite (per-pixel outputs, and every output of a
    detector as the model returns them, included)."""
    leaves = [ops.reshape(ops.isfinite(t), (ops.shape(t)[0], -1)) for t in keras.tree.flatten(logits)]
    per_leaf = [ops.all(leaf, axis=1) for leaf in leaves]
    return per_leaf[0] if len(per_leaf) == 1 else ops.all(ops.stack(per_leaf), axis=0)


def activations_finite(activations):
    """``(N,)`` True where every activation of the image, at every explained layer, is finite."""
    per_layer = [ops.all(ops.reshape(ops.isfinite(a), (ops.shape(a)[0], -1)), axis=1) for a in activations]
    return per_layer[0] if len(per_layer) == 1 else ops.all(ops.stack(per_layer), axis=0)


# --------------------------------------------------------------------------- on the host


def _list(idx) -> str:
    shown = ", ".join(str(int(i)) for i in idx[:10])
    return shown + (f" and {len(idx) - 10} more" if len(idx) > 10 else "")


def check_finite(method: str, finite, start: int = 0, *, where: str = "output"):
    """Raises ``ValueError`` naming the images whose model output (or explained layer's activations,
    ``where="layer"``) is not finite."""
    bad = np.flatnonzero(~np.asarray(finite, bool)) + start
    if bad.size and where == "layer":
        raise _warn.ImagesRefused(
            f"kerasxai.{method}: the explained layer's activations are NaN or infinite for image(s) {_list(bad)}, "
            "though the model's output may look plausible (a later ReLU or pooling hides them), so no map of them "
            "means anything. The model's arithmetic overflows there: float16 (mixed precision) above 65504, or "
            "inputs far outside the range the model was trained on — check the preprocessing.", bad)
    if bad.size:
        raise _warn.ImagesRefused(
            f"kerasxai.{method}: the model's output is NaN or infinite for image(s) {_list(bad)}, so no "
            "explanation of them means anything. The inputs are finite, so the weights or the model's "
            "arithmetic overflow (check the preprocessing and the weights: model.predict on those images).", bad)


def flat_causes(flat, scores, raw_max, zero_gradient=None) -> dict:
    """Groups the flat maps' images by the likeliest cause seen: ``{cause text: [indices]}``."""
    causes: dict = {}
    for i in np.flatnonzero(np.asarray(flat, bool)):
        if zero_gradient is not None and bool(zero_gradient[i]):
            text = ("the target score's gradient is exactly zero there (dead ReLUs, a saturated activation, "
                    "or a gradient cut by an integer cast, argmax or stop_gradient: kerasxai.occlusion and "
                    "kerasxai.rise need no gradient)")
        elif raw_max is not None and raw_max[i] <= 0 and scores is not None and scores[i] < 0:
            text = "the model scores the target negatively, and every contribution is negative: no positive evidence"
        elif raw_max is not None and raw_max[i] <= 0:
            text = "every contribution is negative: no positive evidence for the target"
        else:
            text = "the map is constant"
        causes.setdefault(text, []).append(int(i))
    return causes


class _Growing:
    """Rows of unknown total number, in one buffer grown in place.

    Used when the number of images is not known in advance (a ``tf.data.Dataset``
    of unknown cardinality, a generator). Appending to a list and concatenating at
    the end would hold the maps twice at the end. Here the buffer grows by a fixed
    step with ``ndarray.resize`` (``realloc``: a large buffer is remapped, not
    copied) and is cut to size at the end, so the peak is the maps plus one step.
    """

    STEP_BYTES = 16 << 20

    def __init__(self, row_shape, dtype):
        self.row_shape, self.dtype = tuple(row_shape), np.dtype(dtype)
        row_bytes = max(1, int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize)
        self.step = max(1, self.STEP_BYTES // row_bytes)
        self.buffer = None

    def put(self, start: int, value: np.ndarray):
        end = start + len(value)
        if self.buffer is None:
            self.buffer = np.empty((max(end, self.step),) + self.row_shape, self.dtype)
        elif end > len(self.buffer):
            self.buffer.resize((max(end, len(self.buffer) + self.step),) + self.row_shape, refcheck=False)
        self.buffer[start:end] = value

    def gather(self, n: int) -> np.ndarray:
        out, self.buffer = self.buffer, None
        out.resize((n,) + self.row_shape, refcheck=False)
        return out


class Collector:
    """Gathers one call's batches into arrays, then checks them.

    ``add(start, out)`` takes a step's NumPy outputs for images ``start..``; it
    raises at once for non-finite model outputs (``out["finite"]``). ``result()``
    returns the concatenated arrays and warns once about flat maps
    (``out["flat"]``), naming the images, their target scores and the cause.
    """

    def __init__(self, method: str, length: int | None = None):
        self.method, self.length = method, length
        self._parts: dict = {}
        self._arrays: dict = {}
        self._blocks: dict = {}
        self._seen = 0

    def add(self, start: int, out: dict):
        if "finite" in out:
            check_finite(self.method, out["finite"], start)
        if "finite_layer" in out:
            check_finite(self.method, out.pop("finite_layer"), start, where="layer")
        n = None
        for key, value in out.items():
            if value is None:
                continue
            value = np.asarray(value)
            if n is None and value.ndim >= 1:  # the batch's length: that of its first per-image output
                n = len(value)
            if value.ndim >= 1 and len(value) == n:
                dtype = np.float32 if value.dtype.kind == "f" else value.dtype
                if self.length is not None:
                    if key not in self._arrays:
                        self._arrays[key] = np.empty((self.length,) + value.shape[1:], dtype)
                    self._arrays[key][start : start + n] = value
                else:
                    self._blocks.setdefault(key, _Growing(value.shape[1:], dtype)).put(start, value)
            else:
                self._parts.setdefault(key, []).append(value)
        self._seen = max(self._seen, start + (n or 0))

    def result(self, *, warn: bool = True, zero_gradient_key: str | None = "zero_gradient") -> dict:
        out = dict(self._arrays)
        for key, blocks in self._blocks.items():
            out[key] = blocks.gather(self._seen)
        self._blocks = {}
        for key, parts in self._parts.items():
            out[key] = np.concatenate(parts) if parts and np.asarray(parts[0]).ndim else np.asarray(parts)
        if warn and "flat" in out:
            self.warn_flat(out, zero_gradient_key)
        return out

    def warn_flat(self, out: dict, zero_gradient_key=None):
        flat = out["flat"]
        if out.get("nothing_to_explain") is not None:  # the target's own warning named these images
            flat = flat & ~np.asarray(out["nothing_to_explain"], bool)
        if not np.any(flat):
            return
        scores, classes = out.get("scores"), out.get("classes")
        causes = flat_causes(flat, scores, out.get("raw_max"), out.get(zero_gradient_key) if zero_gradient_key else None)
        parts = []
        for text, idx in causes.items():
            shown = ", ".join(
                f"image {i} ("
                + ("target score" if classes is None or classes[i] < 0 else f"class {int(classes[i])}")
                + (f", score {float(scores[i]):.4g})" if scores is not None else ")")
                for i in idx[:10]
            )
            more = f" and {len(idx) - 10} more" if len(idx) > 10 else ""
            parts.append(f"{shown}{more}: {text}")
        _warn.warn(f"kerasxai.{self.method}: the map is flat (returned as all zeros) for " + "; ".join(parts) + ".",
                   _warn.PerImageWarning)
