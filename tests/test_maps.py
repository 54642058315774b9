"""Shared post-processing: normalising, n-D linear upsampling, what is wrong with a flat map."""

import warnings

import jax
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from kerasxai.methods import maps


def test_normalize_is_min_max_per_image_and_flat_is_zero():
    m = np.array([[[2.0, 4.0], [6.0, 10.0]], [[5.0, 5.0], [5.0, 5.0]], [[0.0, 0.0], [0.0, 0.0]]])
    out, flat = maps.normalize(m)
    np.testing.assert_allclose(out[0], [[0, 0.25], [0.5, 1.0]])
    assert flat.tolist() == [False, True, True]
    assert not out[1:].any() and np.isfinite(out).all()


def test_normalize_handles_nan_and_tiny_ranges():
    out, flat = maps.normalize(np.array([[[np.nan, 1.0]], [[1e-20, 2e-20]]]))
    assert flat.tolist() == [True, False]
    assert np.isfinite(out).all()


def test_2d_upsampling_equals_tensorflow_bilinear():
    raw = np.random.default_rng(0).normal(size=(2, 7, 5)).astype("float32")
    for size in [(224, 160), (13, 9), (7, 5), (3, 2)]:
        ours = ops.convert_to_numpy(maps.resize_linear(raw, size))
        reference = tf.image.resize(raw[..., None], size, method="bilinear").numpy()[..., 0]
        np.testing.assert_allclose(ours, reference, atol=1e-5)


@pytest.mark.parametrize("shape, size", [((2, 11), (64,)), ((1, 3, 4, 5), (12, 16, 20)), ((2, 4, 4, 4), (9, 8, 17))])
def test_1d_and_3d_upsampling_equal_jax_linear_resize(shape, size):
    """Linear (signals) and trilinear (volumes) interpolation, half-pixel centres, as jax.image.resize does."""
    raw = np.random.default_rng(1).normal(size=shape).astype("float32")
    ours = ops.convert_to_numpy(maps.resize_linear(raw, size))
    reference = np.asarray(jax.image.resize(raw, (shape[0],) + size, method="linear"))
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_a_long_signal_is_resized_in_the_step_not_with_a_constant_matrix():
    """Weights known when traced are a constant of the step, except a matrix too large to embed (a long 1-D
    signal: 600 x 1000 values): both paths give the linear resize."""
    raw = np.random.default_rng(2).normal(size=(2, 600)).astype("float32")
    before = maps._constant_weights.cache_info().currsize
    ours = ops.convert_to_numpy(maps.resize_linear(raw, (1000,)))
    assert maps._constant_weights.cache_info().currsize == before  # not made: computed in the step
    np.testing.assert_allclose(ours, raw @ maps._constant_weights.__wrapped__(600, 1000), atol=1e-6)  # the same weights
    np.testing.assert_allclose(ours, np.asarray(jax.image.resize(raw, (2, 1000), method="linear")), atol=1e-4)
    small = ops.convert_to_numpy(maps.resize_linear(raw[:, :60], (100,)))
    assert maps._constant_weights.cache_info().currsize >= 1
    np.testing.assert_allclose(small, np.asarray(jax.image.resize(raw[:, :60], (2, 100), method="linear")), atol=1e-5)


def test_upsampling_keeps_range_and_corners():
    up = ops.convert_to_numpy(maps.resize_linear(np.array([[[0.0, 1.0], [1.0, 0.0]]], "float32"), (8, 8)))
    assert up.shape == (1, 8, 8) and up.min() >= 0 and up.max() <= 1
    assert up[0, 0, 0] == pytest.approx(0.0) and up[0, 0, 7] == pytest.approx(1.0)


def test_flat_warning_names_images_scores_and_the_cause_seen():
    out = {
        "flat": np.array([False, True, True, True]),
        "scores": np.array([1.0, -2.5, 0.3, 0.4]),
        "classes": np.array([0, 3, 1, 1]),
        "raw_max": np.array([1.0, -0.5, 0.0, 2.0]),
        "zero_gradient": np.array([False, False, True, False]),
    }
    with pytest.warns(RuntimeWarning) as caught:
        maps.Collector("gradcam").warn_flat(out, "zero_gradient")
    text = str(caught[0].message)
    assert "image 1 (class 3, score -2.5): the model scores the target negatively" in text
    assert "image 2 (class 1, score 0.3): the target score's gradient is exactly zero" in text
    assert "image 3 (class 1, score 0.4): the map is constant" in text
    assert "image 0" not in text


def test_collector_refuses_non_finite_model_outputs_naming_images():
    collector = maps.Collector("saliency", 6)
    collector.add(0, {"map": np.zeros((3, 2)), "finite": np.array([True, True, True])})
    with pytest.raises(ValueError, match=r"NaN or infinite for image\(s\) 4"):
        collector.add(3, {"map": np.zeros((3, 2)), "finite": np.array([True, False, True])})


def test_collector_fills_arrays_in_order_without_warning_when_nothing_is_flat():
    collector = maps.Collector("gradcam", 4)
    collector.add(2, {"map": np.full((2, 3), 2.0), "flat": np.zeros(2, bool)})
    collector.add(0, {"map": np.full((2, 3), 1.0), "flat": np.zeros(2, bool)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = collector.result()
    assert out["map"][:, 0].tolist() == [1.0, 1.0, 2.0, 2.0]


def test_collector_of_unknown_length_keeps_every_row_in_order(monkeypatch):
    """Batches of a stream of unknown length (a tf.data.Dataset, a generator) go into a buffer grown
    in steps; batches crossing a step, a last short batch and a one-step result all come back intact."""
    monkeypatch.setattr(maps._Growing, "STEP_BYTES", 5 * 3 * 4)  # grows by 5 rows of (3,) float32
    data = np.random.default_rng(0).random((23, 3)).astype("float32")
    for sizes in ([4, 7, 3, 9], [2, 1], [23]):
        collector, start = maps.Collector("saliency"), 0
        for n in sizes:
            collector.add(start, {"map": data[start : start + n], "flat": np.arange(start, start + n) % 2 == 0})
            start += n
        with pytest.warns(RuntimeWarning):
            out = collector.result()
        np.testing.assert_array_equal(out["map"], data[:start])
        np.testing.assert_array_equal(out["flat"], np.arange(start) % 2 == 0)
