"""Shared post-processing: normalising, upsampling, flat-map warnings."""

import numpy as np
import pytest
import tensorflow as tf

from kerasxai import maps


def test_normalize_is_min_max_per_image_and_flat_is_zero():
    m = np.array([[[2.0, 4.0], [6.0, 10.0]], [[5.0, 5.0], [5.0, 5.0]], [[0.0, 0.0], [0.0, 0.0]]])
    out, flat = maps.normalize(m)
    np.testing.assert_allclose(out[0], [[0, 0.25], [0.5, 1.0]])
    assert flat.tolist() == [False, True, True]
    assert not out.numpy()[1:].any() and np.isfinite(out.numpy()).all()


def test_normalize_handles_nan_and_tiny_ranges():
    out, flat = maps.normalize(np.array([[[np.nan, 1.0]], [[1e-20, 2e-20]]]))
    assert flat.tolist() == [True, False]
    assert np.isfinite(out.numpy()).all()


def test_upsample_is_bilinear_and_keeps_range():
    m = tf.constant([[[0.0, 1.0], [1.0, 0.0]]])
    up = maps.upsample(m, (8, 8)).numpy()
    assert up.shape == (1, 8, 8) and up.min() >= 0 and up.max() <= 1
    assert up[0, 0, 0] == pytest.approx(0.0) and up[0, 0, 7] == pytest.approx(1.0)


def test_warn_flat_names_images_and_scores():
    with pytest.warns(RuntimeWarning, match=r"image 1 \(target class 3, score -2\.5\)"):
        maps.warn_flat("gradcam", np.array([False, True]), [0, 3], [1.0, -2.5])
