"""The re-traced graph: the private Keras API it uses, and which call of which layer is explained.

If a Keras release renames or changes ``Functional._run_through_graph``, this
file fails first, with a message that says where to look. The other tests check
maps at shared layers, on one input of several and on one head of several
against Grad-CAM computed by hand (activations by calling the layers, gradients
by ``tf.GradientTape``).
"""

import keras
import numpy as np
import pytest
from keras import layers

import kerasxai
from kerasxai.probe import get_probe
from kerasxai.probe import graph as _graph

tensorflow_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                     reason="the reference gradients are taken with tf.GradientTape")


def test_keras_still_has_run_through_graph():
    inp = keras.Input((4,))
    model = keras.Model(inp, layers.Dense(2)(inp))
    assert hasattr(model, "_run_through_graph") and hasattr(model, "_nodes_by_depth"), (
        "Keras changed Functional._run_through_graph; update kerasxai/probe/graph.py"
    )


def test_trace_inlines_nested_models_into_one_connected_graph():
    inner_in = keras.Input((8, 8, 1))
    inner = keras.Model(inner_in, layers.Conv2D(2, 3, name="inner_conv")(inner_in), name="inner")
    seq = keras.Sequential([inner, layers.Flatten(name="flat")], name="mid")
    outer_in = keras.Input((8, 8, 1))
    outer = keras.Model(outer_in, layers.Dense(3, name="head")(seq(outer_in)))

    new_in = keras.Input((8, 8, 1))
    out, calls = _graph.trace(outer, new_in)
    names = [(c.qualified_name, c.is_model) for c in calls]
    assert names == [
        ("mid/inner/inner_conv", False),
        ("mid/inner", True),
        ("mid/flat", False),
        ("mid", True),
        ("head", False),
    ]
    conv = calls[0].output
    probe = keras.Model(new_in, [conv, out])  # connected: no "Graph disconnected"
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype("float32")
    a, y = (keras.ops.convert_to_numpy(t) for t in probe(x))
    np.testing.assert_allclose(y, keras.ops.convert_to_numpy(outer(x)), rtol=1e-6)
    np.testing.assert_allclose(a, keras.ops.convert_to_numpy(inner(x)), rtol=1e-6)


# --------------------------------------------------------------------------- maps against a hand-written tape


def tape_gradcam(images, below, above, target):
    """Grad-CAM by hand: ``A = below(images)``, score ``above(A)[:, target]``, dS/dA by ``tf.GradientTape``."""
    import tensorflow as tf

    acts = tf.convert_to_tensor(below(images))
    with tf.GradientTape() as tape:
        tape.watch(acts)
        score = above(acts)[:, target]
    grads = tape.gradient(score, acts)
    alpha = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    return np.maximum(tf.reduce_sum(alpha * acts, axis=-1).numpy(), 0)


def _snapshot(model, x):
    outputs = [keras.ops.convert_to_numpy(t) for t in keras.tree.flatten(model(x))]
    return [w.copy() for w in model.get_weights()], outputs, [layer.__dict__.get("call") for layer in model._flatten_layers()]


def _assert_unchanged(model, x, before):
    weights, outputs, calls = _snapshot(model, x)
    assert all(np.array_equal(a, b) for a, b in zip(before[0], weights))
    assert all(np.array_equal(a, b) for a, b in zip(before[1], outputs))
    assert calls == before[2] and all(c is None for c in calls)


def _images(shape, n=2, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n,) + shape).astype("float32")


@tensorflow_only
def test_a_conv_applied_twice_is_explained_at_the_call_asked_for():
    keras.utils.set_random_seed(61)
    inp = keras.Input((12, 12, 3))
    c0 = layers.Conv2D(4, 3, padding="same", activation="tanh", name="c0")
    shared = layers.Conv2D(4, 3, padding="same", activation="tanh", name="shared")
    flatten, dense = layers.Flatten(), layers.Dense(3, name="head")
    model = keras.Model(inp, dense(flatten(shared(shared(c0(inp))))))
    x = _images((12, 12, 3))
    before = _snapshot(model, x)

    call0 = tape_gradcam(x, lambda t: shared(c0(t)), lambda a: dense(flatten(shared(a))), 1)
    call1 = tape_gradcam(x, lambda t: shared(shared(c0(t))), lambda a: dense(flatten(a)), 1)
    first = tape_gradcam(x, c0, lambda a: dense(flatten(shared(shared(a)))), 1)
    assert np.abs(call0 - call1).max() > 0.1 * call1.max() > 0  # two different maps: a mix would be neither
    np.testing.assert_allclose(kerasxai.gradcam(model, x, target=1, layer=("shared", 0), raw=True), call0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(kerasxai.gradcam(model, x, target=1, layer=(shared, 1), raw=True), call1, rtol=1e-4, atol=1e-5)
    # the default layer is one called once on the way: c0, not the shared conv
    assert get_probe(model).layer_names == ["c0"]
    np.testing.assert_allclose(kerasxai.gradcam(model, x, target=1, raw=True), first, rtol=1e-4, atol=1e-5)
    assert get_probe(model, ("shared", 1)).layer_names == ["shared (call 1)"]
    assert [(info.name, info.call) for info in kerasxai.explainable_layers(model)] == [("c0", 0), ("shared", 0),
                                                                                        ("shared", 1)]
    with pytest.raises(ValueError, match=r"'shared' is called 2 times.*layer=\('shared', 1\)"):
        kerasxai.gradcam(model, x, layer="shared")
    with pytest.raises(ValueError, match=r"asks for call 2, but layer 'shared' is called 2 time"):
        kerasxai.gradcam(model, x, layer=("shared", 2))
    _assert_unchanged(model, x, before)


@tensorflow_only
def test_a_layer_reused_in_two_branches_is_explained_per_branch():
    keras.utils.set_random_seed(62)
    inp = keras.Input((10, 10, 2))
    shared = layers.Conv2D(3, 3, padding="same", activation="tanh", name="shared")
    pre = layers.Conv2D(2, 1, activation="tanh", name="pre")
    flat_a, flat_b, dense = layers.Flatten(), layers.Flatten(), layers.Dense(4, activation="softmax", name="head")
    concat = layers.Concatenate()
    model = keras.Model(inp, dense(concat([flat_a(shared(inp)), flat_b(shared(pre(inp)))])))
    x = _images((10, 10, 2), seed=1)
    before = _snapshot(model, x)

    def logits(features):
        return features @ dense.kernel + dense.bias

    branch_a = tape_gradcam(x, shared, lambda a: logits(concat([flat_a(a), flat_b(shared(pre(x)))])), 2)
    branch_b = tape_gradcam(x, lambda t: shared(pre(t)), lambda a: logits(concat([flat_a(shared(x)), flat_b(a)])), 2)
    # which call is which, in the order of the graph: branch a's call is the one on the model's input
    trace = _graph.trace(model, keras.Input((10, 10, 2)))[1]
    pre_output = next(c.output for c in trace if c.op is pre)
    a_index = next(c.index for c in trace if c.op is shared and c.inputs[0] is not pre_output)
    calls = {i: kerasxai.gradcam(model, x, target=2, layer=("shared", i), raw=True) for i in (0, 1)}
    np.testing.assert_allclose(calls[a_index], branch_a, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(calls[1 - a_index], branch_b, rtol=1e-4, atol=1e-5)
    assert get_probe(model).layer_names == ["pre"]  # the only spatial layer called once
    _assert_unchanged(model, x, before)


@tensorflow_only
def test_the_default_and_named_layers_lie_on_the_explained_inputs_way():
    keras.utils.set_random_seed(63)
    a, b = keras.Input((16, 16, 3), name="a"), keras.Input((8, 8, 3), name="b")
    ca = layers.Conv2D(4, 3, activation="tanh", name="ca")
    cb = layers.Conv2D(5, 3, activation="tanh", name="cb")
    gap_a, gap_b, dense = layers.GlobalAveragePooling2D(), layers.GlobalAveragePooling2D(), layers.Dense(3, name="head")
    concat = layers.Concatenate()
    model = keras.Model([a, b], dense(concat([gap_a(ca(a)), gap_b(cb(b))])))
    xa, xb = _images((16, 16, 3), seed=2), _images((8, 8, 3), seed=3)
    before = _snapshot(model, [xa, xb])

    expected = tape_gradcam(xb, cb, lambda act: dense(concat([gap_a(ca(xa)), gap_b(act)])), 0)
    assert get_probe(model, input="b").layer_names == ["cb"]
    np.testing.assert_allclose(kerasxai.gradcam(model, [xa, xb], target=0, input="b", raw=True), expected,
                               rtol=1e-4, atol=1e-5)
    assert kerasxai.gradcam(model, [xa, xb], target=0, input="b").shape == (2, 8, 8)
    assert get_probe(model, input="a").layer_names == ["ca"]
    with pytest.raises(ValueError, match=r"Layer 'ca' does not depend on input 'b'.*input="):
        kerasxai.gradcam(model, [xa, xb], input="b", layer="ca")
    _assert_unchanged(model, [xa, xb], before)


@tensorflow_only
def test_a_shared_base_on_two_inputs_is_explained_at_the_explained_inputs_call():
    """A siamese model: the shared conv's call on input 'right' is the only one on its way."""
    keras.utils.set_random_seed(64)
    left, right = keras.Input((8, 8, 1), name="left"), keras.Input((8, 8, 1), name="right")
    shared = layers.Conv2D(3, 3, activation="tanh", name="shared")
    flat_l, flat_r, dense = layers.Flatten(), layers.Flatten(), layers.Dense(2, name="head")
    concat = layers.Concatenate()
    model = keras.Model([left, right], dense(concat([flat_l(shared(left)), flat_r(shared(right))])))
    xl, xr = _images((8, 8, 1), seed=4), _images((8, 8, 1), seed=5)
    expected = tape_gradcam(xr, shared, lambda act: dense(concat([flat_l(shared(xl)), flat_r(act)])), 1)
    for layer in (None, "shared"):
        np.testing.assert_allclose(kerasxai.gradcam(model, [xl, xr], target=1, input="right", layer=layer, raw=True),
                                   expected, rtol=1e-4, atol=1e-5)


def test_cam_on_one_head_of_a_pooling_that_feeds_several():
    keras.utils.set_random_seed(65)
    inp = keras.Input((12, 12, 3))
    conv = layers.Conv2D(4, 3, activation="relu", name="conv")
    gap = layers.GlobalAveragePooling2D(name="gap")
    cls, aux = layers.Dense(3, activation="softmax", name="cls"), layers.Dense(2, name="aux")
    pooled = gap(conv(inp))
    model = keras.Model(inp, {"cls": cls(pooled), "aux": aux(pooled)})
    x = _images((12, 12, 3), seed=6)
    before = _snapshot(model, x)
    acts = keras.ops.convert_to_numpy(conv(x))
    for name, dense, target in (("cls", cls, 2), ("aux", aux, 1)):
        expected = np.einsum("nhwk,k->nhw", acts, keras.ops.convert_to_numpy(dense.kernel)[:, target])
        np.testing.assert_allclose(kerasxai.cam(model, x, target=target, output=name, raw=True), expected,
                                   rtol=1e-4, atol=1e-5)
        full = kerasxai.explain(model, x, methods=("cam",), target=target, output=name)["cam"]
        np.testing.assert_allclose(full, kerasxai.cam(model, x, target=target, output=name), atol=1e-6)
    _assert_unchanged(model, x, before)


class ConvBlock(layers.Layer):
    """A custom (non-Model) layer holding a conv."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(4, 3, padding="same", activation="relu")

    def call(self, x):
        return self.conv(x)


@tensorflow_only
def test_changing_a_conv_inside_a_custom_layer_gives_a_fresh_probe():
    keras.utils.set_random_seed(66)
    inp = keras.Input((10, 10, 2))
    block = ConvBlock(name="block")
    head_conv = layers.Conv2D(3, 3, activation="tanh", name="head_conv")
    flatten, dense = layers.Flatten(), layers.Dense(2, name="head")
    model = keras.Model(inp, dense(flatten(head_conv(block(inp)))))
    x = _images((10, 10, 2), seed=7)
    first = kerasxai.gradcam(model, x, target=0, raw=True)
    np.testing.assert_allclose(first, tape_gradcam(x, lambda t: head_conv(block(t)), lambda a: dense(flatten(a)), 0),
                               rtol=1e-4, atol=1e-5)
    block.conv.activation = keras.activations.get("tanh")  # inside a custom layer, not a keras.Model
    after = kerasxai.gradcam(model, x, target=0, raw=True)
    expected = tape_gradcam(x, lambda t: head_conv(block(t)), lambda a: dense(flatten(a)), 0)
    assert np.abs(expected - first).max() > 0.1 * expected.max() > 0
    np.testing.assert_allclose(after, expected, rtol=1e-4, atol=1e-5)


class CalledTwice(keras.Model):
    """A subclassed model whose call() applies one conv twice."""

    def __init__(self):
        super().__init__()
        self.c0 = layers.Conv2D(4, 3, padding="same", activation="tanh")
        self.shared = layers.Conv2D(4, 3, padding="same", activation="tanh")
        self.flat, self.head = layers.Flatten(), layers.Dense(3)

    def call(self, x):
        return self.head(self.flat(self.shared(self.shared(self.c0(x)))))


@tensorflow_only
def test_a_subclassed_models_layer_called_twice_is_explained_at_the_call_asked_for():
    keras.utils.set_random_seed(67)
    model = CalledTwice()
    x = _images((12, 12, 3), seed=8)
    model(x)
    before = _snapshot(model, x)
    c0, shared, head, flat = model.c0, model.shared, model.head, model.flat
    call0 = tape_gradcam(x, lambda t: shared(c0(t)), lambda a: head(flat(shared(a))), 2)
    call1 = tape_gradcam(x, lambda t: shared(shared(c0(t))), lambda a: head(flat(a)), 2)
    np.testing.assert_allclose(kerasxai.gradcam(model, x, target=2, layer=(shared, 0), raw=True), call0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(kerasxai.gradcam(model, x, target=2, layer=(shared.name, 1), raw=True), call1, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(kerasxai.gradcam(model, x, target=2, raw=True),
                               tape_gradcam(x, c0, lambda a: head(flat(shared(shared(a)))), 2), rtol=1e-4, atol=1e-5)
    assert get_probe(model).layer_names == [c0.name]  # the default skips the layer called twice
    with pytest.raises(ValueError, match=rf"'{shared.name}' is called 2 times.*layer=\('{shared.name}', 1\)"):
        kerasxai.gradcam(model, x, layer=shared)
    _assert_unchanged(model, x, before)


def test_a_loaded_model_with_a_layer_named_add_is_explained():
    """The probe's own ops used to take automatic names: in a fresh process a loaded residual model's
    layer 'add' clashed with the probe's ops.add ("The name 'add' is used 2 times in the model")."""
    keras.backend.clear_session()  # the name counters of a fresh process
    inp = keras.Input((8, 8, 2))
    a = layers.Conv2D(3, 3, padding="same", activation="relu", name="c0")(inp)
    s = layers.Add(name="add")([a, layers.Conv2D(3, 3, padding="same", name="c1")(a)])
    out = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(layers.Conv2D(3, 3, name="c2")(s)))
    model = keras.Model(inp, out)
    x = _images((8, 8, 2), seed=9)
    acts = keras.ops.convert_to_numpy(keras.Model(inp, model.get_layer("c2").output)(x))
    weights = keras.ops.convert_to_numpy(model.get_layer("head").kernel)[:, 1] / (acts.shape[1] * acts.shape[2])
    expected = np.maximum(np.einsum("nhwk,k->nhw", acts, weights), 0)  # GAP -> Dense: dS/dA_k = w_k / (h w)
    np.testing.assert_allclose(kerasxai.gradcam(model, x, target=1, raw=True), expected, rtol=1e-4, atol=1e-6)


def test_a_padding_is_never_the_default_layer_and_per_frame_pooling_is_pooling():
    """MobileNet-style '*_pad' layers used to be the default at small inputs (a map with an artificial
    border); TimeDistributed(GlobalAveragePooling2D) was taken for a 1-D layer over frames."""
    keras.utils.set_random_seed(68)
    inp = keras.Input((10, 10, 3))
    c = layers.Conv2D(4, 3, activation="relu", name="c")(inp)
    padded = layers.ZeroPadding2D(1, name="c_pad")(c)
    model = keras.Model(inp, layers.Dense(2)(layers.GlobalMaxPooling2D()(padded)))
    assert get_probe(model).layer_names == ["c"]
    assert get_probe(model, "c_pad").layer_names == ["c_pad"]  # still explained when named

    frames = keras.Input((3, 8, 8, 2))
    conv = layers.TimeDistributed(layers.Conv2D(4, 3, padding="same", activation="relu"), name="td_conv")(frames)
    pooled = layers.TimeDistributed(layers.GlobalAveragePooling2D(), name="td_gap")(conv)
    video = keras.Model(frames, layers.Dense(3)(layers.LSTM(4)(pooled)))
    x = np.random.default_rng(8).uniform(-1, 1, (2, 3, 8, 8, 2)).astype("float32")
    assert get_probe(video).layer_names == ["td_conv"]
    assert kerasxai.gradcam(video, x).shape == (2, 3, 8, 8)  # a map per frame, as for a volume
    with pytest.raises(ValueError, match="Layer 'td_gap' cannot be explained"):
        kerasxai.gradcam(video, x, layer="td_gap")
