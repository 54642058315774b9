"""Saliency against central finite differences on a tiny float64 model."""

import keras
import numpy as np
from keras import layers

import kerasxai


def test_saliency_matches_finite_differences():
    keras.utils.set_random_seed(11)
    f64 = dict(dtype="float64")
    inp = keras.Input((8, 8, 2), dtype="float64")
    x = layers.Conv2D(3, 3, activation="tanh", **f64)(inp)
    x = layers.Flatten(**f64)(x)
    logits = layers.Dense(4, name="logits", **f64)(x)
    model = keras.Model(inp, layers.Softmax(**f64)(logits))
    score_model = keras.Model(inp, logits)  # logits computed independently of kerasxai

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, 8, 8, 2))
    target = [2, 1]
    got = kerasxai.saliency(model, images.astype("float32"), target=target, raw=True)

    base = images.astype("float32").astype("float64")
    eps = 1e-4
    grads = np.zeros_like(base)
    for n in range(2):
        for idx in np.ndindex(base.shape[1:]):
            plus, minus = base.copy(), base.copy()
            plus[(n,) + idx] += eps
            minus[(n,) + idx] -= eps
            zp = keras.ops.convert_to_numpy(score_model(plus[n : n + 1]))[0, target[n]]
            zm = keras.ops.convert_to_numpy(score_model(minus[n : n + 1]))[0, target[n]]
            grads[(n,) + idx] = (zp - zm) / (2 * eps)
    expected = np.abs(grads).max(axis=-1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)

    normalized = kerasxai.saliency(model, images.astype("float32"), target=target)
    low, high = expected.min(axis=(1, 2), keepdims=True), expected.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(normalized, (expected - low) / (high - low), atol=1e-4)


def test_saliency_on_one_image_and_predicted_class(gap_model, images):
    single = kerasxai.saliency(gap_model, images[1])
    batch = kerasxai.saliency(gap_model, images)
    assert single.shape == (32, 32)
    np.testing.assert_allclose(single, batch[1], atol=1e-6)
