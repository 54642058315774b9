"""Outputs: which output is explained, its logits, and what kind of head it is.

The score explained is a *logit*: a final softmax or sigmoid is left out,
whether it belongs to the last ``Dense``/``Conv`` layer (its kernel and bias are
applied without it, sharing the layer's variables) or is a separate
``Activation``/``Softmax`` layer or op (its input is taken). The kind of head
decides what ``target`` means and how ``top_k`` turns logits into probabilities:

========== ====================================== =============================================
kind       output                                 target / probabilities
========== ====================================== =============================================
softmax    ``Dense(K, "softmax")``                class index; softmax
binary     ``Dense(1, "sigmoid")``                1 = positive (logit), 0 = negative (-logit); sigmoid
multilabel ``Dense(K, "sigmoid")``, K > 1         class index (its own logit); sigmoid per class
regression ``Dense(1)``, no squashing activation  the value itself (target ``None`` or 0)
logits     ``Dense(K)``, K > 1, no activation     class index; softmax (a ``from_logits`` classifier)
dense      an output with more axes than (N, K)   a callable target ``outputs -> (N,) scores``
========== ====================================== =============================================
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from kerasxai.probe.layers import graph_activation_name

_SQUASHING = ("softmax", "sigmoid")


@dataclasses.dataclass(frozen=True)
class Head:
    """The explained output.

    Attributes:
        name: the output's name (``model.output_names``).
        index: its position in ``model.outputs``.
        kind: ``"softmax"``, ``"binary"``, ``"multilabel"``, ``"regression"``, ``"logits"`` or ``"dense"``.
        units: size of the last axis (classes), or None.
        removed_activation: ``"softmax"``, ``"sigmoid"`` or None: what was left out to get the
            logits (None also when ``logits=False`` keeps it: the scores are then probabilities).
    """

    name: str
    index: int
    kind: str
    units: int | None
    removed_activation: str | None

    @property
    def n_classes(self) -> int | None:
        """Classes a class-index target can name (2 for a one-unit sigmoid), None for other heads."""
        if self.kind == "binary":
            return 2
        if self.kind == "regression":
            return 1
        return None if self.kind == "dense" else self.units


def output_names(model) -> list:
    """Names of the model's outputs, in ``model.outputs`` order."""
    names = getattr(model, "output_names", None)
    outputs = _outputs(model)
    if names and len(names) == len(outputs):
        return list(names)
    return [getattr(t, "name", f"output_{i}") for i, t in enumerate(outputs)]


def _outputs(model):
    try:
        return list(model.outputs or [])
    except (AttributeError, ValueError):
        return []


def select_output(model, output) -> int:
    """Position in ``model.outputs`` of ``output`` (a name or an index; None for a one-output model)."""
    names = output_names(model)
    listed = ", ".join(f"{i}: '{n}'" for i, n in enumerate(names))
    if output is None:
        if len(names) > 1:
            raise ValueError(
                f"Model '{model.name}' has {len(names)} outputs ({listed}); say which one to explain "
                "with output= (a name or an index)."
            )
        return 0
    if isinstance(output, str):
        if output not in names:
            raise ValueError(f"Model '{model.name}' has no output named '{output}'. Its outputs: {listed}.")
        return names.index(output)
    if isinstance(output, int) and not isinstance(output, bool):
        if not -len(names) <= output < len(names):
            raise ValueError(f"output={output} is out of range: model '{model.name}' has outputs {listed}.")
        return output % len(names)
    raise TypeError(f"output must be an output name or index. Received: {output!r}")


class AffineWithoutActivation(keras.layers.Layer):
    """A Dense or Conv layer's kernel and bias, without its activation.

    Shares the wrapped layer's variables: no copy, so the probe follows later
    training, and the wrapped layer itself is left as it is.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(name=f"{layer.name}_logits", dtype=layer.dtype_policy, **kwargs)
        self.affine = layer

    def call(self, x):
        layer = self.affine
        if isinstance(layer, keras.layers.Dense):
            y = ops.matmul(x, layer.kernel)
            return ops.add(y, layer.bias) if layer.use_bias else y
        y = layer.convolution_op(x, layer.kernel)
        if layer.use_bias:
            rank = len(y.shape)
            shape = ((1, -1) + (1,) * (rank - 2)) if layer.data_format == "channels_first" else ((1,) * (rank - 1) + (-1,))
            y = ops.add(y, ops.reshape(layer.bias, shape))
        return y

    def compute_output_shape(self, input_shape):
        return self.affine.compute_output_shape(input_shape)


def is_affine(layer) -> bool:
    """A Dense, or a convolution (either data format), whose activation can be replaced."""
    if isinstance(layer, keras.layers.Dense):
        return True
    return (
        isinstance(layer, keras.layers.Layer)
        and hasattr(layer, "convolution_op")
        and getattr(layer, "data_format", "channels_last") in ("channels_last", "channels_first")
    )


def logits(output, calls, logits_wanted: bool = True):
    """``(tensor, squashing, removed, head_call)`` for one traced output tensor.

    ``squashing`` is the output's final ``"softmax"``/``"sigmoid"`` (or None) and
    ``removed`` whether it was left out of ``tensor`` (``logits_wanted``).
    """
    producer = next((c for c in reversed(calls) if not c.is_model and c.output is output), None)
    if producer is None:  # an output that is a model input, or made by a nested model's own output
        return output, None, False, None
    name = graph_activation_name(producer.op)
    if name not in _SQUASHING:
        return output, None, False, producer
    if not logits_wanted:
        return output, name, False, producer
    op = producer.op
    if isinstance(op, (keras.layers.Activation, keras.layers.Softmax)) or not isinstance(op, keras.layers.Layer):
        inner = producer.inputs[0]
        before = next((c for c in calls if not c.is_model and c.output is inner), producer)
        return inner, name, True, before
    if is_affine(op):
        return AffineWithoutActivation(op)(producer.inputs[0]), name, True, producer
    raise ValueError(
        f"The output layer '{op.name}' ({type(op).__name__}) applies {name}, and kerasxai cannot "
        f"compute its logits. Pass logits=False to explain the {name} output as it is (gradients "
        f"saturate), or end the model with Dense(...) followed by Activation('{name}')."
    )


def head_of(name: str, index: int, tensor, squashing: str | None, removed: bool) -> Head:
    """The :class:`Head` of an explained output tensor (logits when ``removed``)."""
    shape = tuple(tensor.shape)
    removed_activation = squashing if removed else None
    if len(shape) != 2:
        return Head(name, index, "dense", None, removed_activation)
    units = shape[-1]
    if squashing == "softmax":
        kind = "softmax"
    elif squashing == "sigmoid":
        kind = "binary" if units == 1 else "multilabel"
    else:
        kind = "regression" if units == 1 else "logits"
    return Head(name, index, kind, units, removed_activation)


def probabilities(head: Head, logits) -> "np.ndarray":
    """NumPy probabilities of each class from ``(N, K)`` logits, as the head defines them.

    softmax and logits heads: softmax; binary: ``[1 - p, p]``; multilabel: one sigmoid per
    class (they need not sum to 1). Regression and dense heads have none: ``ValueError``.

    Examples:
        >>> probabilities(Head("out", 0, "binary", 1, "sigmoid"), np.zeros((1, 1))).tolist()
        [[0.5, 0.5]]
    """
    logits = np.asarray(logits, np.float64)
    if head.kind in ("regression", "dense"):
        raise ValueError(
            f"Output '{head.name}' is a {'one-unit regression' if head.kind == 'regression' else 'non-(batch, classes)'} "
            "output: it has values, not class probabilities (model.predict gives them)."
        )
    if head.kind in ("binary", "multilabel"):
        p = 1.0 / (1.0 + np.exp(-logits)) if head.removed_activation else logits
        return np.concatenate([1.0 - p, p], axis=1) if head.kind == "binary" else p
    if not head.removed_activation and head.kind == "softmax":  # logits=False: already probabilities
        return logits
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
