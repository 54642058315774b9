"""Transformation robustness: a random jitter, scale and rotation of the image at every step.

An image that excites a unit only at one exact pixel alignment is noise that
the unit happens to respond to; one that still excites it when shifted, scaled
and rotated a little shows what the unit detects (Olah et al. 2017). The three
are drawn together as one affine map per image and applied in one resampling
(bilinear, edges mirrored), which also resizes the image to the model's input
size when the two differ.

They are strongest at first and fade out over the last part of the run
(:attr:`Transforms.fade`): the picture returned is shown without transforms,
so its last steps refine exactly that picture.

The random draws come from NumPy generators (seeded by the caller) and enter
the compiled step as a ``(n, 6)`` array of matrices, so a seed gives the same
transforms on TensorFlow, JAX and PyTorch. The resampling is written with
``keras.ops`` gathers: its gradient is the exact adjoint of the bilinear
interpolation on every backend.

Examples:
    >>> import numpy as np
    >>> from keras import ops
    >>> images = np.random.default_rng(0).random((2, 8, 8, 3)).astype("float32")
    >>> same = warp(images, identity_matrices(2), (8, 8))
    >>> bool(np.allclose(ops.convert_to_numpy(same), images, atol=1e-6))
    True
"""

from __future__ import annotations

import dataclasses

import numpy as np
from keras import ops


@dataclasses.dataclass(frozen=True)
class Transforms:
    """The random transformation drawn for each image at each step.

    Attributes:
        jitter: largest shift, as a fraction of the image's side (0.05: 5%).
        scale: ``(low, high)`` zoom factors, drawn uniformly.
        rotate: largest rotation in degrees, either way.
        fade: ``(start, end)`` fractions of the steps: full strength until
            ``start``, shrinking linearly to none at ``end``, so the last steps
            refine the very image that is returned (it is shown and measured
            untransformed). ``None``: full strength to the end.

    Examples:
        >>> rngs = [np.random.default_rng(s) for s in range(3)]
        >>> Transforms().draw(rngs).shape
        (3, 6)
        >>> [Transforms().strength(t, 10) for t in (5, 7, 8)]
        [1.0, 0.33..., 0.0]
    """

    jitter: float = 0.05
    scale: tuple = (0.9, 1.1)
    rotate: float = 10.0
    fade: tuple | None = (0.5, 0.8)

    def strength(self, step: int, steps: int) -> float:
        """How strong the transforms are at ``step`` of ``steps`` (1: full, 0: none)."""
        if self.fade is None:
            return 1.0
        start, end = self.fade
        x = step / steps
        return float(np.clip((end - x) / max(end - start, 1e-9), 0.0, 1.0))

    def draw(self, rngs, strength: float = 1.0) -> np.ndarray:
        """One ``(6,)`` matrix per generator: ``[a00, a01, a10, a11, tx, ty]`` (see :func:`warp`).

        The same numbers are drawn whatever the ``strength`` (they are scaled
        after), so a seed gives the same run.
        """
        out = np.empty((len(rngs), 6), np.float32)
        for i, rng in enumerate(rngs):
            zoom = 1.0 + (rng.uniform(*self.scale) - 1.0) * strength
            angle = np.deg2rad(rng.uniform(-self.rotate, self.rotate)) * strength
            tx, ty = rng.uniform(-self.jitter, self.jitter, 2) * strength
            c, s = np.cos(angle) / zoom, np.sin(angle) / zoom
            out[i] = (c, -s, s, c, tx, ty)
        return out


def identity_matrices(n: int) -> np.ndarray:
    """``(n, 6)`` matrices that leave images as they are (a plain resize in :func:`warp`)."""
    return np.tile(np.array([1, 0, 0, 1, 0, 0], np.float32), (n, 1))


def resolve(transforms):
    """``True``/``None`` -> default :class:`Transforms`, ``False`` -> none, or a :class:`Transforms` as it is."""
    if transforms is True or transforms is None:
        return Transforms()
    if transforms is False:
        return None
    if isinstance(transforms, Transforms):
        return transforms
    if isinstance(transforms, dict):
        return Transforms(**transforms)
    raise TypeError(f"transforms must be True, False, a dict of Transforms fields or a Transforms. "
                    f"Received: {transforms!r}")


def _mirror(p, n: int):
    """Coordinates folded into ``[0, n - 1]`` by mirroring about the edge pixels' centres."""
    period = 2.0 * (n - 1)
    p = ops.abs(p)
    p = p - period * ops.floor(p / period)
    return ops.where(p > n - 1, period - p, p)


def warp(images, matrices, out_size):
    """Resamples ``images`` ``(n, H, W, C)`` through per-image affine maps to ``(n, *out_size, C)``.

    Output pixel centres in centred, normalised coordinates ``(u, v)`` in
    ``[-0.5, 0.5]`` are mapped to source coordinates ``(a00 u + a01 v + tx,
    a10 u + a11 v + ty)``; the source is read bilinearly, edges mirrored.
    """
    _, h, w, c = images.shape
    ho, wo = out_size
    v, u = np.meshgrid((np.arange(ho) + 0.5) / ho - 0.5, (np.arange(wo) + 0.5) / wo - 0.5, indexing="ij")
    u = ops.convert_to_tensor(u.reshape(1, -1).astype(np.float32))
    v = ops.convert_to_tensor(v.reshape(1, -1).astype(np.float32))
    m = ops.convert_to_tensor(matrices)
    sx = m[:, 0:1] * u + m[:, 1:2] * v + m[:, 4:5]  # (n, ho*wo)
    sy = m[:, 2:3] * u + m[:, 3:4] * v + m[:, 5:6]
    px = _mirror((sx + 0.5) * w - 0.5, w)
    py = _mirror((sy + 0.5) * h - 0.5, h)
    x0, y0 = ops.floor(px), ops.floor(py)
    fx, fy = (px - x0)[..., None], (py - y0)[..., None]
    x0, y0 = ops.cast(x0, "int32"), ops.cast(y0, "int32")
    x1, y1 = ops.minimum(x0 + 1, w - 1), ops.minimum(y0 + 1, h - 1)
    n = ops.shape(images)[0]
    base = ops.reshape(ops.arange(n, dtype="int32") * (h * w), (-1, 1))
    flat = ops.reshape(images, (-1, c))

    def read(y, x):
        return ops.take(flat, ops.reshape(base + y * w + x, (-1,)), axis=0)

    shape = (-1, ho * wo, c)
    top = ops.reshape(read(y0, x0), shape) * (1 - fx) + ops.reshape(read(y0, x1), shape) * fx
    bottom = ops.reshape(read(y1, x0), shape) * (1 - fx) + ops.reshape(read(y1, x1), shape) * fx
    return ops.reshape(top * (1 - fy) + bottom * fy, (-1, ho, wo, c))
