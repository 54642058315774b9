"""From display space to the model's input, inside a compiled step, on every backend.

Feature visualizations are optimised as images in ``[0, 1]`` (what is shown),
then fed through the model's own preprocessing: the ``keras.applications``
family's ``preprocess_input`` found from the model's name, as
:func:`kerasxai.load_images` does (VGG16's caffe BGR mean, ResNet's,
MobileNet's ``[-1, 1]``, ...).

Those functions are per-pixel affine maps of the 0..255 values, but on backend
tensors they divide in place (``x /= 127.5``), which breaks PyTorch's autograd.
So the map is *measured* once in NumPy (on black and on each pure colour),
checked on random pixels, and applied as one ``keras.ops`` matrix product and
shift, the same on every backend. A function that is not per-pixel affine is
called as it is on the backend tensor (it must then be written in ``keras.ops``).

Examples:
    >>> import keras, numpy as np
    >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=2)
    >>> fn = to_model_input(model)
    >>> white = np.ones((1, 2, 2, 3), "float32")
    >>> [round(float(v), 3) for v in keras.ops.convert_to_numpy(fn(white))[0, 0, 0]]  # BGR minus caffe mean
    [151.061, 138.221, 131.32]
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

from kerasxai import _warn
from kerasxai.data.images import preprocess_function


def _rescales_itself(model) -> bool:
    """True when the model starts by rescaling its input (Rescaling/Normalization), so 0..255 is right."""
    for layer in getattr(model, "layers", [])[:4]:
        if isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization)):
            return True
        if isinstance(layer, keras.Model) and _rescales_itself(layer):
            return True
    return False


def _fit_affine(fn, channels: int):
    """``(matrix (C, C), shift (C,))`` with ``fn(x) == x @ matrix + shift`` per pixel, or None."""
    try:
        basis = np.concatenate([np.zeros((1, channels)), 255.0 * np.eye(channels)]).astype(np.float32)
        out = np.asarray(fn(basis.reshape(-1, 1, 1, channels).copy()), np.float64).reshape(-1, channels)
        shift = out[0]
        matrix = (out[1:] - shift) / 255.0
        rng = np.random.default_rng(0)
        check = rng.uniform(0, 255, (2, 3, 3, channels)).astype(np.float32)
        got = np.asarray(fn(check.copy()), np.float64)
        if got.shape != check.shape or not np.allclose(got, check @ matrix + shift, rtol=1e-4, atol=1e-3):
            return None
    except Exception:  # noqa: BLE001 - any failure means "not a measurable per-pixel map"
        return None
    return matrix.astype(np.float32), shift.astype(np.float32)


def to_model_input(model, preprocess="auto", input_range=None, channels=None):
    """``fn(images in [0, 1]) -> model input``, written in ``keras.ops``.

    Args:
        model: the model (its family sets ``preprocess="auto"``).
        preprocess: ``"auto"``, a family name (``"vgg16"``, ``"resnet"``, ...),
            a function of a float batch in 0..255, or ``None`` (0..255 as it is),
            as in :func:`kerasxai.load_images`.
        input_range: ``(low, high)``: the model takes images scaled linearly to
            that range (``(0, 1)`` for a model trained on images in [0, 1]);
            overrides ``preprocess``.
        channels: number of channels (default: the model's).
    """
    if input_range is not None:
        low, high = (float(v) for v in input_range)
        if not high > low:
            raise ValueError(f"input_range must be (low, high) with high > low. Received: {input_range}")
        return lambda x: low + (high - low) * x
    fn = preprocess_function(preprocess, model)
    if fn is None:
        if preprocess == "auto" and model is not None and not _rescales_itself(model):
            warnings.warn(
                f"kerasxai cannot tell what input range model '{model.name}' was trained on (no keras.applications "
                "family in its name, no Rescaling layer first), so images are fed as 0..255. If it was trained "
                "on other values, say so: input_range=(0, 1) or (-1, 1), or preprocess=<family or function>; "
                "otherwise the pictures show what the model does on inputs it never saw.", UserWarning,
                stacklevel=_warn.caller_stacklevel())
        return lambda x: 255.0 * x
    channels = channels or (int(model.inputs[0].shape[-1]) if model is not None else 3)
    fitted = _fit_affine(fn, channels)
    if fitted is None:
        return lambda x: fn(255.0 * x)
    matrix, shift = fitted
    if np.allclose(matrix, np.eye(channels) * matrix[0, 0]) and np.allclose(shift, shift[0]):
        a, b = float(matrix[0, 0]) * 255.0, float(shift[0])  # a scalar map: cheaper than a product
        return lambda x: a * x + b
    m255 = matrix * 255.0
    return lambda x: ops.matmul(x, ops.convert_to_tensor(m255)) + ops.convert_to_tensor(shift)
