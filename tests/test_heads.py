"""Heads: a softmax or sigmoid the model's structure hides is found by its values, and explained as
log-probabilities (softmax) or log-odds (sigmoid), against a hand-written tf.GradientTape."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers, ops

import kerasxai
from kerasxai.probe import get_probe
from kerasxai.probe.heads import hidden_squashing

X = np.random.default_rng(20).normal(size=(3, 8, 8, 3)).astype("float32")


def _features(inp):
    return layers.Flatten()(layers.Conv2D(2, 3, activation="tanh", name="conv")(inp))


def temperature_softmax():
    """A temperature softmax in a Lambda: nothing in the structure says it is a softmax."""
    keras.utils.set_random_seed(21)
    inp = keras.Input((8, 8, 3))
    z = layers.Dense(4, name="logits")(_features(inp))
    return keras.Model(inp, layers.Lambda(lambda t: ops.softmax(t / 0.5))(z))


def lambda_sigmoid(units):
    keras.utils.set_random_seed(22)
    inp = keras.Input((8, 8, 3))
    z = layers.Dense(units, name="logits")(_features(inp))
    return keras.Model(inp, layers.Lambda(lambda t: ops.sigmoid(t))(z)), keras.Model(inp, z)


class OpsSoftmax(keras.Model):
    """ops.softmax inside call()."""

    def __init__(self):
        super().__init__(name="ops_softmax")
        self.conv, self.flat, self.dense = layers.Conv2D(2, 3, activation="tanh"), layers.Flatten(), layers.Dense(4)

    def call(self, x):
        return ops.softmax(self.dense(self.flat(self.conv(x))))


class DictHeads(keras.Model):
    """A dict of outputs whose softmax head is not the layer called last."""

    def __init__(self):
        super().__init__(name="dict_heads")
        self.conv, self.flat = layers.Conv2D(2, 3, activation="tanh"), layers.Flatten()
        self.cls, self.box = layers.Dense(4, activation="softmax"), layers.Dense(2)

    def call(self, x):
        f = self.flat(self.conv(x))
        return {"cls": self.cls(f), "box": self.box(f)}


def _built(model):
    keras.utils.set_random_seed(23)
    model(X)
    return model


def _tape_gradient(fn, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = fn(x)
    return tape.gradient(score, x).numpy()


def _log_p_saliency(model, x, classes, key=None):
    def score(t):
        p = model(t, training=False)
        p = p[key] if key is not None else p
        return tf.reduce_sum(tf.math.log(p) * tf.one_hot(classes, p.shape[-1]))

    return np.abs(_tape_gradient(score, x)).max(axis=-1)


@pytest.mark.parametrize("build, key", [(temperature_softmax, None), (lambda: _built(OpsSoftmax()), None),
                                        (lambda: _built(DictHeads()), "cls")])
def test_a_hidden_softmax_is_explained_as_log_probabilities_with_one_warning(build, key):
    model = build()
    kwargs = {"output": key} if key else {}
    classes = [3, 0, 2]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = kerasxai.saliency(model, X, target=classes, raw=True, **kwargs)
    hidden = [w for w in caught if "log(p)" in str(w.message)]
    assert len(hidden) == 1 and "softmax probabilities" in str(hidden[0].message)
    np.testing.assert_allclose(got, _log_p_saliency(model, X, classes, key), rtol=1e-4, atol=1e-7)
    assert get_probe(model, (), **kwargs).head.kind == "softmax"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # decided once per model: no second warning
        kerasxai.gradcam(model, X, **kwargs)


def test_log_probability_maps_differ_from_the_logits_only_by_a_term_shared_by_all_classes():
    """d log p_c - d log p_d = d (z_c - z_d) / T: the class-specific evidence is the logit's."""
    model = temperature_softmax()
    logits = keras.Model(model.input, model.get_layer("logits").output)
    probe = get_probe(model, ())
    with pytest.warns(UserWarning, match="log"):
        g = {c: probe.input_gradients(X, target=c).input_gradient for c in (0, 1)}
    expected = _tape_gradient(lambda t: tf.reduce_sum(logits(t)[:, 0] - logits(t)[:, 1]) / 0.5, X)
    np.testing.assert_allclose(g[0] - g[1], expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("units", [1, 3])
def test_a_hidden_sigmoid_is_explained_as_its_logit(units):
    model, logits = lambda_sigmoid(units)
    with pytest.warns(UserWarning, match=r"log\(p / \(1 - p\)\)"):
        got = kerasxai.saliency(model, X, target=1, raw=True)
    assert get_probe(model, ()).head.kind == ("binary" if units == 1 else "multilabel")
    column = 0 if units == 1 else 1  # binary: class 1 is the positive class, its logit
    expected = np.abs(_tape_gradient(lambda t: tf.reduce_sum(logits(t)[:, column]), X)).max(axis=-1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_outputs_the_structure_shows_are_never_looked_at():
    """A linear Dense whose values happen to lie in (0, 1) is a regression, in a graph or in call()."""

    class Regression(keras.Model):
        def __init__(self):
            super().__init__()
            self.flat = layers.Flatten()
            self.dense = layers.Dense(1, kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3),
                                      bias_initializer=keras.initializers.Constant(0.3))

        def call(self, x):
            return self.dense(self.flat(x))

    inp = keras.Input((8, 8, 3))
    dense = layers.Dense(2, kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3),
                         bias_initializer=keras.initializers.Constant(0.3))
    functional = keras.Model(inp, layers.Dropout(0.1)(dense(layers.Flatten()(inp))))
    for model, kind in ((_built(Regression()), "regression"), (functional, "logits")):
        assert 0 < model.predict(X, verbose=0).min() and model.predict(X, verbose=0).max() < 1
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            kerasxai.saliency(model, X, target=0, raw=True)
        assert get_probe(model, ()).head.kind == kind


def test_hidden_squashing_reads_the_values():
    assert hidden_squashing(np.array([[0.1, 0.9], [1.0, 0.0]])) == "softmax"
    assert hidden_squashing(np.array([[0.1, 0.95], [1.0, 1.0]])) == "sigmoid"  # saturated sigmoids give 1.0
    assert hidden_squashing(np.array([[0.1, -0.2]])) is None
    assert hidden_squashing(np.array([[0.4, 0.6003]]), "float16") == "softmax"
    assert hidden_squashing(np.array([[0.4, 0.6003]])) == "sigmoid"
    assert hidden_squashing(np.array([[np.nan, 0.5]])) is None


def test_output_takes_the_keys_of_a_dict_output_and_one_name_only():
    keras.utils.set_random_seed(24)
    inp = keras.Input((8, 8, 3))
    f = _features(inp)
    cls = layers.Dense(4, activation="softmax", name="cls")(f)
    model = keras.Model(inp, {"z_cls": cls, "box": layers.Dense(2, name="box")(f)})
    expected = kerasxai.saliency(keras.Model(inp, cls), X, raw=True)
    np.testing.assert_allclose(kerasxai.saliency(model, X, output="z_cls", raw=True), expected, rtol=1e-6)
    np.testing.assert_allclose(kerasxai.saliency(model, X, output="cls", raw=True), expected, rtol=1e-6)  # layer name
    rows = kerasxai.top_k(model, X, k=4, output="z_cls")
    probs = model.predict(X, verbose=0)["z_cls"]
    for row, p in zip(rows, probs):
        np.testing.assert_allclose([q for c, _, q in row], p[[c for c, _, _ in row]], rtol=1e-5)
    with pytest.raises(ValueError, match=r"1: 'cls' \(key 'z_cls'\)"):
        kerasxai.saliency(model, X)
    with pytest.raises(TypeError, match=r"^output takes one output name or index: one output is explained per call "
                                        r"\(e.g. output='cls'\)\. Received: output=\['cls'\]$"):
        kerasxai.saliency(model, X, output=["cls"])
    np.testing.assert_allclose(kerasxai.saliency(model, X, output=np.int64(1), raw=True), expected, rtol=1e-6)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_a_hidden_softmax_met_first_by_a_layer_method(as_tensor):
    """The first call on a Lambda-softmax model being a CAM (its values read with a layer's perturbation)
    used to fail: "you cannot mix tensors and non-tensors"."""
    model = temperature_softmax()
    x = tf.constant(X) if as_tensor else X
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = kerasxai.hirescam(model, x, target=1, raw=True)
    assert sum("log(p)" in str(w.message) for w in caught) == 1
    inner = keras.Model(model.input, [model.get_layer("conv").output, model.output])
    with tf.GradientTape() as tape:
        acts, p = inner(X)
        score = tf.reduce_sum(tf.math.log(p[:, 1]))
    expected = np.maximum(tf.reduce_sum(tape.gradient(score, acts) * acts, axis=-1).numpy(), 0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("head", ["activation", "ops", "dense"])
def test_a_log_softmax_head_is_explained_at_its_logits(head):
    """log p = z - logsumexp(z): the logits z are behind it, as behind a softmax; top_k gives p."""
    keras.utils.set_random_seed(24)
    inp = keras.Input((8, 8, 3))
    features = _features(inp)
    dense = layers.Dense(4, activation="log_softmax" if head == "dense" else None, name="logits")
    z = dense(features)
    out = {"activation": lambda: layers.Activation("log_softmax")(z), "ops": lambda: ops.log_softmax(z),
           "dense": lambda: z}[head]()
    model = keras.Model(inp, out)
    features_model = keras.Model(inp, features)
    classes = [3, 0, 2]

    def score(t):
        logits = features_model(t) @ dense.kernel + dense.bias
        return tf.reduce_sum(logits * tf.one_hot(classes, 4))

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no hidden-squashing warning: the structure says what it is
        got = kerasxai.saliency(model, X, target=classes, raw=True)
    np.testing.assert_allclose(got, np.abs(_tape_gradient(score, X)).max(axis=-1), rtol=1e-4, atol=1e-7)
    p = np.exp(model.predict(X, verbose=0))
    top = kerasxai.top_k(model, X, k=1)
    assert [row[0][0] for row in top] == p.argmax(-1).tolist()
    np.testing.assert_allclose([row[0][2] for row in top], p.max(-1), rtol=1e-5)
