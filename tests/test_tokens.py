"""Vision transformers: a token layer's CAMs are maps on its patch grid, extra tokens dropped.

The reference runs the same layers by hand with a perturbation added to the explained block's tokens and takes
the gradient with ``tf.GradientTape`` (no kerasxai code), then reshapes the patch tokens to the grid itself.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import kerasxai
from tests import reference


class ClassToken(layers.Layer):
    """A learned class token put before the patch tokens."""

    def build(self, shape):
        self.token = self.add_weight(shape=(1, 1, shape[-1]), initializer="random_normal", name="token")

    def call(self, x):
        return keras.ops.concatenate([keras.ops.broadcast_to(self.token, (keras.ops.shape(x)[0], 1, x.shape[-1])), x],
                                     axis=1)


def tiny_vit(cls_token=True, size=(32, 24), patch=8, dim=16, depth=2, seed=80):
    keras.utils.set_random_seed(seed)
    inp = keras.Input(size + (3,))
    x = layers.Conv2D(dim, patch, strides=patch, name="patch_embed")(inp)
    x = layers.Reshape(((size[0] // patch) * (size[1] // patch), dim), name="tokens")(x)
    if cls_token:
        x = ClassToken(name="cls_token")(x)
    for i in range(depth):
        h = layers.LayerNormalization(name=f"block{i}_norm1")(x)
        x = layers.Add(name=f"block{i}_add1")([x, layers.MultiHeadAttention(2, dim // 2, name=f"block{i}_attn")(h, h)])
        h = layers.Dense(dim, activation="gelu", name=f"block{i}_mlp")(layers.LayerNormalization(name=f"block{i}_norm2")(x))
        x = layers.Add(name=f"block{i}_add2")([x, h])
    x = layers.LayerNormalization(name="final_norm")(x)
    pooled = layers.Lambda(lambda t: t[:, 0], name="cls_pool")(x) if cls_token else layers.GlobalAveragePooling1D()(x)
    return keras.Model(inp, layers.Dense(3, activation="softmax", name="head")(pooled))


def _by_hand(model, x, delta, depth=2, cls_token=True):
    """The model's logits, with ``delta`` added to the last block's first norm; and that norm's tokens."""
    g = model.get_layer
    t = g("tokens")(g("patch_embed")(x))
    if cls_token:
        t = g("cls_token")(t)
    for i in range(depth):
        h = g(f"block{i}_norm1")(t)
        if i == depth - 1:
            explained, h = h, h + delta
        t = g(f"block{i}_add1")([t, g(f"block{i}_attn")(h, h)])
        t = g(f"block{i}_add2")([t, g(f"block{i}_mlp")(g(f"block{i}_norm2")(t))])
    t = g("final_norm")(t)
    pooled = t[:, 0] if cls_token else tf.reduce_mean(t, axis=1)
    return tf.matmul(pooled, g("head").kernel) + g("head").bias, explained


@pytest.mark.parametrize("cls_token", [True, False], ids=["class_token", "pooled_tokens"])
def test_token_gradcam_layercam_hirescam_equal_a_tape_on_the_patch_grid(cls_token):
    model = tiny_vit(cls_token)
    x = tf.constant(np.random.default_rng(81).uniform(0, 1, (3, 32, 24, 3)).astype("float32"))
    probe = kerasxai.get_probe(model)
    assert probe.layer_names == ["block1_norm1"]  # the tokens the last attention block reads
    target = [0, 2, 1]
    extra = 1 if cls_token else 0
    delta = tf.zeros((3, 12 + extra, 16))
    with tf.GradientTape() as tape:
        tape.watch(delta)
        logits, acts = _by_hand(model, x, delta, cls_token=cls_token)
        score = tf.reduce_sum(tf.gather(logits, target, axis=1, batch_dims=1))
    grads = tape.gradient(score, delta).numpy()[:, extra:].reshape(3, 4, 3, 16)
    acts = acts.numpy()[:, extra:].reshape(3, 4, 3, 16)
    references = {
        "gradcam": np.maximum((grads.mean(axis=(1, 2), keepdims=True) * acts).sum(-1), 0),
        "layercam": np.maximum((np.maximum(grads, 0) * acts).sum(-1), 0),
        "hirescam": np.maximum((grads * acts).sum(-1), 0),
    }
    for name, expected in references.items():
        got = getattr(kerasxai, name)(model, x.numpy(), target=target, raw=True)
        assert got.shape == (3, 4, 3)  # the grid of a non-square image
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6, err_msg=name)
        assert getattr(kerasxai, name)(model, x.numpy(), target=target).shape == (3, 32, 24)


def test_a_token_layer_without_a_patch_grid_says_how_to_go_on():
    inp = keras.Input((16, 16, 3))
    tokens = layers.Dense(8, name="mix")(layers.Reshape((128, 6))(inp))  # pixel pairs: no grid of square patches
    model = keras.Model(inp, layers.Dense(2)(layers.GlobalAveragePooling1D()(tokens)))
    x = np.random.default_rng(82).uniform(0, 1, (2, 16, 16, 3)).astype("float32")
    with pytest.raises(ValueError, match=r"Layer 'mix' outputs a token sequence .* patch grid cannot be read.*"
                                         r"kerasxai.tokens\('mix', grid=\(rows, columns\), extra=n\)"):
        kerasxai.gradcam(model, x, layer="mix")
    # given: the tokens are the image's rows of pixel pairs, a 16 x 8 grid
    with tf.GradientTape() as tape:
        t = layers.Reshape((128, 6))(tf.constant(x))
        acts = model.get_layer("mix")(t)
        tape.watch(acts)
        logits = model.layers[-1](tf.reduce_mean(acts, axis=1))
        score = tf.reduce_sum(logits[:, 1])
    grads = tape.gradient(score, acts).numpy().reshape(2, 16, 8, 8)
    expected = np.maximum((grads * acts.numpy().reshape(2, 16, 8, 8)).sum(-1), 0)
    got = kerasxai.hirescam(model, x, target=1, layer=kerasxai.tokens("mix", grid=(16, 8)), raw=True)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match=r"grid=\(16, 4\), extra=0\) does not fit layer 'mix'"):
        kerasxai.gradcam(model, x, layer=kerasxai.tokens("mix", grid=(16, 4)))
    with pytest.raises(ValueError, match="tokens\\(\\) takes grid=\\(rows, columns\\)"):
        kerasxai.tokens("mix", grid=16)


def test_pixel_tokens_are_read_on_the_image_grid():
    inp = keras.Input((16, 12, 3))
    tokens = layers.Dense(8, name="mix")(layers.Reshape((192, 3))(inp))  # one token per pixel, row by row
    model = keras.Model(inp, layers.Dense(2)(layers.GlobalAveragePooling1D()(tokens)))
    assert kerasxai.gradcam(model, np.ones((1, 16, 12, 3), "float32"), layer="mix", raw=True).shape == (1, 16, 12)


def _twin_vit(data_format, seed=83):
    keras.utils.set_random_seed(seed)
    shape = (3, 16, 16) if data_format == "channels_first" else (16, 16, 3)
    inp = keras.Input(shape)
    x = layers.Conv2D(16, 4, strides=4, data_format=data_format, name="patch_embed")(inp)
    if data_format == "channels_first":  # (N, 16, 4, 4) -> (N, 16 tokens, 16 channels)
        x = layers.Permute((2, 1))(layers.Reshape((16, 16))(x))
    else:
        x = layers.Reshape((16, 16))(x)
    h = layers.LayerNormalization(name="norm")(x)
    x = layers.Add()([x, layers.MultiHeadAttention(2, 8, name="attn")(h, h)])
    return keras.Model(inp, layers.Dense(3, name="head")(layers.GlobalAveragePooling1D()(x)))


def test_tokens_of_a_channels_first_patch_embedding_are_tokens_by_channels():
    """The tokens' layout was read from the channels_first conv before them: tokens and channels swapped."""
    last, first = _twin_vit("channels_last"), _twin_vit("channels_first")
    first.set_weights(last.get_weights())
    x = np.random.default_rng(84).uniform(0, 1, (2, 16, 16, 3)).astype("float32")
    xf = np.moveaxis(x, -1, 1)
    np.testing.assert_allclose(reference.runnable(first)(xf), last.predict(x, verbose=0), atol=1e-5)
    for name in ("gradcam", "layercam", "hirescam"):
        np.testing.assert_allclose(getattr(kerasxai, name)(first, xf, target=1, layer="norm", raw=True),
                                   getattr(kerasxai, name)(last, x, target=1, layer="norm", raw=True),
                                   rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(kerasxai.attention_rollout(first, xf, raw=True), kerasxai.attention_rollout(last, x, raw=True),
                               atol=1e-6)
