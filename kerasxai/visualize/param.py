"""Image parameterisations: what the optimiser changes, and how that becomes an image in [0, 1].

A parameterisation is a small object with ``init(rng, n) -> params`` (NumPy,
float32, drawn from the caller's seeded generator) and ``image(params) ->
(n, H, W, C)`` in ``[0, 1]``, written in ``keras.ops`` so that it compiles into
the optimisation step on every backend.

- :class:`FourierImage` (the default): the image is a sum of 2-D waves whose
  amplitudes, scaled by ``1 / frequency``, are the parameters, in a
  *decorrelated* colour space. Gradient steps then change all frequencies at a
  similar rate instead of favouring high-frequency noise, which is what makes
  feature visualizations look like something (Olah et al. 2017; Mordvintsev et
  al. 2018). The waves are the separable Hartley basis ``cas(2πky/H)
  cas(2πkx/W)`` (``cas = cos + sin``): the same frequencies as the FFT, real
  and orthonormal, so the inverse transform is two small matrix products with
  no complex numbers, identical on TensorFlow, JAX and PyTorch.
- :class:`PixelImage`: one parameter per pixel and channel, the classic
  keras-vis look (noisier, higher-frequency images).

Both end in a sigmoid, so every image is valid in ``[0, 1]`` at every step.

References:
    Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017.
    https://distill.pub/2017/feature-visualization/
    Mordvintsev, Pezzotti, Schubert & Olah, "Differentiable Image Parameterizations",
    Distill 2018. https://distill.pub/2018/differentiable-parameterizations/

Examples:
    >>> import numpy as np
    >>> from keras import ops
    >>> param = FourierImage((16, 16))
    >>> params = param.init(np.random.default_rng(0), 2)
    >>> image = ops.convert_to_numpy(param.image(params))
    >>> image.shape, bool(((image > 0) & (image < 1)).all())
    ((2, 16, 16, 3), True)
"""

from __future__ import annotations

import numpy as np
from keras import ops

# Square root of the colour covariance of ImageNet photos (RGB), as published with
# Lucid's feature-visualization code (Olah et al. 2017): mixing three independent
# channels through it gives colours with natural-image correlations.
COLOR_CORRELATION_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32
)


def hartley_matrix(n: int) -> np.ndarray:
    """The ``(n, n)`` orthonormal, symmetric Hartley matrix ``cas(2π k t / n) / sqrt(n)``.

    Examples:
        >>> h = hartley_matrix(5)
        >>> bool(np.allclose(h @ h, np.eye(5), atol=1e-6))
        True
    """
    k = np.arange(n)
    angle = 2 * np.pi * np.outer(k, k) / n
    return ((np.cos(angle) + np.sin(angle)) / np.sqrt(n)).astype(np.float32)


def frequency_scale(size, decay: float = 1.0) -> np.ndarray:
    """``(H, W)`` amplitude of each wave: ``1 / max(f, 1 / max(H, W)) ** decay``, f in cycles/pixel."""
    h, w = size
    fy = np.minimum(np.arange(h), h - np.arange(h)) / h
    fx = np.minimum(np.arange(w), w - np.arange(w)) / w
    f = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    return (1.0 / np.maximum(f, 1.0 / max(h, w)) ** decay).astype(np.float32)


def _check_size(size):
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 2:
        raise ValueError(f"size must be (height, width), each at least 2. Received: {size}")
    return size


class PixelImage:
    """One parameter per pixel and channel; ``image = sigmoid(params)``.

    Args:
        size: ``(H, W)``.
        channels: colour channels (3 for RGB).
        std: standard deviation of the initial parameters (0: uniform grey).

    Examples:
        >>> PixelImage((4, 5)).init(np.random.default_rng(0), 2).shape
        (2, 4, 5, 3)
    """

    name = "pixel"

    def __init__(self, size, channels: int = 3, std: float = 0.3):
        self.size, self.channels, self.std = _check_size(size), int(channels), float(std)

    @property
    def shape(self) -> tuple:
        """Shape of one image's parameters."""
        return self.size + (self.channels,)

    def init(self, rng, n: int) -> np.ndarray:
        return (self.std * rng.standard_normal((n,) + self.shape)).astype(np.float32)

    def image(self, params):
        return ops.sigmoid(params)


class FourierImage:
    """Amplitudes of 2-D waves scaled by ``1 / frequency``, decorrelated colours, then a sigmoid.

    Args:
        size: ``(H, W)``.
        channels: colour channels; colours are decorrelated only when there are 3.
        decay: the amplitude of a wave of frequency ``f`` is ``1 / f ** decay``
            (1: the spectrum of natural images).
        std: standard deviation of the initial parameters.
        decorrelate: mix the channels through :data:`COLOR_CORRELATION_SQRT`.

    Examples:
        >>> FourierImage((4, 6)).init(np.random.default_rng(0), 1).shape
        (1, 3, 4, 6)
    """

    name = "fourier"

    def __init__(self, size, channels: int = 3, decay: float = 1.0, std: float = 0.1, decorrelate: bool = True):
        self.size, self.channels, self.std = _check_size(size), int(channels), float(std)
        h, w = self.size
        self._hy = hartley_matrix(h)
        self._hx = hartley_matrix(w)
        self._scale = frequency_scale(self.size, decay)
        self._colors = None
        if decorrelate and self.channels == 3:
            norm = np.max(np.linalg.norm(COLOR_CORRELATION_SQRT, axis=0))
            self._colors = (COLOR_CORRELATION_SQRT / norm).T.astype(np.float32)

    @property
    def shape(self) -> tuple:
        """Shape of one image's parameters: ``(C, H, W)`` wave amplitudes."""
        return (self.channels,) + self.size

    def init(self, rng, n: int) -> np.ndarray:
        return (self.std * rng.standard_normal((n,) + self.shape)).astype(np.float32)

    def image(self, params):
        (h, w), c = self.size, self.channels
        spectrum = ops.reshape(ops.convert_to_tensor(params) * ops.convert_to_tensor(self._scale), (-1, w))
        # Two plain 2-D matrix products (rows, then columns): much faster than a batched, broadcast matmul.
        rows = ops.reshape(ops.matmul(spectrum, ops.convert_to_tensor(self._hx)), (-1, c, h, w))
        cols = ops.matmul(ops.reshape(ops.transpose(rows, (0, 1, 3, 2)), (-1, h)), ops.convert_to_tensor(self._hy))
        x = ops.transpose(ops.reshape(cols, (-1, c, w, h)), (0, 3, 2, 1))  # (n, H, W, C)
        if self._colors is not None:
            x = ops.matmul(x, ops.convert_to_tensor(self._colors))
        return ops.sigmoid(x)


PARAMETERIZATIONS = {"fourier": FourierImage, "pixel": PixelImage}


def make(kind, size, channels: int = 3):
    """A parameterisation by name (``"fourier"``, ``"pixel"``) or an object with ``init`` and ``image``.

    Examples:
        >>> make("pixel", (8, 8)).name
        'pixel'
    """
    if isinstance(kind, str):
        if kind not in PARAMETERIZATIONS:
            raise ValueError(f"Unknown parameterization '{kind}'. Expected one of: "
                             f"{', '.join(PARAMETERIZATIONS)}, or an object with init(rng, n) and image(params).")
        return PARAMETERIZATIONS[kind](size, channels)
    if not (hasattr(kind, "init") and hasattr(kind, "image")):
        raise TypeError(f"parameterization must be 'fourier', 'pixel' or an object with init(rng, n) and "
                        f"image(params). Received: {kind!r}")
    return kind
