"""Attention rollout and transformer attribution against references computed without kerasxai.

The references run the vision transformer's layers by hand: each ``MultiHeadAttention`` is re-computed from its
public projection sublayers (checked against the layer's own ``return_attention_scores=True``), the rollout is a
NumPy product of those probabilities, and transformer attribution's gradients come from ``tf.GradientTape`` on a
perturbation added to them (TensorFlow only; the other backends are compared with TensorFlow's maps in
``tests/test_backends.py``).
"""

import threading

import keras
import numpy as np
import pytest
from keras import layers, ops

import kerasxai
from kerasxai.evaluation.synthetic import small_vit
from kerasxai.probe import subclassed

DEPTH = 2


def _mha_by_hand(layer, h, delta=None):
    """``MultiHeadAttention(h, h)`` from its projections; the probabilities before ``delta`` is added."""
    q, k, v = layer.query_dense(h), layer.key_dense(h), layer.value_dense(h)  # (N, T, heads, dim)
    scores = ops.einsum("nthd,nshd->nhts", q, k) / np.sqrt(layer.key_dim)
    probabilities = ops.softmax(scores, axis=-1)
    used = probabilities if delta is None else probabilities + delta
    return layer.output_dense(ops.einsum("nhts,nshd->nthd", used, v)), probabilities


def _vit_by_hand(model, x, deltas=None, class_token=True):
    """The small ViT's logits and every block's attention probabilities, layer by layer."""
    g = model.get_layer
    t = g("tokens")(g("patch_embed")(x))
    if class_token:
        t = g("class_token")(t)
    t = g("position_embed")(t)
    attentions = []
    for i in range(DEPTH):
        h = g(f"block{i}_norm1")(t)
        out, a = _mha_by_hand(g(f"block{i}_attn"), h, None if deltas is None else deltas[i])
        own_out, own_a = g(f"block{i}_attn")(h, h, return_attention_scores=True)
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(own_a), atol=1e-6)
        if deltas is None:
            np.testing.assert_allclose(ops.convert_to_numpy(out), ops.convert_to_numpy(own_out), atol=1e-5)
        attentions.append(a)
        t = t + out
        t = t + g(f"block{i}_mlp2")(g(f"block{i}_mlp1")(g(f"block{i}_norm2")(t)))
    t = g("final_norm")(t)
    pooled = t[:, 0] if class_token else ops.mean(t, axis=1)
    head = g("predictions")
    return ops.matmul(pooled, head.kernel) + head.bias, attentions


def _rollout_numpy(attentions, extra, discard_ratio=0.0, fusion="mean"):
    result = None
    for a in attentions:
        fused = getattr(np, fusion)(np.asarray(a, np.float64), axis=1)
        n, t, _ = fused.shape
        if discard_ratio:
            flat = fused.reshape(n, -1)
            for i in range(n):  # the k smallest weights, as vit-explain picks them, the class token's own kept
                lowest = np.argsort(flat[i])[: int(t * t * discard_ratio)]
                flat[i, lowest[lowest != 0] if extra else lowest] = 0
            fused = flat.reshape(n, t, t)
        fused = 0.5 * fused + 0.5 * np.eye(t)
        fused = fused / fused.sum(-1, keepdims=True)
        result = fused if result is None else fused @ result
    row = result[:, 0, extra:] if extra else result.mean(axis=1)
    return row


@pytest.fixture(scope="module")
def vits():
    return {True: small_vit((32, 24, 3), 3, patch=8, dim=16, depth=DEPTH, heads=2, seed=91),
            False: small_vit((32, 24, 3), 3, patch=8, dim=16, depth=DEPTH, heads=2, class_token=False, seed=92)}


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(93).uniform(0, 1, (3, 32, 24, 3)).astype("float32")


def _randomise(model, seed):
    """Position embeddings and class token away from their initial values, so that tokens differ."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name in ("position_embed", "class_token"):
            for w in layer.weights:
                w.assign(rng.normal(0, 0.5, tuple(w.shape)).astype("float32"))


@pytest.mark.parametrize("class_token", [True, False], ids=["class_token", "pooled_tokens"])
@pytest.mark.parametrize("options", [{}, {"discard_ratio": 0.3}, {"head_fusion": "max"}, {"head_fusion": "min"}],
                         ids=["mean", "discard", "max", "min"])
def test_attention_rollout_equals_numpy_from_the_attention_scores(vits, x, class_token, options):
    model = vits[class_token]
    _randomise(model, 94)
    logits, attentions = _vit_by_hand(model, x, class_token=class_token)
    expected = _rollout_numpy([ops.convert_to_numpy(a) for a in attentions], 1 if class_token else 0,
                              options.get("discard_ratio", 0.0), options.get("head_fusion", "mean"))
    got = kerasxai.attention_rollout(model, x, raw=True, **options)
    assert got.shape == (3, 4, 3)  # the patch grid of a non-square image, class token dropped
    np.testing.assert_allclose(got, expected.reshape(3, 4, 3), rtol=1e-4, atol=1e-6)
    assert kerasxai.attention_rollout(model, x, **options).shape == (3, 32, 24)
    assert kerasxai.get_probe(model, attention=True).layer_names == ["block0_attn", "block1_attn"]


@pytest.mark.parametrize("class_token", [True, False], ids=["class_token", "pooled_tokens"])
def test_transformer_attribution_equals_a_tape_on_tensorflow(vits, x, class_token):
    import tensorflow as tf

    model = vits[class_token]
    _randomise(model, 95)
    target = [2, 0, 1]
    deltas = [tf.zeros((3, 2, 13 if class_token else 12, 13 if class_token else 12)) for _ in range(DEPTH)]
    with tf.GradientTape() as tape:
        tape.watch(deltas)
        logits, attentions = _vit_by_hand(model, tf.constant(x), deltas, class_token)
        score = tf.reduce_sum(tf.gather(logits, target, axis=1, batch_dims=1))
    grads = [g.numpy().astype(np.float64) for g in tape.gradient(score, deltas)]
    t = grads[0].shape[-1]
    relevance = np.broadcast_to(np.eye(t), (3, t, t))
    for a, g in zip(attentions, grads):
        relevance = relevance + np.maximum(g * a.numpy(), 0).mean(axis=1) @ relevance
    expected = relevance[:, 0, 1:] if class_token else relevance.mean(axis=1)
    got = kerasxai.transformer_attribution(model, x, target=target, raw=True)
    np.testing.assert_allclose(got, expected.reshape(3, 4, 3), rtol=1e-4, atol=1e-7)
    other = kerasxai.transformer_attribution(model, x, target=[0, 1, 2], raw=True)
    assert not np.allclose(other, got)  # class-specific


def test_attention_methods_are_in_explain_and_the_method_table(vits, x):
    model = vits[True]
    out = kerasxai.explain(model, x, methods=("gradcam", "attention_rollout", "transformer_attribution"), target=1)
    assert sorted(out) == ["attention_rollout", "gradcam", "transformer_attribution"]
    np.testing.assert_allclose(out["attention_rollout"], kerasxai.attention_rollout(model, x, target=1), atol=1e-6)
    np.testing.assert_allclose(out["transformer_attribution"], kerasxai.transformer_attribution(model, x, target=1),
                               atol=1e-6)
    np.testing.assert_allclose(out["gradcam"], kerasxai.gradcam(model, x, target=1), atol=1e-6)
    one = kerasxai.transformer_attribution(model, x[1], target=1)  # one image without the batch axis
    np.testing.assert_allclose(one, out["transformer_attribution"][1], atol=1e-6)


def test_the_model_is_unchanged_and_threads_agree(vits, x):
    model = vits[True]
    before = [w.numpy().copy() for w in model.weights]
    alone = kerasxai.transformer_attribution(model, x, target=0)
    results, errors = [None] * 4, []

    def work(i):
        try:
            # the user's own calls meanwhile (model(x): JAX's predict() empties the variables while it runs)
            results[i] = kerasxai.transformer_attribution(model, x, target=0) if i % 2 else ops.convert_to_numpy(
                model(x, training=False))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in (1, 3):
        np.testing.assert_allclose(results[i], alone, atol=1e-5)
    for i in (0, 2):  # the user's own calls during explanations: the plain model's probabilities
        np.testing.assert_allclose(results[i], model.predict(x, verbose=0), atol=1e-6)
    for layer in model._flatten_layers():
        assert "call" not in layer.__dict__ and "_masked_softmax" not in layer.__dict__
    assert not subclassed._PATCHES
    for w, b in zip(model.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)


def test_a_grid_that_cannot_be_read_is_asked_for_and_checked():
    inp = keras.Input((30, 30, 3))  # 20 tokens made by a Dense from flattened pixels: no patch grid to read
    tokens = layers.Reshape((20, 135))(inp)
    h = layers.Dense(8)(tokens)
    h = layers.MultiHeadAttention(2, 4, name="attn")(h, h)
    model = keras.Model(inp, layers.Dense(2)(layers.GlobalAveragePooling1D()(h)))
    x = np.random.default_rng(96).uniform(0, 1, (2, 30, 30, 3)).astype("float32")
    with pytest.raises(ValueError, match=r"runs over 20 tokens.*grid=\(rows, columns, extra\)"):
        kerasxai.attention_rollout(model, x)
    assert kerasxai.attention_rollout(model, x, grid=(4, 5, 0), raw=True).shape == (2, 4, 5)
    with pytest.raises(ValueError, match=r"grid=\(4, 4, 0\) does not fit the 20 tokens"):
        kerasxai.attention_rollout(model, x, grid=(4, 4, 0))
    with pytest.raises(ValueError, match="grid is \\(rows, columns, extra\\)"):
        kerasxai.transformer_attribution(model, x, grid=(4, 5))


def test_refusals_say_what_to_do(vits, x):
    cnn = keras.Sequential([keras.Input((32, 24, 3)), layers.Conv2D(4, 3), layers.GlobalAveragePooling2D(),
                            layers.Dense(2)])
    with pytest.raises(ValueError, match="has no keras.layers.MultiHeadAttention layer.*CAM methods"):
        kerasxai.attention_rollout(cnn, x)
    with pytest.raises(ValueError, match="head_fusion must be one of"):
        kerasxai.attention_rollout(vits[True], x, head_fusion="sum")
    with pytest.raises(ValueError, match=r"discard_ratio .* in \[0, 1\)"):
        kerasxai.attention_rollout(vits[True], x, discard_ratio=1.0)
    query = keras.Input((16, 8))
    inp = keras.Input((32, 32, 3))
    patches = layers.Reshape((16, 8))(layers.Conv2D(8, 8, strides=8)(inp))
    context = layers.Dense(8)(layers.Reshape((8, 8))(layers.Conv2D(8, 8, strides=(8, 16))(inp)))
    crossed = layers.MultiHeadAttention(2, 4)(patches, context)  # 16 queries attend to 8 keys
    del query
    cross = keras.Model(inp, layers.Dense(2)(layers.GlobalAveragePooling1D()(crossed)))
    with pytest.raises(ValueError, match="cross-attention.*over the same tokens"):
        kerasxai.attention_rollout(cross, np.zeros((1, 32, 32, 3), "float32"))


def test_flash_attention_is_refused_with_what_to_do():
    inp = keras.Input((16, 16, 3))
    t = layers.Reshape((16, 4))(layers.Conv2D(4, 4, strides=4)(inp))
    t = layers.MultiHeadAttention(1, 4, flash_attention=True, name="fast")(t, t)
    model = keras.Model(inp, layers.Dense(2)(layers.GlobalAveragePooling1D()(t)))
    with pytest.raises(ValueError, match="'fast'.*flash attention.*disable_flash_attention"):
        kerasxai.transformer_attribution(model, np.zeros((1, 16, 16, 3), "float32"))


def _hub_vit():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(97)
    backbone = keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2,
                                            hidden_dim=16, mlp_dim=32)
    model = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=3, activation="softmax")
    _randomise_hub(model)
    return model


def _randomise_hub(model):
    rng = np.random.default_rng(98)
    for w in model.weights:  # keras-hub's initialisers leave the class token and biases at zero
        w.assign(rng.normal(0, 0.3, tuple(w.shape)).astype("float32") + (1.0 if "gamma" in w.path else 0.0))


def _hub_by_hand(model, x, attention_deltas, token_delta):
    """keras-hub's ViT layer by layer: every block's attention re-computed, a perturbation on the last block's
    first norm (the tokens its attention reads) and on each attention's probabilities."""
    backbone = model.backbone
    encoder = backbone.get_layer("vit_encoder")
    t = backbone.get_layer("vit_patching_and_embedding")(x)
    attentions, explained = [], None
    for i, block in enumerate(encoder.encoder_layers):
        h = block.layer_norm_1(t)
        if i == len(encoder.encoder_layers) - 1:
            explained, h = h, h + token_delta
        out, a = _mha_by_hand(block.mha, h, attention_deltas[i])
        attentions.append(a)
        t = t + out
        t = t + block.mlp(block.layer_norm_2(t))
    t = encoder.layer_norm(t)
    head = model.get_layer("predictions")
    return ops.matmul(t[:, 0], head.kernel) + head.bias, attentions, explained


def test_keras_hub_vit_every_method_equals_a_tape_on_tensorflow():
    """keras-hub's ViT calls its attention inside its encoder blocks' own call(): the attention is read there,
    and the default CAM layer is the last block's first norm, inside the encoder too."""
    import tensorflow as tf

    model = _hub_vit()
    x = np.random.default_rng(99).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    target = [1, 2]
    attention_deltas = [tf.zeros((2, 2, 17, 17)) for _ in range(2)]
    token_delta = tf.zeros((2, 17, 16))
    with tf.GradientTape() as tape:
        tape.watch(attention_deltas + [token_delta])
        logits, attentions, explained = _hub_by_hand(model, tf.constant(x), attention_deltas, token_delta)
        score = tf.reduce_sum(tf.gather(logits, target, axis=1, batch_dims=1))
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), model.predict(x, verbose=0), atol=1e-5)
    *grads, token_grad = [g.numpy().astype(np.float64) for g in tape.gradient(score, attention_deltas + [token_delta])]
    attentions = [a.numpy().astype(np.float64) for a in attentions]

    probe = kerasxai.get_probe(model)
    assert probe.layer_names == ["vi_t_backbone/vit_encoder/transformer_block_2/ln_1"]
    acts = explained.numpy()[:, 1:].reshape(2, 4, 4, 16)
    token_grad = token_grad[:, 1:].reshape(2, 4, 4, 16)
    references = {
        "gradcam": np.maximum((token_grad.mean(axis=(1, 2), keepdims=True) * acts).sum(-1), 0),
        "layercam": np.maximum((np.maximum(token_grad, 0) * acts).sum(-1), 0),
        "hirescam": np.maximum((token_grad * acts).sum(-1), 0),
    }
    for name, expected in references.items():
        np.testing.assert_allclose(getattr(kerasxai, name)(model, x, target=target, raw=True), expected,
                                   rtol=1e-4, atol=1e-6, err_msg=name)
    rollout = _rollout_numpy(attentions, extra=1).reshape(2, 4, 4)
    np.testing.assert_allclose(kerasxai.attention_rollout(model, x, raw=True), rollout, rtol=1e-4, atol=1e-7)
    relevance = np.broadcast_to(np.eye(17), (2, 17, 17))
    for a, g in zip(attentions, grads):
        relevance = relevance + np.maximum(g * a, 0).mean(axis=1) @ relevance
    np.testing.assert_allclose(kerasxai.transformer_attribution(model, x, target=target, raw=True),
                               relevance[:, 0, 1:].reshape(2, 4, 4), rtol=1e-4, atol=1e-7)
    assert kerasxai.get_probe(model, attention=True).layer_names == [
        "vit_encoder/transformer_block_1/mha", "vit_encoder/transformer_block_2/mha"]
    named = kerasxai.gradcam(model, x, target=target, layer="transformer_block_1/ln_1", raw=True)
    assert named.shape == (2, 4, 4) and not np.allclose(named, references["gradcam"])  # another block's norm
    for layer in model._flatten_layers():
        assert "call" not in layer.__dict__


def test_cross_attention_with_as_many_queries_as_keys_is_refused():
    """16 queries (the first tokens of a longer sequence) attending to 16 other tokens: square, not self-attention."""
    inp = keras.Input((32, 32, 3))
    tokens = layers.Reshape((32, 4))(layers.Conv2D(4, (8, 4), strides=(8, 4))(inp))
    queries = layers.Lambda(lambda t: t[:, :16], output_shape=(16, 4))(tokens)
    keys = layers.Lambda(lambda t: t[:, 16:], output_shape=(16, 4))(tokens)
    crossed = layers.MultiHeadAttention(1, 4, name="cross")(queries, keys)
    model = keras.Model(inp, layers.Dense(2)(layers.GlobalAveragePooling1D()(crossed)))
    with pytest.raises(ValueError, match=r"\['cross'\] .*\(cross-attention"):
        kerasxai.attention_rollout(model, np.zeros((1, 32, 32, 3), "float32"), grid=(4, 4, 0))


def test_the_compiled_observation_finds_what_the_eager_one_finds():
    """Where the model runs only compiled (TensorFlow without oneDNN and a channels_first patch embedding), the
    attention calls are observed in a compiled step: the same layers, shapes and self-attention flags."""
    keras.utils.set_random_seed(5)
    inp = keras.Input((16, 16, 3))
    tokens = layers.Reshape((16, 8))(layers.Conv2D(8, 4, strides=4)(inp))
    h = layers.LayerNormalization()(tokens)
    tokens = layers.Add()([tokens, layers.MultiHeadAttention(2, 4, name="own")(h, h)])
    crossed = layers.MultiHeadAttention(2, 4, name="cross")(tokens, layers.Dense(8)(tokens))
    model = keras.Model(inp, layers.Dense(2)(layers.GlobalAveragePooling1D()(crossed)))
    net = kerasxai.get_probe(model, attention=True).net
    from kerasxai.probe.attention import _example

    eager = net._first()
    compiled = net._observe_compiled([_example((16, 16, 3), np.dtype("float32"))])
    assert [(c[0].name, c[1], c[3]) for c in eager] == [("own", (2, 16, 16), True), ("cross", (2, 16, 16), False)]
    assert [(c[0].name, c[1], c[2], c[3]) for c in compiled] == [(c[0].name, c[1], c[2], c[3]) for c in eager]


def test_numpy_numbers_are_taken_and_layer_is_refused_with_the_right_words(vits, x):
    model = vits[True]
    np.testing.assert_allclose(
        kerasxai.attention_rollout(model, x, grid=(np.int64(4), np.int64(3), 1), discard_ratio=np.float32(0.25)),
        kerasxai.attention_rollout(model, x, discard_ratio=0.25), atol=1e-6)
    with pytest.raises(ValueError, match="read from every attention layer, not at a layer"):
        kerasxai.explain(model, x, methods=("attention_rollout",), layer="block1_norm1")


def test_a_folder_run_of_a_vit_with_the_attention_methods(tmp_path):
    """The folder job reads the method table: token Grad-CAM and the attention methods per image, the maps equal
    the functions' on the same preprocessed images, overlays say where each method looked."""
    import json

    from PIL import Image

    images = np.random.default_rng(101).uniform(0, 1, (3, 32, 32, 3))
    for i, image in enumerate(images):
        Image.fromarray((image * 255).astype("uint8")).save(tmp_path / f"{i}.png")
    model = small_vit((32, 32, 3), 2, patch=8, dim=16, depth=2, heads=2, seed=102)
    _randomise(model, 103)
    methods = ("gradcam", "attention_rollout", "transformer_attribution")
    run = tmp_path / "run"
    kerasxai.explain_folder(model, str(tmp_path), str(run), methods=methods, overlays=True, preprocess=None,
                            progress=False)
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and not any(r.get("error") for r in rows)
    for row in rows:
        x = np.asarray(Image.open(tmp_path / row["file"].split("/")[-1]), np.float32)[None]
        with np.load(run / row["maps"]) as saved:
            for name in methods:
                np.testing.assert_allclose(saved[name], getattr(kerasxai, name)(model, x)[0], atol=2e-2, err_msg=name)
        assert set(row["overlays"]) == set(methods)


def test_a_key_computed_apart_from_the_value_is_still_self_attention():
    """MultiHeadAttention(query=h, value=h, key=another projection of h): T x T attention over the same tokens."""
    keras.utils.set_random_seed(104)
    inp = keras.Input((16, 16, 3))
    tokens = layers.Reshape((16, 8))(layers.Conv2D(8, 4, strides=4)(inp))
    h = layers.LayerNormalization()(tokens)
    key = layers.Dense(8, name="key_projection")(h)
    attention = layers.MultiHeadAttention(2, 4, name="attn")
    out = attention(h, h, key=key)
    model = keras.Model(inp, layers.Dense(2)(layers.GlobalAveragePooling1D()(layers.Add()([tokens, out]))))
    x = np.random.default_rng(105).uniform(0, 1, (2, 16, 16, 3)).astype("float32")
    hv, kv = keras.Model(inp, [h, key]).predict(x, verbose=0)
    _, scores = attention(ops.convert_to_tensor(hv), ops.convert_to_tensor(hv), key=ops.convert_to_tensor(kv),
                          return_attention_scores=True)
    expected = _rollout_numpy([ops.convert_to_numpy(scores)], extra=0).reshape(2, 4, 4)
    np.testing.assert_allclose(kerasxai.attention_rollout(model, x, raw=True), expected, rtol=1e-4, atol=1e-7)
