"""Occlusion: the score drop of hidden windows, against a plain NumPy loop; models without a gradient."""

import keras
import numpy as np
import pytest
from keras import layers, ops

import kerasxai
from kerasxai.methods.perturbation import occlusion_windows
from tests import reference


def _classifier(seed=40, shape=(12, 12, 3), data_format="channels_last"):
    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape)
    x = layers.Conv2D(4, 3, activation="relu", data_format=data_format, name="c")(inp)
    features = layers.Flatten(name="features")(x)
    dense = layers.Dense(3, name="logits")
    return keras.Model(inp, layers.Activation("softmax")(dense(features))), keras.Model(inp, dense(features))


def _loop(logits_model, x, target, window, stride, baseline=0.0, channels_first=False):
    """Occlusion by hand: every window hidden in turn, the mean drop of the target logit per pixel."""
    forward = reference.runnable(logits_model) if channels_first else logits_model

    def score(z):
        return keras.ops.convert_to_numpy(forward(z))[np.arange(len(z)), target]

    spatial = x.shape[2:] if channels_first else x.shape[1:-1]
    clean = score(x)
    total, count = np.zeros((len(x),) + spatial), np.zeros(spatial)
    for i in range(0, spatial[0], stride):
        for j in range(0, spatial[1], stride):
            hidden = x.copy()
            if channels_first:
                hidden[:, :, i:i + window, j:j + window] = np.reshape(baseline, (-1, 1, 1)) if np.ndim(baseline) else baseline
            else:
                hidden[:, i:i + window, j:j + window, :] = baseline
            total[:, i:i + window, j:j + window] += (clean - score(hidden))[:, None, None]
            count[i:i + window, j:j + window] += 1
    return total / count


@pytest.fixture(scope="module")
def models():
    return _classifier()


X = np.random.default_rng(41).uniform(0, 1, (3, 12, 12, 3)).astype("float32")


@pytest.mark.parametrize("window, stride, baseline", [(4, 2, 0.0), (5, 5, 0.5), (3, 2, [0.1, 0.5, 0.9])])
def test_occlusion_is_the_mean_drop_of_the_target_logit_over_the_windows_covering_a_pixel(models, window, stride, baseline):
    model, logits = models
    target = [0, 2, 1]
    expected = _loop(logits, X, target, window, stride, np.asarray(baseline, np.float32))
    got = kerasxai.occlusion(model, X, target=target, window=window, stride=stride, baseline=baseline, raw=True,
                             batch_size=7)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(expected).max() > 0.01
    normalised = kerasxai.occlusion(model, X, target=target, window=window, stride=stride, baseline=baseline)
    positive = np.maximum(expected, 0)
    peak = positive.reshape(3, -1).max(1)[:, None, None]
    np.testing.assert_allclose(normalised, positive / peak, atol=1e-5)


def test_the_predicted_class_is_chosen_on_the_clean_image_and_batches_do_not_matter(models):
    model, logits = models
    predicted = keras.ops.convert_to_numpy(logits(X)).argmax(-1)
    one = kerasxai.occlusion(model, X, window=4, stride=4, raw=True, batch_size=1)
    np.testing.assert_allclose(one, _loop(logits, X, predicted, 4, 4), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(kerasxai.occlusion(model, X, window=4, stride=4, raw=True, batch_size=64), one, atol=1e-6)


def test_a_channels_first_model_is_occluded_on_its_spatial_axes():
    model, logits = _classifier(shape=(3, 12, 12), data_format="channels_first")
    x = np.moveaxis(X, -1, 1).copy()
    expected = _loop(logits, x, [1, 1, 1], 4, 2, channels_first=True)
    np.testing.assert_allclose(kerasxai.occlusion(model, x, target=1, window=4, stride=2, raw=True), expected,
                               rtol=1e-4, atol=1e-5)


def test_a_model_without_a_gradient_is_explained_by_occlusion():
    """An argmax inside the model: gradient methods refuse it, occlusion needs forward passes only."""
    keras.utils.set_random_seed(42)
    inp = keras.Input((8, 8, 1))
    level = layers.Lambda(lambda t: ops.cast(ops.argmax(ops.concatenate([t, 0.5 * ops.ones_like(t)], -1), -1), "float32"))(inp)
    out = layers.Dense(2, name="logits")(layers.Flatten()(layers.Reshape((8, 8, 1))(level)))
    model = keras.Model(inp, out)
    x = np.random.default_rng(43).uniform(0, 1, (2, 8, 8, 1)).astype("float32")
    if keras.backend.backend() != "jax":  # JAX differentiates argmax as zero: a flat-map warning there
        with pytest.raises(ValueError, match="gradient"):
            kerasxai.saliency(model, x)
    got = kerasxai.occlusion(model, x, target=0, window=2, stride=2, raw=True)
    np.testing.assert_allclose(got, _loop(model, x, [0, 0], 2, 2), rtol=1e-4, atol=1e-5)
    assert np.abs(got).max() > 0


def test_occlusion_runs_in_explain_and_is_listed_in_the_method_table(models):
    from kerasxai.methods.table import METHODS, PERTURBATION

    model, _ = models
    assert METHODS["occlusion"].kind == PERTURBATION and METHODS["occlusion"].pixel
    out = kerasxai.explain(model, X, methods=("gradcam", "occlusion", "rise"),
                           options={"occlusion": {"window": 4, "stride": 2}, "rise": {"n": 50, "seed": 3}})
    np.testing.assert_allclose(out["occlusion"], kerasxai.occlusion(model, X, window=4, stride=2), atol=1e-6)
    np.testing.assert_allclose(out["rise"], kerasxai.rise(model, X, n=50, seed=3), atol=1e-6)


def test_occlusion_windows_are_cut_at_the_border():
    masks = occlusion_windows((5,), 3, 2)
    assert masks.astype(int).tolist() == [[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [0, 0, 0, 0, 1]]
    assert occlusion_windows((4, 6, 2), (2, 3, 2), (2, 3, 2)).shape == (2 * 2 * 1, 4, 6, 2)


@pytest.mark.parametrize("kwargs, message", [
    ({"window": 2, "stride": 3}, "stride .* is larger than window"),
    ({"window": 0}, "window must be an int >= 1"),
    ({"baseline": np.nan}, "baseline holds NaN"),
    ({"baseline": np.zeros(5)}, r"baseline has shape \(5,\); it must broadcast to one example"),
    ({"batch_size": 0}, "batch_size must be an int of at least 1"),
])
def test_occlusion_refuses_clearly(models, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kerasxai.occlusion(models[0], X, **kwargs)


# --------------------------------------------------------------------------- RISE


def test_rise_is_the_mask_weighted_mean_score_and_the_same_for_any_batch_size(models):
    from kerasxai.methods.perturbation import rise_masks

    model, logits = models
    n, p = 120, 0.5
    masks = rise_masks(X.shape[1:3], 0, n, cells=3, p=p, seed=4)
    scores = np.stack([keras.ops.convert_to_numpy(logits(X[i] * masks[..., None]))[:, 2] for i in range(len(X))])
    expected = np.einsum("ij,jhw->ihw", scores, masks) / (n * p)
    got = kerasxai.rise(model, X, target=2, n=n, cells=3, p=p, seed=4, raw=True, batch_size=7)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(kerasxai.rise(model, X, target=2, n=n, cells=3, p=p, seed=4, raw=True, batch_size=500),
                               got, rtol=1e-5, atol=1e-6)
    other = kerasxai.rise(model, X, target=2, n=n, cells=3, p=p, seed=5, raw=True)
    assert np.abs(other - got).max() > 1e-3  # another seed, other masks


def test_rise_masks_are_smooth_shifted_grids_drawn_per_mask():
    from kerasxai.methods.perturbation import rise_masks

    masks = rise_masks((30, 20), 0, 400, cells=5, p=0.3, seed=0)
    assert masks.shape == (400, 30, 20) and masks.min() >= 0 and masks.max() <= 1
    assert abs(masks.mean() - 0.3) < 0.03  # each cell kept with probability p
    assert len(np.unique(masks.round(3))) > 10  # upsampled linearly: not binary
    np.testing.assert_array_equal(rise_masks((30, 20), 10, 5, cells=5, p=0.3, seed=0), masks[10:15])  # per mask
    assert rise_masks((16,), 0, 3, cells=4).shape == (3, 16)  # signals
    assert rise_masks((6, 8, 8), 0, 2, cells=(2, 4, 4)).shape == (2, 6, 8, 8)  # volumes


def test_rise_finds_the_evidence_and_is_stable_across_seeds_at_the_default_n():
    """A linear model whose class 0 reads only the top-left 8x8 block: the map peaks there."""
    inp = keras.Input((16, 16, 1))
    dense = layers.Dense(2)
    model = keras.Model(inp, dense(layers.Flatten()(inp)))
    kernel = np.zeros((256, 2), "float32")
    kernel[np.ravel_multi_index(np.mgrid[:8, :8].reshape(2, -1), (16, 16)), 0] = 1.0
    dense.set_weights([kernel, np.zeros(2, "float32")])
    x = np.random.default_rng(44).uniform(0.5, 1, (2, 16, 16, 1)).astype("float32")
    a = kerasxai.rise(model, x, target=0, cells=4, seed=0, progress=False)
    b = kerasxai.rise(model, x, target=0, cells=4, seed=1, progress=False)
    for i in range(2):
        assert np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1] > 0.9
        assert a[i][:8, :8].mean() > a[i][8:, 8:].mean() + 0.3


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "n must be an int of at least 1"),
    ({"p": 0}, r"p is the probability that a cell is kept, in \(0, 1\]"),
    ({"cells": 0}, "cells must be an int >= 1"),
    ({"seed": -1}, "seed must be an int >= 0"),
])
def test_rise_refuses_clearly(models, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kerasxai.rise(models[0], X, **kwargs)


def test_perturbation_methods_refuse_a_tabular_input():
    inp = keras.Input((5,))
    model = keras.Model(inp, layers.Dense(2)(inp))
    for method in (kerasxai.occlusion, kerasxai.rise):
        with pytest.raises(ValueError, match="input with spatial axes .* use saliency or integrated_gradients"):
            method(model, np.zeros((2, 5), "float32"))
