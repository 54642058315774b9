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
        "test_embeddings.py", "test_threads.py", "test_graph.py", "test_perturbation.py", "test_regions.py",
        "test_overlap.py"]  # the attention methods' maps on every backend: backend_maps' "vit" and "vit_blocks"
OTHER_BACKENDS = ("jax", "torch")
# The keras.applications families check the layer and logits found in their graphs, the same on every
# backend; compiling DenseNet121 or InceptionV3 under XLA alone takes minutes, so those run once, here.
# A reference written with tf.GradientTape on the model itself runs on TensorFlow only (the other
# backends check the same models against their channels_last twins).
DESELECT = "not keras_applications_families and not tape_over_the_channel_axis and not tape_on_tensorflow"

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


def _graph_models():
    """The long tail (tests/test_graph.py checks each against a tape on TensorFlow): a conv applied twice, a
    layer reused in two branches, two image inputs, a siamese base, one pooling feeding two heads, channels_first."""
    keras.utils.set_random_seed(53)
    inp = keras.Input((12, 12, 3))
    shared = layers.Conv2D(4, 3, padding="same", activation="tanh", name="shared")
    x = shared(shared(layers.Conv2D(4, 3, padding="same", activation="tanh", name="c0")(inp)))
    shared_twice = keras.Model(inp, layers.Dense(3, name="head")(layers.Flatten()(x)), name="shared_twice")

    inp = keras.Input((10, 10, 2))
    shared = layers.Conv2D(3, 3, padding="same", activation="tanh", name="shared")
    pre = layers.Conv2D(2, 1, activation="tanh", name="pre")(inp)
    both = layers.Concatenate()([layers.Flatten()(shared(inp)), layers.Flatten()(shared(pre))])
    reused = keras.Model(inp, layers.Dense(4, activation="softmax", name="head")(both), name="reused_branches")

    a, b = keras.Input((16, 16, 3), name="a"), keras.Input((8, 8, 3), name="b")
    pa = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3, activation="tanh", name="ca")(a))
    pb = layers.GlobalAveragePooling2D()(layers.Conv2D(5, 3, activation="tanh", name="cb")(b))
    two_inputs = keras.Model([a, b], layers.Dense(3, name="head")(layers.Concatenate()([pa, pb])), name="two_inputs")

    left, right = keras.Input((8, 8, 1), name="left"), keras.Input((8, 8, 1), name="right")
    shared = layers.Conv2D(3, 3, activation="tanh", name="shared")
    both = layers.Concatenate()([layers.Flatten()(shared(left)), layers.Flatten()(shared(right))])
    siamese = keras.Model([left, right], layers.Dense(2, name="head")(both), name="siamese")

    inp = keras.Input((12, 12, 3))
    pooled = layers.GlobalAveragePooling2D(name="gap")(layers.Conv2D(4, 3, activation="relu", name="conv")(inp))
    two_heads = keras.Model(inp, {"cls": layers.Dense(3, activation="softmax", name="cls")(pooled),
                                  "aux": layers.Dense(2, name="aux")(pooled)}, name="two_heads")

    inp = keras.Input((3, 12, 12))
    x = layers.Conv2D(4, 3, padding="same", data_format="channels_first", activation="relu", name="c1")(inp)
    x = layers.Conv2D(5, 3, data_format="channels_first", name="c2")(x)
    x = layers.Activation("relu", name="act")(layers.BatchNormalization(axis=1, name="bn")(x))
    pooled = layers.GlobalAveragePooling2D(data_format="channels_first")(x)
    channels_first = keras.Model(inp, layers.Dense(3, activation="softmax")(pooled), name="channels_first")
    # beyond classification: a segmenter (per-pixel softmax) and a detector with two outputs (boxes, classes)
    inp = keras.Input((12, 12, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="tanh", name="enc")(inp)
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="dec")(x)
    segmenter = keras.Model(inp, layers.Conv2D(3, 1, activation="softmax", name="mask")(x), name="segmenter")
    inp = keras.Input((12, 12, 3))
    feat = layers.Conv2D(5, 3, strides=3, padding="same", activation="tanh", name="feat")(inp)
    detector = keras.Model(inp, {"cls": layers.Conv2D(3, 1, name="cls")(feat),
                                 "box": layers.Conv2D(4, 1, activation="tanh", name="box")(feat)}, name="detector")
    # vision transformers: attention at the top of the graph, and inside custom blocks (as keras-hub's ViT)
    from kerasxai.evaluation.synthetic import ClassToken, FirstToken, PositionEmbedding, small_vit

    vit = small_vit((16, 24, 3), 3, patch=4, dim=16, depth=2, heads=2, seed=55)
    inp = keras.Input((16, 16, 3))
    t = PositionEmbedding()(ClassToken()(layers.Reshape((16, 8))(layers.Conv2D(8, 4, strides=4)(inp))))
    t = layers.LayerNormalization()(backend_maps.Block(8, 2, name="b1")(backend_maps.Block(8, 2, name="b0")(t)))
    vit_blocks = keras.Model(inp, layers.Dense(3, activation="softmax")(FirstToken()(t)), name="vit_blocks")
    for model in (vit, vit_blocks):  # position embeddings and class tokens away from their initial values
        for w in model.weights:
            if "token" in w.path or "position" in w.path:
                w.assign(np.random.default_rng(56).normal(0, 0.5, tuple(w.shape)).astype("float32"))
    models = {"vit": vit, "vit_blocks": vit_blocks, "shared_twice": shared_twice, "reused_branches": reused, "two_inputs": two_inputs,
              "siamese": siamese, "two_heads": two_heads, "channels_first": channels_first,
              "segmenter": segmenter, "detector": detector}
    rng = np.random.default_rng(54)
    images = {}
    for name, model in models.items():
        for t in model.inputs:
            key = name if len(model.inputs) == 1 else f"{name}.{t.name}"
            images[key] = rng.uniform(-1, 1, (3,) + tuple(t.shape[1:])).astype("float32")
    return models, images


def test_same_weights_give_the_same_maps_on_every_backend(tmp_path):
    models = _models()
    rng = np.random.default_rng(52)
    images = {name: rng.uniform(-1, 1, (3,) + tuple(m.inputs[0].shape[1:])).astype("float32") for name, m in models.items()}
    graph_models, graph_images = _graph_models()
    models.update(graph_models)
    images.update(graph_images)
    for name, model in models.items():
        model.save(tmp_path / f"{name}.keras")
    np.savez(tmp_path / "images.npz", **images)
    reference = backend_maps.compute(str(tmp_path), images)  # TensorFlow, in this process
    assert len(reference) > 60 and all(np.ptp(v) > 0 for k, v in reference.items() if not k.endswith("/logits"))
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
