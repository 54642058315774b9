"""What a model's forward pass costs (kerasxai.probe.cost): the multiply-adds counted by hand, and the models it
declines (those XLA's CPU code was measured slow on, or whose shapes it cannot know)."""

import keras
import pytest
from keras import layers

from kerasxai.probe import get_probe
from kerasxai.probe.cost import xla_macs


def test_the_multiply_adds_are_counted_as_by_hand():
    model = keras.Sequential([keras.Input((20, 24, 3)), layers.Conv2D(5, (3, 2), strides=2, activation="relu"),
                              layers.MaxPooling2D(), layers.Conv2D(7, 3, padding="same"), layers.Dropout(0.5),
                              layers.Flatten(), layers.Dense(4), layers.Activation("softmax")])
    # 9x12 positions * 3*2*3 * 5; then 4x6 positions * 3*3*5 * 7; then 4*6*7 inputs * 4 units
    assert xla_macs(model) == 9 * 12 * 18 * 5 + 4 * 6 * 45 * 7 + 168 * 4


def test_vgg16_counts_its_published_multiply_adds():
    """15.5 G multiply-adds per 224x224 image (Simonyan and Zisserman's VGG16), nested in a fine-tuned head too."""
    base = keras.applications.VGG16(weights=None)
    assert xla_macs(base) == pytest.approx(15.47e9, rel=2e-3)
    conv = keras.applications.VGG16(weights=None, include_top=False, input_shape=(150, 150, 3))
    head = keras.Sequential([keras.Input((150, 150, 3)), conv, layers.Flatten(), layers.Dense(256, activation="relu"),
                             layers.Dropout(0.5), layers.Dense(1, activation="sigmoid")])
    assert xla_macs(head) == xla_macs(conv) + 4 * 4 * 512 * 256 + 256


def test_a_shared_layer_counts_per_call_and_a_nested_base_at_the_outer_size():
    same = layers.Conv2D(4, 3, padding="same")
    inp = keras.Input((10, 10, 4))
    assert xla_macs(keras.Model(inp, same(same(inp)))) == 2 * 10 * 10 * 36 * 4
    base = keras.Sequential([keras.Input((None, None, 3)), layers.Conv2D(2, 1)])
    assert xla_macs(base) is None  # no size without the data
    inp = keras.Input((8, 6, 3))
    assert xla_macs(keras.Model(inp, base(inp))) == 8 * 6 * 3 * 2


def test_channels_first_counts_as_channels_last():
    def model(data_format):
        shape = (3, 16, 12) if data_format == "channels_first" else (16, 12, 3)
        return keras.Sequential([keras.Input(shape), layers.Conv2D(4, 3, data_format=data_format),
                                 layers.GlobalAveragePooling2D(data_format=data_format), layers.Dense(2)])

    assert xla_macs(model("channels_first")) == xla_macs(model("channels_last")) == 14 * 10 * 27 * 4 + 4 * 2


@pytest.mark.parametrize("kind", ["batchnorm", "depthwise", "separable", "grouped", "transposed", "op", "unknown",
                                  "own_activation", "float16", "quantized", "subclassed"])
def test_models_xla_was_not_measured_fast_on_are_declined(kind):
    """BatchNormalization (ResNet50) and depthwise convolutions (MobileNetV2) ran slower under XLA on a CPU without
    oneDNN; an op outside the measured kinds, an activation of the user's own (it may hold a py_function XLA
    cannot compile), 16-bit or quantized layers (measured in float32 only) or an input without a fixed size are
    declined too."""
    inp = keras.Input((None, None, 3) if kind == "unknown" else (16, 16, 3))
    x = layers.Conv2D(4, 3)(inp)
    if kind == "batchnorm":
        x = layers.BatchNormalization()(x)
    elif kind == "depthwise":
        x = layers.DepthwiseConv2D(3)(x)
    elif kind == "separable":
        x = layers.SeparableConv2D(4, 3)(x)
    elif kind == "grouped":
        x = layers.Conv2D(4, 3, groups=2)(x)
    elif kind == "transposed":
        x = layers.Conv2DTranspose(4, 3)(x)
    elif kind == "op":
        x = keras.ops.sin(x)
    elif kind == "own_activation":
        x = layers.Activation(lambda t: t * 2)(x)
    elif kind == "float16":
        x = layers.Conv2D(4, 3, dtype="mixed_float16")(x)
    model = keras.Model(inp, layers.Dense(2)(layers.GlobalAveragePooling2D()(x)))
    if kind == "subclassed":
        class Net(keras.Model):
            def __init__(self):
                super().__init__()
                self.conv, self.pool = layers.Conv2D(4, 3), layers.GlobalAveragePooling2D()

            def call(self, x):
                return self.pool(self.conv(x))

        model = Net()
        model(keras.ops.zeros((1, 16, 16, 3)))
    elif kind == "quantized":
        model.quantize("int8")
    assert xla_macs(model) is None and get_probe(model, ()).macs is None
    if kind in ("own_activation", "float16", "quantized", "subclassed"):  # the same model without it is counted
        assert kind == "subclassed" or xla_macs(keras.Model(inp, layers.Dense(2)(layers.GlobalAveragePooling2D()(
            layers.Conv2D(4, 3)(inp))))) == 14 * 14 * 27 * 4 + 4 * 2
