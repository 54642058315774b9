"""The probe: one sub-model from a model's input to the explained layers and the logits.

Every method in kerasxai runs on a :class:`Probe`. It is built once per
(model, layers) and cached (weakly, on the model object), so a second call on
the same model and layer neither rebuilds the sub-model nor retraces its
compiled steps.

- *Logits* are the model's output with a final softmax or sigmoid left out,
  whether that activation belongs to the last ``Dense``/``Conv`` layer (then its
  kernel and bias are applied without it, sharing the layer's variables) or is
  a separate ``Activation``/``Softmax`` layer (then its input is taken).
- Layers inside nested models (a pretrained base inside a fine-tuned head) can
  be explained: the graph is re-run with nested models stepped into
  (see ``_graph.py``).
- The user's model is never modified: no attribute is set on it or its layers.

Example:
    >>> import keras, numpy as np
    >>> from kerasxai.probe import get_probe
    >>> model = keras.Sequential([keras.Input((32, 32, 3)),
    ...     keras.layers.Conv2D(4, 3, name="conv"), keras.layers.GlobalAveragePooling2D(),
    ...     keras.layers.Dense(3, activation="softmax")])
    >>> probe = get_probe(model)
    >>> probe.layer_names
    ['conv']
    >>> out = probe.gradients(np.zeros((2, 32, 32, 3), "float32"), target=1)
    >>> out.activations[0].shape, out.gradients[0].shape, out.logits.shape
    (TensorShape([2, 30, 30, 4]), TensorShape([2, 30, 30, 4]), TensorShape([2, 3]))
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import weakref

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kerasxai import _graph, targets as targets_lib

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "kerasxai needs the TensorFlow backend of Keras; "
        f"KERAS_BACKEND is '{keras.backend.backend()}'. Set KERAS_BACKEND=tensorflow."
    )

logger = logging.getLogger("kerasxai")

_POOLING = (
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalAveragePooling2D,
)
_PASS_THROUGH = (keras.layers.Dropout, keras.layers.SpatialDropout2D, keras.layers.Identity)
_SQUASHING = ("softmax", "sigmoid")


# --------------------------------------------------------------------------- layers


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """A layer that can be explained: 4-D output larger than 1x1, not a pooling layer.

    Attributes:
        name: the layer's own name (what ``layer=`` takes).
        path: the qualified name, nested models first (``"vgg16/block5_conv3"``).
        output_shape: the layer's output shape in the model, batch as ``None``.
        kind: the layer's class name.
    """

    name: str
    path: str
    output_shape: tuple
    kind: str


def _is_spatial(call: _graph.Call) -> bool:
    out = call.output
    if not hasattr(out, "shape") or len(out.shape) != 4:
        return False
    h, w = out.shape[1], out.shape[2]
    return not (h == 1 and w == 1)


def _explainable(calls) -> list:
    return [
        c
        for c in calls
        if not c.is_model
        and _is_spatial(c)
        and not isinstance(c.op, _POOLING + (keras.layers.InputLayer,))
    ]


def _trace_model(model, substitute=None):
    _check_model(model)
    inputs = keras.Input(shape=tuple(model.inputs[0].shape[1:]), dtype=model.inputs[0].dtype)
    outputs, calls = _graph.trace(model, inputs, substitute)
    return inputs, outputs, calls


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model. Received: {type(model).__name__}")
    try:
        model_inputs = model.inputs
    except (AttributeError, ValueError):
        model_inputs = None
    if not model_inputs:
        raise ValueError(
            f"Model '{model.name}' has not been built, so it has no input shape yet. "
            "Call it once on a batch (model(images)) or give it a keras.Input."
        )
    if len(model_inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"kerasxai explains models with one input and one output; '{model.name}' has "
            f"{len(model_inputs)} inputs and {len(model.outputs)} outputs."
        )


def _cached(model, key, build):
    """``build()`` once per (model, key), kept in the model's weak cache entry."""
    try:
        table = _PROBES.setdefault(model, {})
    except TypeError:  # an object that cannot be weakly referenced: no caching
        return build()
    if key not in table:
        table[key] = build()
    return table[key]


def explainable_layers(model) -> list:
    """Lists the layers of ``model`` that a CAM method can explain, in order.

    Nested models are searched too. The last entry is the default layer.

    Example:
        >>> import keras
        >>> from kerasxai import explainable_layers
        >>> model = keras.applications.VGG16(weights=None)
        >>> [info.name for info in explainable_layers(model)][-2:]
        ['block5_conv2', 'block5_conv3']
    """
    def build():
        _, _, calls = _trace_model(model)
        return [
            LayerInfo(c.op.name, c.qualified_name, tuple(c.output.shape), type(c.op).__name__)
            for c in _explainable(calls)
        ]

    return list(_cached(model, ("explainable_layers",), build))


def _describe_choices(calls, wanted: str) -> str:
    candidates = _explainable(calls)
    names = [c.op.name for c in candidates]
    convs = [c.op.name for c in candidates if "Conv" in type(c.op).__name__] or names
    close = difflib.get_close_matches(wanted, names, n=3)
    text = f" Did you mean {', '.join(repr(n) for n in close)}?" if close else ""
    shown = convs if len(convs) <= 30 else convs[:12] + ["..."] + convs[-12:]
    return (
        f"{text} Conv layers of this model: {', '.join(shown)}. "
        "kerasxai.explainable_layers(model) lists every layer that can be explained."
    )


def _find_call(calls, layer, model) -> _graph.Call:
    if isinstance(layer, str):
        found = [c for c in calls if c.op.name == layer or c.qualified_name == layer]
        if not found:
            raise ValueError(
                f"No layer named '{layer}' in model '{model.name}'."
                + _describe_choices(calls, layer)
            )
    elif isinstance(layer, keras.Operation):
        found = [c for c in calls if c.op is layer]
        if not found:
            raise ValueError(
                f"Layer '{layer.name}' is not part of model '{model.name}'."
                + _describe_choices(calls, layer.name)
            )
    else:
        raise TypeError(
            f"layer must be a layer name, a keras Layer or None. Received: {layer!r}"
        )
    if len(found) > 1:
        paths = sorted({c.qualified_name for c in found})
        raise ValueError(
            f"Layer '{found[0].op.name}' is called {len(found)} times in model "
            f"'{model.name}' ({', '.join(paths)}); explain a layer that is called once, "
            "or use its qualified name if the names differ."
        )
    call = found[0]
    if not _is_spatial(call) or isinstance(call.op, _POOLING[2:]):
        shape = tuple(getattr(call.output, "shape", ()))
        raise ValueError(
            f"Layer '{call.qualified_name}' cannot be explained: its output has shape "
            f"{shape}, but a CAM method needs a spatial 4-D output (batch, height, width, "
            "channels) larger than 1x1."
            + _describe_choices(calls, call.op.name)
        )
    return call


def cam_layer(model):
    """The layer whose output feeds the model's ``GlobalAveragePooling2D -> Dense`` head, or None.

    This is CAM's layer: in ``Sequential([VGG16(include_top=False), GlobalAveragePooling2D(),
    Dense(1)])`` it is ``block5_pool``, not the last conv layer.
    """

    def build():
        _, _, calls = _trace_model(model)
        producers = {id(c.output): c for c in calls if not c.is_model}
        for c in reversed(calls):
            if isinstance(c.op, keras.layers.GlobalAveragePooling2D):
                src = producers.get(id(c.inputs[0]))
                while src is not None and isinstance(src.op, _PASS_THROUGH):
                    src = producers.get(id(src.inputs[0]))
                return src.op if src is not None else None
        return None

    return _cached(model, ("cam_layer",), build)


def _default_call(calls, model) -> _graph.Call:
    candidates = _explainable(calls)
    if not candidates:
        raise ValueError(
            f"Model '{model.name}' has no layer with a spatial 4-D output larger than 1x1: "
            "CAM methods need a convolutional layer. saliency() works on any model."
        )
    return candidates[-1]


# --------------------------------------------------------------------------- logits


class _AffineWithoutActivation(keras.layers.Layer):
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
            y = ops.add(y, ops.reshape(layer.bias, (1,) * (len(y.shape) - 1) + (-1,)))
        return y

    def compute_output_shape(self, input_shape):
        return self.affine.compute_output_shape(input_shape)


def _activation_name(layer) -> str | None:
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    try:
        return keras.activations.serialize(activation)
    except (ValueError, TypeError):
        return getattr(activation, "__name__", None)


def _logits(outputs, calls):
    """Returns ``(logits_tensor, removed_activation, last_call)``."""
    producer = next(c for c in reversed(calls) if not c.is_model and c.output is outputs)
    layer = producer.op
    name = _activation_name(layer)
    if name not in _SQUASHING:
        return outputs, None, producer
    if isinstance(layer, (keras.layers.Activation, keras.layers.Softmax)):
        logits = producer.inputs[0]
        before = next((c for c in calls if not c.is_model and c.output is logits), producer)
        return logits, name, before
    conv = isinstance(layer, keras.layers.Layer) and hasattr(layer, "convolution_op")
    if isinstance(layer, keras.layers.Dense) or (
        conv and getattr(layer, "data_format", "channels_last") == "channels_last"
    ):
        return _AffineWithoutActivation(layer)(producer.inputs[0]), name, producer
    raise ValueError(
        f"The last layer '{layer.name}' ({type(layer).__name__}) applies {name}, and kerasxai "
        "cannot compute its logits. Pass logits=False to explain the "
        f"{name} output as it is (gradients saturate), or end the model with "
        f"Dense(...) followed by Activation('{name}')."
    )


# --------------------------------------------------------------------------- guided ReLUs


@tf.custom_gradient
def _guided_relu(x):
    def grad(dy):
        # Springenberg et al.: pass the gradient only where the input and the gradient are positive
        return dy * tf.cast(x > 0, dy.dtype) * tf.cast(dy > 0, dy.dtype)

    return tf.nn.relu(x), grad


class _GuidedReLU(keras.layers.Layer):
    """ReLU whose gradient is gated on positive input and positive gradient."""

    def call(self, x):
        return _guided_relu(x)

    def compute_output_shape(self, input_shape):
        return input_shape


def _is_plain_relu(layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return not layer.max_value and not layer.negative_slope and not layer.threshold
    return _activation_name(layer) == "relu"


def guided_substitute(layer):
    """For the guided trace: a callable that replaces ``layer``'s ReLU by a guided one, or None."""
    if isinstance(layer, (keras.layers.Activation, keras.layers.ReLU)) and _is_plain_relu(layer):
        return lambda x, **kwargs: _GuidedReLU(name=f"{layer.name}_guided")(x)
    affine = isinstance(layer, keras.layers.Dense) or (
        hasattr(layer, "convolution_op") and getattr(layer, "data_format", "") == "channels_last"
    )
    if affine and _is_plain_relu(layer):
        return lambda x, **kwargs: _GuidedReLU(name=f"{layer.name}_guided")(
            _AffineWithoutActivation(layer)(x)
        )
    return None


# --------------------------------------------------------------------------- probe


@dataclasses.dataclass
class Gradients:
    """What one forward and backward pass of a probe gives, all float32 tensors.

    Attributes:
        activations: one ``(N, h, w, K)`` tensor per explained layer.
        gradients: d(score)/d(activations), same shapes (or the input's shape
            ``(N, H, W, C)`` for ``Probe.input_gradients``).
        logits: ``(N, C)`` logits.
        scores: ``(N,)`` target score of each image.
        classes: ``(N,)`` target class of each image (``-1`` for a callable target).
    """

    activations: list
    gradients: list
    logits: tf.Tensor
    scores: tf.Tensor
    classes: tf.Tensor


def _callable_scorer(fn):
    def scorer(logits, classes):
        scores = tf.reshape(tf.cast(fn(logits), tf.float32), [-1])
        return scores, tf.fill(tf.shape(scores), targets_lib.PREDICTED)

    return scorer


class Probe:
    """A cached sub-model ``input -> [activations of each layer..., logits]``.

    Use :func:`get_probe` rather than this constructor, so that probes are
    shared between calls.

    Attributes:
        layer_names: qualified names of the explained layers (``"vgg16/block5_conv3"``).
        layers: the explained Keras layers.
        removed_activation: ``"softmax"``, ``"sigmoid"`` or ``None``: what was
            left out of the model's output to get the logits.
        input_shape: the model's input shape, batch as ``None``.
        submodel: the ``keras.Model`` itself, sharing the user's layers.
    """

    def __init__(self, model, layers=(None,), logits: bool = True, guided: bool = False):
        inputs, outputs, calls = _trace_model(model, guided_substitute if guided else None)
        layer_calls = [
            _default_call(calls, model) if layer is None else _find_call(calls, layer, model)
            for layer in layers
        ]
        self._calls = calls
        self._layer_calls = layer_calls
        if logits:
            logits_tensor, self.removed_activation, self._head_call = _logits(outputs, calls)
        else:
            logits_tensor, self.removed_activation = outputs, None
            self._head_call = next(c for c in reversed(calls) if not c.is_model)
        if len(logits_tensor.shape) < 2:
            raise ValueError(f"Model output has shape {logits_tensor.shape}; expected (batch, classes).")
        self.layers = [c.op for c in layer_calls]
        self.layer_names = [c.qualified_name for c in layer_calls]
        self.input_shape = tuple(inputs.shape)
        self.n_classes = logits_tensor.shape[-1] if len(logits_tensor.shape) == 2 else None
        self.submodel = keras.Model(
            inputs, [c.output for c in layer_calls] + [logits_tensor], name=f"{model.name}_probe"
        )
        if self.layer_names:
            logger.info("kerasxai: explaining %s at layer(s) %s", model.name, self.layer_names)
        self._steps: dict = {}
        self._callable_steps = weakref.WeakKeyDictionary()

    # ----------------------------------------------------------------- as a function

    @property
    def variables(self) -> list:
        """The Keras variables the probe reads (for :func:`kerasxai.backend.compile_step`)."""
        return list(self.submodel.variables)

    def call(self, inputs):
        """``inputs -> (activations, logits)`` in ``keras.ops``, not compiled, inference mode.

        For use inside your own compiled step (``kerasxai.backend.compile_step``):
        ``activations`` is a list with one tensor per explained layer, ``logits``
        the model's output with a final softmax/sigmoid left out.
        """
        outs = self.submodel(inputs, training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return list(outs[: len(self.layers)]), outs[-1]

    # ----------------------------------------------------------------- inputs

    def prepare(self, images):
        """Checks ``images`` against the model's input and returns ``(batch, was_single)``.

        ``images`` is ``(N, H, W, C)`` or one image ``(H, W, C)``, already
        preprocessed for the model.
        """
        x = tf.convert_to_tensor(images)
        if not x.dtype.is_floating:
            x = tf.cast(x, tf.float32)
        expected = self.input_shape
        single = len(x.shape) == len(expected) - 1
        if single:
            x = x[None]
        if len(x.shape) != len(expected) or any(
            e is not None and e != g for e, g in zip(expected[1:], x.shape[1:])
        ):
            shown = tuple(images.shape) if hasattr(images, "shape") else np.shape(images)
            want = "(N, " + ", ".join("any" if e is None else str(e) for e in expected[1:]) + ")"
            raise ValueError(
                f"images have shape {shown}, but the model expects a batch {want} "
                f"(or one image without the batch axis). Resize the images to the model's "
                "input size and give them the same number of channels."
            )
        return tf.cast(x, tf.float32), single

    def _classes(self, target, n_images):
        if callable(target):
            return None
        if self.n_classes is None:
            raise ValueError(
                "The model's output is not (batch, classes): give target as a callable "
                "logits -> one score per image."
            )
        return tf.constant(targets_lib.class_indices(target, n_images, self.n_classes))

    # ----------------------------------------------------------------- steps

    def _step(self, kind: str, target):
        """The compiled step for ``kind`` ("forward", "layers" or "input") and target."""
        if callable(target):
            table = self._callable_steps.setdefault(target, {})
            scorer = _callable_scorer(target)
        else:
            table, scorer = self._steps, targets_lib.class_scores
        if kind not in table:
            table[kind] = self._compile(kind, scorer)
        return table[kind]

    def _compile(self, kind, scorer):
        n_acts = len(self.layers)
        submodel = self.submodel
        x_spec = tf.TensorSpec((None,) + self.input_shape[1:], tf.float32)
        c_spec = tf.TensorSpec((None,), tf.int32)
        # autograph=False: the steps have no Python control flow on tensors to convert

        def run(x, classes):
            # Returns the activations in the model's compute dtype (float16 under
            # mixed precision): gradients must be taken on these, not on a cast.
            outs = submodel(x, training=False)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            logits = tf.cast(outs[-1], tf.float32)
            scores, used = scorer(logits, classes)
            return list(outs[:n_acts]), logits, scores, used

        def as_float32(tensors):
            return [tf.cast(t, tf.float32) for t in tensors]

        if kind == "forward":

            def forward(x, classes):
                acts, logits, scores, used = run(x, classes)
                return as_float32(acts), logits, scores, used

            return tf.function(forward, input_signature=[x_spec, c_spec], autograph=False)

        def with_gradients(x, classes):
            with tf.GradientTape() as tape:
                tape.watch(x)
                acts, logits, scores, used = run(x, classes)
            # Only the ops between the sources and the scores are differentiated:
            # for layer gradients nothing below the explained layers is back-propagated.
            sources = {"input": [x], "layers": acts, "both": acts + [x]}[kind]
            grads = tape.gradient(
                scores, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            return as_float32(acts), as_float32(grads), logits, scores, used

        return tf.function(with_gradients, input_signature=[x_spec, c_spec], autograph=False)

    def _run(self, kind, images, target):
        x, _ = self.prepare(images)
        classes = self._classes(target, x.shape[0])
        if classes is None:
            classes = tf.fill([tf.shape(x)[0]], targets_lib.PREDICTED)
        return x, self._step(kind, target)(x, classes)

    def forward(self, images, target=None) -> Gradients:
        """One compiled forward pass: activations, logits and target scores (no gradients)."""
        _, (acts, logits, scores, classes) = self._run("forward", images, target)
        return Gradients(acts, [], logits, scores, classes)

    def gradients(self, images, target=None) -> Gradients:
        """Activations of the explained layers and d(score)/d(activations), in one pass.

        Example:
            >>> import keras, numpy as np
            >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
            ...     keras.layers.Flatten(), keras.layers.Dense(2)])
            >>> out = get_probe(model).gradients(np.ones((1, 8, 8, 1), "float32"), target=0)
            >>> out.gradients[0].shape
            TensorShape([1, 6, 6, 2])
        """
        _, (acts, grads, logits, scores, classes) = self._run("layers", images, target)
        return Gradients(acts, grads, logits, scores, classes)

    def input_gradients(self, images, target=None) -> Gradients:
        """d(score)/d(input) in one pass; ``gradients`` holds one ``(N, H, W, C)`` tensor."""
        _, (acts, grads, logits, scores, classes) = self._run("input", images, target)
        return Gradients(acts, grads, logits, scores, classes)

    def all_gradients(self, images, target=None) -> Gradients:
        """Layer and input gradients from one backward pass.

        ``gradients`` holds one tensor per explained layer, then d(score)/d(input).
        """
        _, (acts, grads, logits, scores, classes) = self._run("both", images, target)
        return Gradients(acts, grads, logits, scores, classes)

    def tracing_count(self) -> int:
        """How many times this probe's compiled steps were traced (for tests)."""
        steps = list(self._steps.values())
        for table in self._callable_steps.values():
            steps.extend(table.values())
        return sum(s.experimental_get_tracing_count() for s in steps)

    # ----------------------------------------------------------------- CAM head

    def cam_head(self):
        """The classifier ``Dense`` layer fed by global average pooling of the explained layer.

        CAM (Zhou et al. 2016) is defined for models whose explained layer feeds
        ``GlobalAveragePooling2D`` and then the classifier ``Dense``
        (dropout in between is allowed). Raises ``ValueError`` otherwise.
        """
        consumers: dict = {}
        for c in self._calls:
            if c.is_model:
                continue
            for t in c.inputs:
                consumers.setdefault(id(t), []).append(c)
        call = self._layer_calls[0]
        chain, pooled = [], False
        while True:
            nxt = consumers.get(id(call.output), [])
            if len(nxt) != 1:
                chain.append(
                    f"{len(nxt)} layers ({', '.join(c.op.name for c in nxt[:3])})" if nxt else "nothing"
                )
                break
            call = nxt[0]
            chain.append(type(call.op).__name__)
            if isinstance(call.op, _PASS_THROUGH) or (
                _activation_name(call.op) == "linear" and isinstance(call.op, keras.layers.Activation)
            ):
                continue
            if isinstance(call.op, keras.layers.GlobalAveragePooling2D) and not pooled:
                pooled = True
                continue
            if pooled and isinstance(call.op, (keras.layers.Flatten, keras.layers.Reshape)):
                continue
            if pooled and isinstance(call.op, keras.layers.Dense) and call is self._head_call:
                return call.op
            break
        seen = " -> ".join(chain[:4])
        raise ValueError(
            f"CAM needs layer '{self.layer_names[0]}' to feed GlobalAveragePooling2D and then "
            f"the model's classifier Dense layer; here it feeds {seen}. Use gradcam(), which "
            "works on any model (on a GAP -> Dense model it equals CAM, up to ReLU and scale)."
        )


# --------------------------------------------------------------------------- cache

_PROBES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _layer_key(layer):
    if layer is None or isinstance(layer, str):
        return layer
    return ("layer", id(layer))  # the model holds its layers, so their ids are stable


def get_probe(model, layer=None, *, logits: bool = True, guided: bool = False) -> Probe:
    """Returns the cached :class:`Probe` of ``model`` for ``layer``, building it once.

    Args:
        model: a Functional or Sequential Keras model (nested models allowed).
        layer: a layer name (searched in nested models too; ``"base/name"`` also
            works), a Layer object, ``None`` for the default layer (the last one
            with a spatial output larger than 1x1 that is not pooling), a list of
            those for several layers, or ``()`` for no layer (input gradients only).
        logits: leave out a final softmax/sigmoid (default) or explain the
            model's output as it is.
        guided: a probe whose ReLUs back-propagate only positive gradients
            through positive inputs (guided backpropagation); the user's layers
            are called as they are, only the ReLU step is replaced in the probe.

    Example:
        >>> import keras
        >>> model = keras.applications.VGG16(weights=None)
        >>> get_probe(model).layer_names
        ['block5_conv3']
        >>> get_probe(model) is get_probe(model)
        True
    """
    layers = tuple(layer) if isinstance(layer, (list, tuple)) else (layer,)
    key = (tuple(_layer_key(item) for item in layers), logits, guided)
    return _cached(model, key, lambda: Probe(model, layers, logits=logits, guided=guided))
