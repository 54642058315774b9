"""Keras 3 on every backend: the core tests under JAX and PyTorch, and the same maps from the same weights.

The TensorFlow run of the suite (the README's test command) runs these; each starts a
subprocess with ``KERAS_BACKEND`` set, as a user switching backends would.
"""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers

from tests import backend_maps

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORE = ["test_cams.py", "test_gradients.py", "test_more_methods.py", "test_targets.py", "test_maps.py",
        "test_models.py", "test_probe.py", "test_metrics.py", "test_predictions.py", "test_visualize.py",
        "test_embeddings.py", "test_threads.py"]
OTHER_BACKENDS = ("jax", "torch")
# The keras.applications families check the layer and logits found in their graphs, the same on every
# backend; compiling DenseNet121 or InceptionV3 under XLA alone takes minutes, so those run once, here.
# A reference written with tf.GradientTape on the model itself runs on TensorFlow only (the other
# backends check the same models against their channels_last twins).
DESELECT = "not keras_applications_families and not tape_over_the_channel_axis"

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="started from the TensorFlow run, which launches the other backends itself",
)


def _env(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_core_suite_runs_under(backend):
    """Every method on Functional, nested and Sequential models, targets, errors: the same test files."""
    files = [str(ROOT / "tests" / name) for name in CORE]
    result = subprocess.run([sys.executable, "-m", "pytest", *files, "-q", "-x", "-p", "no:cacheprovider", "-k", DESELECT],
                            cwd=ROOT, env=_env(backend), capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"KERAS_BACKEND={backend}:\n{result.stdout[-8000:]}\n{result.stderr[-3000:]}"
    assert " passed" in result.stdout.splitlines()[-1]


def _models():
    keras.utils.set_random_seed(51)
    inp = keras.Input((24, 24, 3))
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(inp)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    functional = keras.Model(inp, layers.Dense(4, activation="softmax")(layers.GlobalAveragePooling2D()(x)),
                             name="functional_gap")
    base_in = keras.Input((24, 24, 3))
    b = layers.Conv2D(5, 3, activation="relu", name="b1")(base_in)
    base = keras.Model(base_in, layers.Conv2D(6, 3, activation="relu", name="b2")(b), name="base")
    nested = keras.Sequential([keras.Input((24, 24, 3)), base, layers.Flatten(), layers.Dense(8, activation="relu"),
                               layers.Dense(1, activation="sigmoid")], name="nested_sigmoid")
    sequential = keras.Sequential([keras.Input((24, 24, 3)), layers.Conv2D(4, 3, name="c"), layers.ReLU(),
                                   layers.Flatten(), layers.Dense(3), layers.Softmax()], name="sequential")
    sig = keras.Input((50, 2))
    s = layers.Conv1D(6, 5, activation="relu", name="s1")(sig)
    signal = keras.Model(sig, layers.Dense(3, activation="softmax")(layers.Flatten()(s)), name="signal_1d")
    return {"functional_gap": functional, "nested_sigmoid": nested, "sequential": sequential, "signal_1d": signal}


def test_same_weights_give_the_same_maps_on_every_backend(tmp_path):
    models = _models()
    rng = np.random.default_rng(52)
    images = {name: rng.uniform(-1, 1, (3,) + tuple(m.inputs[0].shape[1:])).astype("float32") for name, m in models.items()}
    for name, model in models.items():
        model.save(tmp_path / f"{name}.keras")
    np.savez(tmp_path / "images.npz", **images)
    reference = backend_maps.compute(str(tmp_path), images)  # TensorFlow, in this process
    for backend in OTHER_BACKENDS:
        out = tmp_path / f"{backend}.npz"
        result = subprocess.run([sys.executable, str(ROOT / "tests" / "backend_maps.py"), str(tmp_path),
                                 str(tmp_path / "images.npz"), str(out)],
                                cwd=ROOT, env=_env(backend), capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-4000:]
        with np.load(out) as got:
            assert sorted(got.files) == sorted(reference)
            for key, expected in reference.items():
                tolerance = 1e-3 if key.endswith("/logits") else 1e-4
                assert np.isfinite(got[key]).all(), (backend, key)
                np.testing.assert_allclose(got[key], expected, atol=tolerance, err_msg=f"{backend}: {key}")
