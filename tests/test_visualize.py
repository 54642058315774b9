"""Activation maximization: objectives and gradients by hand, the optimisation, its figures, the command."""

import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
from keras import layers
from PIL import Image

import kerasxai
from kerasxai.visualize import param as param_lib
from kerasxai.visualize import transforms as transforms_lib
from kerasxai.visualize.optimize import objective_gradients, visualize_activation
from kerasxai.visualize.preprocessing import to_model_input

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def linear_model():
    """Input(4, 4, 3) -> 1x1 Conv2D(2) (linear) -> GAP -> Dense(3, softmax), with known weights."""
    inputs = keras.Input((4, 4, 3))
    x = layers.Conv2D(2, 1, name="conv")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs, name="linear_net")
    w = np.array([[1.0, -2.0], [0.5, 0.0], [-1.0, 3.0]], "float32")  # (3 colours, 2 filters)
    b = np.array([0.25, -0.5], "float32")
    v = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.5]], "float32")  # (2 filters, 3 classes)
    c = np.array([0.0, 0.1, 0.2], "float32")
    model.get_layer("conv").set_weights([w.reshape(1, 1, 3, 2), b])
    model.get_layer("head").set_weights([v, c])
    return model, w, b, v, c


def test_channel_objective_and_gradient_by_hand(linear_model):
    model, w, b, _, _ = linear_model
    images = np.random.default_rng(0).random((2, 4, 4, 3)).astype("float32")
    scores, grads = objective_gradients(model, images, "conv", units=[0, 1], input_range=(0, 1))
    means = images.mean(axis=(1, 2))  # (2, 3)
    np.testing.assert_allclose(scores, [means[0] @ w[:, 0] + b[0], means[1] @ w[:, 1] + b[1]], rtol=1e-5)
    # d mean_ij(x_ij . w_k) / d x_ijc = w_ck / 16, the same at every pixel
    np.testing.assert_allclose(grads[0], np.broadcast_to(w[:, 0] / 16, (4, 4, 3)), rtol=1e-5)
    np.testing.assert_allclose(grads[1], np.broadcast_to(w[:, 1] / 16, (4, 4, 3)), rtol=1e-5)


def test_logit_objective_leaves_softmax_out_and_follows_preprocessing(linear_model):
    model, w, b, v, c = linear_model
    images = np.random.default_rng(1).random((1, 4, 4, 3)).astype("float32")
    scores, grads = objective_gradients(model, images, None, units=2, input_range=(-1, 1))
    x = 2 * images - 1  # what the model is fed
    logits = (x.mean(axis=(1, 2)) @ w + b) @ v + c
    np.testing.assert_allclose(scores, logits[:, 2], rtol=1e-5)
    # chain rule through the input range: d x / d image = 2
    np.testing.assert_allclose(grads[0], np.broadcast_to(2 * (w @ v[:, 2]) / 16, (4, 4, 3)), rtol=1e-5)


def test_model_preprocessing_is_applied_as_keras_applications_does():
    rng = np.random.default_rng(2)
    images = rng.random((2, 5, 5, 3)).astype("float32")
    for family in ("vgg16", "resnet", "mobilenet_v2", "densenet", "inception_v3", "efficientnet"):
        fn = to_model_input(None, family)
        expected = getattr(keras.applications, family).preprocess_input(images * 255.0)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(fn(images)), expected, rtol=1e-5, atol=1e-3)
    vgg = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=2)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(to_model_input(vgg)(images)),
                               keras.applications.vgg16.preprocess_input(images * 255.0), rtol=1e-5, atol=1e-3)


def test_warp_translates_and_rotates_exactly():
    images = np.random.default_rng(3).random((1, 6, 6, 2)).astype("float32")
    one_pixel = np.array([[1, 0, 0, 1, 1 / 6, 0]], "float32")  # read one pixel to the right
    shifted = keras.ops.convert_to_numpy(transforms_lib.warp(images, one_pixel, (6, 6)))
    np.testing.assert_allclose(shifted[:, :, :5], images[:, :, 1:], atol=1e-6)
    np.testing.assert_allclose(shifted[:, :, 5], images[:, :, 4], atol=1e-6)  # mirrored edge
    quarter = np.array([[0, -1, 1, 0, 0, 0]], "float32")  # out[i, j] = image[j, n - 1 - i]
    rotated = keras.ops.convert_to_numpy(transforms_lib.warp(images, quarter, (6, 6)))
    np.testing.assert_allclose(rotated[0], np.rot90(images[0], k=1, axes=(0, 1)), atol=1e-5)


def test_fourier_basis_is_orthonormal_and_images_are_valid():
    h = param_lib.hartley_matrix(7)
    np.testing.assert_allclose(h @ h.T, np.eye(7), atol=1e-5)
    param = param_lib.FourierImage((6, 10))
    image = keras.ops.convert_to_numpy(param.image(param.init(np.random.default_rng(0), 3)))
    assert image.shape == (3, 6, 10, 3) and 0 < image.min() and image.max() < 1
    # a single wave's coefficient makes exactly that wave (before colours and the sigmoid)
    plain = param_lib.FourierImage((6, 10), decorrelate=False)
    coefficients = np.zeros((1, 3, 6, 10), "float32")
    coefficients[0, 0, 1, 2] = 1.0
    image = keras.ops.convert_to_numpy(plain.image(coefficients))
    logit = np.log(image / (1 - image))
    y, x = np.mgrid[0:6, 0:10]
    cas = lambda a: np.cos(a) + np.sin(a)  # noqa: E731
    wave = cas(2 * np.pi * y / 6) * cas(2 * np.pi * 2 * x / 10) / np.sqrt(60) * plain._scale[1, 2]
    np.testing.assert_allclose(logit[0, :, :, 0], wave, atol=1e-4)


def test_activation_rises_and_beats_the_start(gap_model):
    result = visualize_activation(gap_model, "conv2", units=[0, 1, 2, 3], steps=40, seed=0, progress=False,
                                  input_range=(-1, 1))
    first, last = result.history[:5].mean(axis=0), result.history[-5:].mean(axis=0)
    assert (last > first).all(), (first, last)
    assert result.images.dtype == np.uint8 and result.images.shape == (4, 32, 32, 3)
    assert result.layer == "conv2" and result.objective == "channel" and result.dead == []
    # 'activations' is measured again on the returned uint8 images, without transforms
    scores, _ = objective_gradients(gap_model, result.images / 255.0, "conv2", units=result.units, input_range=(-1, 1))
    np.testing.assert_allclose(result.activations, scores, rtol=1e-4, atol=1e-4)


def test_same_seed_same_images_other_seed_other_images(flatten_model):
    run = lambda seed, **kw: visualize_activation(flatten_model, None, units=[0, 3], steps=10, seed=seed,  # noqa: E731
                                                  progress=False, input_range=(0, 1), **kw)
    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.activations, b.activations)
    assert not np.array_equal(a.images, c.images)
    # each unit has its own generator: its image does not depend on the batch it shares
    d = run(0, batch_size=1)
    assert np.abs(a.images.astype(int) - d.images.astype(int)).max() <= 1


def test_pixel_parameterization_regularisers_size_and_frames(flatten_model):
    plain = visualize_activation(flatten_model, "conv1", units=[1], steps=12, progress=False,
                                 parameterization="pixel", input_range=(0, 1))
    smooth = visualize_activation(flatten_model, "conv1", units=[1], steps=12, progress=False,
                                  parameterization="pixel", input_range=(0, 1), tv=50.0)
    def tv(images):
        images = images.astype(float)
        return np.abs(np.diff(images, axis=1)).mean() + np.abs(np.diff(images, axis=2)).mean()

    assert tv(smooth.images) < tv(plain.images)
    big = visualize_activation(flatten_model, "conv1", units=[0], steps=3, progress=False, size=48,
                               frames=3, transforms=False)
    assert big.images.shape == (1, 48, 48, 3)
    assert big.frames.shape == (3, 1, 48, 48, 3) and big.frame_steps == [0, 2, 3]
    np.testing.assert_array_equal(big.frames[-1], big.images)


def test_user_model_is_unchanged(flatten_model, images):
    before_weights = [w.copy() for w in flatten_model.get_weights()]
    before_config = flatten_model.get_config()
    before_out = flatten_model.predict(images, verbose=0)
    visualize_activation(flatten_model, None, units=[1], steps=3, progress=False)
    visualize_activation(flatten_model, "conv2", units=[1], steps=3, progress=False)
    for a, b in zip(before_weights, flatten_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert flatten_model.get_config() == before_config
    assert flatten_model.get_layer("predictions").activation.__name__ == "softmax"
    np.testing.assert_array_equal(before_out, flatten_model.predict(images, verbose=0))


def test_nested_layer_matches_the_base_alone(nested_functional):
    base = nested_functional.get_layer("base")
    kw = dict(units=[0, 2], steps=8, seed=3, progress=False, input_range=(0, 1))
    nested = visualize_activation(nested_functional, "conv2", **kw)
    alone = visualize_activation(base, "conv2", **kw)
    assert nested.layer == "base/conv2"
    np.testing.assert_array_equal(nested.images, alone.images)
    np.testing.assert_allclose(nested.activations, alone.activations, rtol=1e-5)


def test_dense_unit_objective(nested_sequential):
    dense = nested_sequential.layers[2]
    result = visualize_activation(nested_sequential, dense.name, units=[0, 1], steps=6, progress=False)
    assert result.objective == "unit" and result.images.shape == (2, 32, 32, 3)


def test_dead_filter_gets_a_warning_naming_it():
    inputs = keras.Input((16, 16, 3))
    conv = layers.Conv2D(3, 3, activation="relu", name="conv")
    outputs = layers.Dense(2)(layers.GlobalAveragePooling2D()(conv(inputs)))
    model = keras.Model(inputs, outputs)
    kernel, bias = conv.get_weights()
    kernel[..., 1] = 0.0
    bias[1] = -1.0  # filter 1 is negative for every input: ReLU gives 0, gradient 0
    conv.set_weights([kernel, bias])
    with pytest.warns(RuntimeWarning, match=r"Filter\(s\) \[1\] of layer 'conv' never activated") as shown:
        result = visualize_activation(model, "conv", steps=5, progress=False, input_range=(0, 1))
    assert [w.filename for w in shown if "never activated" in str(w.message)] == [__file__]  # the caller's line
    assert result.dead == [1] and result.activations[1] == 0
    assert plot_title(kerasxai.plot_filters(result), 1) == "#1  dead"


def plot_title(fig, i):
    return [ax.get_title() for ax in fig.axes if ax.images][i]


def test_clear_errors(flatten_model, nested_sequential):
    with pytest.raises(ValueError, match="No layer named 'conv9'"):
        visualize_activation(flatten_model, "conv9", steps=1, progress=False)
    with pytest.raises(ValueError, match="unit 8 is out of range: layer 'conv2' has 8 units"):
        visualize_activation(flatten_model, "conv2", units=[0, 8], steps=1, progress=False)
    with pytest.raises(ValueError, match="unit 4 is out of range: the model's output has 4 units"):
        visualize_activation(flatten_model, None, units=4, steps=1, progress=False)
    with pytest.raises(ValueError, match="not spatial, so it has no filters"):
        visualize_activation(nested_sequential, nested_sequential.layers[2].name, objective="channel", steps=1)
    with pytest.raises(ValueError, match="Unknown parameterization 'wavelet'"):
        visualize_activation(flatten_model, None, units=0, parameterization="wavelet", steps=1)
    signal = keras.Sequential([keras.Input((20, 1)), layers.Conv1D(2, 3), layers.Flatten(), layers.Dense(2)])
    with pytest.raises(ValueError, match="makes images"):
        visualize_activation(signal, None, units=0, steps=1)


def test_figures_and_gif(flatten_model, tmp_path):
    result = visualize_activation(flatten_model, None, units=[0, 2], steps=4, frames=3, progress=False)
    fig = kerasxai.plot_class_images(result, class_names=["disc", "cross", "square", "star"])
    assert [ax.get_title() for ax in fig.axes] == [f"disc\nlogit {result.activations[0]:.3g}",
                                                   f"square\nlogit {result.activations[1]:.3g}"]
    fig.savefig(tmp_path / "classes.png")
    path = kerasxai.save_gif(result, tmp_path / "run.gif", scale=2)
    gif = Image.open(path)
    assert gif.n_frames == 3 and gif.size == (2 * (2 * 32 + 2), 2 * 32)
    with pytest.raises(ValueError, match="plot_filters"):
        kerasxai.plot_class_images(visualize_activation(flatten_model, "conv1", units=0, steps=1, progress=False))
    with pytest.raises(ValueError, match="no frames"):
        no_frames = visualize_activation(flatten_model, None, units=0, steps=1, progress=False)
        kerasxai.save_gif(no_frames, tmp_path / "x.gif")


def test_command_writes_grid_and_activations(flatten_model, tmp_path, capsys):
    from kerasxai.cli import main

    path = str(tmp_path / "model.keras")
    flatten_model.save(path)
    out = tmp_path / "out"
    code = main(["visualize", "--model", path, "--layer", "conv2", "--units", "0-2", "--steps", "4",
                 "--input-range", "0,1", "--out", str(out), "--quiet"])
    assert code == 0
    report = json.loads((out / "filters_conv2.json").read_text())
    assert report["units"] == [0, 1, 2] and len(report["activation_reached"]) == 3
    assert report["weights"] == path  # the model file is its own weights
    assert Image.open(out / "filters_conv2.png").size[0] > 100
    assert main(["visualize", "--model", path, "--layer", "nope", "--out", str(out)]) == 2
    assert "kerasxai: error: No layer named 'nope'" in capsys.readouterr().err
    assert main(["visualize", "--model", path, "--units", "9", "--out", str(out)]) == 2
    assert "out of range" in capsys.readouterr().err


def test_command_says_and_records_that_the_weights_are_random(tmp_path, capsys):
    from kerasxai.cli import main

    out = tmp_path / "out"
    code = main(["visualize", "--model", "vgg16", "--weights", "none", "--layer", "block1_conv1", "--units", "0",
                 "--steps", "1", "--out", str(out), "--quiet"])
    assert code == 0
    assert "kerasxai: warning: vgg16's weights are random (--weights none)" in capsys.readouterr().err
    assert json.loads((out / "filters_block1_conv1.json").read_text())["weights"] == "none"


SCRIPT = """
import json, sys, numpy as np, keras
from kerasxai.visualize.optimize import visualize_activation
from kerasxai.visualize.embeddings import layer_embeddings
inputs = keras.Input((12, 12, 3))
h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
h = keras.layers.GlobalAveragePooling2D()(h)
model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(h))
model.set_weights(list(np.load(sys.argv[1], allow_pickle=True)))
out = {}
for layer in (None, "conv"):
    r = visualize_activation(model, layer, units=[0, 1], steps=6, seed=4, progress=False, input_range=(0, 1))
    out[str(layer)] = [r.images.tolist(), r.activations.tolist()]
x = np.linspace(0, 1, 2 * 12 * 12 * 3, dtype="float32").reshape(2, 12, 12, 3)
out["embeddings"] = layer_embeddings(model, x, "conv").tolist()
print("RESULT" + json.dumps(out))
"""


def test_jax_and_torch_give_the_same_images_as_tensorflow(tmp_path):
    keras.utils.set_random_seed(5)
    inputs = keras.Input((12, 12, 3))
    h = layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    h = layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, layers.Dense(3, name="logits")(h))
    weights = tmp_path / "weights.npy"
    np.save(weights, np.array(model.get_weights(), dtype=object), allow_pickle=True)
    runs = {  # both backends at once, in their own processes (the backend is fixed when keras is imported)
        name: subprocess.Popen([sys.executable, "-c", SCRIPT, str(weights)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, KERAS_BACKEND=name, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3"))
        for name in ("jax", "torch")
    }
    here = {str(layer): visualize_activation(model, layer, units=[0, 1], steps=6, seed=4, progress=False,
                                             input_range=(0, 1)) for layer in (None, "conv")}
    x = np.linspace(0, 1, 2 * 12 * 12 * 3, dtype="float32").reshape(2, 12, 12, 3)
    features = kerasxai.layer_embeddings(model, x, "conv")
    for name, run in runs.items():
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, f"{name}: {stderr[-2000:]}"
        other = json.loads(stdout.split("RESULT", 1)[1])
        for layer, result in here.items():
            assert np.abs(np.array(other[layer][0]) - result.images.astype(int)).max() <= 1, (name, layer)
            np.testing.assert_allclose(other[layer][1], result.activations, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(other["embeddings"], features, rtol=1e-4, atol=1e-5)


def test_no_warnings_on_a_healthy_run_and_one_when_the_input_range_is_unknown(gap_model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        visualize_activation(gap_model, None, units=[0, 1], steps=3, progress=False, input_range=(-1, 1))
        rescaled = keras.Sequential([keras.Input((8, 8, 3)), layers.Rescaling(1 / 255), layers.Flatten(),
                                     layers.Dense(2)])
        visualize_activation(rescaled, None, units=0, steps=2, progress=False)  # takes 0..255: nothing to say
    with pytest.warns(UserWarning, match="cannot tell what input range model 'gap_net' was trained on") as shown:
        visualize_activation(gap_model, None, units=0, steps=2, progress=False)
    assert [w.filename for w in shown if "input range" in str(w.message)] == [__file__]  # the caller's line


def test_the_best_image_seen_is_returned_not_the_last():
    """An objective that is not monotone (a sine of the conv) and a large step make the ascent overshoot:
    the image kept is the best one scored (as returned: uint8, no transform), not the last."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.Lambda(lambda t: keras.ops.sin(6.0 * t), name="wave")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    rng = np.random.default_rng(8)  # the same weights on every backend (their own initialisers differ)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    steps = 32
    result = visualize_activation(model, "wave", units=[0, 1, 2, 3], steps=steps, seed=3, progress=False,
                                  input_range=(0, 1), frames=steps + 1, learning_rate=5.0, parameterization="pixel",
                                  transforms=False)
    checked = [s for s in result.frame_steps if s and (s % (steps // 16) == 0 or s == steps)]
    scores = np.stack([
        objective_gradients(model, result.frames[result.frame_steps.index(s)] / 255.0, "wave",
                            units=result.units, input_range=(0, 1))[0] for s in checked])
    np.testing.assert_allclose(result.activations, scores.max(axis=0), rtol=1e-5, atol=1e-6)
    assert (result.activations > scores[-1] + 1e-4).any()  # for some unit the last image was not the best
