"""The probe: one sub-model from a model's inputs to the explained layers and the logits.

Every method runs on a :class:`Probe`, built once per (model, layers, output,
input) and cached (see :mod:`kerasxai.probe.cache`).

- The model's graph is re-run on fresh inputs with nested models stepped into
  (:mod:`kerasxai.probe.graph`), so a layer inside a pretrained base can be explained.
- A zero *perturbation* input is added to each explained layer's output (and to
  the explained input), so every gradient is a gradient with respect to an
  argument — the same on TensorFlow, JAX and PyTorch (:mod:`kerasxai.backend`).
- The explained output's logits leave out a final softmax/sigmoid
  (:mod:`kerasxai.probe.heads`); the target picks one score per image (:mod:`kerasxai.probe.targets`).
- A method's whole per-batch computation (forward, gradients, its formula,
  upsampling, normalising, the flat-map statistics) is one compiled step,
  built once per (method, target kind) and reused for every batch.
- The user's model is never modified: no attribute is set on it or its layers.

Examples:
    >>> import keras, numpy as np
    >>> from kerasxai.probe import get_probe
    >>> model = keras.Sequential([keras.Input((32, 32, 3)),
    ...     keras.layers.Conv2D(4, 3, name="conv"), keras.layers.GlobalAveragePooling2D(),
    ...     keras.layers.Dense(3, activation="softmax")])
    >>> probe = get_probe(model)
    >>> probe.layer_names, probe.head.kind
    (['conv'], 'softmax')
    >>> out = probe.gradients(np.zeros((2, 32, 32, 3), "float32"), target=1)
    >>> out.activations[0].shape, out.gradients[0].shape, out.logits.shape
    ((2, 30, 30, 4), (2, 30, 30, 4), (2, 3))
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import numbers
import weakref

import keras
import numpy as np
from keras import ops

from kerasxai import _warn, backend
from kerasxai.probe import regions as regions_lib, stamps as stamps_lib, targets as targets_lib
from kerasxai.probe import cache, heads as heads_lib, inputs as inputs_lib, layers as layers_lib
from kerasxai.probe import attention as attention_lib, inner as inner_lib, traced as traced_lib
from kerasxai.probe import cost as cost_lib
from kerasxai.probe.layers import CHANNELS_FIRST, CHANNELS_LAST
from kerasxai.probe import subclassed as subclassed_lib
from kerasxai.probe.subclassed import SubclassedForward, is_subclassed
from kerasxai.probe.traced import TracedForward

logger = logging.getLogger("kerasxai")

GRADS = (None, "layers", "input", "both")


@dataclasses.dataclass
class Pass:
    """What one pass of a probe gives (tensors inside a compiled step, NumPy arrays outside).

    Attributes:
        activations: one ``(N, spatial..., K)`` float32 tensor per explained layer.
        gradients: d(score)/d(activations), same shapes (empty without layer gradients).
        input_gradient: d(score)/d(explained input) ``(N, spatial..., C)``, or None.
        logits: ``(N, K)`` float32 (the explained output, softmax/sigmoid left out); for a target
            that reads every output (detection), the model's outputs as it returns them.
        scores: ``(N,)`` target score of each image.
        classes: ``(N,)`` target class of each image (``-1`` for a callable target).
        inputs: the explained input as fed to the model (after any ``pre`` step).
        extra: the step's extra arguments.
        target_data: a structured target's per-image arrays (a mask, a box: :mod:`kerasxai.probe.regions`).
    """

    activations: list
    gradients: list
    input_gradient: object
    logits: object
    scores: object
    classes: object
    inputs: object = None
    extra: tuple = ()
    target_data: tuple = ()


@dataclasses.dataclass(frozen=True)
class Fn:
    """A function with fixed keyword parameters, equal by value: a cache key for compiled steps.

    Examples:
        >>> Fn(max, key=abs) == Fn(max, key=abs), Fn(max, key=abs)([-3, 2])
        (True, -3)
    """

    fn: object
    params: tuple = ()

    def __init__(self, fn, **params):
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "params", tuple(sorted(params.items())))

    def __call__(self, *args):
        return self.fn(*args, **dict(self.params))


def _default_post(p: Pass):
    out = {"logits": p.logits, "scores": p.scores, "classes": p.classes}
    for i, a in enumerate(p.activations):
        out[f"activation_{i}"] = a
    for i, g in enumerate(p.gradients):
        out[f"gradient_{i}"] = g
    if p.input_gradient is not None:
        out["input_gradient"] = p.input_gradient
    return out


DEFAULT_POST = Fn(_default_post)


def _patch_grid(tensor, grid):
    """Tokens ``(N, T, C)`` as their patch grid ``(N, gh, gw, C)``, the ``n_extra`` leading tokens dropped."""
    if grid is None:
        return tensor
    gh, gw, extra = grid
    return ops.reshape(tensor[:, extra:, :], (-1, gh, gw, tensor.shape[-1]))


def _channels_last(tensor):
    """``(N, C, spatial...)`` -> ``(N, spatial..., C)``."""
    return ops.moveaxis(tensor, 1, -1)


class Probe:
    """A cached sub-model ``inputs -> [activations of each layer..., logits]``, compiled per method.

    Use :func:`get_probe` rather than this constructor, so that probes are shared between calls.
    For a subclassed model, the attributes below are known after the first batch is seen.

    Attributes:
        layer_names: qualified names of the explained layers (``"vgg16/block5_conv3"``).
        layers: the explained Keras layers.
        head: the explained output (:class:`~kerasxai.probe.heads.Head`: name, kind, units,
            removed activation).
        removed_activation: ``"softmax"``, ``"sigmoid"`` or None (the head's).
        input_specs: every model input (:class:`~kerasxai.probe.inputs.InputSpec`).
        explained_input: position of the explained input in ``model.inputs``.
        input_shape: the explained input's shape, batch as None.
        n_classes: classes a class-index target can name (2 for a one-unit sigmoid), or None.
    """

    def __init__(self, model, layers=(None,), *, output=None, input=None, logits: bool = True, guided: bool = False,
                 attention: bool = False):
        self.model_name = model.name
        if not isinstance(model, keras.Model):
            raise TypeError(f"Expected a keras.Model. Received: {type(model).__name__}")
        if not model.built:
            raise ValueError(
                f"Model '{model.name}' has not been built, so it has no weights yet: give it a keras.Input, or "
                "call it once on a batch (model(images)) — and train it — before explaining it."
            )
        self.quantized = [(layer.name, layer.quantization_mode) for layer in subclassed_lib.leaf_layers(model)
                          if getattr(layer, "quantization_mode", None)]
        if guided:
            self._refuse_quantized()
        kind = SubclassedForward if is_subclassed(model) else TracedForward
        self.net = kind(model, () if attention else layers, output=output, input=input, logits=logits, guided=guided)
        if attention:  # the attention probabilities of every MultiHeadAttention call are the explained tensors
            self.net = attention_lib.AttentionForward(model, self.net)
        self._model = weakref.ref(model)
        # per example, where every layer suits XLA's CPU code (then TensorFlow may run XLA from the first call)
        self.macs = None if kind is not TracedForward or attention else cost_lib.xla_macs(model, self.net.explained_input)
        self._logits = logits
        self._head = None  # the head once its output's values were looked at (see _settle_head)
        if self.net.input_specs is not None:
            self._refuse_tabular_cam()
            self._log()
        self._steps: dict = {}
        self._callable_steps = weakref.WeakKeyDictionary()
        # a bound method (target=scorer.score) is a new object at every access: its steps are kept per
        # instance (weakly) and function, so each call finds them again
        self._method_steps = weakref.WeakKeyDictionary()
        # per kind of segmentation/detection target (its decode, iou), the _STRUCTURED_KEPT most recently used: a
        # detector's decode is held by its steps, so a new decode lambda per call must not keep a step per call
        self._structured_steps: dict = {}
        self._zero_tensors: dict = {}

    def _refuse_quantized(self):
        """Refuses what a quantized model (``model.quantize(...)``) cannot give: gradients, its logits."""
        if self.quantized:
            modes = "/".join(sorted({mode for _, mode in self.quantized}))
            names = ", ".join(f"'{name}'" for name, _ in self.quantized[:3]) + (" ..." if len(self.quantized) > 3 else "")
            raise ValueError(
                f"Model '{self.model_name}' is quantized ({modes} layers {names}): its layers round to integers, so the "
                "function it computes has no gradient to explain. kerasxai.occlusion and kerasxai.rise (forward passes "
                "only), eigencam and top_k run on it; explain the float model as it was before model.quantize(...) for the others."
            )

    def _refuse_tabular_cam(self):
        spec = self.net.input_specs[self.net.explained_input]
        if self.layers and not spec.spatial:
            spatial = [s.name for s in self.net.input_specs if s.spatial]
            instead = f"explain input='{spatial[0]}' (the layer's maps are drawn over it), or " if spatial else ""
            raise ValueError(
                f"A CAM map is drawn over a spatial input, and input '{spec.name}' {spec.shape} has no spatial axes: "
                f"{instead}use saliency or integrated_gradients for one value per feature of '{spec.name}'."
            )

    def _log(self):
        if self.layer_names:
            logger.info("kerasxai: explaining %s at layer(s) %s", self.model_name, self.layer_names)

    # what the forward pass knows
    layers = property(lambda self: self.net.layers)
    layer_names = property(lambda self: self.net.layer_names)
    head = property(lambda self: self._head or self.net.head)
    input_specs = property(lambda self: self.net.input_specs)
    explained_input = property(lambda self: self.net.explained_input)
    removed_activation = property(lambda self: self.head.removed_activation if self.head else None)
    n_classes = property(lambda self: self.head.n_classes if self.head else None)
    submodel = property(lambda self: getattr(self.net, "submodel", None))

    @property
    def layouts(self) -> list:
        """The data format of each explained layer's output (``"channels_first"`` or ``"channels_last"``).

        The activations and gradients a step's ``post`` sees are always channels-last."""
        return list(getattr(self.net, "layouts", [CHANNELS_LAST] * len(self.net.layers)))

    @property
    def input_layout(self) -> str:
        """The data format of the explained input; in a step's ``Pass`` it is always channels-last."""
        return getattr(self.net, "input_layout", CHANNELS_LAST)

    def spatial_shape(self, x) -> tuple:
        """The spatial axes of the explained input ``x`` as the model takes it (either data format)."""
        shape = tuple(x.shape)
        return shape[2:] if self.input_layout == CHANNELS_FIRST else shape[1:-1]

    @property
    def input_shape(self):
        specs = self.net.input_specs
        return None if specs is None else specs[self.net.explained_input].shape

    # ----------------------------------------------------------------- as a function

    @property
    def variables(self) -> list:
        """The Keras variables the probe reads (for :func:`kerasxai.backend.compile_step`)."""
        return self.net.variables

    def call(self, inputs, deltas=None):
        """``inputs -> (activations, logits)`` in ``keras.ops``, not compiled, inference mode.

        ``inputs``: the explained input's tensor for a one-input model, or a list of
        tensors in ``model.inputs`` order. For use inside your own compiled step
        (:func:`kerasxai.backend.compile_step`, with :attr:`variables`).
        """
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if self.net.input_specs is None:
            specs = [inputs_lib.InputSpec("input", (None,) + tuple(inputs[0].shape[1:]), "float32")]
            self.net.infer(specs)
        if deltas is None:
            shapes = self.net.activation_shapes(inputs)
            deltas = [ops.zeros(shape, dtype=dtype) for shape, dtype in zip(shapes, self.net.delta_dtypes)]
        acts, head = self.net.call(inputs, deltas)
        if self.head.recovered:  # known once a method has seen a batch
            head = heads_lib.recover_logits(self.head, ops.cast(head, "float32"))
        return acts, head

    # ----------------------------------------------------------------- a squashing the structure hides

    def _settle_head(self, inputs):
        """Looks once at the explained output's values on the first batch, when the structure does not
        say what they are (:func:`kerasxai.probe.heads.opaque`): probabilities found there are explained
        as log-probabilities or log-odds (:func:`kerasxai.probe.heads.recover_logits`), with one warning.
        Decided once per model and output (cached with the model), so every method agrees."""
        if self._head is not None:
            return
        head = self.net.head
        if (not self._logits or head.removed_activation or head.kept
                or head.kind not in ("logits", "regression", "dense")):  # kept: a known squashing, left in (quantized)
            self._head = head
            return
        model = self._model()
        key = ("hidden squashing", head.index, self.net.explained_input)
        try:
            squashing = cache.cached(model, key, lambda: self._hidden_squashing(model, head, inputs))
        except _Unsettled:  # no image's output is finite (the step refuses them): decided on a later batch
            return
        self._head = heads_lib.recovered_head(head, squashing) if squashing else head

    def _hidden_squashing(self, model, head, inputs):
        if is_subclassed(model):
            with subclassed_lib.recording(model) as calls:
                output = keras.tree.flatten(model(inputs[0], training=False))[head.index]
            opaque = heads_lib.opaque(output, lambda t: next(((op, x) for op, x, out in reversed(calls) if out is t), None))
        else:
            plain = traced_lib.traced(model, self.net.explained_input)
            symbolic = keras.tree.flatten(plain.outputs)[head.index]
            opaque = heads_lib.opaque(symbolic, heads_lib.graph_producer(plain.calls))
            if not opaque:
                return None
            deltas = [self._zeros(shape, dtype) for shape, dtype in
                      zip(self.net.activation_shapes(inputs), self.net.delta_dtypes)]
            # a call outside the compiled step: tensors throughout (Keras refuses NumPy mixed with tensors)
            output = self.net.call([ops.convert_to_tensor(a) for a in inputs], deltas)[1]
        if not opaque:
            return None
        values = backend.to_numpy(ops.cast(output, "float32"))
        finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if not finite.any():
            raise _Unsettled()
        values = values[finite]  # images with NaN (refused by the step) say nothing of the head
        if values.ndim > 2:  # a per-pixel output: its pixels' class vectors
            values = values.reshape(-1, values.shape[-1])
        squashing = heads_lib.hidden_squashing(values, keras.backend.standardize_dtype(output.dtype))
        if squashing:
            _warn.warn(heads_lib.hidden_squashing_message(self.model_name, heads_lib.recovered_head(head, squashing)))
        return squashing

    # ----------------------------------------------------------------- compiled steps

    def step(self, grads=None, post=DEFAULT_POST, *, pre=None, target=None):
        """The compiled step for ``(grads, post, pre, target kind)``, built once.

        Args:
            grads: None (forward only), ``"layers"``, ``"input"`` or ``"both"``.
            post: ``post(p: Pass) -> dict of tensors``, run inside the step (an :class:`Fn`,
                so equal posts share one compiled step).
            pre: optional ``pre(x, *extra) -> x``: transforms the explained input inside the step
                (noise, interpolation, masking); gradients are with respect to its result.
            target: a callable target (compiled into the step), or anything else (class indices
                are an argument of the step).

        Returns:
            ``run(inputs, extra, classes) -> dict of NumPy arrays`` for one batch (read-only on
            JAX: views of the step's host buffers; copy before writing): ``inputs`` the
            checked arrays of :class:`~kerasxai.probe.inputs.Batch`, ``extra`` a tuple of
            per-image arrays for ``pre``/``post``, ``classes`` ``(N,)`` int32.
        """
        if grads not in GRADS:
            raise ValueError(f"grads must be one of {GRADS}. Received: {grads!r}")
        if grads is not None or pre is not None:  # gradients, or scores of generated inputs (Score-CAM)
            self._refuse_quantized()
        stamp = None  # what a user's function reads besides its arguments: traced again when it changes
        if regions_lib.is_structured(target):
            try:
                table = self._structured_table(target.step_key)
            except TypeError:  # a decode that cannot be hashed (a dataclass with eq): compiled for this call only
                table = None
            head = self.head
            scorer = lambda logits, classes, *data: target.scores(head, logits, classes, *data)  # noqa: E731
            decode = getattr(target, "decode", None)
            stamp = None if decode is None else stamps_lib.state_stamp(decode)
        elif callable(target) and not isinstance(target, str):
            table, held = self._callable_table(target)
            scorer = lambda logits, classes: targets_lib.callable_scores(held(), logits, classes)  # noqa: E731
            stamp = stamps_lib.state_stamp(target)
        else:
            table = self._steps
            scorer = lambda logits, classes: targets_lib.class_scores(self.head, logits, classes)  # noqa: E731
        key = (grads, post, pre)
        try:
            run = None if table is None else table.get(key)
        except TypeError:  # a post that cannot be hashed (it holds such a decode): compiled for this call only
            run = table = None
        if run is None or run.stamp != stamp:
            if run is not None:
                logger.info("kerasxai: the target's function reads other values than when its step was traced; "
                            "traced again")
            run = self._compile(grads, post, pre, scorer)
            run.stamp = stamp
            if table is not None:
                table[key] = run
        return run

    def _structured_table(self, key):
        """The steps table of a segmentation/detection target's kind; the least recently used kind goes
        past ``_STRUCTURED_KEPT`` (dicts keep their order of insertion: a kind used moves to the end)."""
        table = self._structured_steps.pop(key, None)
        if table is not None:
            self._structured_steps[key] = table
        else:
            while len(self._structured_steps) >= _STRUCTURED_KEPT:
                try:
                    del self._structured_steps[next(iter(self._structured_steps))]
                except (KeyError, StopIteration, RuntimeError):  # another thread dropped it first
                    break
            table = self._structured_steps.setdefault(key, {})
        return table

    def _callable_table(self, target):
        """``(steps table, weak reference)`` of a callable target. The steps hold the target weakly: its
        entry (and its compiled steps) go when the caller's callable goes; a strong reference from the
        steps would keep every lambda ever passed. A bound method's steps live as long as its instance."""
        instance, function = getattr(target, "__self__", None), getattr(target, "__func__", None)
        if instance is not None and function is not None:
            try:
                per_instance = self._method_steps.setdefault(instance, {})
            except TypeError:  # an instance that cannot be weakly referenced or hashed: steps per method object
                pass
            else:
                return per_instance.setdefault(function, {}), weakref.WeakMethod(target)
        try:
            return self._callable_steps.setdefault(target, {}), weakref.ref(target)
        except TypeError:  # not hashable (a dataclass with eq) or not weakly referable: compiled for this call only
            return {}, (lambda: target)

    def _compile(self, grads, post, pre, scorer):
        want_input = grads in ("input", "both")
        want_layers = grads in ("layers", "both")

        def make_forward(n_in, n_extra, n_data, dtype, head):
            """The step's function for one layout of arguments (fixed when it is compiled, never read later)."""

            def forward(*args):
                k = self.explained_input
                inputs = list(args[:n_in])
                extra = tuple(args[n_in : n_in + n_extra])
                deltas = list(args[n_in + n_extra : len(args) - 1 - n_data])
                classes, data = args[len(args) - 1 - n_data], tuple(args[len(args) - n_data :])
                input_delta = deltas.pop(0) if want_input else None
                finite = _finite_images(inputs)  # the images as given, before any pre step
                x = ops.cast(inputs[k], dtype)
                if pre is not None:
                    x = pre(x, *extra)
                if input_delta is not None:
                    x = ops.add(x, ops.cast(input_delta, x.dtype))
                inputs[k] = x
                acts, output = self.net.call(inputs, deltas)
                if head.kind == heads_lib.ALL:  # the outputs as the model returns them (a detector's decode reads them)
                    logits = keras.tree.map_structure(lambda t: ops.cast(t, "float32"), output)
                else:
                    logits = heads_lib.recover_logits(head, ops.cast(output, "float32"))
                scores, used = scorer(logits, classes, *data)
                return scores, ([ops.cast(a, "float32") for a in acts], logits, scores, used, ops.cast(x, "float32"),
                                extra, data, finite)

            return forward

        def finish(aux, gradients):
            acts, logits, scores, used, x, extra, data, finite = aux
            gradients = list(gradients)
            input_gradient = gradients.pop(0) if want_input else None
            # every method sees (N, spatial..., channels), whatever the model's data format (read when the
            # step is traced: a subclassed model's layers are known from its first batch on)
            first = {i for i, layout in enumerate(self.layouts) if layout == CHANNELS_FIRST}
            acts = [_channels_last(a) if i in first else a for i, a in enumerate(acts)]
            gradients = [_channels_last(g) if i in first and g is not None else g for i, g in enumerate(gradients)]
            grids = getattr(self.net, "token_grids", None) or [None] * len(acts)  # a transformer's tokens: its patch grid
            acts = [_patch_grid(a, grid) for a, grid in zip(acts, grids)]
            gradients = [None if g is None else _patch_grid(g, grid) for g, grid in zip(gradients, grids)]
            if self.input_layout == CHANNELS_FIRST:
                x = _channels_last(x)
                input_gradient = None if input_gradient is None else _channels_last(input_gradient)
            if want_input and input_gradient is None:
                raise ValueError(
                    f"The score of output '{self.head.name}' does not depend differentiably on input "
                    f"'{self.input_specs[self.explained_input].name}': the gradient is cut (a cast to an integer "
                    "type, an Embedding, argmax or a stop_gradient on the way), so gradient methods have nothing to show; "
                    "kerasxai.occlusion and kerasxai.rise need forward passes only."
                )
            if want_layers and any(g is None for g in gradients):
                bad = [n for n, g in zip(self.layer_names, gradients) if g is None]
                raise ValueError(f"The score of output '{self.head.name}' does not depend differentiably on layer(s) {bad}: "
                                 "explain a layer after the cut, or use kerasxai.occlusion / kerasxai.rise (forward passes only).")
            out = post(Pass(acts, gradients if want_layers else [], input_gradient, logits, scores, used, x, extra, data))
            out = dict(out) if isinstance(out, dict) else {_VALUE: out}
            out.update({f"{_FINITE}{i}": flags for i, flags in finite.items()})
            return _pack(out, scores.shape[0])

        compiled: dict = {}  # one compiled step per argument shapes (batch axis free)

        def run(inputs, extra=(), classes=None):
            self._settle_head(inputs)
            k = self.explained_input
            n = len(inputs[0])
            # NumPy arrays go to the step as they are: each backend's compiled call converts them
            # itself, more cheaply than converting them first (JAX: 75 us instead of 200 us a batch).
            placed = getattr(inputs, "placed", None) or [None] * len(inputs)  # copied to the device ahead
            tensors = [_argument(a) if p is None else p for a, p in zip(inputs, placed)]
            extra = tuple(_argument(e) for e in extra)
            shapes = [(tuple(inputs[k].shape), "float32")] if want_input else []
            shapes += list(zip(self.net.activation_shapes(tensors), self.net.delta_dtypes))
            deltas = [self._zeros(shape, dtype) for shape, dtype in shapes]
            data = ()
            if isinstance(classes, regions_lib.TargetBatch):  # a mask or box per image, after the classes
                classes, data = classes.classes, tuple(_argument(np.ascontiguousarray(d, np.float32)) for d in classes.data)
            if classes is None:
                classes = np.full((n,), targets_lib.PREDICTED, np.int32)
            args = tensors + list(extra) + deltas + [_argument(np.asarray(classes, np.int32))] + list(data)
            shapes = tuple((tuple(a.shape[1:]), _dtype_name(a.dtype)) for a in args)
            spec_dtype = str(self.input_specs[k].dtype)
            layout = (len(tensors), len(extra), len(data),
                      spec_dtype if spec_dtype.startswith(("float", "bfloat")) else "float32")
            key = (shapes, layout)
            if key not in compiled:
                first = len(tensors) + len(extra)
                differentiate = [first] if want_input else []
                if want_layers:
                    start = first + len(differentiate)
                    differentiate += list(range(start, start + len(self.layers)))
                specs = [((None,) + shape, dtype) for shape, dtype in shapes]
                compiled[key] = backend.compile_step(make_forward(*layout, self.head), self.variables, differentiate=differentiate,
                                                     post=finish, specs=specs, macs=self.macs)
            # Read-only on JAX (no copy here): callers only read a step's outputs, and the collector
            # copies them into its own arrays.
            try:
                out = _unpack(backend.to_numpy(compiled[key](*args), copy=False))
            except Exception:  # an eager op that refuses NaN (PyTorch's SVD): the images are the cause to name
                inputs_lib.refuse_nonfinite(self.input_specs, inputs)
                raise
            finite = {int(name[len(_FINITE):]): out.pop(name) for name in [k for k in out if k.startswith(_FINITE)]}
            inputs_lib.refuse_nonfinite(self.input_specs, inputs, finite)
            return out.pop(_VALUE) if _VALUE in out else out

        run.compiled = compiled
        return run

    def _zeros(self, shape, dtype):
        """A zero perturbation, made once per shape and reused (steps only read it), as long as the
        probe's cached ones stay under 32 MiB: big ones are made per batch, not kept on a GPU."""
        key = (tuple(shape), dtype)
        kept = self._zero_tensors.get(key)  # one lookup: another thread may clear the dict meanwhile
        if kept is not None:
            return kept[0]
        zeros = ops.zeros(shape, dtype=dtype)
        size = int(np.prod(shape)) * np.dtype(keras.backend.standardize_dtype(dtype)).itemsize
        if size + sum(nbytes for _, nbytes in list(self._zero_tensors.values())) > _ZEROS_KEPT:
            self._zero_tensors.clear()
        if size <= _ZEROS_KEPT:
            self._zero_tensors[key] = (zeros, size)
        return zeros

    # ----------------------------------------------------------------- inputs and targets

    def source(self, images) -> inputs_lib.Source:
        """The images of a call as checked batches (arrays, memmaps, datasets, generators)."""
        return inputs_lib.Source(images, self.input_specs, self.explained_input, self.model_name)

    def classes(self, target, batch, total=None):
        """``(N,)`` int32 class indices of a batch for a non-callable ``target`` (None for a callable).

        For a subclassed model, the first batch also completes the probe (input spec, layers, head).
        """
        if self.net.input_specs is None:
            self.net.infer([inputs_lib.InputSpec("input", (None,) + tuple(batch.inputs[0].shape[1:]), "float32")])
            self._log()
        self._settle_head(batch.inputs)
        if regions_lib.is_structured(target):
            return target.resolve(self, batch, total if total is not None else batch.total)
        if callable(target) and not isinstance(target, str):
            return None
        total = total if total is not None else batch.total
        return targets_lib.class_indices(target, batch.size, self.head, start=batch.start, labels=batch.labels, total=total)

    # ----------------------------------------------------------------- one batch, for convenience

    def _one(self, images, target, grads):
        source = self.source(images)
        batch = next(source.batches(max(1, source.length or 1 << 30)))
        out = self.step(grads, target=target)(batch.inputs, (), self.classes(target, batch, source.length))
        return {key: None if value is None else np.array(value) for key, value in out.items()}  # writable

    def _as_pass(self, out):
        n = len(self.layers)
        return Pass(
            [out[f"activation_{i}"] for i in range(n)],
            [out[f"gradient_{i}"] for i in range(n) if f"gradient_{i}" in out],
            out.get("input_gradient"),
            out["logits"], out["scores"], out["classes"],
        )

    def forward(self, images, target=None) -> Pass:
        """One forward pass over ``images`` (one batch): activations, logits, target scores, as NumPy."""
        return self._as_pass(self._one(images, target, None))

    def gradients(self, images, target=None) -> Pass:
        """Activations of the explained layers and d(score)/d(activations), in one pass (NumPy).

        Examples:
            >>> import keras, numpy as np
            >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
            ...     keras.layers.Flatten(), keras.layers.Dense(2)])
            >>> get_probe(model).gradients(np.ones((1, 8, 8, 1), "float32"), target=0).gradients[0].shape
            (1, 6, 6, 2)
        """
        return self._as_pass(self._one(images, target, "layers"))

    def input_gradients(self, images, target=None) -> Pass:
        """d(score)/d(explained input) in one pass, as :attr:`Pass.input_gradient` (NumPy)."""
        return self._as_pass(self._one(images, target, "input"))

    def tracing_count(self) -> int:
        """How many times this probe's compiled steps were traced (TensorFlow; for tests)."""
        tables = [self._steps, *self._structured_steps.values(), *list(self._callable_steps.values())]
        tables += [table for per_instance in list(self._method_steps.values()) for table in per_instance.values()]
        steps = [run for table in tables for run in table.values()]
        return sum(
            s.experimental_get_tracing_count() for run in steps for s in run.compiled.values()
            if hasattr(s, "experimental_get_tracing_count")
        )

    # ----------------------------------------------------------------- CAM head

    def cam_head(self):
        """The classifier ``Dense`` fed by global average pooling of the explained layer (CAM's weights)."""
        self._refuse_quantized()  # an integer kernel
        return self.net.cam_head()


_PACKED = "_per_image"
_ZEROS_KEPT = 32 << 20  # bytes of zero perturbations a probe keeps between calls
_STRUCTURED_KEPT = 8  # kinds of segmentation/detection target (decode, iou) whose steps a probe keeps


def _per_image_shape(value, batch, key: str):
    """The per-image shape of a step output to pack: a float32 tensor ``(batch, static dims...)``, or a
    bool or int32 one ``(batch,)``; None for anything else. With a dynamic batch (``batch`` None:
    TensorFlow's steps) a first axis of unknown length need not be the batch's, so only the outputs
    kerasxai's own posts make per image (``map:gradcam``, ``scores``...) are packed then."""
    if batch is None and not (key.startswith(_FINITE) or key.split(":")[0] in _PER_IMAGE_KEYS):
        return None
    try:
        shape = tuple(value.shape)
        dtype = keras.backend.standardize_dtype(value.dtype)
    except (AttributeError, TypeError, ValueError):  # not a tensor, or a shape of unknown rank
        return None
    if not shape or shape[0] != batch or any(d is None for d in shape[1:]) or 0 in shape[1:]:
        return None
    if dtype == "float32" or (dtype in ("bool", "int32") and len(shape) == 1):
        return tuple(int(d) for d in shape[1:])
    return None


class _Unsettled(Exception):
    """No finite output to tell a hidden squashing by (nothing cached)."""


_FINITE = "finite_input_"  # a step's per-image finiteness of each float input, checked after the step
_PER_IMAGE_KEYS = frozenset({"map", "flat", "raw_max", "zero_gradient", "scores", "classes", "finite", "finite_layer",
                             "logits", "attributions", "input_gradient"})  # kerasxai's posts' per-image outputs
_VALUE = "_post_value"  # a post's output that is not a dict


def _finite_images(inputs) -> dict:
    """Inside a step: ``{input index: (N,) bool}``, False for each image of each float input whose sum is
    not finite: every image holding a NaN or an infinity, and (rarely) one of huge finite values whose
    sum overflows, which :func:`~kerasxai.probe.inputs.refuse_nonfinite` clears on the host. One summing pass, the cheapest on
    every backend (PyTorch's eager ``isfinite`` takes four)."""
    flags = {}
    for i, tensor in enumerate(inputs):
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        if dtype.startswith(("float", "bfloat")) and len(tensor.shape) >= 1:
            axes = tuple(range(1, len(tensor.shape)))
            flags[i] = ops.isfinite(ops.sum(ops.cast(tensor, "float32"), axis=axes) if axes else tensor)
    return flags


def _pack(out, batch):
    """Inside a step: a dict's per-image outputs (maps, logits, scores, flags, statistics) as one
    ``(N, m)`` float32 tensor, each image's values side by side, so that a batch's outputs come back
    from a GPU in one copy instead of one copy each (~0.15 ms each). Packed: float32 tensors whose
    first axis is the batch (``batch``: the length of the scores, None when dynamic) and whose other
    axes are static, rank-1 bool flags, and rank-1 int32 numbers (classes) as two exact columns, their
    high and low 16 bits; the layout travels in the packed key's name, so every traced shape of a
    step unpacks its own outputs."""
    if not isinstance(out, dict):
        return out
    layout = []
    for key, value in out.items():
        shape = None if not isinstance(key, str) or "|" in key or value is None else _per_image_shape(value, batch, key)
        if shape is not None:
            layout.append((key, keras.backend.standardize_dtype(value.dtype), shape))
    if len(layout) < 2:
        return out
    out = dict(out)
    name = _PACKED + "|" + "|".join(f"{key}|{dtype}|{'x'.join(map(str, shape))}" for key, dtype, shape in layout)
    columns = []
    for key, dtype, shape in layout:
        value = out.pop(key)
        if dtype == "int32":
            high = ops.floor_divide(value, 65536)
            columns += [ops.cast(high, "float32")[:, None], ops.cast(value - high * 65536, "float32")[:, None]]
        else:
            columns.append(ops.reshape(ops.cast(value, "float32"), (-1, int(np.prod(shape))) if shape else (-1, 1)))
    out[name] = ops.concatenate(columns, axis=1)
    return out


_dtype_name = functools.lru_cache(maxsize=64)(keras.backend.standardize_dtype)  # per argument, per call


@functools.lru_cache(maxsize=256)
def _layout(name: str) -> tuple:
    """A packed output's ``(key, dtype, shape, offset, width)`` fields, parsed from its name once."""
    layout, fields, offset = [], name.split("|")[1:], 0
    for key, dtype, dims in zip(fields[::3], fields[1::3], fields[2::3]):
        shape = tuple(int(d) for d in dims.split("x")) if dims else ()
        width = 2 if dtype == "int32" else int(np.prod(shape)) if shape else 1
        layout.append((key, dtype, shape, offset, width))
        offset += width
    return tuple(layout)


def _unpack(out):
    """Outside a step: packed outputs back under their names, shapes and dtypes (NumPy; the arrays are
    views of the packed one, the rank-1 numbers copies)."""
    if not isinstance(out, dict):
        return out
    for name in [k for k in out if isinstance(k, str) and k.startswith(_PACKED + "|")]:
        packed = out.pop(name)
        for key, dtype, shape, offset, width in _layout(name):
            if dtype == "bool":
                out[key] = packed[:, offset] != 0
            elif dtype == "int32":  # its high and low 16 bits
                high, low = packed[:, offset].astype(np.int64), packed[:, offset + 1].astype(np.int64)
                out[key] = (high * 65536 + low).astype(np.int32)
            elif not shape:
                out[key] = np.array(packed[:, offset])
            else:
                out[key] = packed[:, offset:offset + width].reshape((len(packed),) + shape)
    return out


def _argument(value):
    """A step argument: numeric NumPy arrays as they are (the backend's compiled call converts them),
    anything else (strings, lists, tensors) as a backend tensor."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value
    return ops.convert_to_tensor(value)


# --------------------------------------------------------------------------- public entry points


def _layer_key(layer):
    if isinstance(layer, layers_lib.Tokens):
        return ("tokens", _layer_key(layer.layer), layer.grid, layer.extra)
    layer, index = layers_lib.layer_and_call(layer)
    if index is not None:
        return ("call", _layer_key(layer), index)
    if layer is None or isinstance(layer, str):
        return layer
    return ("layer", id(layer))  # the model holds its layers, so their ids are stable while cached


def _one_name_or_index(argument: str, value):
    """``output=``/``input=`` as given (None, a name, or an index as an int); anything else is refused."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    shown = f" (e.g. {argument}={value[0]!r})" if isinstance(value, (list, tuple)) and value else ""
    raise TypeError(
        f"{argument} takes one {argument} name or index: one {argument} is explained per call{shown}. "
        f"Received: {argument}={value!r}"
    )


def get_probe(model, layer=None, *, output=None, input=None, logits: bool = True, guided: bool = False,
              target=None, attention: bool = False) -> Probe:
    """Returns the cached :class:`Probe` of ``model`` for ``layer``, building it once.

    Args:
        model: a Functional or Sequential Keras model (nested models allowed).
        layer: a layer name (searched in nested models too; ``"base/name"`` also
            works), a Layer object, a ``(layer, call index)`` pair for a layer called
            more than once (``("shared", 1)``: its second call, in the order of the
            graph), ``None`` for the default layer (the last one whose output has
            spatial axes, not pooling, called once on the way from the explained
            input to the explained output), a list of those for several layers, or
            ``()`` for no layer (input gradients only).
        output: the explained output of a multi-output model (a name or an index).
        input: the explained input of a multi-input model (a name or an index;
            default: the only input with spatial axes).
        logits: leave out a final softmax/sigmoid (default) or explain the output as it is.
        guided: a probe whose ReLUs back-propagate only positive gradients through
            positive inputs (guided backpropagation).
        target: the target the probe will explain, when it decides the output: a detection
            target (:class:`kerasxai.targets.Detection`) reads every output unless ``output`` names one.
        attention: explain the attention probabilities of every ``MultiHeadAttention`` call instead of
            ``layer`` (:mod:`kerasxai.probe.attention`: the "activations" are ``(N, heads, T, S)``).

    Examples:
        >>> import keras
        >>> model = keras.applications.VGG16(weights=None)
        >>> get_probe(model).layer_names
        ['block5_conv3']
        >>> get_probe(model) is get_probe(model)
        True
    """
    if layers_lib.layer_and_call(layer)[1] is not None:  # one layer at one of its calls
        layers = (layer,)
    else:
        layers = tuple(layer) if isinstance(layer, (list, tuple)) else (layer,)
    output, input = _one_name_or_index("output", output), _one_name_or_index("input", input)
    if output is None and getattr(target, "reads_all_outputs", False):
        output = heads_lib.ALL_OUTPUTS
    layers = () if attention else layers
    key = ("attention probe" if attention else "probe", tuple(_layer_key(item) for item in layers), output, input,
           logits, guided)
    return cache.cached(model, key, lambda: Probe(model, layers, output=output, input=input, logits=logits, guided=guided,
                                                  attention=attention))


def explainable_layers(model) -> list:
    """Lists the layers of ``model`` that a CAM method can explain, in order.

    Nested models are searched too; a layer called more than once is listed once per call, with
    its ``call`` index (``layer=(name, call)``). A transformer's token layers ``(N, T, C)`` carry their patch
    ``grid`` ``(rows, columns, extra)``; those a custom layer runs inside its own ``call()`` (keras-hub's ViT
    encoder blocks) are listed after it, by their path inside it (what ``layer=`` takes). The default layer is the last entry on the
    way from the explained input to the output whose layer is called once on that way. Signals
    (Conv1D), images (Conv2D) and volumes (Conv3D) alike: any output with spatial axes.

    Examples:
        >>> import keras
        >>> from kerasxai import explainable_layers
        >>> model = keras.applications.VGG16(weights=None)
        >>> [info.name for info in explainable_layers(model)][-2:]
        ['block5_conv2', 'block5_conv3']
    """
    _refuse_subclassed(model, "explainable_layers")
    plain = traced_lib.traced(model)
    spatial = layers_lib.spatial_shape(plain.inputs[0])
    listed = layers_lib.infos(plain.calls, spatial)
    inside = inner_lib.infos(plain.calls, spatial, layers_lib.LayerInfo, layers_lib.grid_from_size)
    if inside:  # sublayers of a custom layer (keras-hub's ViT encoder) right after it
        at = {info.path: i for i, info in enumerate(listed)}
        for info in reversed(inside):
            outer = "/".join(info.path.split("/")[:-1])
            position = max((i for path, i in at.items() if outer.startswith(path)), default=len(listed) - 1)
            listed.insert(position + 1, info)
    return listed


def _refuse_subclassed(model, what):
    if is_subclassed(model):
        raise ValueError(
            f"{what} reads the graph of a Functional or Sequential model; '{model.name}' is subclassed (or has "
            "no inputs yet). Its layers are found while explaining: kerasxai.gradcam(model, images, "
            "layer=...) works, or call get_probe(model, layer) and run a method once."
        )


def cam_layer(model):
    """The layer whose output feeds the model's global average pooling -> Dense head, or None.

    This is CAM's layer: in ``Sequential([VGG16(include_top=False), GlobalAveragePooling2D(),
    Dense(1)])`` it is ``block5_pool``, not the last conv layer.
    """
    if is_subclassed(model):
        return None
    return layers_lib.feeding_global_average_pool(traced_lib.traced(model).calls)
