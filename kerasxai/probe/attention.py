"""The attention probabilities of a model's ``MultiHeadAttention`` layers, as a probe explains them.

A probe built with ``get_probe(model, attention=True)`` explains every attention call of the forward
pass at once: its "activations" are the attention probabilities ``A`` of shape ``(N, heads, T, S)``
of each ``keras.layers.MultiHeadAttention`` call, in the order the calls run, and its gradients are
d(score)/dA — what attention rollout and transformer attribution (:mod:`kerasxai.methods.attention`)
are formulas of.

How they are read, without changing the model: during the probe's forward pass (inside the compiled
step), each ``MultiHeadAttention`` layer of the model — at the top of the graph, in a nested model, or
called inside a custom block's own ``call()`` as keras-hub's ViT does — is called with
``return_attention_scores=True`` (so Keras computes the probabilities explicitly rather than with a fused
kernel), and a zero perturbation is added to the probabilities its ``_masked_softmax`` returns: the
gradient with respect to that perturbation is the gradient with respect to the probabilities, on every
backend. Both are per-thread hooks (:func:`kerasxai.probe.subclassed.wrapped_calls`), removed after the
call; another thread calling the model meanwhile runs it untouched.

This relies on ``MultiHeadAttention`` normalising its scores with ``self._masked_softmax(scores, mask)``
(Keras 3); ``tests/test_attention.py`` fails loudly if a Keras release changes it.
"""

from __future__ import annotations

import contextlib
import threading
import weakref

import keras
import numpy as np
from keras import ops

from kerasxai import backend
from kerasxai.probe import inputs as inputs_lib, layers as layers_lib
from kerasxai.probe.layers import CHANNELS_LAST
from kerasxai.probe.subclassed import wrapped_calls


def attention_layers(model) -> list:
    """Every ``keras.layers.MultiHeadAttention`` layer in ``model`` (nested models and custom layers too)."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.MultiHeadAttention)]


@contextlib.contextmanager
def reading(layers, deltas=None):
    """Inside the block, this thread's calls of ``layers`` record their attention probabilities.

    Yields the list the probabilities are appended to, in call order (plus ``deltas[i]`` for the
    ``i``-th call when ``deltas`` is given: where the gradient with respect to them enters).
    """
    found: list = []

    def with_scores(layer):
        def make(original):
            def call(*args, **kwargs):
                asked = kwargs.pop("return_attention_scores", False)
                before = len(found)
                output, _ = original(*args, return_attention_scores=True, **kwargs)
                if len(found) != before + 1:
                    raise ValueError(
                        f"Attention layer '{layer.path}' ({type(layer).__name__}) does not normalise its scores with "
                        "MultiHeadAttention's _masked_softmax, so kerasxai cannot read its attention probabilities.")
                found[-1] = found[-1][:2] + (_attends_to_itself(args, kwargs),)
                return (output, found[-1][1]) if asked else output

            return call

        return make

    def perturbed(layer):
        def make(original):
            def softmax(*args, **kwargs):
                probabilities = original(*args, **kwargs)
                i = len(found)
                if deltas is not None:
                    if i >= len(deltas):
                        raise ValueError("the model called its attention layers more times than when kerasxai first "
                                         "observed it: explain a model whose forward pass is the same for every batch.")
                    probabilities = ops.add(probabilities, ops.cast(deltas[i], probabilities.dtype))
                found.append((layer, probabilities, True))
                return probabilities

            return softmax

        return make

    hooks = {}
    for layer in layers:
        hooks[layer] = with_scores(layer)
        hooks[(layer, "_masked_softmax")] = perturbed(layer)
    with wrapped_calls(hooks):
        yield found


def _attends_to_itself(args, kwargs) -> bool:
    """Whether an attention call attends over its own tokens: its query is its value or its key (the same
    object, or — in the observing call, run eagerly on random images — the same values: a layer's own casts
    make copies). A key computed apart from the value (another projection of the same tokens) still is."""
    names = ("query", "value", "key")
    given = dict(zip(names, args))
    given.update({k: v for k, v in kwargs.items() if k in names and v is not None})
    query, value = given.get("query"), given.get("value")
    key = given.get("key", value)
    if query is None:
        return False
    if query is value or query is key:
        return True
    try:
        q, v, k = (np.asarray(ops.convert_to_numpy(t)) for t in (query, value, key))
    except Exception:  # symbolic tensors: only the observing call decides
        if not getattr(_OBSERVING_COMPILED, "active", False):
            return False
        same = [ops.all(ops.equal(query, t)) for t in (value, key) if tuple(t.shape) == tuple(query.shape)]
        return ops.any(ops.stack(same)) if same else False  # compiled: a tensor, read after the step
    return any(q.shape == other.shape and np.array_equal(q, other) for other in (v, k))


# set while the observing call runs compiled (AttentionForward._observe_compiled): self-attention is then
# told by a tensor the step returns
_OBSERVING_COMPILED = threading.local()


class AttentionForward:
    """``[inputs..., perturbations...] -> [attention probabilities..., logits]`` around a model's forward pass.

    ``inner`` is the probe's forward pass without explained layers (a graph model's or a subclassed
    model's); everything but the explained tensors is its own. The attention calls (their layers,
    names, shapes, whether each attends to its own query) are observed once per input shape, on one random
    example, the first time they are needed.
    """

    def __init__(self, model, inner):
        self._inner = inner
        self._model = weakref.ref(model)
        self.model_name = model.name
        self._attention = attention_layers(model)
        if not self._attention:
            raise ValueError(
                f"Model '{model.name}' has no keras.layers.MultiHeadAttention layer, so attention_rollout and "
                "transformer_attribution have no attention to read. The CAM methods explain a transformer's token "
                "layers (kerasxai.gradcam(model, images, layer=...)); the input-gradient and perturbation methods "
                "explain any model.")
        flash = [layer.name for layer in self._attention if getattr(layer, "_flash_attention", False)]
        if flash:
            raise ValueError(
                f"Attention layer(s) {flash} of model '{model.name}' use flash attention, which never forms the "
                "attention probabilities that attention_rollout and transformer_attribution read. Build or load the "
                "model after keras.config.disable_flash_attention() (the weights are the same).")
        self._observed: dict = {}  # input shapes -> [(layer, probabilities' shape without batch, dtype, self-attention)]
        self._lock = threading.Lock()
        self._grids: dict = {}  # (input shapes, grid given) -> the patch grid (see patch_grid)

    def __getattr__(self, name):  # input_specs, explained_input, head, variables, cam_head, infer...
        if name.startswith("__") or name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)

    # ----------------------------------------------------------------- what is explained

    @property
    def layers(self) -> list:
        return [c[0] for c in self._first()]

    @property
    def layer_names(self) -> list:
        calls = self._first()
        names = []
        for i, (layer, *_) in enumerate(calls):
            times = [c[0] for c in calls].count(layer)
            k = [c[0] for c in calls[:i]].count(layer)
            names.append(layer.path + (f" (call {k})" if times > 1 else ""))
        return names

    @property
    def layouts(self) -> list:
        return [CHANNELS_LAST] * len(self.layers)

    @property
    def token_grids(self) -> list:
        return [None] * len(self.layers)  # (N, heads, T, S) probabilities, not tokens: the methods read them

    @property
    def delta_dtypes(self) -> list:
        return [c[2] for c in self._first()]

    def _first(self) -> list:
        """The attention calls as first observed; observed now from the input specs when their shapes are
        static, else ``[]`` until a batch is seen (a subclassed model, images of any size)."""
        if not self._observed:
            specs = self._inner.input_specs
            shapes = [tuple(s.shape[1:]) for s in specs] if specs else None
            if not shapes or any(None in s for s in shapes):
                return []
            self._observe([_example(s, _dtype(spec)) for s, spec in zip(shapes, specs)])
        return next(iter(self._observed.values()))

    def _observe(self, arrays) -> list:
        key = tuple(tuple(a.shape[1:]) for a in arrays)
        with self._lock:
            if key in self._observed:
                return self._observed[key]
            model = self._model()
            if model is None:  # pragma: no cover - the probe cache goes with the model
                raise ReferenceError("the model was deleted")
            if self._inner.input_specs is None:  # a subclassed model: completed from its first batch
                self._inner.infer([inputs_lib.InputSpec("input", (None,) + key[0], "float32")])
            examples = [_example(a.shape[1:], a.dtype) for a in arrays]
            try:
                with reading(self._attention) as found:  # random values: self-attention is told by equal tensors
                    self._inner.call([ops.convert_to_tensor(a) for a in examples], [])
                calls = [(layer, tuple(p.shape[1:]), keras.backend.standardize_dtype(p.dtype), own)
                         for layer, p, own in found]
            except Exception as err:
                if not backend.runs_compiled_only(err):
                    raise
                calls = self._observe_compiled(examples)
            if not calls:
                raise ValueError(f"Model '{self.model_name}' has MultiHeadAttention layers, but none of them is called "
                                 "on the way to the explained output: there is no attention to read for it.")
            first = next(iter(self._observed.values()), None)
            if first is not None and [c[0] for c in first] != [c[0] for c in calls]:
                raise ValueError(f"Model '{self.model_name}' calls its attention layers differently for inputs of shape "
                                 f"{key}: explain inputs of one shape per call.")
            self._observed[key] = calls
            return calls

    def _observe_compiled(self, examples) -> list:
        """The observing call in a compiled step, where this machine runs the model only so (TensorFlow without
        oneDNN and a channels_first layer): what the eager call records, self-attention as the step's outputs."""
        recorded: list = []

        def forward(*tensors):
            _OBSERVING_COMPILED.active = True
            try:
                with reading(self._attention) as found:
                    self._inner.call(list(tensors), [])
            finally:
                _OBSERVING_COMPILED.active = False
            recorded[:] = [(layer, tuple(p.shape[1:]), keras.backend.standardize_dtype(p.dtype)) for layer, p, _ in found]
            return ops.zeros(()), [ops.convert_to_tensor(own) for _, _, own in found]

        step = backend.compile_step(forward, self._inner.variables, post=lambda flags, _: flags)
        own = backend.to_numpy(step(*examples))
        return [c + (bool(o),) for c, o in zip(recorded, own)]

    # ----------------------------------------------------------------- the forward pass

    def infer(self, specs):
        self._inner.infer(specs)

    def activation_shapes(self, inputs: list) -> list:
        arrays = [np.zeros((1,) + tuple(a.shape[1:]), dtype=_dtype_of(a)) for a in inputs]
        n = inputs_lib.batch_size(inputs[self._inner.explained_input])
        return [(n,) + c[1] for c in self._observe(arrays)]

    def call(self, inputs: list, deltas: list):
        with reading(self._attention, deltas) as found:
            _, head = self._inner.call(inputs, [])
        if len(found) != len(deltas):
            raise ValueError(f"Model '{self.model_name}' called {len(found)} attention layer(s) where kerasxai observed "
                             f"{len(deltas)}: explain a model whose forward pass is the same for every batch.")
        return [p for _, p, _ in found], head

    def check_self_attention(self, inputs) -> None:
        """Refuses attention from one set of tokens to another (cross-attention): rollout chains self-attention."""
        arrays = [np.zeros((1,) + tuple(a.shape[1:]), dtype=_dtype_of(a)) for a in inputs]
        crossed = [self.layer_names[i] for i, c in enumerate(self._observe(arrays)) if not c[3]]
        if crossed:
            raise ValueError(
                f"Attention call(s) {crossed} of model '{self.model_name}' attend from one tensor to another "
                "(cross-attention: the query is neither the key nor the value), and attention rollout and transformer "
                "attribution chain self-attention over the same tokens. Explain the model's token layers with a CAM "
                "(kerasxai.gradcam(model, images, layer=...)).")

    def tokens(self, inputs) -> tuple:
        """``(T, S)``: the query and key token counts of the first attention call for these inputs."""
        arrays = [np.zeros((1,) + tuple(a.shape[1:]), dtype=_dtype_of(a)) for a in inputs]
        shape = self._observe(arrays)[0][1]
        return shape[-2], shape[-1]


def _example(shape, dtype):
    """One random example ``(1, *shape)`` (zeros for integer inputs)."""
    shape = (1,) + tuple(shape)
    if not str(dtype).startswith(("float", "bfloat")):
        return np.zeros(shape, dtype=dtype)
    return np.random.default_rng(0).uniform(0, 1, shape).astype(dtype)


def _dtype(spec) -> str:
    dtype = str(spec.dtype)
    return dtype if dtype.startswith(("float", "int", "uint", "bool")) else "float32"


def _dtype_of(array) -> str:
    return keras.backend.standardize_dtype(getattr(array, "dtype", "float32"))


def patch_grid(probe, inputs, given=None) -> tuple:
    """``(gh, gw, n_extra)`` of the tokens the first attention call of ``probe`` (an attention probe) reads.

    ``given`` (the methods' ``grid=``) is checked against the token count; otherwise the grid is read from
    the graph when that call is a node of a graph model (its query's patch embedding), else from the token
    count and the image's size (:func:`kerasxai.probe.layers.grid_from_size`).
    """
    net = probe.net
    key = (tuple(tuple(a.shape[1:]) for a in inputs), given)
    if key not in net._grids:  # read once per input shape, not per batch
        net._grids[key] = _patch_grid(probe, net, inputs, given)
    return net._grids[key]


def _patch_grid(probe, net, inputs, given) -> tuple:
    tokens, _ = net.tokens(inputs)
    if given is not None:
        if tokens != given[0] * given[1] + given[2]:
            raise ValueError(f"grid={given} does not fit the {tokens} tokens of model '{net.model_name}''s attention: "
                             "rows * columns + extra must be the token count.")
        return given
    spatial = probe.spatial_shape(_shaped(inputs[probe.explained_input]))
    plain = getattr(net._inner, "_calls", None)
    if plain is not None:
        first = next((c for c in plain if not c.is_model and c.op is net.layers[0]), None)
        if first is not None and first.inputs:
            query = _Output(first.inputs[0], first.qualified_name)
            try:
                grid = layers_lib.token_grid(query, plain, len(spatial), spatial)
            except ValueError:
                grid = None
            if grid is not None and grid[0] * grid[1] + grid[2] == tokens:
                return grid
    grid = layers_lib.grid_from_size(tokens, spatial)
    if grid is None:
        raise ValueError(
            f"The attention of model '{net.model_name}' runs over {tokens} tokens, and which of them are the patches of "
            f"the {tuple(spatial)} image, on what grid, cannot be read from the model: give it, "
            "grid=(rows, columns, extra) (extra: the tokens before the patches, e.g. 1 for a class token).")
    return grid


class _Output:
    """A call-like view of one tensor, for :func:`kerasxai.probe.layers.token_grid`."""

    def __init__(self, tensor, name):
        self.output, self.qualified_name = tensor, name


def _shaped(x):
    return x if hasattr(x, "shape") else np.asarray(x)
