"""top_k: ImageNet names offline, user names, sigmoid heads."""

import keras
import numpy as np
import pytest

from kerasxai import top_k


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach the network (a socket, or Keras's downloader) fails the test."""
    import socket

    import keras.src.utils.file_utils as file_utils

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(keras.utils, "get_file", refuse)
    monkeypatch.setattr(file_utils, "get_file", refuse)
    from keras.src.applications import imagenet_utils

    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", None)  # a download would be needed through Keras
    return attempts


def test_1000_class_model_names_come_from_the_shipped_index(no_network):
    import warnings

    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(1000)])
    kernel = np.zeros((48, 1000), "float32")
    bias = np.full(1000, -5.0, "float32")
    bias[[281, 0, 999, 134, 517]] = [4.0, 3.0, 2.0, 1.0, 0.5]  # tabby, tench, toilet tissue, both cranes
    model.layers[-1].set_weights([kernel, bias])
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "names unavailable" fallback any more
        rows = top_k(model, x)
    expected = [(281, "tabby"), (0, "tench"), (999, "toilet_tissue"), (134, "crane"), (517, "crane")]
    e = np.exp(bias - bias.max())
    for row in rows:
        assert [(c, n) for c, n, _ in row] == expected
        np.testing.assert_allclose([p for _, _, p in row], (e / e.sum())[[281, 0, 999, 134, 517]], rtol=1e-5)
    assert no_network == []


def test_shipped_index_is_keras_format_in_sorted_wnid_order():
    from kerasxai.data import imagenet

    index = imagenet.class_index()
    assert list(index) == [str(i) for i in range(1000)]
    wnids, names = imagenet.wnids(), imagenet.class_names()
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000
    assert all(len(w) == 9 and w[0] == "n" and w[1:].isdigit() for w in wnids)
    assert index["0"] == ["n01440764", "tench"]
    assert index["281"] == ["n02123045", "tabby"]
    assert index["999"] == ["n15075141", "toilet_tissue"]
    # spot checks across the range, against Keras's published index
    assert names[1] == "goldfish" and names[151] == "Chihuahua" and names[409] == "analog_clock"
    assert names[638] == names[639] == "maillot" and names[134] == names[517] == "crane"
    assert all(" " not in n for n in names)  # Keras writes spaces as underscores


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


def test_imagenet_names_follow_our_indices_even_on_ties(no_network):
    from kerasxai.data.imagenet import class_names

    model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(1000, kernel_initializer="zeros")])
    rows = top_k(model, np.zeros((1, 2, 2, 1), "float32"), k=3)  # all 1000 tie at 0.001
    names = class_names()
    assert rows[0] == [(i, names[i], pytest.approx(0.001)) for i in range(3)]
    assert [n for _, n, _ in rows[0]] == ["tench", "goldfish", "great_white_shark"]


def test_top_k_never_squashes_a_hidden_softmax_or_sigmoid_twice():
    """Probabilities equal model.predict's for squashings the structure hides; top_k may be the first call."""
    import warnings

    from tests.test_heads import X, DictHeads, OpsSoftmax, _built, lambda_sigmoid, temperature_softmax

    cases = [(temperature_softmax(), {}, None), (_built(OpsSoftmax()), {}, None), (_built(DictHeads()), {"output": "cls"}, "cls"),
             (lambda_sigmoid(3)[0], {}, None)]
    for model, kwargs, key in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the hidden squashing's warning (tests/test_heads.py)
            rows = top_k(model, X, k=3, **kwargs)
        probs = model.predict(X, verbose=0)
        probs = probs[key] if key else probs
        for row, p in zip(rows, probs):
            assert [c for c, _, _ in row] == np.argsort(-p, kind="stable")[:3].tolist()
            np.testing.assert_allclose([q for _, _, q in row], p[[c for c, _, _ in row]], rtol=1e-5)
    model = lambda_sigmoid(1)[0]
    with pytest.warns(UserWarning, match="sigmoid"):
        rows = top_k(model, X, class_names=["no", "yes"])
    p = model.predict(X, verbose=0)[:, 0]
    for row, q in zip(rows, p):
        assert dict((n, v) for _, n, v in row) == pytest.approx({"yes": q, "no": 1 - q}, rel=1e-5)
