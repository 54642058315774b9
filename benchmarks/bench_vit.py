"""Vision transformers: where the maps point, and what they cost against hand-written compiled functions.

What it measures, in one process (TensorFlow):

- **Localisation** (``--images`` fresh images): the small ViT of :mod:`kerasxai.evaluation.synthetic`
  (8 x 8 patches of 6 px, a class token, 3 blocks) and the small CNN beside it, trained on generated
  discs and crosses among clutter (``--train`` images; the ViT 20 epochs, the CNN 12), then every image
  explained for its true class. The pointing game: the share of maps whose peak lies on the object (its
  mask); a flat map (no positive evidence) counts as a miss, and the flat maps are counted. Baseline: a map
  peaked at the image centre. Token CAMs at kerasxai's default layer (the last
  block's first norm); the CNN's at its last conv.
- **Speed** (``--rounds`` interleaved rounds, ``benchmarks/harness.py``; CPU-time medians, wall shown
  too) on a larger ViT (224 x 224, 16 px patches, width 192, ``--depth`` blocks, 3 heads, 1000 classes,
  random weights, a batch of ``--batch``): kerasxai's token Grad-CAM and transformer attribution against
  hand-written ``tf.function`` floors computing the same maps — the forward pass written out layer by
  layer with each attention re-computed from its projection sublayers (a zero perturbation on its
  probabilities for transformer attribution, on the last block's first norm for Grad-CAM), one
  ``GradientTape``, the formula, the bilinear upsampling and the per-image min-max, copied to the host;
  each floor plain and with XLA (``jit_compile=True``), the faster taken per round. Targets (issue 21):
  transformer attribution <= 1.3 x, token Grad-CAM <= 1.1 x.

    python benchmarks/bench_vit.py                    # about 6 minutes on 2 CPU cores
    python benchmarks/bench_vit.py --images 32 --rounds 3 --depth 2     # a quick look
"""

from __future__ import annotations

import argparse
import time
import warnings

import harness

harness.quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerasxai  # noqa: E402
from kerasxai.evaluation import metrics, synthetic  # noqa: E402

VIT_METHODS = ("gradcam", "layercam", "hirescam", "attention_rollout", "transformer_attribution", "saliency", "rise")
CNN_METHODS = ("gradcam", "layercam", "saliency", "rise")


def trained(kind, x, y, epochs, seed=0):
    model = synthetic.small_vit(x.shape[1:], seed=seed) if kind == "vit" else synthetic.small_cnn(x.shape[1:], seed=seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def localisation(args):
    train_x, train_y, _ = synthetic.shapes_dataset(args.train, seed=0, clutter=3)
    test_x, test_y, masks = synthetic.shapes_dataset(args.images, seed=1, clutter=3)
    rows = []
    for kind, epochs, methods in (("vit", 20, VIT_METHODS), ("cnn", 12, CNN_METHODS)):
        t0 = time.perf_counter()
        model = trained(kind, train_x, train_y, epochs)
        accuracy = float((model.predict(test_x, verbose=0).argmax(1) == test_y).mean())
        layer = kerasxai.get_probe(model).layer_names[0]
        print(f"{kind}: test accuracy {accuracy:.1%}, CAM layer {layer}, trained in {time.perf_counter() - t0:.0f} s")
        for name in methods:
            options = {"n": 1000, "progress": False} if name == "rise" else {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # flat maps count as misses (their peak is pixel 0)
                maps = getattr(kerasxai, name)(model, test_x, target=test_y.tolist(), **options)
            flat = int((maps.reshape(len(maps), -1).max(1) <= maps.reshape(len(maps), -1).min(1)).sum())
            rows.append([kind, name, f"{metrics.pointing_game(maps, masks).mean():.2f}",
                         f"{metrics.energy_pointing_game(maps, masks).mean():.2f}", str(flat)])
    centre = np.zeros(masks.shape, np.float32)
    centre[:, masks.shape[1] // 2, masks.shape[2] // 2] = 1
    rows.append(["–", "peak at the centre", f"{metrics.pointing_game(centre, masks).mean():.2f}", "–", "–"])
    print(f"Pointing game over {args.images} generated images (objects cover {masks.mean():.1%} of each image):")
    print(harness.table(["model", "method", "pointing", "energy", "flat maps"], rows))


# --------------------------------------------------------------------------- the hand-written floors


def forward_by_hand(model, x, depth, attention_deltas=None, token_delta=None):
    """The small ViT written out: logits (softmax left out), each attention's probabilities, the last
    block's first norm; ``attention_deltas`` / ``token_delta`` added where their gradients are wanted."""
    g = model.get_layer
    t = g("position_embed")(g("class_token")(g("tokens")(g("patch_embed")(x))))
    explained, attentions = None, []
    for i in range(depth):
        h = g(f"block{i}_norm1")(t)
        if i == depth - 1:
            explained = h
            if token_delta is not None:
                h = h + token_delta
        attention = g(f"block{i}_attn")
        q, k, v = attention.query_dense(h), attention.key_dense(h), attention.value_dense(h)
        a = tf.nn.softmax(tf.einsum("nthd,nshd->nhts", q, k) / np.sqrt(attention.key_dim), axis=-1)
        attentions.append(a)
        if attention_deltas is not None:
            a = a + attention_deltas[i]
        t = t + attention.output_dense(tf.einsum("nhts,nshd->nthd", a, v))
        t = t + g(f"block{i}_mlp2")(g(f"block{i}_mlp1")(g(f"block{i}_norm2")(t)))
    head = g("predictions")
    return tf.matmul(g("final_norm")(t)[:, 0], head.kernel) + head.bias, attentions, explained


def _finish(raw, size):
    up = tf.image.resize(raw[..., None], size, method="bilinear")[..., 0]
    low = tf.reduce_min(up, axis=(1, 2), keepdims=True)
    span = tf.reduce_max(up, axis=(1, 2), keepdims=True) - low
    return tf.where(span > 0, (up - low) / tf.maximum(span, 1e-12), tf.zeros_like(up))


def floors(model, depth, grid, size, target):
    n_tokens = grid * grid + 1

    def attribution(x):
        deltas = [tf.zeros((tf.shape(x)[0], 3, n_tokens, n_tokens)) for _ in range(depth)]
        with tf.GradientTape() as tape:
            tape.watch(deltas)
            logits, attentions, _ = forward_by_hand(model, x, depth, attention_deltas=deltas)
            score = tf.reduce_sum(logits[:, target])
        grads = tape.gradient(score, deltas)
        relevance = tf.eye(n_tokens, batch_shape=[tf.shape(x)[0]])
        for a, gr in zip(attentions, grads):
            relevance = relevance + tf.matmul(tf.reduce_mean(tf.nn.relu(gr * a), axis=1), relevance)
        return _finish(tf.reshape(relevance[:, 0, 1:], (-1, grid, grid)), size)

    def gradcam(x):
        delta = tf.zeros((tf.shape(x)[0], n_tokens, 192))
        with tf.GradientTape() as tape:
            tape.watch(delta)
            logits, _, acts = forward_by_hand(model, x, depth, token_delta=delta)
            score = tf.reduce_sum(logits[:, target])
        grads = tf.reshape(tape.gradient(score, delta)[:, 1:], (-1, grid, grid, 192))
        acts = tf.reshape(acts[:, 1:], (-1, grid, grid, 192))
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        return _finish(tf.nn.relu(tf.reduce_sum(weights * acts, axis=-1)), size)

    out = {}
    for name, fn in (("attribution", attribution), ("gradcam", gradcam)):
        for mode, jit in (("plain", False), ("xla", True)):
            out[f"{name} floor {mode}"] = tf.function(fn, jit_compile=jit)
    return out


def speed(args):
    keras.utils.set_random_seed(0)
    size, patch = 224, 16
    grid = size // patch
    model = synthetic.small_vit((size, size, 3), 1000, patch=patch, dim=192, depth=args.depth, heads=3)
    for w in model.weights:  # a class token and position embeddings away from zero, as trained ones are
        if "token" in w.path or "position" in w.path:
            w.assign(np.random.default_rng(1).normal(0, 0.5, tuple(w.shape)).astype("float32"))
    x = np.random.default_rng(0).uniform(0, 1, (args.batch, size, size, 3)).astype("float32")
    target = 3
    compiled = floors(model, args.depth, grid, (size, size), target)
    check = {
        "attribution": kerasxai.transformer_attribution(model, x, target=target),
        "gradcam": kerasxai.gradcam(model, x, target=target),
    }
    for name, expected in check.items():  # the floors compute the same maps
        for mode in ("plain", "xla"):
            got = compiled[f"{name} floor {mode}"](tf.constant(x)).numpy()
            assert np.abs(got - expected).max() < 1e-3, (name, mode, np.abs(got - expected).max())
    contenders = {name: (lambda fn=fn: fn(tf.constant(x)).numpy()) for name, fn in compiled.items()}
    contenders["kerasxai.transformer_attribution"] = lambda: kerasxai.transformer_attribution(model, x, target=target)
    contenders["kerasxai.gradcam"] = lambda: kerasxai.gradcam(model, x, target=target)
    for _ in range(12):  # tracing, and the automatic plain-or-XLA choice of kerasxai's steps
        for fn in contenders.values():
            fn()
    result = harness.interleaved(contenders, args.rounds)
    rows = []
    for name, floor, goal in (("kerasxai.transformer_attribution", "attribution", 1.3), ("kerasxai.gradcam", "gradcam", 1.1)):
        plain, xla = f"{floor} floor plain", f"{floor} floor xla"
        cpu = harness.ratios(result["cpu"], name, lambda row: min(row[plain], row[xla]))
        wall = harness.ratios(result["wall"], name, lambda row: min(row[plain], row[xla]))
        best = harness.faster(result["cpu"], plain, xla)
        rows.append([name, f"{harness.times_of(result['wall'], best).text(3)} ({best.split()[-1]})",
                     harness.times_of(result["wall"], name).text(3), cpu.text(), wall.text(), f"<= {goal}",
                     harness.verdict(cpu.median, goal)])
    print(f"ViT 224x224, patches of 16, width 192, {args.depth} blocks, 3 heads, batch {args.batch}; {args.rounds} rounds")
    print(harness.table(["method", "floor s (wall)", "kerasxai s (wall)", "x floor (CPU)", "x floor (wall)", "target",
                         "verdict"], rows))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128, help="test images for the pointing game")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--depth", type=int, default=6, help="blocks of the speed benchmark's ViT")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--skip", choices=("localisation", "speed"), default=None)
    args = parser.parse_args(argv)
    print(harness.machine_line())
    if args.skip != "localisation":
        localisation(args)
    if args.skip != "speed":
        speed(args)


if __name__ == "__main__":
    main()
