"""The forward pass of a Functional or Sequential model, re-traced for explaining.

The model's graph is re-run on fresh inputs with nested models stepped into
(:mod:`kerasxai.probe.graph`), and a zero *perturbation* input is added to the
output of each explained layer: the result is one connected ``keras.Model``
``[inputs..., perturbations...] -> [activations..., logits]`` that shares the
user's layers (and so their weights). The gradient of a score with respect to
a perturbation is its gradient with respect to the layer's activations, on
every backend, also for a layer that is not a cut of the graph.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from kerasxai.probe import cache, graph, guided as guided_lib, heads, inner as inner_lib, inputs as inputs_lib
from kerasxai.probe import layers as layers_lib


@dataclasses.dataclass
class Traced:
    """A plain re-trace of a model: fresh inputs, outputs and the call records."""

    inputs: list
    outputs: object
    calls: list


def fresh_inputs(model, explained: int) -> list:
    """New ``keras.Input`` tensors like the model's, the explained one float32 (integer inputs included)."""
    fresh = []
    for i, t in enumerate(model.inputs):
        dtype = t.dtype
        if i == explained and not str(dtype).startswith(("float", "bfloat")):
            dtype = "float32"
        fresh.append(keras.Input(tuple(t.shape[1:]), dtype=dtype, name=getattr(t, "name", None)))
    return fresh


def structured(model, fresh: list):
    """``fresh`` inputs in the structure the model takes (one tensor, a list or a dict)."""
    if isinstance(model, keras.Sequential) or len(fresh) == 1:
        return fresh[0]
    return keras.tree.pack_sequence_as(model.input, fresh)


def traced(model, explained: int = 0) -> Traced:
    """The model re-traced once (nested models stepped into), cached per model as it is now."""

    def build():
        fresh = fresh_inputs(model, explained)
        outputs, calls = graph.trace(model, structured(model, fresh))
        return Traced(fresh, outputs, calls)

    return cache.cached(model, ("trace", explained), build)


class TracedForward:
    """``[inputs..., perturbations...] -> [activations..., logits]`` for a graph model.

    Attributes:
        input_specs, explained_input, head, layers, layer_names: as on :class:`~kerasxai.probe.Probe`.
        submodel: the ``keras.Model`` itself, sharing the user's layers.
    """

    def __init__(self, model, layers, *, output, input, logits, guided):
        self.input_specs = inputs_lib.input_specs(model)
        self.explained_input = inputs_lib.select_input(self.input_specs, input, model.name)
        every = output == heads.ALL_OUTPUTS  # a detection target reads every output, as the model returns them
        output_index = 0 if every else heads.select_output(model, output)
        plain = traced(model, self.explained_input)
        route = layers_lib.Route.between(
            plain.calls, plain.inputs[self.explained_input], keras.tree.flatten(plain.outputs)[output_index],
            self.input_specs[self.explained_input].name, heads.output_names(model)[output_index])
        rank = len(layers_lib.spatial_shape(plain.inputs[self.explained_input]) or ()) or None
        layer_calls = [_resolve(layer, plain, model, route, rank) for layer in layers]
        inner = {i: c for i, c in enumerate(layer_calls) if isinstance(c, inner_lib.Inner)}
        if inner:  # sublayers run inside a custom layer's call(): re-traced with the custom layer captured
            plain, layer_calls = _with_inner(model, self.explained_input, plain, layer_calls)
        seen = [id(c) for c in layer_calls]
        if len(set(seen)) != len(seen):
            twice = next(c for c in layer_calls if seen.count(id(c)) > 1)
            raise ValueError(f"layer names '{layers_lib.call_name(twice, plain.calls)}' more than once in "
                             f"{[getattr(item, 'name', item) for item in layers]}: give each layer once.")
        # channels_first layers (ported models): maps are computed channels-last, so the probe moves
        # their channel axis last (and the explained input's, for the methods at the input)
        self.input_layout = layers_lib.input_layout(plain.calls, plain.inputs[self.explained_input])
        rank = len(layers_lib.spatial_shape(plain.inputs[self.explained_input]) or ())
        # token sequences (N, T, C) of an image model: maps on their patch grid, extra tokens dropped
        image = tuple(plain.inputs[self.explained_input].shape)
        spatial = image[2:] if self.input_layout == layers_lib.CHANNELS_FIRST else image[1:-1]
        self.token_grids = [_grid(layer, c, plain.calls, rank, spatial) for layer, c in zip(layers, layer_calls)]
        # tokens are (N, T, C) whatever the patch embedding's data format
        self.layouts = [layers_lib.CHANNELS_LAST if i in inner or self.token_grids[i] is not None
                        else layers_lib.output_layout(c, plain.calls) for i, c in enumerate(layer_calls)]
        self.layers = [c.op for c in layer_calls]
        self.layer_names = [layers_lib.call_name(c, plain.calls) for c in layer_calls]

        deltas = [keras.Input(tuple(c.output.shape[1:]), dtype=c.output.dtype, name=f"delta_{i}")
                  for i, c in enumerate(layer_calls)]
        # the perturbation goes to the explained call only: a shared layer's other calls are left alone
        by_call = {(id(c.op), c.index): i for i, c in enumerate(layer_calls) if i not in inner}
        by_outer: dict = {}  # a custom layer's call -> the explained sublayer calls inside it
        for i in inner:
            by_outer.setdefault((id(inner[i].outer.op), inner[i].outer.index), []).append(i)
        captured: dict = {}

        def substitute(layer, index):
            replacement = guided_lib.substitute(layer) if guided else None
            if (id(layer), index) in by_outer:
                wanted = by_outer[(id(layer), index)]
                return _capturing(inner[wanted[0]].outer, [(inner[i].layer, inner[i].index) for i in wanted],
                                  [deltas[i] for i in wanted], wanted, captured)
            if (id(layer), index) not in by_call:
                return replacement
            i, run = by_call[(id(layer), index)], replacement or layer

            def perturbed(*args, **kwargs):
                captured[i] = run(*args, **kwargs)
                # a named layer, not ops.add: an op's automatic name ("add") may be a loaded model's layer's
                return _Perturb(name=f"kerasxai_delta_{i}", dtype=captured[i].dtype)([captured[i], deltas[i]])

            return perturbed

        if layer_calls or guided:
            fresh = fresh_inputs(model, self.explained_input)
            outputs, calls = graph.trace(model, structured(model, fresh), substitute)
        else:  # nothing to substitute (saliency and the other methods at the input): the plain trace is the same graph
            fresh, outputs, calls = plain.inputs, plain.outputs, plain.calls
        if every:
            head_tensors, head_call, self._structure = keras.tree.flatten(outputs), None, outputs
            self.head = heads.Head("all outputs", -1, heads.ALL, None, None)
            self.logits_shape = None
        else:
            out_tensor = keras.tree.flatten(outputs)[output_index]
            tensor, squashing, removed, head_call = heads.logits(out_tensor, calls, logits)
            rank = len(tensor.shape)
            if rank >= 4 and head_call is not None and layers_lib.output_layout(head_call, calls) == layers_lib.CHANNELS_FIRST:
                # a channels_first per-pixel output (N, K, H, W): classes last, as every target reads them
                tensor = keras.layers.Permute(tuple(range(2, rank)) + (1,), name="kerasxai_classes_last")(tensor)
            self.head = heads.head_of(heads.output_names(model)[output_index], output_index, tensor, squashing, removed)
            head_tensors, self._structure, self.logits_shape = [tensor], None, tuple(tensor.shape)
            bypassed = removed and head_call is not None and tensor is not head_call.output  # its kernel, re-applied
            if bypassed and any(c.op is head_call.op and c.index == head_call.index for c in layer_calls):
                raise ValueError(
                    f"Layer '{head_call.op.name}' makes output '{self.head.name}', whose logits kerasxai computes from "
                    f"the layer's input (its {squashing} left out): its own output does not lead to them. Explain a "
                    "layer before it (the default layer is the last one before the head).")
        self._calls, self._head_call = calls, head_call
        self._layer_calls = [lc if i in inner else
                             next(c for c in calls if c.op is lc.op and c.index == lc.index and not c.is_model)
                             for i, lc in enumerate(layer_calls)]
        self.submodel = keras.Model(fresh + deltas, [captured[i] for i in range(len(layer_calls))] + head_tensors,
                                    name=f"{model.name}_probe")
        self._n_inputs = len(fresh)
        # the explained layers' outputs on the plain trace: their shapes, and a model of them built only
        # for inputs whose spatial size the graph leaves open (most models' shapes are static)
        self._plain_inputs, self._layer_outputs = plain.inputs, [c.output for c in layer_calls]
        self._shapes_model = None
        self._shapes: dict = {}

    @property
    def variables(self) -> list:
        return list(self.submodel.variables)

    @property
    def delta_dtypes(self) -> list:
        return [t.dtype for t in self.submodel.inputs[self._n_inputs:]]

    def call(self, inputs: list, deltas: list):
        outs = self.submodel(list(inputs) + list(deltas), training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        if self._structure is not None:  # every output, in the structure the model returns
            return list(outs[: len(self.layers)]), keras.tree.pack_sequence_as(self._structure, list(outs[len(self.layers):]))
        return list(outs[: len(self.layers)]), outs[-1]

    def activation_shapes(self, inputs: list) -> list:
        """The explained layers' output shapes for these inputs (batch included)."""
        if not self.layers:
            return []
        n = inputs_lib.batch_size(inputs[self.explained_input])
        static = [tuple(t.shape[1:]) for t in self._layer_outputs]
        if all(d is not None for s in static for d in s):
            return [(n,) + s for s in static]
        key = tuple(tuple(t.shape)[1:] for t in inputs)
        if key not in self._shapes:
            if self._shapes_model is None:
                self._shapes_model = keras.Model(self._plain_inputs, self._layer_outputs)
            specs = [keras.KerasTensor((None,) + s, dtype=t.dtype) for s, t in zip(key, self._shapes_model.inputs)]
            spec = self._shapes_model.compute_output_spec(specs if len(specs) > 1 else specs[0])
            self._shapes[key] = [tuple(t.shape)[1:] for t in (spec if isinstance(spec, (list, tuple)) else [spec])]
        return [(n,) + s for s in self._shapes[key]]

    def cam_head(self):
        if self._structure is not None:
            raise ValueError("CAM weighs a classifier's column of a class; a detection target reads every output: "
                             "use gradcam, layercam or another method.")
        return layers_lib.cam_head(self._calls, self._layer_calls[0], self._head_call, self.layer_names[0])


def _resolve(layer, plain, model, route, rank):
    """The graph call that ``layer`` names (or the default), or an :class:`~kerasxai.probe.inner.Inner` for a
    sublayer that a custom layer's own ``call()`` runs (the default, for attention inside a custom layer)."""
    if layer is None:
        if rank == 2 and not any(isinstance(c.op, keras.layers.MultiHeadAttention) for c in plain.calls if c in route):
            found = inner_lib.default(plain.calls, route)  # keras-hub's ViT: the last block's first norm
            if found is not None:
                return found
        return layers_lib.default_call(plain.calls, model, route, plain.outputs, rank)
    try:
        return layers_lib.find_call(plain.calls, layer, model, route)
    except ValueError:
        wanted, index = layers_lib.layer_and_call(layer)
        found = inner_lib.find(plain.calls, wanted, index, route)
        if found is None:
            raise
        return found


def _with_inner(model, explained, plain, layer_calls):
    """The model re-traced with each custom layer that holds an explained sublayer called through a
    recording :class:`~kerasxai.probe.inner.Capture`: the sublayers' outputs become tensors of the graph,
    each with a :class:`~kerasxai.probe.graph.Call` of its own right after its custom layer's."""
    inner = {i: c for i, c in enumerate(layer_calls) if isinstance(c, inner_lib.Inner)}
    by_outer: dict = {}
    for i, c in inner.items():
        by_outer.setdefault((id(c.outer.op), c.outer.index), []).append(i)
    made: dict = {}

    def substitute(layer, index):
        if (id(layer), index) not in by_outer:
            return None
        wanted = by_outer[(id(layer), index)]

        def call(*args, **kwargs):
            tensors, structure = inner_lib.split(args, kwargs)
            outs = inner_lib.Capture(layer, [(inner[i].layer, inner[i].index) for i in wanted], structure,
                                     perturbed=False)(tensors)
            out = keras.tree.pack_sequence_as(inner[wanted[0]].outer.output, outs[: len(outs) - len(wanted)])
            for j, i in enumerate(wanted):
                c = inner[i]
                name = c.name.split("/")
                made[i] = graph.Call(c.layer, tuple(name[:-1]), inner_lib.split(args, kwargs)[0],
                                     outs[len(outs) - len(wanted) + j], index=c.index)
            return out

        return call

    fresh = fresh_inputs(model, explained)
    outputs, calls = graph.trace(model, structured(model, fresh), substitute)
    for i in sorted(made, key=lambda i: -i):  # each sublayer's record right after its custom layer's
        outer = next(k for k, c in enumerate(calls) if c.op is inner[i].outer.op and c.index == inner[i].outer.index
                     and not c.is_model)
        calls.insert(outer + 1, made[i])
    found = [made[i] if i in inner else next(c for c in calls if c.op is lc.op and c.index == lc.index and not c.is_model)
             for i, lc in enumerate(layer_calls)]
    return Traced(fresh, outputs, calls), found


def _capturing(outer, wanted, deltas, positions, captured):
    """A custom layer's call (``outer``) that returns what it returns, its sublayers' outputs (perturbed) put
    in ``captured``."""

    def call(*args, **kwargs):
        tensors, structure = inner_lib.split(args, kwargs)
        outs = inner_lib.Capture(outer.op, wanted, structure, name=f"kerasxai_capture_{positions[0]}")(tensors + deltas)
        n = len(outs) - len(wanted)
        for j, i in enumerate(positions):
            captured[i] = outs[n + j]
        return keras.tree.pack_sequence_as(outer.output, outs[:n])

    return call


def _grid(layer, call, calls, rank, spatial):
    """A token layer's patch grid: as given with ``kerasxai.tokens``, or read from the model."""
    given = layers_lib.given_grid(layer)
    if given is not None:
        layers_lib.check_given_grid(given, call)
        return given
    return layers_lib.token_grid(call, calls, rank, spatial)


class _Perturb(keras.layers.Layer):
    """``activation + delta``: where the probe's gradient with respect to a layer's output enters."""

    def __init__(self, **kwargs):
        super().__init__(autocast=False, **kwargs)

    def call(self, inputs):
        return ops.add(inputs[0], inputs[1])
