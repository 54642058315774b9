"""top_k: ImageNet names offline, user names, sigmoid heads."""

import keras
import numpy as np
import pytest

from kerasxai import top_k


def test_1000_class_model_offline_falls_back_to_indices(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no internet")

    # decode_predictions downloads the class index through this module (cached after the first time)
    from keras.src.applications import imagenet_utils

    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", None)
    monkeypatch.setattr(imagenet_utils.file_utils, "get_file", offline)
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(1000, activation="softmax")])
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype("float32")
    with pytest.warns(RuntimeWarning, match="class names unavailable"):
        result = top_k(model, x)
    probs = model.predict(x, verbose=0)
    for row, p in zip(result, probs):
        assert [c for c, _, _ in row] == list(np.argsort(-p, kind="stable")[:5])
        assert all(name is None for _, name, _ in row)
        np.testing.assert_allclose([q for _, _, q in row], np.sort(p)[-5:][::-1], rtol=1e-5)


def test_two_class_softmax_with_names_and_sigmoid_head():
    keras.utils.set_random_seed(0)
    soft = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    x = np.random.default_rng(1).normal(size=(3, 4, 4, 3)).astype("float32")
    rows = top_k(soft, x, class_names=["cat", "dog"])
    probs = soft.predict(x, verbose=0)
    for row, p in zip(rows, probs):
        assert row[0][1] == ["cat", "dog"][p.argmax()] and row[0][2] == pytest.approx(p.max(), rel=1e-5)
    sig = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")])
    p_dog = sig.predict(x, verbose=0)[:, 0]
    for row, p in zip(top_k(sig, x, class_names=["cat", "dog"]), p_dog):
        assert dict((n, q) for _, n, q in row) == pytest.approx({"dog": p, "cat": 1 - p}, rel=1e-5)
    with pytest.raises(ValueError, match="3 names but the model has 2"):
        top_k(soft, x, class_names=["a", "b", "c"])


def test_imagenet_names_follow_our_indices_even_on_ties(monkeypatch):
    """decode_predictions is asked for exactly our indices, in our order."""
    from keras.src.applications import imagenet_utils

    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", index)
    model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(1000, kernel_initializer="zeros")])
    rows = top_k(model, np.zeros((1, 2, 2, 1), "float32"), k=3)  # all 1000 tie at 0.001
    assert rows[0] == [(0, "class_0", pytest.approx(0.001)), (1, "class_1", pytest.approx(0.001)), (2, "class_2", pytest.approx(0.001))]
