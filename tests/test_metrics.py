"""Metrics on hand-computed cases."""

import keras
import numpy as np
import pytest

import kerasxai
from kerasxai.evaluation import metrics
from kerasxai.evaluation import synthetic


def one_pixel_model(y=5, x=5, weight=4.0, size=10):
    """Logit of class 1 = weight * image[y, x, 0]; class 0 logit = 0. It looks at one pixel only."""
    model = keras.Sequential([keras.Input((size, size, 1)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    kernel = np.zeros((size * size, 2), np.float32)
    kernel[y * size + x, 1] = weight
    model.layers[-1].set_weights([kernel, np.zeros(2, np.float32)])
    return model


def test_deletion_and_insertion_of_a_one_pixel_model():
    model = one_pixel_model()
    image = np.full((1, 10, 10, 1), 0.2, np.float32)
    image[0, 5, 5, 0] = 1.0
    heat = np.zeros((1, 10, 10), np.float32)
    heat[0, 5, 5] = 1.0  # the map points at the pixel
    p = 1 / (1 + np.exp(-4.0))  # softmax of (0, 4): probability of class 1 on the image
    out = metrics.deletion_insertion(model, image, heat, target=1, steps=10, baseline="black")
    # deletion removes the pixel in the first step (10% = 10 pixels, the top-ranked first)
    np.testing.assert_allclose(out["deletion"][0], [p] + [0.5] * 10, rtol=1e-5)
    np.testing.assert_allclose(out["insertion"][0], [0.5] + [p] * 10, rtol=1e-5)
    np.testing.assert_allclose(out["deletion_auc"], [((p + 0.5) / 2 + 9 * 0.5) / 10], rtol=1e-5)
    np.testing.assert_allclose(out["insertion_auc"], [((0.5 + p) / 2 + 9 * p) / 10], rtol=1e-5)
    # a map that ranks the pixel last: deletion keeps the score until the very end
    worst = metrics.deletion_insertion(model, image, 1.0 - heat, target=1, steps=10, baseline="black")
    assert worst["deletion"][0, -2] == pytest.approx(p, rel=1e-5) and worst["deletion"][0, -1] == pytest.approx(0.5)
    assert worst["deletion_auc"][0] > out["deletion_auc"][0]


def test_baselines():
    images = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32")
    assert not metrics._baseline(images, "black").any()
    np.testing.assert_allclose(metrics._baseline(images, "mean")[0, 3, 3], images[0].mean(axis=(0, 1)), rtol=1e-6)
    blurred = metrics._baseline(images, "blur")
    assert blurred.shape == images.shape and blurred.std() < images.std()
    with pytest.raises(ValueError, match="baseline must be"):
        metrics._baseline(images, "noise")


def test_pointing_games_exact_and_random_maps():
    rng = np.random.default_rng(1)
    masks = metrics.box_masks([(2, 3, 6, 9)] * 200, (20, 20))
    exact = masks.astype(np.float32)
    assert metrics.pointing_game(exact, masks).all()
    np.testing.assert_allclose(metrics.energy_pointing_game(exact, masks), 1.0)
    random_maps = rng.uniform(size=(200, 20, 20))
    area = masks[0].mean()  # 24 / 400
    assert abs(metrics.energy_pointing_game(random_maps, masks).mean() - area) < 0.01
    assert abs(metrics.pointing_game(random_maps, masks).mean() - area) < 0.05
    assert metrics.energy_pointing_game(np.zeros((1, 20, 20)), masks[:1]).tolist() == [0.0]


def test_average_drop_and_increase():
    model = one_pixel_model()
    image = np.full((2, 10, 10, 1), 0.2, np.float32)
    image[:, 5, 5, 0] = 1.0
    keep_all = np.ones((2, 10, 10), np.float32)
    assert metrics.average_drop_increase(model, image, keep_all, target=1) == (0.0, 0.0)
    half = np.full((2, 10, 10), 0.5, np.float32)  # pixel value halves: logit 2 instead of 4
    p, o = 1 / (1 + np.exp(-4.0)), 1 / (1 + np.exp(-2.0))
    drop, increase = metrics.average_drop_increase(model, image, half, target=1)
    assert drop == pytest.approx((p - o) / p * 100, rel=1e-4) and increase == 0.0
    drop, increase = metrics.average_drop_increase(model, image, half, target=0)  # class 0 gains
    assert drop == 0.0 and increase == 100.0


def test_rank_correlation_and_box_masks():
    assert metrics.rank_correlation([1, 2, 2, 3], [1, 5, 5, 9]) == pytest.approx(1.0)
    assert metrics.rank_correlation(np.ones(5), np.arange(5)) == 0.0
    assert metrics.box_masks([(1, 1, 3, 2)], (4, 4)).sum() == 2


def test_randomization_check_on_a_tiny_model():
    train_x, train_y, _ = synthetic.shapes_dataset(256, size=32, seed=4)
    model = synthetic.small_cnn((32, 32, 3), seed=3)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(train_x, train_y, epochs=3, batch_size=32, verbose=0)
    x = train_x[:4]
    before = [w.copy() for w in model.get_weights()]
    steps = metrics.randomization_check(model, x, kerasxai.gradcam, target=train_y[:4].tolist(), seed=1)
    assert [name for name, _ in steps] == ["none", "predictions", "last_conv", "conv2", "conv1"]
    assert steps[0][1] == pytest.approx(1.0, abs=1e-6)
    assert min(c for _, c in steps[1:]) < 0.6
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # the user's model untouched


def test_synthetic_clutter_stays_outside_the_masks():
    images, labels, masks = synthetic.shapes_dataset(10, size=48, seed=2, clutter=4)
    bright = images.max(axis=-1) >= 0.5
    for b, m in zip(bright, masks):
        assert (b & m).sum() == m.sum()  # the object is drawn where its mask is
        assert (b & ~m).sum() > 0  # and bright clutter exists elsewhere
