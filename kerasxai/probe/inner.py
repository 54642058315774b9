"""Layers called inside a custom layer's own ``call()``: explained through per-thread hooks.

A graph model may hold a *custom layer* whose ``call()`` runs sublayers of its own — keras-hub's
``ViTEncoder`` runs every transformer block, and each block its norms, attention and MLP — so those
sublayers are not nodes of the graph that :mod:`kerasxai.probe.graph` re-traces. To explain one (a
transformer block's first norm, the tokens its attention reads), the probe calls the custom layer
through :class:`Capture`: a layer ``[the custom layer's inputs..., perturbation] -> [its outputs, the
sublayer's output]`` that runs the custom layer itself with a per-thread hook on the sublayer
(:func:`kerasxai.probe.subclassed.wrapped_calls`) recording its output and adding the zero perturbation
whose gradient is the sublayer's gradient. The user's layers are called, never changed.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from kerasxai.probe import graph
from kerasxai.probe.subclassed import wrapped_calls


@dataclasses.dataclass(eq=False)
class Inner:
    """A sublayer's call inside one call of a custom layer of the graph.

    Attributes:
        outer: the custom layer's call in the re-traced graph.
        layer: the sublayer.
        index: which of the sublayer's calls inside one call of ``outer`` (0-based, in the order they run).
    """

    outer: graph.Call
    layer: object
    index: int = 0

    @property
    def name(self) -> str:
        return "/".join(self.outer.path + (self.outer.op.name,)) + "/" + _relative_path(self.layer, self.outer.op)


def _relative_path(layer, outer) -> str:
    """``"block_2/ln_1"``: the names from ``outer`` down to ``layer`` (its first place in ``outer``'s tree)."""
    stack = [(child, child.name) for child in outer._flatten_layers(include_self=False, recursive=False)]
    while stack:
        current, path = stack.pop(0)
        if current is layer:
            return path
        stack.extend((child, f"{path}/{child.name}")
                     for child in current._flatten_layers(include_self=False, recursive=False))
    return layer.name


def sublayers(op) -> list:
    """The layers inside a custom layer (not a graph model), at any depth."""
    if graph.is_graph_model(op) or not hasattr(op, "_flatten_layers"):
        return []
    return list(op._flatten_layers(include_self=False, recursive=True))


def find(calls, wanted, index, route) -> Inner | None:
    """The sublayer ``wanted`` (a Layer, a name, its path or ``custom/.../name``) of a custom layer on ``route``."""
    found = []
    for c in calls:
        if c.is_model or c not in route:
            continue
        for layer in sublayers(c.op):
            qualified = Inner(c, layer).name
            relative = _relative_path(layer, c.op)
            if layer is wanted or (isinstance(wanted, str) and wanted in (
                    layer.name, relative, f"{c.op.name}/{relative}", qualified)):
                found.append(Inner(c, layer, 0 if index is None else index))
    if len({id(f.layer) for f in found}) > 1:
        raise ValueError(f"{len(found)} layers inside the model's custom layers are named '{wanted}' "
                         f"({', '.join(f.name for f in found[:6])}): name one by its path.")
    return found[0] if found else None


def default(calls, route) -> Inner | None:
    """For a model whose attention runs inside a custom layer (keras-hub's ViT): the tokens the last
    attention call reads, i.e. the sublayer that makes its query (the last block's first norm), or None."""
    holders = [c for c in calls if not c.is_model and c in route
               and any(isinstance(layer, keras.layers.MultiHeadAttention) for layer in sublayers(c.op))]
    if not holders:
        return None
    outer = holders[-1]
    records = observe(outer)
    attention = [(layer, args) for layer, args, _ in records if isinstance(layer, keras.layers.MultiHeadAttention)]
    if not attention or not attention[-1][1]:
        return None
    query = attention[-1][1][0]
    for i, (layer, _, out) in enumerate(records):
        if out is query and not isinstance(layer, keras.layers.MultiHeadAttention):
            k = sum(1 for other, _, _ in records[:i] if other is layer)
            return Inner(outer, layer, k)
    return None


def observe(outer) -> list:
    """``(layer, args, output)`` of every sublayer call made by one symbolic call of ``outer`` (in call order)."""
    records: list = []

    def recorder(layer):
        def make(original):
            def call(*args, **kwargs):
                at = len(records)
                records.append(None)  # in the order the calls start: a block before its norms
                out = original(*args, **kwargs)
                records[at] = (layer, args, out)
                return out

            return call

        return make

    hooks = {layer: recorder(layer) for layer in sublayers(outer.op)}
    tensors, structure = split(*outer.arguments)
    # a backend may run the call more than once to infer its output (PyTorch): each run starts the records anew
    _Observe(outer.op, hooks, structure, records.clear)([keras.KerasTensor(t.shape, dtype=t.dtype) for t in tensors])
    return records


def _inside_attention(op) -> set:
    """``id`` of the layers inside the attention layers of ``op`` (their projections: not token layers)."""
    return {id(layer) for mha in sublayers(op) if isinstance(mha, keras.layers.MultiHeadAttention)
            for layer in mha._flatten_layers(include_self=False, recursive=True)}


def split(args, kwargs):
    """A call's tensors, flat, and ``structure(tensors) -> (args, kwargs)`` that puts new ones in their place."""
    flat = keras.tree.flatten((args, kwargs))
    is_tensor = [hasattr(x, "shape") and hasattr(x, "dtype") for x in flat]

    def structure(new):
        it = iter(new)
        return keras.tree.pack_sequence_as((args, kwargs), [next(it) if t else x for x, t in zip(flat, is_tensor)])

    return [x for x, t in zip(flat, is_tensor) if t], structure


class _Observe(keras.layers.Layer):
    """Calls a custom layer with hooks on its sublayers (run symbolically: what they record is all it is for)."""

    def __init__(self, outer, hooks, structure, starting, **kwargs):
        super().__init__(autocast=False, **kwargs)
        self._outer, self._hooks, self._structure, self._starting = [outer], hooks, structure, starting

    def call(self, tensors):
        self._starting()
        args, kwargs = self._structure(list(tensors))
        with wrapped_calls(self._hooks):
            return keras.tree.flatten(self._outer[0](*args, **kwargs))


class Capture(keras.layers.Layer):
    """``[outer's tensors..., perturbations...] -> [outer's outputs..., each sublayer call's output]``.

    ``wanted``: ``(sublayer, index)`` calls inside one call of the custom layer ``outer``, each recorded (and,
    with ``perturbed``, given its perturbation); ``structure(tensors) -> (args, kwargs)`` rebuilds the call.
    """

    def __init__(self, outer, wanted, structure, perturbed=True, **kwargs):
        super().__init__(autocast=False, **kwargs)
        self._outer, self._wanted, self._structure, self._perturbed = [outer], list(wanted), structure, perturbed

    def call(self, tensors):
        tensors = list(tensors)
        n = len(self._wanted)
        deltas = tensors[len(tensors) - n:] if self._perturbed else [None] * n
        tensors = tensors[: len(tensors) - n] if self._perturbed else tensors
        captured: dict = {}
        hooks = {}
        for layer in dict.fromkeys(layer for layer, _ in self._wanted):
            mine = {k: i for i, (lay, k) in enumerate(self._wanted) if lay is layer}

            def hook(original, mine=mine):
                seen = [0]

                def call(*args, **kwargs):
                    out = original(*args, **kwargs)
                    k, seen[0] = seen[0], seen[0] + 1
                    if k not in mine:
                        return out
                    i = mine[k]
                    if deltas[i] is not None:
                        out = ops.add(out, ops.cast(deltas[i], out.dtype))
                    captured[i] = out
                    return out

                return call

            hooks[layer] = hook
        args, kwargs = self._structure(tensors)
        with wrapped_calls(hooks):
            out = self._outer[0](*args, **kwargs)
        missing = [f"{layer.name} (call {k})" for i, (layer, k) in enumerate(self._wanted) if i not in captured]
        if missing:
            raise ValueError(f"Layer(s) {missing} were not called inside '{self._outer[0].name}'.")
        return keras.tree.flatten(out) + [captured[i] for i in range(n)]


def infos(calls, spatial, info, grid_of) -> list:
    """``info(...)`` records of the token sublayers (``(N, T, C)`` outputs) run inside each custom layer of
    ``calls`` that holds attention, in the order they run: what ``layer=`` can name inside keras-hub's ViT."""
    found = []
    for c in calls:
        if c.is_model or not any(isinstance(layer, keras.layers.MultiHeadAttention) for layer in sublayers(c.op)):
            continue
        records = observe(c)
        hidden = _inside_attention(c.op)
        for i, (layer, _, out) in enumerate(records):
            shape = tuple(getattr(out, "shape", ()))
            if len(shape) != 3 or id(layer) in hidden or not hasattr(out, "dtype"):
                continue
            k = sum(1 for other, _, _ in records[:i] if other is layer)
            where = Inner(c, layer, k)
            found.append(info(_relative_path(layer, c.op), where.name, (None,) + shape[1:], type(layer).__name__, k,
                              "channels_last", grid_of(shape[1], spatial)))
    return found
