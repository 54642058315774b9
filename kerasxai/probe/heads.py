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
dense      an output with more axes than (N, K)   a segmentation target, or a callable ``outputs -> (N,) scores``
outputs    every output, as the model returns it  a detection target (its ``decode`` reads them)
========== ====================================== =============================================

A squashing the structure hides (a temperature softmax in a ``Lambda``, ``ops.softmax`` in a
subclassed model's ``call()``, a custom layer) is found by its values instead: when the output
is made by something kerasxai cannot read (:func:`opaque`), the probe looks at it once, on the
first batch (:func:`hidden_squashing`). Values that are non-negative and sum to 1 per image are
softmax probabilities: their logarithm is explained (:func:`recover_logits`); values in [0, 1]
that do not sum to 1 are sigmoid probabilities: their log-odds, the logit itself, are explained.
One warning says so; ``top_k`` gives the probabilities as they are (never squashed twice).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from kerasxai.probe.layers import PASS_THROUGH, graph_activation_name

ALL_OUTPUTS = "kerasxai:all-outputs"  # ``output=`` of a probe that reads every output (a detection target)
ALL = "outputs"  # the kind of that probe's head: the outputs as the model returns them, nothing left out
_SQUASHING = ("softmax", "sigmoid")
# Keras activations whose values could be probabilities: an output made by one of them is looked at.
_PROBABILITY_LIKE = _SQUASHING + ("hard_sigmoid", "sparse_sigmoid", "sparsemax")
# Layers that pass their input's values on (inference): what is behind them decides.
_WALK_BACK = PASS_THROUGH + (keras.layers.Reshape, keras.layers.Flatten)
_TINY = float(np.finfo(np.float32).tiny)  # the smallest normal float32: log(p) stays finite
_BELOW_ONE = 1.0 - 2.0**-24  # the largest float32 below 1: log(1 - p) stays finite


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
        recovered: ``"log"`` (log-probabilities of a softmax the structure hides), ``"logit"``
            (log-odds of a hidden sigmoid) or None: how the scores are computed from the output's
            values when its logits cannot be reached (:func:`recover_logits`).
        kept: ``"softmax"``/``"sigmoid"`` when the output ends in one that is *not* left out
            (``logits=False``, a quantized layer): the scores are then probabilities.
    """

    name: str
    index: int
    kind: str
    units: int | None
    removed_activation: str | None
    recovered: str | None = None
    kept: str | None = None

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
    return [_producer_name(t) or getattr(t, "name", f"output_{i}") for i, t in enumerate(outputs)]


def _producer_name(tensor):
    """The name of the layer that made a symbolic output (a Sequential has no ``output_names``)."""
    history = getattr(tensor, "_keras_history", None)
    return getattr(getattr(history, "operation", None), "name", None)


def _outputs(model):
    try:
        return list(model.outputs or [])
    except (AttributeError, ValueError):
        return []


def output_keys(model) -> dict:
    """``{key: position in model.outputs}`` for a model whose outputs are a dict (the keys ``model.predict``
    returns, which need not be the layers' names); empty otherwise."""
    try:
        structure = model.output
    except (AttributeError, ValueError):
        return {}
    if not isinstance(structure, dict):
        return {}
    outputs = _outputs(model)
    return {key: next(i for i, t in enumerate(outputs) if t is tensor)
            for key, tensor in structure.items() if any(t is tensor for t in outputs)}


def select_output(model, output) -> int:
    """Position in ``model.outputs`` of ``output`` (a name, a key of a dict output, or an index; None for a
    one-output model)."""
    names = output_names(model)
    keys = output_keys(model)
    key_of = {i: k for k, i in keys.items()}
    listed = ", ".join(f"{i}: '{n}'" + (f" (key '{key_of[i]}')" if key_of.get(i, n) != n else "")
                       for i, n in enumerate(names))
    if output is None:
        if len(names) > 1:
            raise ValueError(
                f"Model '{model.name}' has {len(names)} outputs ({listed}); say which one to explain "
                "with output= (a name or an index)."
            )
        return 0
    if isinstance(output, str):
        if output in keys:
            return keys[output]
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
    if name == "log_softmax":  # log p = z - logsumexp(z): the logits z are behind it, as behind a softmax
        if not logits_wanted:
            return output, None, False, producer  # log p kept as it is: scores whose softmax is p
        name = "softmax"
    elif name not in _SQUASHING:
        return output, None, False, producer
    if not logits_wanted:
        return output, name, False, producer
    op = producer.op
    if isinstance(op, (keras.layers.Activation, keras.layers.Softmax)) or not isinstance(op, keras.layers.Layer):
        inner = producer.inputs[0]
        before = next((c for c in calls if not c.is_model and c.output is inner), producer)
        return inner, name, True, before
    if is_affine(op) and getattr(op, "quantization_mode", None):  # its kernel is integer: kept as it is
        return output, name, False, producer
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
    kept = squashing if squashing and not removed else None
    if len(shape) != 2:
        return Head(name, index, "dense", None, removed_activation, kept=kept)
    units = shape[-1]
    if squashing == "softmax":
        kind = "softmax"
    elif squashing == "sigmoid":
        kind = "binary" if units == 1 else "multilabel"
    else:
        kind = "regression" if units == 1 else "logits"
    return Head(name, index, kind, units, removed_activation, kept=kept)


# --------------------------------------------------------------------------- squashing the structure hides


def transparent(op) -> bool:
    """True for a layer whose output kerasxai knows is not a probability: a built-in Keras layer
    (not a ``Lambda``) with no activation, or a Keras activation that does not squash.

    Example:
        >>> transparent(keras.layers.Dense(3)), transparent(keras.layers.Lambda(lambda t: t))
        (True, False)
    """
    if not isinstance(op, keras.layers.Layer) or isinstance(op, keras.layers.Lambda):
        return False
    if not type(op).__module__.startswith("keras."):  # a custom layer: its call() is not read
        return False
    activation = getattr(op, "activation", None)
    if activation is None:
        return True
    name = getattr(activation, "__name__", None)
    return getattr(keras.activations, str(name), None) is activation and name not in _PROBABILITY_LIKE


def opaque(output, producer_of) -> bool:
    """Whether the model's structure hides what ``output`` is, so its values must be looked at.

    ``producer_of(tensor) -> (op, input tensor) or None`` finds what made a tensor; layers that pass
    their input on (dropout, reshaping) are walked through.
    """
    for _ in range(64):
        found = producer_of(output)
        if found is None:
            return True
        op, inner = found
        if not isinstance(op, _WALK_BACK) or inner is None:
            return not transparent(op)
        output = inner
    return True


def graph_producer(calls):
    """``producer_of`` for :func:`opaque` over the calls of a re-traced graph."""
    made_by = {id(c.output): c for c in calls if not c.is_model}

    def producer_of(tensor):
        call = made_by.get(id(tensor))
        return None if call is None else (call.op, call.inputs[0] if call.inputs else None)

    return producer_of


def hidden_squashing(values, dtype: str = "float32") -> str | None:
    """``"softmax"``, ``"sigmoid"`` or None: what ``(N, K)`` output values look like.

    Softmax: every value non-negative and each image's values summing to 1 (K > 1). Sigmoid:
    every value in [0, 1] (exactly 0 or 1 where a sigmoid saturates), not summing to 1.

    Example:
        >>> hidden_squashing([[0.2, 0.8], [0.5, 0.5]]), hidden_squashing([[0.9, 0.7]]), hidden_squashing([[2.0]])
        ('softmax', 'sigmoid', None)
    """
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or not values.size or not np.isfinite(values).all():
        return None
    tolerance = 1e-4 if dtype in ("float32", "float64") else 1e-2  # float16/bfloat16 outputs round more
    if values.min() < 0 or values.max() > 1 + tolerance:
        return None
    if values.shape[1] > 1 and np.all(np.abs(values.sum(axis=1) - 1) <= tolerance):
        return "softmax"
    return "sigmoid" if values.max() <= 1 else None


def recovered_head(head: Head, squashing: str) -> Head:
    """The head of an output found to hold ``squashing`` probabilities: scores computed from its values."""
    if head.kind == "dense":  # per pixel: the same recovery, pixel by pixel
        return dataclasses.replace(head, removed_activation=squashing,
                                   recovered="log" if squashing == "softmax" else "logit")
    if squashing == "softmax":
        return dataclasses.replace(head, kind="softmax", removed_activation="softmax", recovered="log")
    kind = "binary" if head.units == 1 else "multilabel"
    return dataclasses.replace(head, kind=kind, removed_activation="sigmoid", recovered="logit")


def recover_logits(head: Head, output):
    """The scores of ``head`` from the output's ``(N, K)`` float32 values, in ``keras.ops``.

    ``"log"``: log p. Since log p_c = z_c - logsumexp(z) for the logits z, its gradient is the
    logit's minus the gradient of logsumexp(z), a term shared by all classes: the class-specific
    evidence is the logit's, and softmax(log p) gives p back. ``"logit"``: log(p / (1 - p)), the
    sigmoid's logit itself. Probabilities are kept off 0 and 1 (float32's smallest normal number and
    largest number below 1), where a saturated output has no gradient to give anyway.
    """
    if head.recovered == "log":
        return ops.log(ops.maximum(output, _TINY))
    if head.recovered == "logit":
        p = ops.clip(output, _TINY, _BELOW_ONE)
        return ops.log(p) - ops.log1p(-p)
    return output


def hidden_squashing_message(model_name: str, head: Head) -> str:
    """The one warning given when a hidden squashing is found."""
    if head.recovered == "log":
        seen, explained = "non-negative and summing to 1 for each image", (
            "their logarithm log(p) (whose gradient differs from the logit's only by a term shared by all classes)")
    else:
        seen, explained = "all in [0, 1] without summing to 1", "their log-odds log(p / (1 - p)), the sigmoid's logit"
    return (
        f"kerasxai: output '{head.name}' of model '{model_name}' is made by something kerasxai cannot read (a Lambda, "
        f"a custom layer or activation, or a subclassed model's call()), and its values are {seen}: they are taken "
        f"as {'softmax' if head.recovered == 'log' else 'sigmoid'} probabilities p and kerasxai explains {explained}; "
        f"top_k reports p as it is. End the model with Dense(...) then Activation('{head.removed_activation}') to "
        "explain the logits themselves."
    )


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
