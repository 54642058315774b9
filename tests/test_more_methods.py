"""Grad-CAM++, XGrad-CAM, HiResCAM, Eigen-CAM, Score-CAM, SmoothGrad, IG and explain()."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import kerasxai
from kerasxai.methods.explain import METHODS
from kerasxai.methods.table import methods_for
from kerasxai.methods.gradients import smoothgrad_noise
from tests import reference as ref


@pytest.fixture(scope="module")
def acts_grads(flatten_model, images):
    """Activations (plain keras.Model) and analytic gradients of class 2 at conv2 of flatten_model."""
    acts = ref.activations(flatten_model.input, flatten_model.get_layer("conv2").output, images)
    grads = ref.flatten_dense_gradient(flatten_model.get_layer("predictions"), acts.shape[1:], [2, 2, 2])
    return acts, grads


def test_gradcam_plus_plus_reference(flatten_model, images, acts_grads):
    a, g = acts_grads
    total = a.sum(axis=(1, 2), keepdims=True)
    denom = 2 * g**2 + total * g**3
    alpha_ij = np.where(g != 0, g**2 / np.where(denom != 0, denom, 1), 0)
    weights = (alpha_ij * np.maximum(g, 0)).sum(axis=(1, 2), keepdims=True)
    expected = np.maximum((weights * a).sum(-1), 0)
    got = kerasxai.gradcam_plus_plus(flatten_model, images, target=2, layer="conv2", raw=True)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-6)


def test_xgradcam_and_hirescam_reference(flatten_model, images, acts_grads):
    a, g = acts_grads
    weights = (a / a.sum(axis=(1, 2), keepdims=True) * g).sum(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(
        kerasxai.xgradcam(flatten_model, images, target=2, layer="conv2", raw=True),
        np.maximum((weights * a).sum(-1), 0), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(
        kerasxai.hirescam(flatten_model, images, target=2, layer="conv2", raw=True),
        np.maximum((g * a).sum(-1), 0), rtol=1e-3, atol=1e-6)


def test_eigencam_reference(flatten_model, images, acts_grads):
    a, _ = acts_grads
    expected = []
    for act in a:
        x = act.reshape(-1, act.shape[-1])
        centred = x - x.mean(axis=0)
        proj = centred @ np.linalg.svd(centred, full_matrices=False)[2][0]
        if np.corrcoef(proj, x.mean(axis=1))[0, 1] < 0:
            proj = -proj
        expected.append(np.maximum(proj, 0).reshape(act.shape[:2]))
    got = kerasxai.eigencam(flatten_model, images, layer="conv2", raw=True)
    np.testing.assert_allclose(got, np.stack(expected), rtol=1e-3, atol=1e-4)


def _scorecam_loop(model, image, layer, cls, n=None):
    """Score-CAM written as a plain loop: one masked input at a time."""
    acts = keras.ops.convert_to_numpy(keras.Model(model.input, model.get_layer(layer).output)(image[None]))[0]
    logits_model = keras.Model(model.input, model.get_layer("predictions").input)
    kernel, bias = (v.numpy() for v in model.get_layer("predictions").weights)
    channels = range(acts.shape[-1])
    if n is not None:
        channels = np.argsort(-acts.var(axis=(0, 1)), kind="stable")[:n]
    scores, kept = [], []
    for k in channels:
        up = tf.image.resize(acts[..., k][None, ..., None], image.shape[:2]).numpy()[0, ..., 0]
        span = up.max() - up.min()
        mask = (up - up.min()) / span if span > 0 else np.zeros_like(up)
        feats = keras.ops.convert_to_numpy(logits_model((image * mask[..., None])[None]))
        scores.append((feats @ kernel + bias)[0, cls])
        kept.append(acts[..., k])
    w = np.exp(scores - np.max(scores))
    w /= w.sum()
    return np.maximum(np.tensordot(np.stack(kept, -1), w, axes=([2], [0])), 0)


@pytest.mark.parametrize("n", [None, 3])
def test_scorecam_matches_a_plain_loop(gap_model, images, n):
    got = kerasxai.scorecam(gap_model, images[:2], target=[1, 3], layer="conv2", n=n, batch_size=5, raw=True)
    for i, cls in enumerate([1, 3]):
        np.testing.assert_allclose(got[i], _scorecam_loop(gap_model, images[i], "conv2", cls, n), rtol=1e-3, atol=1e-6)


def test_scorecam_on_dead_activations_is_finite(images):
    model = keras.Sequential([keras.Input((32, 32, 3)), layers.Conv2D(4, 3, kernel_initializer="zeros", name="c"),
                              layers.GlobalAveragePooling2D(), layers.Dense(3)])
    with pytest.warns(RuntimeWarning, match="flat"):
        maps = kerasxai.scorecam(model, images)
    assert np.isfinite(maps).all() and not maps.any()


def test_smoothgrad_matches_a_plain_loop_and_ignores_batch_size(gap_model, images):
    x = images[:2]
    got = kerasxai.smoothgrad(gap_model, x, target=[0, 4], n=3, noise=0.1, seed=5, batch_size=2, raw=True)
    again = kerasxai.smoothgrad(gap_model, x, target=[0, 4], n=3, noise=0.1, seed=5, batch_size=64, raw=True)
    np.testing.assert_allclose(got, again, rtol=1e-5, atol=1e-8)
    for i, cls in enumerate([0, 4]):
        sigma = 0.1 * (x[i].max() - x[i].min())
        noisy = [x[i] + sigma * smoothgrad_noise(x.shape[1:], 5, j) for j in range(3)]
        expected = np.mean([kerasxai.saliency(gap_model, c, target=cls, raw=True) for c in noisy], axis=0)
        np.testing.assert_allclose(got[i], expected, rtol=1e-4, atol=1e-8)
    assert not np.allclose(got, kerasxai.saliency(gap_model, x, target=[0, 4], raw=True))
    # an image's map does not depend on its place among the images
    swapped = kerasxai.smoothgrad(gap_model, x[::-1], target=[4, 0], n=3, noise=0.1, seed=5, raw=True)
    np.testing.assert_allclose(swapped[::-1], got, rtol=1e-5, atol=1e-8)


def test_integrated_gradients_completeness(nested_sequential, images):
    """Attributions sum to score(x) - score(baseline) within 1%."""
    x = images * 2
    probe = kerasxai.get_probe(nested_sequential, ())
    for target in (1, 0):
        attr = kerasxai.integrated_gradients(nested_sequential, x, target=target, steps=64, raw=True)
        diff = probe.forward(x, target).scores - probe.forward(np.zeros_like(x), target).scores
        np.testing.assert_allclose(attr.sum(axis=(1, 2, 3)), diff, rtol=0.01, atol=1e-4)
    maps = kerasxai.integrated_gradients(nested_sequential, x, steps=8)
    assert maps.shape == (3, 32, 32) and maps.max() == pytest.approx(1.0)


def test_explain_equals_single_functions(gap_model, images):
    options = {"scorecam": {"n": 4}, "smoothgrad": {"n": 3}, "integrated_gradients": {"steps": 4}, "rise": {"n": 40},
               "occlusion": {"window": 6, "stride": 3}}
    methods = methods_for(gap_model)  # every method but the attention methods (a CNN)
    assert set(METHODS) - set(methods) == {"attention_rollout", "transformer_attribution"}
    out = kerasxai.explain(gap_model, images, methods=methods, target=[1, 0, 2], layer="conv2", options=options, batch_size=7)
    assert list(out) == list(methods)
    for name in methods:
        fn = getattr(kerasxai, name)
        kwargs = {"layer": "conv2"} if METHODS[name].layer else {}
        single = fn(gap_model, images, target=[1, 0, 2], **kwargs, **options.get(name, {}))
        np.testing.assert_allclose(out[name], single, atol=1e-5, err_msg=name)


def test_explain_shares_one_pass(gap_model, images, monkeypatch):
    """Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM and saliency: one forward + backward pass in all."""
    from kerasxai.probe import Probe

    runs = []
    original = Probe.step

    def spy(self, grads=None, *args, **kwargs):
        run = original(self, grads, *args, **kwargs)
        return lambda *a, **k: runs.append(grads) or run(*a, **k)

    monkeypatch.setattr(Probe, "step", spy)
    kerasxai.explain(gap_model, images, methods=("gradcam", "gradcam_plus_plus", "xgradcam", "layercam", "saliency"))
    assert runs == ["both"]
    runs.clear()
    kerasxai.explain(gap_model, images, methods=("cam", "eigencam"))
    assert runs == [None]
    runs.clear()
    kerasxai.explain(gap_model, images, methods=("gradcam", "hirescam"), batch_size=2)  # 3 images: 2 batches
    assert runs == ["layers", "layers"]


def test_bad_method_names_and_counts(gap_model, images):
    with pytest.raises(ValueError, match="unknown method 'gradkam': choose from gradcam"):
        kerasxai.explain(gap_model, images, methods=("gradkam",))
    with pytest.raises(ValueError, match="n must be"):
        kerasxai.smoothgrad(gap_model, images, n=0)
    with pytest.raises(ValueError, match="steps must be"):
        kerasxai.integrated_gradients(gap_model, images, steps=0)
    with pytest.raises(ValueError, match="n must be at least 1"):
        kerasxai.scorecam(gap_model, images, n=0)


def test_guided_backprop_on_a_two_layer_relu_network():
    """x -> Flatten -> Dense(5, relu) -> Dense(3): guided gradient derived by hand."""
    keras.utils.set_random_seed(21)
    inp = keras.Input((3, 3, 1))
    hidden = layers.Dense(5, activation="relu", name="hidden")(layers.Flatten()(inp))
    model = keras.Model(inp, layers.Dense(3, name="out")(hidden))
    x = np.random.default_rng(2).normal(size=(2, 3, 3, 1)).astype("float32")
    w1, b1 = (v.numpy() for v in model.get_layer("hidden").weights)
    w2 = model.get_layer("out").kernel.numpy()
    z1 = x.reshape(2, 9) @ w1 + b1
    for cls in range(3):
        dy = np.broadcast_to(w2[:, cls], (2, 5))
        guided = dy * (z1 > 0) * (dy > 0)  # gradient gated on positive input and positive gradient
        expected = (guided @ w1.T).reshape(2, 3, 3, 1)
        got = kerasxai.guided_backprop(model, x, target=cls, raw=True)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        plain = (dy * (z1 > 0)) @ w1.T  # the ordinary gradient differs and is unchanged afterwards
        np.testing.assert_allclose(
            kerasxai.saliency(model, x, target=cls, raw=True), np.abs(plain).reshape(2, 3, 3), rtol=1e-5, atol=1e-6)


def test_guided_backprop_leaves_model_alone_and_guided_gradcam_is_the_product(flatten_model, images):
    weights = [w.copy() for w in flatten_model.get_weights()]
    before = flatten_model.predict(images, verbose=0)
    activations = [getattr(layer, "activation", None) for layer in flatten_model.layers]
    guided = kerasxai.guided_backprop(flatten_model, images, target=1)
    cam = kerasxai.gradcam(flatten_model, images, target=1)
    product = guided * cam
    low, high = product.min(axis=(1, 2), keepdims=True), product.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(kerasxai.guided_gradcam(flatten_model, images, target=1), (product - low) / (high - low), atol=1e-5)
    assert all(np.array_equal(a, b) for a, b in zip(weights, flatten_model.get_weights()))
    np.testing.assert_array_equal(before, flatten_model.predict(images, verbose=0))
    assert activations == [getattr(layer, "activation", None) for layer in flatten_model.layers]
    # guided gradients differ from the plain ones on a ReLU network
    assert not np.allclose(kerasxai.guided_backprop(flatten_model, images, target=1, raw=True),
                           kerasxai.get_probe(flatten_model, ()).input_gradients(images, 1).input_gradient)


def test_explain_guided_gradcam_with_predicted_class(flatten_model, images):
    out = kerasxai.explain(flatten_model, images, methods=("guided_gradcam", "saliency"))
    assert list(out) == ["guided_gradcam", "saliency"]
    np.testing.assert_allclose(out["guided_gradcam"], kerasxai.guided_gradcam(flatten_model, images), atol=1e-5)


def test_a_list_of_layers_is_fused_by_layercam_and_refused_by_every_method_that_explains_one(gap_model, images):
    """layer=[...] used to be the first layer, silently, for every method but LayerCAM."""
    import re

    from kerasxai.methods.table import METHODS

    two = ["conv1", "conv2"]
    for name, method in METHODS.items():
        if not method.layer:
            continue
        options = {"n": 4} if name == "scorecam" else {}
        if method.fuses:
            fused = kerasxai.explain(gap_model, images, methods=("saliency",))  # warm: a fused call works
            assert getattr(kerasxai, name)(gap_model, images, layer=two).shape == fused["saliency"].shape
            continue
        with pytest.raises(ValueError, match=re.escape(f"{name} explains one layer; received 2: {two}")):
            getattr(kerasxai, name)(gap_model, images, layer=two, **options)
    with pytest.raises(ValueError, match=re.escape("explain() explains one layer; received 2")):
        kerasxai.explain(gap_model, images, methods=("gradcam", "saliency"), layer=two)
    # a list of one layer is that layer
    np.testing.assert_array_equal(kerasxai.gradcam(gap_model, images, layer=["conv1"]),
                                  kerasxai.gradcam(gap_model, images, layer="conv1"))


def test_a_method_entry_the_shared_pass_cannot_compute_is_refused():
    from kerasxai.methods import gradients
    from kerasxai.methods.table import INPUT, Method

    with pytest.raises(ValueError, match="shared pass computes"):
        Method("mysaliency", "Mine", INPUT, gradients.plan_saliency, shared=True, layer=False, pixel=True)
    Method("mysaliency", "Mine", INPUT, gradients.plan_saliency, layer=False, pixel=True)  # its own pass: fine


def test_the_overlay_shrinks_a_larger_map_by_sampling_it_as_everywhere_else():
    from kerasxai.figures.common import resize_linear

    rng = np.random.default_rng(0)
    photo, heat = np.full((20, 30, 3), 128, np.uint8), rng.random((64, 64)).astype("float32")
    import matplotlib

    expected = 0.6 * photo + 0.4 * 255 * matplotlib.colormaps["jet"](resize_linear(heat, (20, 30)))[..., :3]
    assert np.abs(kerasxai.overlay(photo, heat).astype(int) - np.round(expected)).max() <= 3


def test_a_one_layer_list_is_that_layer_for_layercam_too(gap_model, images):
    """layercam(layer=["conv2"]) used to fuse one map (tanh-scaled): not layercam(layer="conv2")."""
    np.testing.assert_allclose(kerasxai.layercam(gap_model, images, layer=["conv2"]),
                               kerasxai.layercam(gap_model, images, layer="conv2"), atol=1e-6)  # two compiled steps
    raw = kerasxai.layercam(gap_model, images, layer=["conv2"], raw=True)  # a list in, a list of raw maps out
    assert len(raw) == 1
    np.testing.assert_allclose(raw[0], kerasxai.layercam(gap_model, images, layer="conv2", raw=True), atol=1e-6)
    with pytest.raises(ValueError, match="gamma=5 scales LayerCAM's fusion.*one layer is explained here"):
        kerasxai.layercam(gap_model, images, layer="conv2", gamma=5)
    with pytest.raises(ValueError, match="gamma must be a number > 0"):
        kerasxai.layercam(gap_model, images, layer=["conv1", "conv2"], gamma=0)
    sharp = kerasxai.layercam(gap_model, images, layer=["conv1", "conv2"], gamma=8.0)
    assert np.abs(sharp - kerasxai.layercam(gap_model, images, layer=["conv1", "conv2"])).max() > 1e-3  # gamma used


@pytest.mark.parametrize("kwargs, message", [
    ({"methods": ("scorecam",), "options": {"scorecam": {"n": 0}}}, r"n must be at least 1"),
    ({"batch_size": 0}, r"batch_size must be an int of at least 1"),
    ({"options": {"layercam": {"gamma": 5}}}, r"explain\(\) explains one layer: leave it out"),
    ({"methods": ("saliency", "smoothgrad"), "layer": "nope"}, r"saliency, smoothgrad are explained at the input"),
    ({"methods": ("cam",), "target": lambda logits: logits[:, 0]}, r"cam needs a class target"),
    ({"options": {"gradcam": True}}, r"options\['gradcam'\] must be a dict"),
    ({"options": ["gradcam"]}, r"options is a dict method name"),
])
def test_explain_refuses_what_it_would_ignore_or_get_wrong(gap_model, images, kwargs, message):
    """Each of these used to run: zeros (n=0), 32 images a pass (batch_size=0), gamma ignored, a bad layer
    ignored, CAM of a callable's class, or a TypeError from deep inside."""
    with pytest.raises(ValueError, match=message):
        kerasxai.explain(gap_model, images, **kwargs)


def test_an_out_of_range_target_names_the_sequential_models_output_layer(images):
    model = keras.Sequential([keras.Input(images.shape[1:]), layers.Conv2D(2, 3), layers.Flatten(),
                              layers.Dense(3, name="classes")])
    with pytest.raises(ValueError, match=r"output 'classes' has 3 classes, so a target must be in 0\.\.2"):
        kerasxai.gradcam(model, images, target=7)


def _two_input_model():
    keras.utils.set_random_seed(30)
    image, meta = keras.Input((8, 8, 3), name="image"), keras.Input((4,), name="meta")
    pooled = layers.GlobalAveragePooling2D()(layers.Conv2D(3, 3, activation="relu", name="conv")(image))
    return keras.Model([image, meta], layers.Dense(2)(layers.Concatenate()([pooled, meta])))


class _DictInput(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv, self.pool, self.head = layers.Conv2D(2, 3), layers.GlobalAveragePooling2D(), layers.Dense(2)

    def call(self, x):
        return self.head(self.pool(self.conv(x["img"])) + x["aux"])


def test_the_long_tails_mistakes_each_get_one_sentence(gap_model, images):
    """Each of these used to fail deep inside Keras, TensorFlow or NumPy, or to return zero maps."""
    with pytest.raises(ValueError, match=r"layer names 'conv2' more than once in \['conv2', 'conv2'\]"):
        kerasxai.layercam(gap_model, images, layer=["conv2", "conv2"])
    baseline = np.zeros(images.shape[1:], "float32")
    baseline[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"baseline holds NaN or infinite values \(first at index \[1, 2, 0\]"):
        kerasxai.integrated_gradients(gap_model, images, baseline=baseline)
    with pytest.raises(ValueError, match="write it with keras.ops, not NumPy"):
        kerasxai.gradcam(gap_model, images, target=lambda logits: np.asarray(logits)[:, 0])
    two = _two_input_model()
    with pytest.raises(ValueError, match=r"has 2 inputs \(\['image', 'meta'\]\); images gives 1"):
        kerasxai.gradcam(two, [np.zeros((2, 8, 8, 3), "float32")])
    sub = _DictInput()
    x = {"img": np.zeros((2, 8, 8, 3), "float32"), "aux": np.zeros((2, 2), "float32")}
    sub(x)
    with pytest.raises(TypeError, match="subclassed .* cannot tell which entry of a list or dict is the image"):
        kerasxai.gradcam(sub, x, layer=sub.conv)


def test_activations_that_overflow_are_refused_though_the_output_looks_fine():
    keras.utils.set_random_seed(31)
    inp = keras.Input((6, 6, 1))
    conv = layers.Conv2D(2, 3, name="big")
    capped = layers.Lambda(lambda t: keras.ops.minimum(t, 1.0))(conv(inp))  # hides the overflow
    model = keras.Model(inp, layers.Dense(2)(layers.Flatten()(capped)))
    conv.kernel.assign(np.full(conv.kernel.shape, 1e38, "float32"))
    x = np.ones((2, 6, 6, 1), "float32")  # 9 x 1e38 overflows float32: the activations are inf...
    assert np.isfinite(model.predict(x, verbose=0)).all()  # ...and the output looks fine
    with pytest.raises(ValueError, match=r"explained layer's activations are NaN or infinite for image\(s\) 0, 1"):
        kerasxai.gradcam(model, x, layer="big")
