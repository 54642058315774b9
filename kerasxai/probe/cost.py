"""What a model's forward pass costs, where that decides how its steps are compiled (:func:`xla_macs`).

On a CPU without oneDNN, TensorFlow's XLA code was faster than its own kernels for large dense convolutions
(VGG16 and VGG19 at 224x224, batch 8: 0-9 % over a session's first seven calls, its compile included) and
4-7x slower for depthwise convolutions (MobileNetV2, EfficientNetB0); with BatchNormalization (ResNet50) or
small batches it lost too. :func:`xla_macs` says whether a model is of the first kind, and how big it is;
:mod:`kerasxai.backend.tensorflow` decides with it.
"""

from __future__ import annotations

import math

from keras import activations, layers

from kerasxai.probe import traced as traced_lib
from kerasxai.probe.graph import is_graph_model

# Layers XLA's CPU code was measured as fast on: dense (not depthwise, separable, grouped or transposed)
# convolutions and Dense, which do the work, and layers that do next to none.
_COUNTED = (layers.Conv1D, layers.Conv2D, layers.Conv3D, layers.Dense)
_LIGHT = (layers.InputLayer, layers.Activation, layers.ReLU, layers.Dropout, layers.Flatten, layers.Reshape,
          layers.Rescaling, layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D, layers.AveragePooling1D,
          layers.AveragePooling2D, layers.AveragePooling3D, layers.GlobalAveragePooling1D,
          layers.GlobalAveragePooling2D, layers.GlobalAveragePooling3D, layers.GlobalMaxPooling1D,
          layers.GlobalMaxPooling2D, layers.GlobalMaxPooling3D)


def xla_macs(model, explained_input: int = 0) -> float | None:
    """The multiply-adds of ``model``'s forward pass per example, if every layer is of a kind XLA's CPU code was
    measured as fast on (dense convolutions, Dense, pooling, Keras's own activations, reshapes, computed in
    float32; nested Functional and Sequential models stepped into, a shared layer counted per call); else
    ``None`` (BatchNormalization, a depthwise convolution, a layer or op of another kind, an activation of your
    own, a quantized or 16-bit layer, a subclassed model, or a size not fixed by the model's inputs).

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3),
        ...                           keras.layers.Flatten(), keras.layers.Dense(2)])
        >>> xla_macs(model)  # 30*30 positions * 3*3*3 * 8 filters + 7200 * 2
        208800.0
        >>> xla_macs(keras.Sequential([keras.Input((32, 32, 3)), keras.layers.DepthwiseConv2D(3)])) is None
        True
    """
    if not is_graph_model(model):
        return None
    total = 0.0
    for call in traced_lib.traced(model, explained_input).calls:  # the model's own trace, cached with it
        layer = call.op
        if call.is_model:
            continue
        if getattr(layer, "quantization_mode", None) or getattr(layer, "compute_dtype", "float32") != "float32":
            return None  # measured in float32 only; and a 16-bit step's lead is kept (kerasxai.backend.tensorflow)
        if not _keras_activation(layer):
            return None  # an activation of your own may hold anything (a py_function XLA cannot compile)
        if isinstance(layer, _LIGHT):
            continue
        if not isinstance(layer, _COUNTED) or getattr(layer, "groups", 1) != 1:
            return None
        shape = tuple(call.output.shape)
        if any(d is None for d in shape[1:]):
            return None
        # per output position: Dense's kernel is (inputs, units), a convolution's (*window, inputs, filters)
        positions = shape[2:] if getattr(layer, "data_format", None) == "channels_first" else shape[1:-1]
        total += math.prod(positions) * math.prod(layer.kernel.shape)
    return float(total)


def _keras_activation(layer) -> bool:
    fn = getattr(layer, "activation", None)
    return fn is None or getattr(activations, getattr(fn, "__name__", ""), None) is fn


__all__ = ["xla_macs"]

