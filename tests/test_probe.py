"""The probe: layer lookup, logits, nested models, caching, errors, the user's model untouched."""

import gc
import warnings
import weakref

import keras
import numpy as np
import pytest
from keras import layers

import kerasxai
from kerasxai.probe import cache, get_probe


def _snapshot(model, images):
    lines = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line))
    return (
        [w.copy() for w in model.get_weights()],
        model.predict(images, verbose=0),
        [getattr(layer, "activation", None) for layer in model.layers],
        [layer.name for layer in model.layers],
        lines,
    )


@pytest.mark.parametrize("fixture", ["flatten_model", "nested_sequential", "nested_functional"])
def test_users_model_is_unchanged(fixture, request, images, tmp_path):
    model = request.getfixturevalue(fixture)
    conv = next(c for c in kerasxai.explainable_layers(model)).name
    weights, preds, acts, names, nodes = _snapshot(model, images)
    output_before = model.outputs
    kerasxai.saliency(model, images)
    kerasxai.gradcam(model, images, layer=conv)
    kerasxai.layercam(model, images)
    w2, p2, a2, n2, summary2 = _snapshot(model, images)
    assert all(np.array_equal(a, b) for a, b in zip(weights, w2))
    np.testing.assert_array_equal(preds, p2)
    assert acts == a2 and names == n2 and nodes == summary2
    assert model.outputs is output_before or model.outputs == output_before
    # still a softmax/sigmoid model, and it saves and reloads to the same predictions
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), preds, rtol=1e-6)




def test_cache_does_not_keep_the_model_alive():
    model = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(2, 3), layers.Flatten(), layers.Dense(2)])
    kerasxai.saliency(model, np.random.default_rng(0).normal(size=(1, 8, 8, 1)).astype("float32"))
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_keras_still_tracks_custom_layers_sublayers():
    """The cache's fingerprint reaches a custom layer's sublayers through Keras's private ``_flatten_layers``."""

    class Block(layers.Layer):
        def __init__(self):
            super().__init__()
            self.convs = [layers.Conv2D(2, 3), layers.Conv2D(2, 3)]

        def call(self, x):
            return self.convs[1](self.convs[0](x))

    block = Block()
    inp = keras.Input((8, 8, 1))
    model = keras.Model(inp, layers.Flatten()(block(inp)))
    reached = cache.reachable_layers(model)
    assert block in reached and all(conv in reached for conv in block.convs), (
        "Keras changed Layer._flatten_layers; update kerasxai/probe/cache.py reachable_layers"
    )
    before = cache.fingerprint(model)
    assert set(before[1]) == {id(v) for v in model.weights}, (  # each layer's own variables, gathered in one walk
        "Keras changed Layer._trainable_variables / _non_trainable_variables; update kerasxai/probe/cache.py fingerprint")
    block.convs[0].activation = keras.activations.get("relu")
    assert cache.fingerprint(model) != before


def test_default_layer_skips_pooling_and_1x1(flatten_model):
    assert get_probe(flatten_model).layer_names == ["conv2"]
    names = [info.name for info in kerasxai.explainable_layers(flatten_model)]
    assert names == ["conv1", "conv2"]  # pool1 is not offered


def test_layers_by_name_qualified_name_and_object(nested_sequential):
    base = nested_sequential.layers[0]
    by_name = get_probe(nested_sequential, "conv1")
    assert by_name.layer_names == ["base/conv1"]
    assert get_probe(nested_sequential, "base/conv1").layers == by_name.layers
    assert get_probe(nested_sequential, base.get_layer("conv1")).layers == [base.get_layer("conv1")]
    info = kerasxai.explainable_layers(nested_sequential)
    assert [(i.path, i.output_shape) for i in info] == [
        ("base/conv1", (None, 32, 32, 6)),
        ("base/conv2", (None, 16, 16, 8)),
    ]


def test_sequential_without_input_and_plain_functional_give_same_maps(images):
    keras.utils.set_random_seed(7)
    seq = keras.Sequential([layers.Conv2D(4, 3, activation="relu", name="c"), layers.GlobalAveragePooling2D(), layers.Dense(3, activation="softmax")])
    seq(images)
    inp = keras.Input((32, 32, 3))
    x = inp
    for layer in seq.layers:
        x = layer(x)
    fun = keras.Model(inp, x)
    np.testing.assert_allclose(kerasxai.gradcam(seq, images), kerasxai.gradcam(fun, images), atol=1e-6)
    np.testing.assert_allclose(kerasxai.cam(seq, images, raw=True), kerasxai.cam(fun, images, raw=True), rtol=1e-5)


@pytest.mark.parametrize(
    "name, shape, layer",
    [
        ("VGG16", (32, 32, 3), "block5_conv3"),
        ("ResNet50", (64, 64, 3), "conv5_block3_out"),
        ("MobileNetV2", (64, 64, 3), "out_relu"),
        ("DenseNet121", (64, 64, 3), "relu"),
        ("InceptionV3", (139, 139, 3), "mixed10"),
        ("EfficientNetB0", (64, 64, 3), "top_activation"),
    ],
)
def test_keras_applications_families(name, shape, layer):
    model = getattr(keras.applications, name)(weights=None, input_shape=shape, classes=3)
    probe = get_probe(model)
    assert probe.layer_names == [layer]
    assert probe.removed_activation == "softmax"
    x = np.random.default_rng(0).uniform(-1, 1, (1,) + shape).astype("float32")
    # logits are the pre-softmax scores: softmax(logits) == the model's prediction
    logits = probe.forward(x).logits
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.softmax(logits)), model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-6)
    maps = kerasxai.gradcam(model, x)
    assert maps.shape == (1,) + shape[:2] and np.isfinite(maps).all()
    if name != "VGG16":  # every family but VGG ends in GAP -> Dense
        assert np.isfinite(kerasxai.cam(model, x)).all()


def test_nested_vgg16_base_in_finetuned_head():
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    model = keras.Sequential([base, layers.Flatten(), layers.Dense(8, activation="relu"), layers.Dense(1, activation="sigmoid")])
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model(x)
    assert get_probe(model).layer_names == ["vgg16/block5_conv3"]
    assert get_probe(model, "block3_conv3").layer_names == ["vgg16/block3_conv3"]
    assert kerasxai.layercam(model, x, layer="block3_conv3").shape == (2, 32, 32)
    # the sigmoid is removed: the logit's sigmoid is the model's output
    logit = get_probe(model).forward(x).logits
    np.testing.assert_allclose(1 / (1 + np.exp(-logit)), model.predict(x, verbose=0), rtol=1e-4)


def test_conv_classifier_with_softmax_activation_gets_logits(images):
    keras.utils.set_random_seed(5)
    inp = keras.Input((32, 32, 3))
    x = layers.Conv2D(4, 3, activation="relu", name="c")(inp)
    x = layers.GlobalAveragePooling2D(keepdims=True)(x)
    x = layers.Conv2D(3, 1, activation="softmax", name="classifier")(x)
    out = layers.Flatten()(x)
    model = keras.Model(inp, out)
    probe = get_probe(model)
    assert probe.layer_names == ["c"]  # the 1x1 conv classifier is never the default
    # Flatten is last, so the softmax stays: logits=True leaves a non-squashing last layer alone
    assert probe.removed_activation is None


def _small_gap_model():
    inp = keras.Input((32, 32, 3))
    x = layers.Conv2D(8, 3, activation="relu", name="c")(inp)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(3)(x)
    return keras.Model(inp, layers.Activation("softmax", dtype="float32")(x))


def test_mixed_precision_gives_float32_maps(images):
    keras.utils.set_random_seed(6)
    twin = _small_gap_model()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _small_gap_model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.set_weights(twin.get_weights())
    for method in (kerasxai.gradcam, kerasxai.layercam, kerasxai.cam, kerasxai.saliency):
        maps = method(model, images, target=1)
        assert maps.dtype == np.float32 and np.isfinite(maps).all() and maps.max() == pytest.approx(1.0)
        # the same as the float32 twin, up to float16 rounding (which flips a few ReLU kinks)
        reference = method(twin, images, target=1)
        assert np.abs(maps - reference).mean() < 0.01
        assert np.corrcoef(maps.ravel(), reference.ravel())[0, 1] > 0.99
    assert get_probe(model).forward(images).activations[0].dtype == "float32"


# --------------------------------------------------------------------------- errors


def test_unknown_layer_lists_conv_layers(flatten_model, images):
    with pytest.raises(ValueError, match=r"No layer named 'conv3'.*Did you mean.*Layers with spatial axes: conv1, conv2"):
        kerasxai.gradcam(flatten_model, images, layer="conv3")


def test_non_spatial_layers_are_refused_pooling_only_when_named(flatten_model, images):
    with pytest.raises(ValueError, match=r"'flatten' cannot be explained.*\(None, 2048\)"):
        kerasxai.gradcam(flatten_model, images, layer="flatten")
    assert kerasxai.get_probe(flatten_model).layer_names == ["conv2"]  # the default skips pooling
    assert kerasxai.layercam(flatten_model, images, layer="pool1").shape == (3, 32, 32)


def test_cam_uses_the_layer_feeding_global_pooling():
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(64, 64, 3))
    model = keras.Sequential([base, layers.GlobalAveragePooling2D(), layers.Dense(2, activation="softmax")])
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    model(x)
    acts = keras.ops.convert_to_numpy(keras.Model(base.input, base.output)(x))  # block5_pool, 2x2
    expected = np.einsum("nhwk,k->nhw", acts, model.layers[-1].kernel.numpy()[:, 1])
    np.testing.assert_allclose(kerasxai.cam(model, x, target=1, raw=True), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="feeds MaxPooling2D"):
        kerasxai.cam(model, x, layer="block5_conv3")


def test_layer_of_another_model_is_refused(flatten_model, gap_model, images):
    with pytest.raises(ValueError, match="is not part of model 'flat_net'"):
        kerasxai.gradcam(flatten_model, images, layer=gap_model.get_layer("conv1"))


def test_class_index_out_of_range(flatten_model, nested_sequential, images):
    with pytest.raises(ValueError, match=r"target class 4 is out of range.*0\.\.3"):
        kerasxai.gradcam(flatten_model, images, target=4)
    with pytest.raises(ValueError, match="one-unit sigmoid"):
        kerasxai.saliency(nested_sequential, images, target=2)
    with pytest.raises(ValueError, match="3 images"):
        kerasxai.gradcam(flatten_model, images, target=[1, 2])


def test_wrong_image_shape_says_what_the_model_expects(flatten_model, images):
    with pytest.raises(ValueError, match=r"shape \(2, 32, 32, 1\).*expects a batch \(N, 32, 32, 3\)"):
        kerasxai.gradcam(flatten_model, images[:2, ..., :1])
    with pytest.raises(ValueError, match=r"shape \(64, 64, 3\).*\(N, 32, 32, 3\)"):
        kerasxai.saliency(flatten_model, np.zeros((64, 64, 3), "float32"))


def test_unbuilt_models_are_refused(images):
    with pytest.raises(ValueError, match="has not been built"):
        kerasxai.gradcam(keras.Sequential([layers.Conv2D(2, 3), layers.Flatten(), layers.Dense(2)]), images)


class SubclassedNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = layers.Conv2D(4, 3, activation="relu")
        self.second = layers.Conv2D(5, 3, activation="relu")
        self.pool = layers.GlobalAveragePooling2D()
        self.out = layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.out(self.pool(self.second(self.conv(x))))


def test_subclassed_models_are_explained_as_their_functional_twin(images):
    """Input gradients on any callable model; CAMs at a layer called once; logits found; model untouched."""
    keras.utils.set_random_seed(13)
    model = SubclassedNet()
    model(images)
    inp = keras.Input((32, 32, 3))
    twin = keras.Model(inp, model.out(model.pool(model.second(model.conv(inp)))))
    weights = [w.copy() for w in model.get_weights()]
    np.testing.assert_allclose(kerasxai.saliency(model, images), kerasxai.saliency(twin, images), atol=1e-6)
    np.testing.assert_allclose(kerasxai.gradcam(model, images), kerasxai.gradcam(twin, images), atol=1e-6)
    np.testing.assert_allclose(kerasxai.layercam(model, images, layer=model.conv.name),
                               kerasxai.layercam(twin, images, layer=model.conv), atol=1e-6)
    probe = get_probe(model)
    assert probe.layer_names == [model.second.name] and probe.removed_activation == "softmax"
    assert all("call" not in layer.__dict__ for layer in (model.conv, model.second, model.out))
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    with pytest.raises(ValueError, match=r"(?s)subclassed.*keras.Model\(inputs, outputs\)"):
        kerasxai.cam(model, images)
    with pytest.raises(ValueError, match=r"(?s)Guided backpropagation.*subclassed.*functional = keras.Model"):
        kerasxai.guided_backprop(model, images)
    with pytest.raises(ValueError, match=r"No layer 'nope' can be reached"):
        kerasxai.gradcam(model, images, layer="nope")


def test_flat_gradient_gives_zero_map_and_names_images(images):
    """A dead model (zero classifier) has a zero gradient: finite zero maps, a warning, no NaN."""
    keras.utils.set_random_seed(8)
    model = keras.Sequential([keras.Input((32, 32, 3)), layers.Conv2D(4, 3, name="c"), layers.Flatten(), layers.Dense(2, activation="softmax", kernel_initializer="zeros")])
    for method in (kerasxai.gradcam, kerasxai.layercam, kerasxai.saliency):
        with pytest.warns(RuntimeWarning, match=r"flat.*image 0 \(class 0, score 0\).*image 2.*gradient is exactly zero") as caught:
            maps = method(model, images)
        assert caught[0].filename == __file__  # the warning points at the caller's line
        assert np.isfinite(maps).all() and not maps.any()


def test_all_negative_gradcam_map_is_zero_with_warning(images):
    """Positive activations and a negative classifier column: Grad-CAM of class 0 is all negative."""
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        layers.Conv2D(4, 3, activation="relu", bias_initializer="ones", name="c"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(2),
    ])
    dense = model.layers[-1]
    dense.kernel.assign(np.stack([-np.ones(4), np.ones(4)], axis=1).astype("float32"))
    with pytest.warns(RuntimeWarning, match=r"image 0 \(class 0, score -\d.*image 1.*image 2.*scores the target negatively"):
        maps = kerasxai.gradcam(model, images, target=0)
    assert np.isfinite(maps).all() and not maps.any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kerasxai.gradcam(model, images, target=1).max() == pytest.approx(1.0)


def test_layer_lookups_are_cached_not_retraced(gap_model, images):
    """cam() with layer=None, explainable_layers() and get_probe() trace the model's graph once."""
    from kerasxai.probe import graph as _graph

    kerasxai.cam(gap_model, images)
    kerasxai.explainable_layers(gap_model)
    kerasxai.gradcam(gap_model, images)
    traced = []
    original = _graph.trace
    try:
        _graph.trace = lambda *a, **k: traced.append(1) or original(*a, **k)
        kerasxai.cam(gap_model, images)
        kerasxai.explainable_layers(gap_model)
        kerasxai.gradcam(gap_model, images)
    finally:
        _graph.trace = original
    assert traced == []



def _custom_post(p):
    from keras import ops

    return {"scores": p.scores, "positive": p.scores > 0, "per_class_mean": ops.mean(p.logits, axis=0),
            "acts": [p.activations[0]], "classes": p.classes}


def test_a_steps_outputs_come_back_unchanged_whatever_their_shapes_and_batch_sizes(gap_model, images):
    """Per-image outputs travel packed from the step; per-class and nested outputs, batch sizes that
    change between calls (each traced shape keeps its own layout) must not change what comes back."""
    from kerasxai.probe import Fn

    probe = get_probe(gap_model, "conv2")
    step = probe.step(None, Fn(_custom_post), target=2)
    logits = keras.ops.convert_to_numpy(gap_model(images, training=False))  # softmax of the probe's logits
    for rows in ([0, 1, 2], [1], [0, 1, 2], [2, 0]):
        x = images[rows]
        out = step([x], (), np.full(len(rows), 2, np.int32))
        pass_ = probe.forward(x, target=2)
        np.testing.assert_allclose(out["scores"], pass_.logits[:, 2], rtol=1e-5)
        assert out["positive"].dtype == bool and out["positive"].tolist() == (pass_.logits[:, 2] > 0).tolist()
        np.testing.assert_allclose(out["per_class_mean"], pass_.logits.mean(axis=0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["acts"][0], pass_.activations[0], rtol=1e-5, atol=1e-6)
        assert out["classes"].tolist() == [2] * len(rows)
        assert np.argmax(pass_.logits, axis=1).tolist() == np.argmax(logits[rows], axis=1).tolist()


def test_a_step_reads_the_variables_current_values_and_a_stateless_scopes_own(gap_model, images):
    """JAX hands the variables' values to the compiled step at every call (read through
    kerasxai.backend.jax.current_values): weights assigned after a call are the ones the next call
    explains, and inside a StatelessScope its values are, as Variable.value gives them."""
    from kerasxai.backend.jax import current_values

    assert all(a is v.value for a, v in zip(current_values(gap_model.weights), gap_model.weights))
    twin = keras.models.clone_model(gap_model)
    twin.set_weights([w * 0.5 + 0.1 for w in gap_model.get_weights()])
    expected = kerasxai.gradcam(twin, images, target=1, raw=True)
    before = kerasxai.gradcam(gap_model, images, target=1, raw=True)
    saved = gap_model.get_weights()
    try:
        with keras.StatelessScope(state_mapping=list(zip(gap_model.weights, twin.weights))):
            scoped = current_values(gap_model.weights)
            assert all(np.array_equal(keras.ops.convert_to_numpy(a), t.numpy()) for a, t in zip(scoped, twin.weights))
        gap_model.set_weights(twin.get_weights())
        np.testing.assert_allclose(kerasxai.gradcam(gap_model, images, target=1, raw=True), expected, rtol=1e-5, atol=1e-6)
        assert not np.allclose(before, expected)
    finally:
        gap_model.set_weights(saved)
    np.testing.assert_allclose(kerasxai.gradcam(gap_model, images, target=1, raw=True), before, rtol=1e-6, atol=1e-7)
