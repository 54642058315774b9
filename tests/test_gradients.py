"""Saliency against the exact gradient of a tiny model, derived by hand in NumPy."""

import keras
import numpy as np
from keras import layers

import kerasxai
from tests import reference as ref


def test_saliency_matches_the_analytic_gradient():
    """Conv2D(tanh) -> Flatten -> Dense -> Softmax: d logit_c / dx by the chain rule, by hand."""
    keras.utils.set_random_seed(11)
    inp = keras.Input((8, 8, 2))
    conv = layers.Conv2D(3, 3, activation="tanh")
    dense = layers.Dense(4, name="logits")
    model = keras.Model(inp, layers.Softmax()(dense(layers.Flatten()(conv(inp)))))

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, 8, 8, 2)).astype("float32")
    target = [2, 1]
    got = kerasxai.saliency(model, images, target=target, raw=True)

    kernel, bias = (np.asarray(v, np.float64) for v in (conv.kernel.numpy(), conv.bias.numpy()))
    w = dense.kernel.numpy().astype(np.float64)
    expected = np.zeros((2, 8, 8))
    for n, cls in enumerate(target):
        expected[n] = np.abs(ref.conv_tanh_dense_input_gradient(images[n], kernel, bias, w[:, cls])).max(axis=-1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)

    normalized = kerasxai.saliency(model, images, target=target)
    low, high = expected.min(axis=(1, 2), keepdims=True), expected.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(normalized, (expected - low) / (high - low), atol=1e-4)


def test_saliency_on_one_image_and_predicted_class(gap_model, images):
    single = kerasxai.saliency(gap_model, images[1])
    batch = kerasxai.saliency(gap_model, images)
    assert single.shape == (32, 32)
    np.testing.assert_allclose(single, batch[1], atol=1e-6)


def test_per_image_baselines_and_targets_need_one_entry_per_image(gap_model, images):
    """7 baselines (or 2) for 3 images are refused, from arrays and generators alike; 3 are each image's own."""
    import pytest

    rng = np.random.default_rng(12)
    baselines = rng.uniform(-1, 1, (3,) + images.shape[1:]).astype("float32")
    own = [kerasxai.integrated_gradients(gap_model, images[i], target=1, baseline=baselines[i], steps=4, raw=True)
           for i in range(3)]
    np.testing.assert_allclose(kerasxai.integrated_gradients(gap_model, images, target=1, baseline=baselines, steps=4,
                                                             raw=True, batch_size=2), np.stack(own), rtol=1e-4, atol=1e-6)
    for given in (7, 2):
        many = np.concatenate([baselines] * 3)[:given]
        for source in (images, (images[i : i + 2] for i in range(0, 3, 2))):
            with pytest.raises(ValueError, match=rf"^baseline gives {given} examples but there are 3 images: give one "
                                                 r"example per image, or a single one of shape \(32, 32, 3\) for all\.$"):
                kerasxai.integrated_gradients(gap_model, source, baseline=many, steps=2)
        with pytest.raises(ValueError, match=rf"^target gives {given} classes but there are 3 images: give one class per"):
            kerasxai.saliency(gap_model, (images[i : i + 2] for i in range(0, 3, 2)), target=[1] * given)


def test_a_tabular_input_gets_one_value_per_feature():
    """saliency(model, [image, meta], input="meta"): |d logit / d meta| per feature, against the chain rule by hand."""
    import pytest

    keras.utils.set_random_seed(13)
    image, meta = keras.Input((6, 6, 2), name="image"), keras.Input((5,), name="meta")
    hidden = layers.Dense(4, activation="tanh")
    x = layers.Concatenate()([layers.Flatten()(layers.Conv2D(2, 3, activation="tanh")(image)), hidden(meta)])
    logits = layers.Dense(3, name="logits")
    model = keras.Model([image, meta], layers.Softmax()(logits(x)))
    to_logits = keras.Model([image, meta], logits.output)
    rng = np.random.default_rng(14)
    images, metas = rng.uniform(-1, 1, (3, 6, 6, 2)).astype("float32"), rng.uniform(-1, 1, (3, 5)).astype("float32")
    target = [2, 0, 1]
    w1, b1 = (np.asarray(v, np.float64) for v in (hidden.kernel.numpy(), hidden.bias.numpy()))
    w2 = logits.kernel.numpy().astype(np.float64)[-4:]  # the metadata's features come last in the concatenation
    h = np.tanh(metas @ w1 + b1)
    expected = np.abs(np.stack([w1 @ ((1 - h[n] ** 2) * w2[:, c]) for n, c in enumerate(target)]))
    got = kerasxai.saliency(model, [images, metas], input="meta", target=target, raw=True)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
    assert kerasxai.saliency(model, [images, metas], input="meta", target=target).shape == (3, 5)
    assert kerasxai.smoothgrad(model, [images, metas], input="meta", n=2).shape == (3, 5)
    attributions = kerasxai.integrated_gradients(model, [images, metas], input="meta", target=target, steps=64, raw=True)
    gap = (to_logits.predict([images, metas], verbose=0) - to_logits.predict([images, 0 * metas], verbose=0))[[0, 1, 2], target]
    np.testing.assert_allclose(attributions.sum(axis=1), gap, rtol=1e-3, atol=1e-4)  # completeness, per feature
    ig_map = kerasxai.integrated_gradients(model, [images, metas], input="meta", target=target, steps=64)
    low, high = np.abs(attributions).min(1, keepdims=True), np.abs(attributions).max(1, keepdims=True)
    np.testing.assert_allclose(ig_map, (np.abs(attributions) - low) / (high - low), atol=1e-5)
    with pytest.raises(ValueError, match=r"input 'meta'.*(has no spatial axes: explain input='image'|so CAM methods have nothing to explain there.*another input=)"):
        kerasxai.gradcam(model, [images, metas], input="meta")
