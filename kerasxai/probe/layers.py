"""Which layers can be explained, finding the one asked for, and CAM's classifier head.

A layer can be explained when its output has *spatial axes*: ``(batch,
spatial..., channels)`` with one (Conv1D: time), two (Conv2D: height, width)
or three (Conv3D: depth, height, width) spatial axes, not all of size 1, and
it is not a pooling layer. The default layer is the last such layer on the way
from the explained input to the explained output whose layer is called once on
that way; a layer called more than once is explained at one call,
``layer=("name", call_index)``.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import math

import keras

from kerasxai.probe import graph

_L = keras.layers
POOLING = (
    _L.MaxPooling1D, _L.MaxPooling2D, _L.MaxPooling3D,
    _L.AveragePooling1D, _L.AveragePooling2D, _L.AveragePooling3D,
    _L.GlobalMaxPooling1D, _L.GlobalMaxPooling2D, _L.GlobalMaxPooling3D,
    _L.GlobalAveragePooling1D, _L.GlobalAveragePooling2D, _L.GlobalAveragePooling3D,
)
GLOBAL_AVERAGE = (_L.GlobalAveragePooling1D, _L.GlobalAveragePooling2D, _L.GlobalAveragePooling3D)
GLOBAL_POOLING = GLOBAL_AVERAGE + (_L.GlobalMaxPooling1D, _L.GlobalMaxPooling2D, _L.GlobalMaxPooling3D)
PADDING = (_L.ZeroPadding1D, _L.ZeroPadding2D, _L.ZeroPadding3D, _L.Cropping1D, _L.Cropping2D, _L.Cropping3D)
"""Layers that only pad or crop: their map's border is the padding, not evidence (never the default)."""
PASS_THROUGH = (
    _L.Dropout, _L.SpatialDropout1D, _L.SpatialDropout2D, _L.SpatialDropout3D, _L.Identity,
    _L.GaussianNoise, _L.GaussianDropout, _L.AlphaDropout, _L.ActivityRegularization,
)


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """A layer that can be explained: an output with spatial axes, not pooling.

    Attributes:
        name: the layer's own name (what ``layer=`` takes).
        path: the qualified name, nested models first (``"vgg16/block5_conv3"``).
        output_shape: the layer's output shape in the model, batch as ``None``.
        kind: the layer's class name.
        call: which call of the layer this is (0-based, in the order of the graph): a layer
            called more than once is listed once per call, explained with ``layer=(name, call)``.
        data_format: ``"channels_last"`` or ``"channels_first"`` (its channel axis; maps are
            ``(N, spatial...)`` either way).
        grid: for a token layer ``(N, T, C)`` of an image model, ``(rows, columns, extra)``: the patch grid its
            maps are drawn on and the tokens before the patches (dropped); None for other layers.
    """

    name: str
    path: str
    output_shape: tuple
    kind: str
    call: int = 0
    data_format: str = "channels_last"
    grid: tuple | None = None

    @property
    def spatial_rank(self) -> int:
        """Number of spatial axes: 1 (signals), 2 (images) or 3 (volumes)."""
        return len(self.output_shape) - 2


def spatial_shape(tensor) -> tuple | None:
    """The spatial axes of a ``(batch, spatial..., channels)`` tensor, or None if it has none."""
    shape = getattr(tensor, "shape", None)
    if shape is None or len(shape) < 3:
        return None
    return tuple(shape[1:-1])


def is_spatial(call: graph.Call) -> bool:
    """The call's output has spatial axes, and not all of them have size 1."""
    axes = spatial_shape(call.output)
    if axes is None:
        return False
    known = [a for a in axes if a is not None]
    return len(known) < len(axes) or math.prod(known) > 1


def explainable(calls) -> list:
    """The calls whose layer can be explained, in execution order (pooling layers are left out of
    the list, though a spatial pooling output can still be asked for by name)."""
    return [c for c in calls if not c.is_model and is_spatial(c) and not isinstance(_unwrapped(c.op), POOLING + (_L.InputLayer,))]


def _unwrapped(op):
    """The layer a ``TimeDistributed`` applies to every frame (pooling per frame is still pooling)."""
    return op.layer if isinstance(op, _L.TimeDistributed) else op


def infos(calls, spatial=None) -> list:
    """:class:`LayerInfo` of every explainable call (``spatial``: the explained input's spatial shape, for the
    patch grids of token layers)."""
    return [LayerInfo(c.op.name, c.qualified_name, tuple(c.output.shape), type(c.op).__name__, c.index,
                      output_layout(c, calls), readable_grid(c, calls, spatial)) for c in explainable(calls)]


def readable_grid(call, calls, spatial) -> tuple | None:
    """The patch grid of a token layer as :func:`token_grid` reads it, or None (not a token layer, or unreadable)."""
    try:
        return token_grid(call, calls, len(spatial or ()), spatial)
    except ValueError:
        return None


def _describe_choices(calls, wanted: str) -> str:
    candidates = explainable(calls)
    names = [c.op.name for c in candidates]
    convs = [c.op.name for c in candidates if "Conv" in type(c.op).__name__] or names
    close = difflib.get_close_matches(wanted, names, n=3)
    text = f" Did you mean {', '.join(repr(n) for n in close)}?" if close else ""
    if not convs:
        return text + " This model has no layer with spatial axes."
    shown = convs if len(convs) <= 30 else convs[:12] + ["..."] + convs[-12:]
    return (
        f"{text} Layers with spatial axes: {', '.join(shown)}. "
        "kerasxai.explainable_layers(model) lists every layer that can be explained."
    )


@dataclasses.dataclass
class Route:
    """The leaf calls on the way from the explained input to the explained output.

    Attributes:
        depends: ``id`` of every call that depends on the explained input.
        feeds: ``id`` of every call that the explained output depends on.
        input_name, output_name: the explained input's and output's names (for errors).
    """

    depends: set
    feeds: set
    input_name: str
    output_name: str

    @classmethod
    def between(cls, calls, source, target, input_name: str, output_name: str) -> "Route":
        """The route from tensor ``source`` to tensor ``target`` in re-traced ``calls``."""
        return cls(graph.downstream(calls, source), graph.upstream(calls, target), input_name, output_name)

    def __contains__(self, call) -> bool:
        return id(call) in self.depends and id(call) in self.feeds


@dataclasses.dataclass(frozen=True)
class Tokens:
    """A token layer with its patch grid given (see :func:`tokens`)."""

    layer: object
    grid: tuple
    extra: int = 0


def tokens(layer, grid, extra: int = 0) -> Tokens:
    """``layer=`` for a token layer ``(N, T, C)`` whose patch grid kerasxai cannot read from the model.

    Args:
        layer: the layer (name, Layer object or ``(layer, call)`` pair), as ``layer=`` takes it.
        grid: ``(rows, columns)`` of patches; the last ``rows * columns`` tokens are the patches, row by row.
        extra: the tokens before the patches (class, distillation, register tokens), dropped from maps.

    Examples:
        >>> import kerasxai
        >>> kerasxai.tokens("block11_norm1", grid=(14, 14), extra=1)
        Tokens(layer='block11_norm1', grid=(14, 14), extra=1)
    """
    ok = (isinstance(grid, (tuple, list)) and len(grid) == 2
          and all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in grid))
    if not ok or not isinstance(extra, int) or isinstance(extra, bool) or extra < 0:
        raise ValueError(f"tokens() takes grid=(rows, columns), two ints >= 1, and extra=n, an int >= 0 (the tokens "
                         f"before the patches). Received: grid={grid!r}, extra={extra!r}")
    if isinstance(layer, Tokens):
        layer = layer.layer
    return Tokens(layer, tuple(int(g) for g in grid), int(extra))


def given_grid(layer) -> tuple | None:
    """``(gh, gw, n_extra)`` given with :func:`tokens`, or None."""
    return (*layer.grid, layer.extra) if isinstance(layer, Tokens) else None


def check_given_grid(grid, call) -> None:
    """A grid given with :func:`tokens` must fit the layer's tokens."""
    shape = tuple(getattr(call.output, "shape", ()))
    if len(shape) != 3 or (shape[1] is not None and shape[1] != grid[0] * grid[1] + grid[2]):
        raise ValueError(
            f"kerasxai.tokens(..., grid={grid[:2]}, extra={grid[2]}) does not fit layer '{call.qualified_name}', whose "
            f"output is {shape}: a token layer (N, T, C) has T = rows * columns + extra tokens.")


def layer_and_call(layer):
    """``(layer, call index)`` of a ``layer=`` entry: ``("shared", 1)`` is call 1 of layer "shared"; else index None."""
    if isinstance(layer, Tokens):
        layer = layer.layer
    if (isinstance(layer, tuple) and len(layer) == 2 and isinstance(layer[0], (str, keras.Operation))
            and isinstance(layer[1], int) and not isinstance(layer[1], bool)):
        return layer
    return layer, None


def call_name(call: graph.Call, calls) -> str:
    """``"path/name"``, with ``" (call i)"`` for a layer called more than once."""
    n = sum(1 for c in calls if c.op is call.op and not c.is_model)
    return call.qualified_name + (f" (call {call.index})" if n > 1 else "")


def _list_calls(found, calls) -> str:
    made_by = producers(calls)
    parts = []
    for c in found:
        sources = [made_by[id(t)].op.name if id(t) in made_by else "an input" for t in c.inputs]
        parts.append(f"call {c.index} on {', '.join(dict.fromkeys(sources)) or 'no tensor'} -> "
                     f"{tuple(getattr(c.output, 'shape', ()))}")
    return "; ".join(parts)


def find_call(calls, layer, model, route: Route) -> graph.Call:
    """The call of ``layer`` (a name, qualified name or Layer object, or a ``(layer, call index)`` pair)
    on ``route``; clear errors otherwise."""
    layer, index = layer_and_call(layer)
    if isinstance(layer, str):
        found = [c for c in calls if not c.is_model and (c.op.name == layer or c.qualified_name == layer)]
        if not found:
            raise ValueError(f"No layer named '{layer}' in model '{model.name}'." + _describe_choices(calls, layer))
    elif isinstance(layer, keras.Operation):
        found = [c for c in calls if c.op is layer and not c.is_model]
        if not found:
            raise ValueError(
                f"Layer '{layer.name}' is not part of model '{model.name}'." + _describe_choices(calls, layer.name)
            )
    else:
        raise TypeError(
            "layer must be a layer name, a keras Layer, a (layer, call index) pair or None. "
            f"Received: {layer!r}"
        )
    if len({id(c.op) for c in found}) > 1:
        paths = sorted({c.qualified_name for c in found})
        raise ValueError(
            f"{len(paths)} layers of model '{model.name}' are named '{found[0].op.name}' ({', '.join(paths)}); "
            "name one by its qualified name."
        )
    name = found[0].op.name
    if index is not None:
        if not 0 <= index < len(found):
            raise ValueError(
                f"layer=('{name}', {index}) asks for call {index}, but layer '{name}' is called "
                f"{len(found)} time(s) in model '{model.name}' (calls are numbered from 0: {_list_calls(found, calls)})."
            )
        call = found[index]
    elif len(found) == 1:
        call = found[0]
    else:
        on_route = [c for c in found if c in route]
        if len(on_route) != 1:
            raise ValueError(
                f"Layer '{name}' is called {len(found)} times in model '{model.name}' ({_list_calls(found, calls)}), "
                "and its activations and gradients differ from call to call. Say which call to explain: "
                f"layer=('{name}', {(on_route or found)[-1].index}) (the call index, 0-based, in the order of the graph)."
            )
        call = on_route[0]
    if not is_spatial(call) or isinstance(_unwrapped(call.op), GLOBAL_POOLING):
        shape = tuple(getattr(call.output, "shape", ()))
        why = f"its output has shape {shape}"
        raise ValueError(
            f"Layer '{call.qualified_name}' cannot be explained: {why}, but a CAM method needs an output "
            "with spatial axes (batch, spatial axes..., channels) — e.g. a Conv1D, Conv2D or Conv3D "
            "output — not all of size 1." + _describe_choices(calls, call.op.name)
        )
    if id(call) not in route.feeds:
        raise ValueError(
            f"Layer '{call_name(call, calls)}' does not lead to output '{route.output_name}', so its activations "
            "cannot explain that output. Pick a layer on the way to it (kerasxai.explainable_layers(model)), "
            "or another output= ."
        )
    if id(call) not in route.depends:
        raise ValueError(
            f"Layer '{call_name(call, calls)}' does not depend on input '{route.input_name}', so its activations "
            f"cannot explain that input. Pick a layer on the way from input '{route.input_name}' to the output "
            "(kerasxai.explainable_layers(model)), or another input= ."
        )
    return call


MAX_EXTRA_TOKENS = 2
"""At most this many tokens before the patches (a class token, a distillation token) when a grid is read from
the token count and the image's size alone; with more (register tokens), ``grid=`` / :func:`tokens` gives it."""


def grid_from_size(tokens, spatial) -> tuple | None:
    """``(gh, gw, n_extra)`` of ``tokens`` tokens of an image of ``spatial = (H, W)`` cut into square ``p × p``
    patches, ``p`` dividing both sides, when exactly one such grid ``(H / p, W / p)`` leaves between 0 and
    :data:`MAX_EXTRA_TOKENS` tokens over; else None (a guess that could be wrong is not made).

    Examples:
        >>> grid_from_size(197, (224, 224)), grid_from_size(12, (32, 24)), grid_from_size(17, (30, 30))
        ((14, 14, 1), (4, 3, 0), None)
    """
    if tokens is None or spatial is None or len(spatial) != 2 or None in spatial:
        return None
    h, w = (int(s) for s in spatial)
    found = {(h // p, w // p, tokens - (h // p) * (w // p)) for p in range(1, min(h, w) + 1)
             if h % p == 0 and w % p == 0 and 0 <= tokens - (h // p) * (w // p) <= MAX_EXTRA_TOKENS
             and (h // p) * (w // p) > 1}
    return found.pop() if len(found) == 1 else None


def token_grid(call, calls, input_rank, spatial=None) -> tuple | None:
    """``(gh, gw, n_extra)`` when ``call``'s output is a token sequence ``(N, T, C)`` of an image model
    (``input_rank`` 2): the patch grid is the last 4-D tensor it depends on (the patch embedding), the
    ``n_extra = T - gh * gw`` tokens before the patches (class, distillation, register tokens) are dropped.
    When no 4-D tensor comes before it (a patch embedding that is one custom layer, as keras-hub's ViT's),
    the grid is read from the token count and the image's size ``spatial`` (:func:`grid_from_size`).
    None for any other layer; a clear error when the grid cannot be read.

    Examples:
        >>> import keras
        >>> from kerasxai.probe.traced import traced
        >>> inp = keras.Input((32, 32, 3))
        >>> patches = keras.layers.Conv2D(8, 8, strides=8)(inp)
        >>> tokens = keras.layers.Dense(8, name="mix")(keras.layers.Reshape((16, 8))(patches))
        >>> calls = traced(keras.Model(inp, tokens)).calls
        >>> token_grid(next(c for c in calls if c.op.name == "mix"), calls, 2)
        (4, 4, 0)
    """
    shape = tuple(getattr(call.output, "shape", ()))
    if input_rank != 2 or len(shape) != 3:
        return None
    feeding = graph.upstream(calls, call.output)
    grids = [c for c in calls if id(c) in feeding and c is not call and len(getattr(c.output, "shape", ())) == 4]
    tokens = shape[1]
    if grids:
        patch = grids[-1]
        first = output_layout(patch, calls) == CHANNELS_FIRST
        gh, gw = tuple(patch.output.shape)[2:4] if first else tuple(patch.output.shape)[1:3]
        if None not in (gh, gw, tokens) and 0 < gh * gw <= tokens:
            return int(gh), int(gw), int(tokens - gh * gw)
    if grid_from_size(tokens, spatial) is not None:  # no patch embedding in the graph, or one that does not fit
        return grid_from_size(tokens, spatial)
    raise ValueError(
        f"Layer '{call.qualified_name}' outputs a token sequence {shape}, but its patch grid cannot be read from the "
        "model (a 4-D patch embedding before it, whose grid's patches are the last tokens, or a token count that "
        "fits one grid of square patches of the image): give it, layer=kerasxai.tokens('"
        f"{call.qualified_name}', grid=(rows, columns), extra=n) (n: the tokens before the patches), or explain "
        "a layer with spatial axes (kerasxai.explainable_layers(model)).")


def output_calls(calls, outputs) -> set:
    """``id`` of the calls that make a model output: its last layer, and what an activation, dropout or
    reshaping after it hides (a segmenter's ``Conv2D(K, 1, "softmax")`` head): never a default layer, whose
    gradient the head's own logits (its activation left out) would bypass."""
    made_by = producers(calls)
    found = set()
    for tensor in keras.tree.flatten(outputs):
        call = made_by.get(id(tensor))
        while call is not None:
            found.add(id(call))
            if not isinstance(call.op, PASS_THROUGH + (keras.layers.Activation, keras.layers.Softmax)) or not call.inputs:
                break
            call = made_by.get(id(call.inputs[0]))
    return found


def default_call(calls, model, route: Route, outputs=(), rank=None) -> graph.Call:
    """The last explainable call on ``route`` of a layer called once on it, not a layer that makes an
    output (``outputs``: the traced outputs), with as many spatial axes as the input (``rank``) when one
    has (a detector's per-anchor reshapes come after its last feature map); a clear error otherwise."""
    heads = output_calls(calls, outputs)
    candidates = [c for c in explainable(calls) if id(c) not in heads]
    attention = [c for c in calls if not c.is_model and isinstance(c.op, _L.MultiHeadAttention) and c in route]
    if attention and rank == 2:  # a vision transformer: the tokens the last attention block reads (its first norm)
        query = producers(calls).get(id(attention[-1].inputs[0]))
        if query is not None and query in candidates:
            return query
    if not candidates:
        raise ValueError(
            f"Model '{model.name}' has no layer whose output has spatial axes (batch, spatial axes..., "
            "channels) larger than 1, so CAM methods have nothing to explain. The gradient methods "
            "(saliency, smoothgrad, integrated_gradients) work on any model."
        )
    on_route = [c for c in candidates if c in route]
    times = collections.Counter(id(c.op) for c in calls if not c.is_model and c in route)
    once = [c for c in on_route if times[id(c.op)] == 1]
    if rank is not None:
        once = [c for c in once if len(spatial_shape(c.output) or ()) == rank] or once
    if once:  # a padding's map has an artificial border: the layer before it (e.g. MobileNet's *_pad) is meant
        return ([c for c in once if not isinstance(_unwrapped(c.op), PADDING)] or once)[-1]
    if on_route:
        last = on_route[-1]
        raise ValueError(
            f"Every layer with spatial axes between input '{route.input_name}' and output '{route.output_name}' "
            f"of model '{model.name}' is called more than once on the way, and its activations and gradients "
            f"differ from call to call. Name a layer and the call to explain, e.g. layer=('{last.op.name}', "
            f"{last.index}) (the call index, 0-based, in the order of the graph)."
        )
    raise ValueError(
        f"No layer with spatial axes lies between input '{route.input_name}' and output '{route.output_name}' "
        f"of model '{model.name}', so CAM methods have nothing to explain there. The gradient methods "
        "(saliency, smoothgrad, integrated_gradients) work; or choose another input= or output= ."
    )


def check_channels_last(call: graph.Call):
    """A subclassed model's layer must be channels-last (without a graph its layout cannot be followed)."""
    if own_data_format(call.op) == "channels_first":
        raise ValueError(
            f"Layer '{call.qualified_name}' uses data_format='channels_first' in a subclassed model, whose tensors' "
            "channel axis kerasxai cannot follow without a graph. Wrap its layers in a Functional model "
            "(channels_first Functional and Sequential models are explained as they are)."
        )


CHANNELS_FIRST, CHANNELS_LAST = "channels_first", "channels_last"


def own_data_format(op):
    """The data format a layer states itself: its ``data_format``, or a BatchNormalization over axis 1."""
    fmt = getattr(op, "data_format", None)
    if fmt in (CHANNELS_FIRST, CHANNELS_LAST):
        return fmt
    if isinstance(op, _L.BatchNormalization):
        axis = op.axis if isinstance(op.axis, (list, tuple)) else [op.axis]
        return CHANNELS_FIRST if list(axis) == [1] else CHANNELS_LAST
    return None


# Keras ops that move axes in a way the graph does not say (a Permute's dims say it): past them, the
# layout is the default
_MOVES_AXES = frozenset({"Transpose", "Moveaxis", "Swapaxes"})


def output_layout(call, calls) -> str:
    """``"channels_first"`` or ``"channels_last"``: the layout of ``call``'s output.

    Read from the layer itself (a conv's or pooling's ``data_format``, a BatchNormalization's
    axis) or, for a layer that states none (an Activation, an Add, Dropout...), from the
    nearest layer before it that does.
    """
    made_by = producers(calls)
    seen, current = set(), call
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        fmt = own_data_format(current.op)
        if fmt is not None:
            return fmt
        sources = keras.tree.flatten(current.inputs)
        before = made_by.get(id(sources[0])) if sources else None
        if isinstance(current.op, keras.layers.Permute):  # where it puts the channel axis of its input
            return _permuted(current.op.dims, output_layout(before, calls) if before is not None else CHANNELS_LAST)
        if type(current.op).__name__ in _MOVES_AXES:  # axes moved another way: the default
            return CHANNELS_LAST
        current = before
    return CHANNELS_LAST


def _permuted(dims, layout: str) -> str:
    """The layout after ``Permute(dims)`` of a tensor in ``layout`` (channels-last unless the channels land first)."""
    channels = 1 if layout == CHANNELS_FIRST else len(dims)
    return CHANNELS_FIRST if len(dims) > 1 and list(dims).index(channels) == 0 else CHANNELS_LAST


def input_layout(calls, input_tensor) -> str:
    """The layout of an image input: the data format of the first layer on its path that states one,
    read back through the ``Permute`` layers on the way (a ``Permute`` into a channels_first base leaves
    the input channels-last); other layers (a ``Lambda``, a ``Rescaling``) keep the axes where they are."""
    rank = len(input_tensor.shape) - 1
    # each reached tensor: the input's axis (1-based, batch left out) at each of its axes, None past a reshape
    reached = {id(input_tensor): tuple(range(1, rank + 1))}
    for c in calls:
        inputs = [reached[id(t)] for t in keras.tree.flatten(c.inputs) if id(t) in reached]
        if c.is_model or not inputs:
            continue
        axes = inputs[0]
        fmt = own_data_format(c.op)
        if fmt is not None and len(getattr(c.output, "shape", ())) >= 3:
            if axes is None:
                return fmt
            channels = axes[0] if fmt == CHANNELS_FIRST else axes[-1]  # the input's axis the layer reads as channels
            return CHANNELS_FIRST if channels == 1 and rank > 1 else CHANNELS_LAST
        if type(c.op).__name__ in _MOVES_AXES:
            continue
        for t in keras.tree.flatten(c.output):
            if isinstance(c.op, keras.layers.Permute) and axes is not None:
                reached[id(t)] = tuple(axes[d - 1] for d in c.op.dims)
            else:
                reached[id(t)] = axes if axes is not None and len(t.shape) - 1 == len(axes) else None
    return CHANNELS_LAST


def producers(calls) -> dict:
    """``id(tensor) -> call`` that produced it (leaf layers only)."""
    return {id(c.output): c for c in calls if not c.is_model}


def feeding_global_average_pool(calls):
    """The layer whose output feeds the last global-average-pooling layer (through dropout), or None."""
    made_by = producers(calls)
    for c in reversed(calls):
        if isinstance(c.op, GLOBAL_AVERAGE):
            src = made_by.get(id(c.inputs[0]))
            while src is not None and isinstance(src.op, PASS_THROUGH):
                src = made_by.get(id(src.inputs[0]))
            return src.op if src is not None else None
    return None


def cam_head(calls, layer_call, head_call, layer_name: str):
    """The classifier ``Dense`` fed by global average pooling of ``layer_call``'s output.

    CAM (Zhou et al. 2016) needs ``layer -> GlobalAveragePooling -> [Dropout/Flatten] -> Dense``,
    where the Dense is the explained output's head (``head_call``). Raises ``ValueError`` otherwise.
    """
    consumers: dict = {}
    for c in calls:
        if not c.is_model:
            for t in c.inputs:
                consumers.setdefault(id(t), []).append(c)
    # only what leads to the explained output matters (one pooling may feed several heads)
    feeds = graph.upstream(calls, head_call.output) if head_call is not None else set()
    call, chain, pooled = layer_call, [], False
    while True:
        nxt = [c for c in consumers.get(id(call.output), []) if id(c) in feeds]
        if len(nxt) != 1:
            chain.append(f"{len(nxt)} layers ({', '.join(c.op.name for c in nxt[:3])})" if nxt else "nothing")
            break
        call = nxt[0]
        chain.append(type(call.op).__name__)
        if isinstance(call.op, PASS_THROUGH) or (
            isinstance(call.op, _L.Activation) and graph_activation_name(call.op) == "linear"
        ):
            continue
        if isinstance(call.op, GLOBAL_AVERAGE) and not pooled:
            pooled = True
            continue
        if pooled and isinstance(call.op, (_L.Flatten, _L.Reshape)):
            continue
        if pooled and isinstance(call.op, _L.Dense) and call is head_call:
            return call.op
        break
    seen = " -> ".join(chain[:4])
    raise ValueError(
        f"CAM needs layer '{layer_name}' to feed global average pooling and then the explained "
        f"output's classifier Dense layer; here it feeds {seen}. Use gradcam(), which works on any "
        "model (on a GAP -> Dense model it equals CAM, up to ReLU and scale)."
    )


def graph_activation_name(op) -> str | None:
    """``"softmax"``, ``"sigmoid"``, ``"relu"``, ``"linear"``... for a layer or op that applies one, else None."""
    if isinstance(op, _L.Softmax) or (not isinstance(op, _L.Layer) and type(op).__name__ == "Softmax"):
        return "softmax"
    if not isinstance(op, _L.Layer) and type(op).__name__ in ("Sigmoid", "LogSoftmax"):
        return "sigmoid" if type(op).__name__ == "Sigmoid" else "log_softmax"
    activation = getattr(op, "activation", None)
    if activation is None:
        return None
    # the function's own name (keras.activations.softmax is "softmax"); serialize() would import
    # TensorFlow on the other backends
    return getattr(activation, "__name__", None)
