"""The forward pass of a subclassed model, whose graph cannot be re-traced.

A subclassed ``keras.Model`` hides its graph in Python code, so kerasxai calls
the model itself (through a weak reference: the probe cache never keeps it
alive) and learns what it needs by *observing* one symbolic call on the first
batch's shape: which leaf layers run, in what order, with what output shapes.

- Gradient methods (saliency, SmoothGrad, Integrated Gradients) work on any
  subclassed model.
- CAM methods work at a layer's call: during the forward pass that layer's
  ``call`` is wrapped (an instance attribute, removed again in a ``finally``,
  seen by the explaining thread only) to record its output and add the zero
  perturbation whose gradient is the layer's gradient. The default layer is the
  last one called whose output has spatial axes, among layers called once; a
  layer called more than once is explained at one call, ``layer=(layer, i)``.
- Logits: when the model's output is exactly the output of its last layer and
  that layer applies softmax/sigmoid, the layer's logits are taken instead, as
  for graph models. Otherwise the output is explained as it is.

Guided backpropagation needs to replace the model's ReLUs and is refused with a
snippet that wraps the model's layers in a Functional model.
"""

from __future__ import annotations

import contextlib
import math
import threading
import weakref

import keras
import numpy as np
from keras import ops

from kerasxai import backend
from kerasxai.probe import graph, heads, inputs as inputs_lib, layers as layers_lib

WRAP_SNIPPET = """
    inputs = keras.Input(shape=...)            # one example's shape
    x = model.backbone(inputs)                 # call the model's own layers, in order
    outputs = model.head(x)
    functional = keras.Model(inputs, outputs)  # shares the weights: explain this one
"""


def leaf_layers(model) -> list:
    """The model's layers that have no sublayers, nested ones included, in tracking order."""
    found = model._flatten_layers(include_self=False, recursive=True)
    return [layer for layer in found if not list(layer._flatten_layers(include_self=False, recursive=False))]


_ABSENT = object()
_PATCHES: dict = {}  # (id(layer), attribute) -> [layer, its own attribute or _ABSENT, original, users]
_PATCHES_LOCK = threading.Lock()
_THIS_THREAD = threading.local()  # .hooks: {(id(layer), attribute): replacement} of this thread's wrapped_calls


@contextlib.contextmanager
def recording(model):
    """The model's leaf layers' calls made by this thread inside the block: a list of ``(layer, first
    argument, output)`` in call order, filled as they run (the layers are restored afterwards)."""
    calls = []

    def recorder(layer):
        def make(original):
            def call(*args, **kwargs):
                out = original(*args, **kwargs)
                calls.append((layer, args[0] if args else None, out))
                return out

            return call

        return make

    with wrapped_calls({layer: recorder(layer) for layer in leaf_layers(model)}):
        yield calls


def _dispatcher(key, original):
    """A patched method: this thread's replacement if it has one, else the original."""

    def call(*args, **kwargs):
        hooks = getattr(_THIS_THREAD, "hooks", None)
        hook = hooks.get(key) if hooks else None
        return (hook or original)(*args, **kwargs)

    return call


@contextlib.contextmanager
def wrapped_calls(hooks: dict):
    """Temporarily replaces ``layer.call`` by ``make(original_call)`` for each ``layer: make`` in ``hooks``
    (or another method: a ``(layer, "method_name"): make`` item), for calls made by this thread only.

    The patch is an instance attribute set with ``object.__setattr__`` (no Keras tracking): one
    dispatcher per layer and method, installed by the first thread that needs it and removed (in a
    ``finally``) by the last one, so afterwards the layer is as it was. The dispatcher runs the
    replacement of the thread that calls the layer, and the original for every other thread (another
    explanation running at the same time, or the user's own ``model(x)``).
    """
    installed, mine, outer = [], {}, getattr(_THIS_THREAD, "hooks", None)
    try:
        with _PATCHES_LOCK:
            for item, make in hooks.items():
                layer, attribute = item if isinstance(item, tuple) else (item, "call")
                key = (id(layer), attribute)
                entry = _PATCHES.get(key)
                if entry is None:
                    entry = [layer, layer.__dict__.get(attribute, _ABSENT), getattr(layer, attribute), 0]
                    _PATCHES[key] = entry
                    object.__setattr__(layer, attribute, _dispatcher(key, entry[2]))
                entry[3] += 1
                installed.append(key)
                mine[key] = make(entry[2])
        _THIS_THREAD.hooks = {**(outer or {}), **mine}
        yield
    finally:
        _THIS_THREAD.hooks = outer
        with _PATCHES_LOCK:
            for key in reversed(installed):
                entry = _PATCHES[key]
                entry[3] -= 1
                if entry[3] == 0:
                    del _PATCHES[key]
                    layer, attribute = entry[0], key[1]
                    if entry[1] is _ABSENT:
                        del layer.__dict__[attribute]
                    else:
                        object.__setattr__(layer, attribute, entry[1])


class SubclassedForward:
    """``[input, perturbations...] -> [activations..., logits]`` by calling a subclassed model."""

    def __init__(self, model, layers, *, output, input, logits, guided):
        if guided:
            raise ValueError(
                f"Guided backpropagation replaces the ReLUs of the model's graph, and '{model.name}' is a "
                f"subclassed model whose graph is Python code. Wrap its layers in a Functional model:{WRAP_SNIPPET}"
            )
        if input not in (None, 0):
            raise ValueError(f"A subclassed model is explained through its one input; received input={input!r}.")
        first = [layer.name for layer in leaf_layers(model)
                 if layers_lib.own_data_format(layer) == layers_lib.CHANNELS_FIRST]
        if first:
            raise ValueError(
                f"Subclassed model '{model.name}' has channels_first layers ({', '.join(first[:3])}): without its "
                "graph kerasxai cannot tell which axis of each tensor holds the channels, and maps over the wrong "
                "axis would look plausible. Functional and Sequential models with channels_first layers are "
                f"explained as they are: wrap its layers in a Functional model:{WRAP_SNIPPET}")
        self._model = weakref.ref(model)
        self.model_name = model.name
        self._wanted_layers, self._output, self._logits = tuple(layers), output, logits
        self.input_specs = None
        self.explained_input = 0
        self.head = None
        self.layers, self.layer_names, self._indices = [], [], []
        self._logit_layer = None
        self._all = False
        self._shapes: dict = {}
        self._infer_lock = threading.Lock()  # two threads' first batches: one observes, the other waits

    # ----------------------------------------------------------------- observing one call

    def model(self):
        model = self._model()
        if model is None:  # pragma: no cover - the probe cache goes with the model
            raise ReferenceError("the model was deleted")
        return model

    def _observe(self, shape, dtype):
        """Runs the model once on a random example: the leaf layers called (inputs, outputs), and its output."""
        model = self.model()
        example = np.random.default_rng(0).normal(size=shape).astype(dtype)
        with recording(model) as calls:
            output = model(example, training=False)
        return calls, output

    def infer(self, specs):
        """Completes the probe from the first batch's input spec (shapes, layers, head)."""
        if self.input_specs is not None:
            return
        if len(specs) != 1:
            raise ValueError("A subclassed model is explained through one input array.")
        with self._infer_lock:
            if self.input_specs is not None:  # completed by another thread meanwhile
                return
            spec = specs[0]
            calls, output = self._observe((1,) + tuple(spec.shape[1:]), "float32")
            self._resolve_layers(calls)
            self._resolve_head(calls, output)
            self.input_specs = list(specs)  # last: other threads read the probe once this is set

    def _resolve_layers(self, calls):
        model = self.model()
        called = [layer for layer, _, _ in calls]
        spatial = [layer for layer, _, out in calls
                   if layers_lib.spatial_shape(out) is not None and not isinstance(layer, layers_lib.POOLING)
                   and _is_spatial(out)]
        chosen, indices = [], []
        for wanted in self._wanted_layers:
            wanted, index = layers_lib.layer_and_call(wanted)
            if wanted is None:
                once = [layer for layer in spatial if called.count(layer) == 1]
                if not once:
                    raise ValueError(
                        f"Subclassed model '{model.name}' calls no layer whose output has spatial axes"
                        + (", except layers called more than once (their activations and gradients differ "
                           f"from call to call): name one and its call, e.g. layer=('{spatial[-1].name}', 0)."
                           if spatial else ", so CAM methods have nothing to explain; the gradient methods work on it.")
                    )
                layer, index = once[-1], 0
            else:
                matches = [layer for layer in leaf_layers(model)
                           if layer is wanted or (isinstance(wanted, str) and layer.name == wanted)]
                if not matches:
                    names = ", ".join(layer.name for layer in spatial) or "none"
                    raise ValueError(
                        f"No layer {wanted if isinstance(wanted, str) else wanted.name!r} can be reached in "
                        f"subclassed model '{model.name}'. Layers its call() runs with spatial outputs: {names}. "
                        f"Or wrap its layers in a Functional model:{WRAP_SNIPPET}"
                    )
                layer = matches[0]
                times = called.count(layer)
                if index is None and times != 1:
                    raise ValueError(
                        f"Layer '{layer.name}' is called {times} times in the forward pass of subclassed model "
                        f"'{model.name}', and its activations and gradients differ from call to call. Say which "
                        f"call to explain: layer=('{layer.name}', {max(times - 1, 0)}) (the call index, 0-based, "
                        "in the order its call() runs them)."
                    )
                index = 0 if index is None else index
                if not 0 <= index < times:
                    raise ValueError(
                        f"layer=('{layer.name}', {index}) asks for call {index}, but layer '{layer.name}' is called "
                        f"{times} time(s) in the forward pass of subclassed model '{model.name}' (calls are "
                        "numbered from 0)."
                    )
                out = [o for lay, _, o in calls if lay is layer][index]
                if not _is_spatial(out):
                    raise ValueError(f"Layer '{layer.name}' cannot be explained: its output has shape {tuple(out.shape)}, "
                                     "without spatial axes.")
            layers_lib.check_channels_last(_CallLike(layer))
            chosen.append(layer)
            indices.append(index)
        self.layers, self._indices = chosen, indices
        self.layer_names = [layer.name + (f" (call {i})" if called.count(layer) > 1 else "")
                            for layer, i in zip(chosen, indices)]

    def _resolve_head(self, calls, output):
        flat = keras.tree.flatten(output)
        if isinstance(output, dict):
            names = sorted(output)
        else:
            names = [f"output_{i}" for i in range(len(flat))]
        if self._output == heads.ALL_OUTPUTS:  # a detection target: every output as the model returns it
            self._output_index, self._all = None, True
            self.head = heads.Head("all outputs", -1, heads.ALL, None, None)
            return
        if self._output is None and len(flat) > 1:
            raise ValueError(f"Subclassed model has {len(flat)} outputs ({names}); say which one with output=.")
        index = 0 if self._output is None else (names.index(self._output) if isinstance(self._output, str) else self._output)
        tensor = flat[index]
        squashing = None
        last = calls[-1][2] if calls else None
        if self._logits and last is not None and tuple(last.shape) == tuple(tensor.shape) and np.allclose(
            backend.to_numpy(last), backend.to_numpy(tensor), atol=1e-6
        ):  # the model's output is its last layer's output
            layer, inner, _ = calls[-1]
            name = layers_lib.graph_activation_name(layer)
            if name in ("softmax", "sigmoid") and (
                isinstance(layer, (keras.layers.Activation, keras.layers.Softmax)) or heads.is_affine(layer)
            ):
                squashing, self._logit_layer = name, layer
        self._output_index = index
        spec = keras.KerasTensor((None,) + tuple(tensor.shape[1:]))
        self.head = heads.head_of(names[index], index, spec, squashing, squashing is not None)

    # ----------------------------------------------------------------- the forward pass

    @property
    def variables(self) -> list:
        return list(self.model().variables)

    @property
    def delta_dtypes(self) -> list:
        return [layer.compute_dtype for layer in self.layers]

    def call(self, inputs: list, deltas: list):
        captured: dict = {}
        hooks = {}
        for layer in dict.fromkeys(self.layers):  # one hook per layer, for each of its explained calls
            wanted = {k: i for i, (lay, k) in enumerate(zip(self.layers, self._indices)) if lay is layer}

            def perturb(original, wanted=wanted):
                seen = [0]  # this forward pass's calls of the layer so far

                def call(*args, **kwargs):
                    k, seen[0] = seen[0], seen[0] + 1
                    out = original(*args, **kwargs)
                    if k not in wanted:
                        return out
                    i = wanted[k]
                    captured[i] = out
                    return ops.add(out, ops.cast(deltas[i], out.dtype))

                return call

            hooks[layer] = perturb
        if self._logit_layer is not None:
            layer = self._logit_layer

            def to_logits(original, layer=layer):
                def call(x, *args, **kwargs):
                    if heads.is_affine(layer):
                        return heads.AffineWithoutActivation.call(_Affine(layer), x)
                    return x

                return call

            hooks[layer] = to_logits if layer not in hooks else hooks[layer]
        with wrapped_calls(hooks):
            output = self.model()(inputs[0], training=False)
        head = output if self._all else keras.tree.flatten(output)[self._output_index]
        missing = [self.layer_names[i] for i in range(len(self.layers)) if i not in captured]
        if missing:
            raise ValueError(f"Layer(s) {missing} were not called in this forward pass of '{self.model_name}'.")
        return [captured[i] for i in range(len(self.layers))], head

    def activation_shapes(self, inputs: list) -> list:
        if not self.layers:
            return []
        key = tuple(inputs[0].shape)[1:]
        if key not in self._shapes:
            calls, _ = self._observe((1,) + key, "float32")
            self._shapes[key] = [tuple([o for lay, _, o in calls if lay is layer][i].shape[1:])
                                 for layer, i in zip(self.layers, self._indices)]
        n = inputs_lib.batch_size(inputs[0])
        return [(n,) + s for s in self._shapes[key]]

    def cam_head(self):
        raise ValueError(
            f"CAM reads the classifier behind global average pooling from the model's graph, which subclassed "
            f"model '{self.model_name}' hides. Use gradcam() (on a GAP -> Dense model it equals CAM up to ReLU "
            f"and scale), or wrap the layers in a Functional model:{WRAP_SNIPPET}"
        )


class _CallLike:
    """Enough of a graph call for :func:`kerasxai.probe.layers.check_channels_last`."""

    def __init__(self, layer):
        self.op, self.qualified_name = layer, layer.name


class _Affine:
    """The attributes :meth:`AffineWithoutActivation.call` reads, for a layer used directly."""

    def __init__(self, layer):
        self.affine = layer


def _is_spatial(tensor) -> bool:
    axes = layers_lib.spatial_shape(tensor)
    if axes is None:
        return False
    known = [a for a in axes if a is not None]
    return len(known) < len(axes) or math.prod(known) > 1


def is_subclassed(model) -> bool:
    """True for a model whose graph cannot be re-traced (not Functional, not Sequential)."""
    return not graph.is_graph_model(model) or inputs_lib.input_specs(model) is None
