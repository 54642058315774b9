"""Re-running a Keras model's graph on a new input, with nested models inlined.

This is the one module that relies on a private Keras API
(``Functional._run_through_graph``). ``tests/test_graph.py`` fails loudly if a
Keras release changes it.

Why it is needed: ``keras.Model(model.inputs, inner_layer.output)`` fails with
"Graph disconnected" when ``inner_layer`` lives in a pretrained base that was
*called* inside the outer model (``Sequential([VGG16(include_top=False),
Flatten(), Dense(1)])``): the inner layer's tensors belong to the base's own
graph. Re-running every layer on one fresh input tensor, and stepping *into*
nested models instead of calling them whole, gives one flat, connected graph
in which any layer's output can be taken. The user's layers are called, never
changed: their weights are shared, not copied.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
from keras import tree


@dataclasses.dataclass(eq=False)
class Call:
    """One call of an operation in the re-run graph.

    Attributes:
        op: the Keras layer (or nested model, when ``is_model``) that was called.
        path: names of the models enclosing ``op``, outermost first (the
            top-level model's own name is left out).
        inputs: the tensors ``op`` was called on, flattened.
        output: what ``op`` returned.
        is_model: True for a nested model stepped into; its layers have their
            own ``Call`` records before this one.
        index: how many times ``op`` was called before this call in the re-run
            graph (0 for its first call; a shared layer has one record per call).
        arguments: ``(args, kwargs)`` as the layer was called (leaf layers).
    """

    op: Any
    path: tuple
    inputs: list
    output: Any
    is_model: bool = False
    index: int = 0
    arguments: tuple = ((), {})

    @property
    def qualified_name(self) -> str:
        return "/".join(self.path + (self.op.name,))


def is_graph_model(op) -> bool:
    """True for models whose layers can be stepped into: Sequential and Functional."""
    if isinstance(op, keras.Sequential):
        return True
    return isinstance(op, keras.Model) and hasattr(op, "_run_through_graph") and hasattr(
        op, "_nodes_by_depth"
    )


def trace(model, inputs, substitute=None):
    """Re-runs ``model`` on ``inputs`` (symbolic tensors), nested models inlined.

    ``inputs`` has the structure of ``model.input`` (one tensor, a list or a dict).
    ``substitute(layer, index)`` may return a callable to use in place of the
    ``index``-th call (0-based, in execution order) of a leaf layer (guided
    backpropagation swaps ReLUs this way; the probe adds a zero perturbation to
    an explained call's output); ``None`` keeps the layer.

    Returns:
        ``(outputs, calls)``: the model's outputs computed on ``inputs`` and the
        list of ``Call`` records in execution order.
    """
    calls: list[Call] = []
    outputs = _run(model, inputs, (), calls, substitute, {})
    return outputs, calls


def _tensors(structure) -> list:
    return [t for t in tree.flatten(structure) if hasattr(t, "shape") and hasattr(t, "dtype")]


def _run(model, inputs, path, calls, substitute, counts):
    def wrap(op):
        index = counts.get(id(op), 0)  # wrap(op) is asked once per call of op, just before it
        counts[id(op)] = index + 1
        if is_graph_model(op):

            def call_model(*args, **kwargs):
                # Nested models are called as ``base(x)`` or ``base(x, training=False)``;
                # the probe always runs in inference mode, so ``training`` is dropped.
                sub_inputs = args[0] if len(args) == 1 else list(args)
                out = _run(op, sub_inputs, path + (op.name,), calls, substitute, counts)
                calls.append(Call(op, path, _tensors(sub_inputs), out, is_model=True, index=index))
                return out

            return call_model

        replacement = substitute(op, index) if substitute is not None else None

        def call_layer(*args, **kwargs):
            out = (replacement or op)(*args, **kwargs)
            calls.append(Call(op, path, _tensors((args, kwargs)), out, index=index, arguments=(args, kwargs)))
            return out

        return call_layer

    if isinstance(model, keras.Sequential):
        x = inputs
        for layer in model.layers:
            x = wrap(layer)(x)
        return x
    if is_graph_model(model):
        outputs = model._run_through_graph(inputs, operation_fn=wrap)
        return outputs
    raise TypeError(
        f"kerasxai can re-trace Functional and Sequential Keras models; received "
        f"{type(model).__name__}, a subclassed model whose graph cannot be read."
    )


def downstream(calls, sources) -> set:
    """``id`` of every leaf call that depends on a tensor of ``sources`` (any nest; ``calls`` in execution order)."""
    reached, found = {id(t) for t in _tensors(sources)}, set()
    for c in calls:
        if not c.is_model and any(id(t) in reached for t in c.inputs):
            found.add(id(c))
            reached.update(id(t) for t in _tensors(c.output))
    return found


def upstream(calls, targets) -> set:
    """``id`` of every leaf call that a tensor of ``targets`` depends on (any nest; ``calls`` in execution order)."""
    needed, found = {id(t) for t in _tensors(targets)}, set()
    for c in reversed(calls):
        if not c.is_model and any(id(t) in needed for t in _tensors(c.output)):
            found.add(id(c))
            needed.update(id(t) for t in c.inputs)
    return found
