"""Which layers can be explained, finding the one asked for, and CAM's classifier head.

A layer can be explained when its output has *spatial axes*: ``(batch,
spatial..., channels)`` with one (Conv1D: time), two (Conv2D: height, width)
or three (Conv3D: depth, height, width) spatial axes, not all of size 1, and
it is not a pooling layer. The default layer is the last such layer.
"""

from __future__ import annotations

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
        data_format: ``"channels_last"`` or ``"channels_first"`` (its channel axis; maps are
            ``(N, spatial...)`` either way).
    """

    name: str
    path: str
    output_shape: tuple
    kind: str
    data_format: str = "channels_last"

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
    return [c for c in calls if not c.is_model and is_spatial(c) and not isinstance(c.op, POOLING + (_L.InputLayer,))]


def infos(calls) -> list:
    """:class:`LayerInfo` of every explainable call."""
    return [LayerInfo(c.op.name, c.qualified_name, tuple(c.output.shape), type(c.op).__name__,
                      output_layout(c, calls)) for c in explainable(calls)]


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


def find_call(calls, layer, model) -> graph.Call:
    """The call of ``layer`` (a name, qualified name or Layer object); clear errors otherwise."""
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
        raise TypeError(f"layer must be a layer name, a keras Layer or None. Received: {layer!r}")
    if len(found) > 1:
        paths = sorted({c.qualified_name for c in found})
        raise ValueError(
            f"Layer '{found[0].op.name}' is called {len(found)} times in model '{model.name}' "
            f"({', '.join(paths)}); explain a layer that is called once, or use its qualified name "
            "if the names differ."
        )
    call = found[0]
    if not is_spatial(call) or isinstance(call.op, GLOBAL_POOLING):
        shape = tuple(getattr(call.output, "shape", ()))
        why = f"its output has shape {shape}"
        raise ValueError(
            f"Layer '{call.qualified_name}' cannot be explained: {why}, but a CAM method needs an output "
            "with spatial axes (batch, spatial axes..., channels) — e.g. a Conv1D, Conv2D or Conv3D "
            "output — not all of size 1." + _describe_choices(calls, call.op.name)
        )
    return call


def default_call(calls, model) -> graph.Call:
    """The last explainable call; a clear error for models without one."""
    candidates = explainable(calls)
    if not candidates:
        raise ValueError(
            f"Model '{model.name}' has no layer whose output has spatial axes (batch, spatial axes..., "
            "channels) larger than 1, so CAM methods have nothing to explain. The gradient methods "
            "(saliency, smoothgrad, integrated_gradients) work on any model."
        )
    return candidates[-1]


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
        current = made_by.get(id(sources[0])) if sources else None
    return CHANNELS_LAST


def input_layout(calls, input_tensor) -> str:
    """The layout of an image input: the data format of the first layer on its path that states one."""
    reached = {id(input_tensor)}
    for c in calls:
        if c.is_model or not any(id(t) in reached for t in keras.tree.flatten(c.inputs)):
            continue
        fmt = own_data_format(c.op)
        if fmt is not None and len(getattr(c.output, "shape", ())) >= 3:
            return fmt
        reached.update(id(t) for t in keras.tree.flatten(c.output))
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
    call, chain, pooled = layer_call, [], False
    while True:
        nxt = consumers.get(id(call.output), [])
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
    if not isinstance(op, _L.Layer) and type(op).__name__ == "Sigmoid":
        return "sigmoid"
    activation = getattr(op, "activation", None)
    if activation is None:
        return None
    # the function's own name (keras.activations.softmax is "softmax"); serialize() would import
    # TensorFlow on the other backends
    return getattr(activation, "__name__", None)
