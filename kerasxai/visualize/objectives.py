"""Objectives: what a feature visualization maximises, one score per image.

An objective turns the probe's outputs into a ``(n, K)`` array of per-unit
values; the unit each image works for picks one column, so one compiled step
serves any mix of units in a batch.

- ``"logit"``: a class logit (the model's output with a final softmax or
  sigmoid left out); ``layer=None``.
- ``"channel"``: a conv filter's mean activation over the spatial axes (for
  Conv1D/2D/3D outputs alike).
- ``"unit"``: one unit of a layer with a flat ``(batch, K)`` output (a Dense layer).

Examples:
    >>> import numpy as np
    >>> from keras import ops
    >>> acts = np.arange(2 * 2 * 2 * 3, dtype="float32").reshape(2, 2, 2, 3)
    >>> ops.convert_to_numpy(select(per_unit("channel", acts, None), np.array([0, 2]))).tolist()
    [4.5, 18.5]
"""

from __future__ import annotations

from keras import ops

OBJECTIVES = ("logit", "channel", "unit")


def choose(objective, layer_name, output_shape) -> str:
    """The objective for a layer: ``"logit"`` for the logits, ``"channel"`` for a spatial output,
    ``"unit"`` for a flat one; checks an explicit choice against the layer.

    Examples:
        >>> choose(None, "conv", (None, 8, 8, 16)), choose(None, None, (None, 10))
        ('channel', 'logit')
    """
    spatial = len(output_shape) > 2
    if objective is None:
        return "logit" if layer_name is None else ("channel" if spatial else "unit")
    if objective not in OBJECTIVES:
        raise ValueError(f"Unknown objective '{objective}'. Expected one of: {', '.join(OBJECTIVES)}.")
    if layer_name is None and objective != "logit":
        raise ValueError(f"objective='{objective}' needs a layer; without one (layer=None) the objective "
                         "is a class logit.")
    if layer_name is not None and objective == "logit":
        raise ValueError(f"objective='logit' maximises a class logit: pass layer=None, not layer='{layer_name}'.")
    if objective == "channel" and not spatial:
        raise ValueError(
            f"Layer '{layer_name}' has output shape {tuple(output_shape)}: it is not spatial, so it has no "
            "filters (channels over height and width) to visualize. Use objective='unit' for its units, "
            "or choose a convolutional layer."
        )
    if objective == "unit" and spatial:
        raise ValueError(f"Layer '{layer_name}' has a spatial output {tuple(output_shape)}: use "
                         "objective='channel' (a filter's mean activation) for it.")
    return objective


def per_unit(objective: str, activation, logits):
    """``(n, K)``: each unit's value for each image."""
    if objective == "logit":
        return logits
    if objective == "channel":
        return ops.mean(activation, axis=tuple(range(1, len(activation.shape) - 1)))
    return activation


def select(values, units):
    """``(n,)``: ``values[i, units[i]]``, differentiable on every backend."""
    return ops.sum(values * ops.one_hot(units, values.shape[-1], dtype=values.dtype), axis=-1)


def total_variation(images):
    """``(n,)`` mean absolute difference between neighbouring pixels (anisotropic TV), per image."""
    dy = ops.mean(ops.abs(images[:, 1:] - images[:, :-1]), axis=(1, 2, 3))
    dx = ops.mean(ops.abs(images[:, :, 1:] - images[:, :, :-1]), axis=(1, 2, 3))
    return dy + dx


def lp_norm(images, p: float = 6.0):
    """``(n,)`` ``(mean |x - 0.5| ** p) ** (1 / p)``: how far an image strays from grey."""
    return (ops.mean(ops.abs(images - 0.5) ** p, axis=(1, 2, 3)) + 1e-12) ** (1.0 / p)
