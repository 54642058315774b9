"""Tiny models for the tests: 32x32 inputs, fixed seeds, built in seconds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras import layers  # noqa: E402


def conv_stack(name="features", filters=(6, 8), activation="relu", input_shape=(32, 32, 3)):
    """A small Functional conv base: conv1 -> pool -> conv2 (4-D output)."""
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(filters[0], 3, padding="same", activation=activation, name="conv1")(inputs)
    x = layers.MaxPooling2D(name="pool1")(x)
    x = layers.Conv2D(filters[1], 3, padding="same", activation=activation, name="conv2")(x)
    return keras.Model(inputs, x, name=name)


# The README's command (``-n 2 --dist worksteal``) gives each of two worker processes half of the tests, in
# collection order, and lets one that is idle take the second half of the other's pending tests. The files that
# take longest open each half, so that neither runs alone at the end: the other backends' core suites and the
# maps compared across backends (15 minutes on 2 cores) and Ray's pipeline open the first half; the notebooks,
# the command line and the demo (15 minutes) the second. Within a file the order is unchanged.
_FIRST_HALF = ("test_backends.py", "test_pipeline.py")
_SECOND_HALF = ("test_notebooks.py", "test_cli.py", "test_demo.py")


def pytest_collection_modifyitems(config, items):
    def of(names):
        return sorted((i for i in items if i.path.name in names), key=lambda i: names.index(i.path.name))

    first, second = of(_FIRST_HALF), of(_SECOND_HALF)
    rest = [i for i in items if i.path.name not in _FIRST_HALF + _SECOND_HALF]
    fill = max(0, len(items) // 2 - len(first))  # the second half starts at len(items) // 2
    items[:] = first + rest[:fill] + second + rest[fill:]


@pytest.fixture(autouse=True, scope="session")
def _no_switch_to_xla_mid_session():
    """On a CPU without oneDNN a TensorFlow step times XLA from its eighth call and may switch to it
    (kerasxai.backend.tensorflow). The session's shared models are called by many tests, so which test
    meets the switch would depend on the order, and plain and XLA agree to about 1e-6, while references
    here are compared at 1e-7. The rule is pinned to "plain, nothing timed"; tests/test_xla.py runs the
    switch itself (its steps name their schedule, and one test sets the rule back)."""
    if keras.backend.backend() == "tensorflow":
        from kerasxai.backend import tensorflow as tf_backend

        if tf_backend.measuring() == "late":
            tf_backend._MEASURING[0] = "never"
    yield


@pytest.fixture(scope="session")
def images():
    return np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 3)).astype("float32")


@pytest.fixture(scope="session")
def flatten_model():
    """Functional: conv1 -> pool1 -> conv2 -> Flatten -> Dense(4, softmax)."""
    keras.utils.set_random_seed(1)
    base = conv_stack()
    x = layers.Flatten(name="flatten")(base.output)
    out = layers.Dense(4, activation="softmax", name="predictions")(x)
    return keras.Model(base.input, out, name="flat_net")


@pytest.fixture(scope="session")
def gap_model():
    """Functional: convs -> GlobalAveragePooling2D -> Dropout -> Dense(5, softmax): CAM applies."""
    keras.utils.set_random_seed(2)
    base = conv_stack()
    x = layers.GlobalAveragePooling2D(name="gap")(base.output)
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(5, activation="softmax", name="predictions")(x)
    return keras.Model(base.input, out, name="gap_net")


@pytest.fixture(scope="session")
def nested_sequential():
    """The fine-tune shape: Sequential([base, Flatten, Dense(16), Dense(1, sigmoid)]), no Input."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            conv_stack(name="base"),
            layers.Flatten(),
            layers.Dense(16, activation="relu"),
            layers.Dense(1, activation="sigmoid", name="out"),
        ],
        name="finetuned",
    )
    model(np.zeros((1, 32, 32, 3), "float32"))  # built by calling once
    return model


@pytest.fixture(scope="session")
def nested_functional():
    """Functional head around a called base: base(x, training=False) -> GAP -> Dense(3) -> Softmax layer."""
    keras.utils.set_random_seed(4)
    base = conv_stack(name="base")
    inputs = keras.Input((32, 32, 3))
    x = base(inputs, training=False)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(3, name="logits")(x)
    out = layers.Softmax()(x)
    return keras.Model(inputs, out, name="nested_head")
