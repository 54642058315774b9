"""The model shapes real projects have: 1-D and 3-D, several inputs and outputs, regression,
multi-label, integer inputs, data sets and generators, models changed after a call."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import kerasxai
from kerasxai.probe import get_probe
from tests import reference as ref


def _flatten_head_reference(model, layer_name, images, classes, formula):
    """Raw map from independently computed activations and the analytic Flatten -> Dense gradient."""
    acts = ref.activations(model.input, model.get_layer(layer_name).output, images)
    grads = ref.flatten_dense_gradient(model.get_layer("predictions"), acts.shape[1:], classes)
    spatial = tuple(range(1, acts.ndim - 1))
    if formula == "gradcam":
        return np.maximum((grads.mean(axis=spatial, keepdims=True) * acts).sum(-1), 0)
    return np.maximum((np.maximum(grads, 0) * acts).sum(-1), 0)  # layercam


def _numpy_weights(model, seed):
    """The same weights on every backend (Keras's initialisers draw differently per backend)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


def _classes(model, images):
    dense = model.get_layer("predictions")
    features = keras.ops.convert_to_numpy(keras.Model(model.input, dense.input)(images))
    return (features @ dense.kernel.numpy() + dense.bias.numpy()).argmax(axis=1)


@pytest.fixture(scope="module")
def conv1d_model():
    keras.utils.set_random_seed(31)
    inp = keras.Input((40, 2))
    x = layers.Conv1D(4, 5, activation="relu", name="c1")(inp)
    x = layers.MaxPooling1D()(x)
    x = layers.Conv1D(6, 3, activation="relu", name="c2")(x)
    out = layers.Dense(3, activation="softmax", name="predictions")(layers.Flatten()(x))
    return _numpy_weights(keras.Model(inp, out), 31)


@pytest.fixture(scope="module")
def conv3d_model():
    keras.utils.set_random_seed(40)
    inp = keras.Input((8, 10, 12, 1))
    x = layers.Conv3D(3, 3, activation="relu", padding="same", name="c1")(inp)
    x = layers.MaxPooling3D()(x)
    x = layers.Conv3D(8, 3, activation="relu", name="c2")(x)
    out = layers.Dense(2, activation="softmax", name="predictions")(layers.Flatten()(x))
    return _numpy_weights(keras.Model(inp, out), 40)


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_conv1d_signals_against_numpy(conv1d_model, method):
    signals = np.random.default_rng(0).normal(size=(3, 40, 2)).astype("float32")
    expected = _flatten_head_reference(conv1d_model, "c2", signals, _classes(conv1d_model, signals), method)
    assert (expected.max(axis=1) > 0).all()  # no flat map: the comparison means something
    raw = getattr(kerasxai, method)(conv1d_model, signals, raw=True)
    assert raw.shape == (3, 16)
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-6)
    full = getattr(kerasxai, method)(conv1d_model, signals)
    assert full.shape == (3, 40) and full.max() == pytest.approx(1.0)
    assert [i.spatial_rank for i in kerasxai.explainable_layers(conv1d_model)] == [1, 1]


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_conv3d_volumes_against_numpy(conv3d_model, method):
    volumes = np.random.default_rng(1).normal(size=(2, 8, 10, 12, 1)).astype("float32")
    classes = _classes(conv3d_model, volumes)
    expected = _flatten_head_reference(conv3d_model, "c2", volumes, classes, method)
    assert (expected.reshape(2, -1).max(axis=1) > 0).all()
    raw = getattr(kerasxai, method)(conv3d_model, volumes, target=classes.tolist(), raw=True)
    assert raw.shape == (2, 2, 3, 4)
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-6)
    full = getattr(kerasxai, method)(conv3d_model, volumes)
    assert full.shape == (2, 8, 10, 12) and np.isfinite(full).all()


def test_every_method_runs_on_signals_and_volumes(conv1d_model, conv3d_model):
    from kerasxai.methods.table import methods_for

    for model, shape in ((conv1d_model, (2, 40, 2)), (conv3d_model, (1, 8, 10, 12, 1))):
        x = np.random.default_rng(2).normal(size=shape).astype("float32")
        options = {"scorecam": {"n": 2}, "smoothgrad": {"n": 2}, "integrated_gradients": {"steps": 2}}
        out = kerasxai.explain(model, x, methods=[m for m in methods_for(model) if m != "cam"], options=options)
        for name, maps in out.items():
            assert maps.shape == shape[:-1] and np.isfinite(maps).all(), name


def test_multi_input_saliency_differentiates_only_the_explained_input():
    """Image + metadata: saliency of the image against the analytic gradient, metadata held fixed."""
    keras.utils.set_random_seed(33)
    image = keras.Input((6, 6, 2), name="image")
    meta = keras.Input((3,), name="meta")
    conv = layers.Conv2D(3, 3, activation="tanh")
    x = layers.Concatenate()([layers.Flatten()(conv(image)), layers.Dense(4, activation="tanh")(meta)])
    logits = layers.Dense(3, name="logits")
    model = keras.Model({"image": image, "meta": meta}, layers.Softmax()(logits(x)))

    rng = np.random.default_rng(3)
    images = rng.uniform(-1, 1, (2, 6, 6, 2)).astype("float32")
    metas = rng.uniform(-1, 1, (2, 3)).astype("float32")
    got = kerasxai.saliency(model, {"image": images, "meta": metas}, target=[2, 0], raw=True)
    kernel, bias = conv.kernel.numpy(), conv.bias.numpy()
    w = logits.kernel.numpy()[: 4 * 4 * 3]  # the image's features come first in the concatenation
    expected = [np.abs(ref.conv_tanh_dense_input_gradient(images[n], kernel, bias, w[:, c])).max(axis=-1)
                for n, c in enumerate([2, 0])]
    np.testing.assert_allclose(got, np.stack(expected), rtol=1e-4, atol=1e-7)
    # the same as a list in model.inputs order; the default explained input is the only spatial one
    np.testing.assert_allclose(kerasxai.saliency(model, [images, metas], target=[2, 0], raw=True), got, rtol=1e-6)
    assert get_probe(model, ()).explained_input == 0
    with pytest.raises(ValueError, match=r"one entry per input name"):
        kerasxai.saliency(model, {"image": images})
    cam = kerasxai.gradcam(model, [images, metas])
    assert cam.shape == (2, 6, 6)


def test_two_spatial_inputs_need_input_argument():
    a, b = keras.Input((8, 8, 1), name="left"), keras.Input((8, 8, 1), name="right")
    x = layers.Concatenate()([layers.Flatten()(a), layers.Flatten()(b)])
    model = keras.Model([a, b], layers.Dense(2)(x))
    pair = [np.ones((1, 8, 8, 1), "float32"), np.zeros((1, 8, 8, 1), "float32")]
    with pytest.raises(ValueError, match=r"2 inputs.*'left'.*'right'.*input="):
        kerasxai.saliency(model, pair)
    assert kerasxai.saliency(model, pair, input="right").shape == (1, 8, 8)


def test_multi_output_picks_the_named_head():
    keras.utils.set_random_seed(34)
    inp = keras.Input((16, 16, 3))
    feat = layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    flat = layers.Flatten()(feat)
    cls = layers.Dense(3, activation="softmax", name="cls")(flat)
    box = layers.Dense(4, name="box")(flat)
    model = keras.Model(inp, [cls, box])
    x = np.random.default_rng(4).normal(size=(2, 16, 16, 3)).astype("float32")
    with pytest.raises(ValueError, match=r"2 outputs \(0: 'cls', 1: 'box'\).*output="):
        kerasxai.gradcam(model, x)
    cls_only = keras.Model(inp, cls)
    np.testing.assert_allclose(kerasxai.gradcam(model, x, output="cls"), kerasxai.gradcam(cls_only, x), atol=1e-6)
    box_only = keras.Model(inp, box)
    np.testing.assert_allclose(kerasxai.gradcam(model, x, output=1, target=2), kerasxai.gradcam(box_only, x, target=2), atol=1e-6)
    assert get_probe(model, output="box").head.kind == "logits"


def test_regression_output_is_explained_with_its_own_sign():
    """Dense(1) without activation: the map of y, whatever the sign of y, equals the map of lambda o: o[:, 0]."""
    keras.utils.set_random_seed(35)
    inp = keras.Input((12, 12, 1))
    x = layers.Conv2D(3, 3, activation="relu", name="conv")(inp)
    model = keras.Model(inp, layers.Dense(1)(layers.Flatten()(x)))
    x = np.random.default_rng(5).normal(size=(4, 12, 12, 1)).astype("float32")
    y = model.predict(x, verbose=0)[:, 0]
    assert get_probe(model).head.kind == "regression"
    for method in (kerasxai.saliency, kerasxai.gradcam, kerasxai.integrated_gradients):
        value = method(model, x, raw=True)
        np.testing.assert_allclose(method(model, x, target=0, raw=True), value, atol=1e-6)
        np.testing.assert_allclose(method(model, x, target=lambda o: o[:, 0], raw=True), value, atol=1e-6)
    ig = kerasxai.integrated_gradients(model, x, steps=64, raw=True)
    base = model.predict(np.zeros_like(x), verbose=0)[:, 0]
    np.testing.assert_allclose(ig.sum(axis=(1, 2, 3)), y - base, rtol=0.02, atol=1e-3)  # y itself, not -y
    with pytest.raises(ValueError, match="regression"):
        kerasxai.gradcam(model, x, target=1)
    with pytest.raises(ValueError, match="regression"):
        kerasxai.top_k(model, x)


def test_multilabel_head_scores_each_class_logit_and_top_k_gives_sigmoids():
    keras.utils.set_random_seed(36)
    inp = keras.Input((8, 8, 3))
    logits = layers.Dense(4, name="logits")(layers.Flatten()(layers.Conv2D(2, 3, name="conv")(inp)))
    model = keras.Model(inp, layers.Activation("sigmoid")(logits))
    x = np.random.default_rng(6).normal(size=(2, 8, 8, 3)).astype("float32")
    probs = model.predict(x, verbose=0)
    rows = kerasxai.top_k(model, x, k=4)
    for row, p in zip(rows, probs):
        for c, _, q in row:
            assert q == pytest.approx(float(p[c]), rel=1e-5)  # sigmoid per class, not a softmax
    probe = get_probe(model)
    assert probe.head.kind == "multilabel"
    z = keras.Model(inp, logits).predict(x, verbose=0)
    np.testing.assert_allclose(probe.forward(x, target=[3, 1]).scores, z[[0, 1], [3, 1]], rtol=1e-5)


def test_uint8_input_with_rescaling_gives_the_float_models_saliency():
    keras.utils.set_random_seed(37)
    conv, dense = layers.Conv2D(3, 3, activation="tanh"), layers.Dense(2)

    def build(dtype):
        inp = keras.Input((10, 10, 3), dtype=dtype)
        x = layers.Rescaling(1 / 255)(inp)
        return keras.Model(inp, layers.Activation("softmax")(dense(layers.Flatten()(conv(x)))))

    as_uint8, as_float = build("uint8"), build("float32")
    pixels = np.random.default_rng(7).integers(0, 256, (2, 10, 10, 3)).astype("uint8")
    got = kerasxai.saliency(as_uint8, pixels, target=1, raw=True)
    assert got.any()  # the cast to float does not cut the gradient
    np.testing.assert_allclose(got, kerasxai.saliency(as_float, pixels.astype("float32"), target=1, raw=True), rtol=1e-5)
    ig = kerasxai.integrated_gradients(as_uint8, pixels, target=1, raw=True)
    assert np.abs(ig).sum() > 0


def test_non_finite_inputs_are_refused_before_anything_is_explained(gap_model, images):
    bad = images.copy()
    bad[1, 3, 3, 0] = np.nan
    bad[2, 0, 0, 1] = np.inf
    for method in (kerasxai.saliency, kerasxai.gradcam, kerasxai.top_k):
        with pytest.raises(ValueError, match=r"NaN or infinite values at image\(s\) 1, 2"):
            method(gap_model, bad)


def test_the_fast_finiteness_check_finds_exactly_the_images_np_isfinite_finds():
    from kerasxai.probe.inputs import nonfinite_rows

    rng = np.random.default_rng(11)
    x = rng.normal(0, 1, (40, 6, 6, 3)).astype("float32")
    x[3, 1, 2, 0], x[7, 0, 0, 2], x[8, 5, 5, 1] = np.nan, np.inf, -np.inf
    x[12, 0, 0, 0], x[12, 0, 0, 1] = np.inf, -np.inf  # inf - inf: a NaN sum
    x[20] = 3e38  # finite, but its sum overflows: a candidate that the exact check clears
    x[21, 0, 0, 0], x[21, 0, 0, 1] = 3e38, -3e38
    expected = np.flatnonzero(~np.isfinite(x.reshape(40, -1)).all(axis=1))
    assert nonfinite_rows(x).tolist() == expected.tolist() == [3, 7, 8, 12]


def test_non_finite_model_output_is_an_error_naming_the_images(images):
    inp = keras.Input((32, 32, 3))
    x = layers.Conv2D(2, 3, name="conv")(inp)
    logits = layers.Dense(2)(layers.Lambda(lambda t: keras.ops.log(t))(layers.Flatten()(x)))
    model = keras.Model(inp, logits)
    with pytest.raises(ValueError, match=r"output is NaN or infinite for image\(s\) 0, 1, 2"):
        kerasxai.gradcam(model, images)
    with pytest.raises(ValueError, match="NaN or infinite"):
        kerasxai.top_k(model, images)


def test_a_model_changed_after_a_call_gets_a_fresh_probe(images):
    keras.utils.set_random_seed(38)
    model = keras.Sequential([keras.Input((32, 32, 3)), layers.Conv2D(4, 3, name="a"), layers.Conv2D(5, 3, name="b"),
                              layers.GlobalAveragePooling2D(), layers.Dense(3, activation="softmax")])
    assert get_probe(model).layer_names == ["b"]
    kerasxai.gradcam(model, images)
    model.pop()
    model.add(layers.Dense(2, activation="softmax"))
    assert get_probe(model).n_classes == 2
    with pytest.raises(ValueError, match=r"0\.\.1"):
        kerasxai.gradcam(model, images, target=2)
    fresh = keras.Model(model.inputs, model.outputs)
    np.testing.assert_allclose(kerasxai.gradcam(model, images), kerasxai.gradcam(fresh, images), atol=1e-6)


def test_datasets_generators_and_memmaps_equal_arrays(gap_model, images, tmp_path):
    expected = kerasxai.gradcam(gap_model, images)
    labels = np.array([1, 4, 2])
    batched = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2)
    np.testing.assert_allclose(kerasxai.gradcam(gap_model, batched.map(lambda x, y: x)), expected, atol=1e-6)
    unbatched = tf.data.Dataset.from_tensor_slices(images)
    np.testing.assert_allclose(kerasxai.gradcam(gap_model, unbatched, batch_size=2), expected, atol=1e-6)
    by_label = kerasxai.gradcam(gap_model, batched, target="label")
    np.testing.assert_allclose(by_label, kerasxai.gradcam(gap_model, images, target=labels.tolist()), atol=1e-6)
    generator = (images[i : i + 2] for i in range(0, 3, 2))
    np.testing.assert_allclose(kerasxai.gradcam(gap_model, generator), expected, atol=1e-6)
    path = tmp_path / "images.npy"
    np.save(path, images)
    np.testing.assert_allclose(kerasxai.gradcam(gap_model, np.load(path, mmap_mode="r"), batch_size=1), expected, atol=1e-6)
    rows = kerasxai.top_k(gap_model, batched.map(lambda x, y: x), k=2)
    assert [r[0][0] for r in rows] == [r[0][0] for r in kerasxai.top_k(gap_model, images, k=2)]
    with pytest.raises(ValueError, match="carry none"):
        kerasxai.gradcam(gap_model, images, target="label")


def test_batch_size_bounds_the_pass_without_changing_maps(gap_model, images):
    for method in (kerasxai.gradcam, kerasxai.saliency, kerasxai.eigencam):
        np.testing.assert_allclose(method(gap_model, images, batch_size=1), method(gap_model, images), atol=1e-5)
    with pytest.raises(ValueError, match="batch_size must be an int of at least 1"):
        kerasxai.gradcam(gap_model, images, batch_size=0)


def test_a_layer_off_the_explained_output_is_refused():
    inp = keras.Input((8, 8, 1))
    a = layers.Conv2D(2, 3, name="for_a")(inp)
    b = layers.Conv2D(2, 3, name="for_b")(inp)
    model = keras.Model(inp, [layers.Dense(2, name="out_a")(layers.Flatten()(a)), layers.Dense(2, name="out_b")(layers.Flatten()(b))])
    with pytest.raises(ValueError, match="'for_b' does not lead to output 'out_a'"):
        kerasxai.gradcam(model, np.zeros((1, 8, 8, 1), "float32"), layer="for_b", output="out_a")


def test_a_cut_gradient_is_an_error_not_a_blank_map():
    """An integer cast inside the model cuts the input gradient: said, not drawn."""
    inp = keras.Input((6, 6, 1))
    x = layers.Lambda(lambda t: keras.ops.cast(keras.ops.cast(t, "int32"), "float32"))(inp)
    model = keras.Model(inp, layers.Dense(2)(layers.Flatten()(x)))
    x = np.random.default_rng(8).uniform(0, 5, (2, 6, 6, 1)).astype("float32")
    if keras.backend.backend() == "jax":  # JAX differentiates the cast as zero: the flat-map warning says so
        with pytest.warns(RuntimeWarning, match="gradient is exactly zero"):
            kerasxai.saliency(model, x)
    else:
        with pytest.raises(ValueError, match="gradient is cut"):
            kerasxai.saliency(model, x)


# --------------------------------------------------------------------------- channels_first


def _twin(fmt, rank=2):
    """The same small model in either data format (conv kernels do not depend on it): conv -> pool ->
    conv -> BatchNormalization over the channel axis -> Activation -> GAP -> softmax."""
    keras.utils.set_random_seed(0)
    conv, pool, gap = {1: (layers.Conv1D, layers.MaxPooling1D, layers.GlobalAveragePooling1D),
                       2: (layers.Conv2D, layers.MaxPooling2D, layers.GlobalAveragePooling2D)}[rank]
    spatial = (16,) * rank
    inputs = keras.Input(spatial + (3,) if fmt == "channels_last" else (3,) + spatial)
    x = conv(4, 3, padding="same", activation="relu", data_format=fmt, name="c0")(inputs)
    x = pool(data_format=fmt)(x)
    x = conv(6, 3, padding="same", data_format=fmt, name="c1")(x)
    x = layers.BatchNormalization(axis=-1 if fmt == "channels_last" else 1, name="bn")(x)
    x = layers.Activation("relu", name="act")(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax")(gap(data_format=fmt)(x)))


@pytest.mark.parametrize("rank", [1, 2])
def test_channels_first_models_give_the_maps_of_their_channels_last_twin(rank):
    """Saliency used to take the maximum over the last spatial axis, and Grad-CAM after a
    BatchNormalization(axis=1) + Activation returned (N, C, W): maps that looked plausible."""
    last, first = _twin("channels_last", rank), _twin("channels_first", rank)
    first.set_weights(last.get_weights())
    x = np.random.default_rng(1).random((2,) + (16,) * rank + (3,)).astype("float32")
    xf = np.moveaxis(x, -1, 1)
    options = {"scorecam": {"n": 4}, "smoothgrad": {"n": 4}, "integrated_gradients": {"steps": 8}}
    from kerasxai.methods.table import methods_for

    got = kerasxai.explain(first, xf, methods=methods_for(first), options=options)
    want = kerasxai.explain(last, x, methods=methods_for(last), options=options)
    for name in methods_for(last):
        assert got[name].shape == (2,) + (16,) * rank, name
        np.testing.assert_allclose(got[name], want[name], atol=1e-5, err_msg=name)
    info = {i.name: i.data_format for i in kerasxai.explainable_layers(first)}
    assert info["act"] == info["c1"] == info["bn"] == "channels_first"
    probe = kerasxai.get_probe(first)
    assert probe.layer_names == ["act"] and probe.layouts == ["channels_first"] and probe.input_layout == "channels_first"
    # per-channel outputs come back in the model's own layout
    raw = kerasxai.integrated_gradients(first, xf, steps=8, raw=True)
    np.testing.assert_allclose(raw, np.moveaxis(kerasxai.integrated_gradients(last, x, steps=8, raw=True), -1, 1),
                               atol=1e-5)


def test_a_channels_first_base_between_permutes_is_explained_channels_last():
    """A channels-last input Permuted into a channels_first base and back: the input was taken for channels_first
    (its first layer stating a format is the base's conv), and saliency returned (N, W, C) maps taken over the
    wrong axis. Layers after the Permute back are channels-last too."""
    keras.utils.set_random_seed(0)
    base_in = keras.Input((3, 16, 16))
    base = keras.Model(base_in, layers.Conv2D(4, 3, padding="same", activation="relu", data_format="channels_first",
                                              name="c1")(base_in), name="base")
    inputs = keras.Input((16, 16, 3))
    back = layers.Permute((2, 3, 1), name="back")(base(layers.Permute((3, 1, 2))(inputs)))
    act = layers.Activation("relu", name="act")(back)
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(act)))
    twin_in = keras.Input((16, 16, 3))
    twin_act = layers.Activation("relu", name="act")(layers.Conv2D(4, 3, padding="same", activation="relu")(twin_in))
    twin = keras.Model(twin_in, layers.Dense(3)(layers.GlobalAveragePooling2D()(twin_act)))
    twin.set_weights(model.get_weights())
    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype("float32")
    for method, kwargs in (("saliency", {}), ("integrated_gradients", {"steps": 4}), ("gradcam", {"layer": "act"})):
        got, want = getattr(kerasxai, method)(model, x, **kwargs), getattr(kerasxai, method)(twin, x, **kwargs)
        assert got.shape == (2, 16, 16), method
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=method)
    assert kerasxai.get_probe(model, "act").layouts == ["channels_last"]
    assert kerasxai.get_probe(model, "base/c1").layouts == ["channels_first"]


def test_a_lambda_before_and_after_a_channels_first_conv_keeps_its_layout():
    """Axes are read back through Permutes only: a Lambda on the input or after a channels_first conv keeps
    the axes where they are (treating every Lambda as moving axes gave (N, C, W) maps)."""
    def net(fmt):
        keras.utils.set_random_seed(1)
        inp = keras.Input((3, 12, 12) if fmt == "channels_first" else (12, 12, 3))
        x = layers.Conv2D(4, 3, data_format=fmt, name="c")(layers.Lambda(lambda t: t * 2.0, name="scale")(inp))
        x = layers.Lambda(lambda t: t * 1.0, name="same")(x)
        return keras.Model(inp, layers.Dense(3)(layers.GlobalAveragePooling2D(data_format=fmt)(x)))

    first, last = net("channels_first"), net("channels_last")
    first.set_weights(last.get_weights())
    x = np.random.default_rng(0).random((2, 12, 12, 3)).astype("float32")
    for method, kwargs in (("saliency", {}), ("gradcam", {"layer": "same"})):
        np.testing.assert_allclose(getattr(kerasxai, method)(first, np.moveaxis(x, -1, 1), **kwargs),
                                   getattr(kerasxai, method)(last, x, **kwargs), atol=1e-5, err_msg=method)


def test_channels_first_gradcam_against_a_tape_over_the_channel_axis():
    """Grad-CAM at a channels_first layer = the formula over axis 1 of activations and gradients taken by hand."""
    model = _twin("channels_first")
    x = np.random.default_rng(2).random((2, 3, 16, 16)).astype("float32")
    act = model.get_layer("act")
    head = keras.Model(model.inputs, [act.output, model.layers[-1].input])  # the activations and the GAP features
    dense = model.layers[-1]

    @ref.runnable
    def by_hand(x):
        with tf.GradientTape() as tape:
            a, _ = head(x)
            tape.watch(a)
            logits = tf.matmul(tf.reduce_mean(a, axis=(2, 3)), dense.kernel) + dense.bias
            score = tf.gather(logits, tf.argmax(logits, axis=1), batch_dims=1)
        return a, tape.gradient(score, a)

    a, g = (t.numpy() for t in by_hand(x))
    alpha = g.mean(axis=(2, 3), keepdims=True)  # (N, C, 1, 1)
    expected = np.maximum((alpha * a).sum(axis=1), 0)  # (N, 8, 8)
    np.testing.assert_allclose(kerasxai.gradcam(model, x, raw=True), expected, rtol=1e-4, atol=1e-6)


def test_a_subclassed_model_with_channels_first_layers_is_refused_clearly():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = layers.Conv2D(4, 3, data_format="channels_first")
            self.pool = layers.GlobalAveragePooling2D(data_format="channels_first")
            self.out = layers.Dense(2)

        def call(self, x):
            return self.out(self.pool(self.conv(x)))

    net = Net()
    x = np.random.default_rng(0).random((1, 3, 8, 8)).astype("float32")
    net.build(x.shape)  # not net(x): TensorFlow without oneDNN runs no channels_first convolution eagerly
    for method in (kerasxai.saliency, kerasxai.gradcam):
        with pytest.raises(ValueError, match="channels_first layers .* wrap its layers in a Functional model"):
            method(net, x)


def test_a_quantized_model_is_refused_for_gradients_and_runs_forward_only_methods():
    """model.quantize("int8"): gradients and logits are refused up front; top_k and eigencam run, equal to
    model.predict and to the float model's eigencam (its conv layers stay float)."""
    keras.utils.set_random_seed(39)
    inp = keras.Input((10, 10, 3))
    x = layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = layers.Dense(8, activation="relu")(layers.GlobalAveragePooling2D()(x))
    float_model = keras.Model(inp, layers.Dense(3, activation="softmax")(x))
    quantized = keras.Model.from_config(float_model.get_config())
    quantized.set_weights(float_model.get_weights())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras: "Layer Conv2D does not have a `quantize` method"
        quantized.quantize("int8")
    x = np.random.default_rng(9).uniform(0, 1, (3, 10, 10, 3)).astype("float32")
    refused = r"is quantized \(int8 layers 'dense.*no gradient to explain\. kerasxai\.occlusion .*eigencam and top_k"
    for method in (kerasxai.saliency, kerasxai.gradcam, kerasxai.integrated_gradients, kerasxai.smoothgrad,
                   kerasxai.guided_backprop, kerasxai.cam, kerasxai.scorecam):
        with pytest.raises(ValueError, match=refused):
            method(quantized, x)
    probs = quantized.predict(x, verbose=0)
    for row, p in zip(kerasxai.top_k(quantized, x, k=3), probs):
        np.testing.assert_allclose([q for _, _, q in row], np.sort(p)[::-1], rtol=1e-5)
    np.testing.assert_allclose(kerasxai.eigencam(quantized, x), kerasxai.eigencam(float_model, x), atol=1e-5)
    # occlusion runs on it: the drop of the probability (its logits cannot be reached), said in one warning
    with pytest.warns(UserWarning, match="logits cannot be reached .* the score is the probability"):
        got = kerasxai.occlusion(quantized, x, target=1, window=5, stride=5, raw=True)
    drops = np.zeros((3, 10, 10))
    for i in (0, 5):
        for j in (0, 5):
            hidden = x.copy()
            hidden[:, i:i + 5, j:j + 5] = 0
            drops[:, i:i + 5, j:j + 5] = (probs[:, 1] - quantized.predict(hidden, verbose=0)[:, 1])[:, None, None]
    np.testing.assert_allclose(got, drops, atol=1e-5)
