"""Guided backpropagation: ReLUs whose gradient passes only where input and gradient are positive.

The guided probe re-traces the model with each plain ReLU (a ``ReLU`` or
``Activation("relu")`` layer, or a Conv/Dense layer's own ``relu``) replaced by
:class:`GuidedReLU`, which computes the same forward values with a gated
gradient. The user's layers and their gradients are not changed.
"""

from __future__ import annotations

import keras
from keras import ops

from kerasxai.probe.heads import AffineWithoutActivation, is_affine
from kerasxai.probe.layers import graph_activation_name


@ops.custom_gradient
def guided_relu(x):
    """ReLU forward; backward ``upstream * (x > 0) * (upstream > 0)`` (Springenberg et al.)."""

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        gate = ops.cast(x > 0, upstream.dtype) * ops.cast(upstream > 0, upstream.dtype)
        return upstream * gate

    return ops.relu(x), grad


class GuidedReLU(keras.layers.Layer):
    """ReLU whose gradient is gated on positive input and positive gradient."""

    def call(self, x):
        return guided_relu(x)

    def compute_output_shape(self, input_shape):
        return input_shape


def _is_plain_relu(layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return not layer.max_value and not layer.negative_slope and not layer.threshold
    return graph_activation_name(layer) == "relu"


def substitute(layer):
    """For the guided trace: a callable replacing ``layer``'s ReLU by a guided one, or None."""
    if isinstance(layer, (keras.layers.Activation, keras.layers.ReLU)) and _is_plain_relu(layer):
        return lambda x, **kwargs: GuidedReLU(name=f"{layer.name}_guided")(x)
    if is_affine(layer) and _is_plain_relu(layer):
        return lambda x, **kwargs: GuidedReLU(name=f"{layer.name}_guided")(AffineWithoutActivation(layer)(x))
    return None
