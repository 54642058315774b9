"""Activation maximization on the demo's shapes model: does it find images the model reacts to more
than to its training data, and how does it compare with tf-keras-vis's ActivationMaximization?

1. Trains the demo's model (``kerasxai.evaluation.synthetic.small_cnn`` on 2000 generated
   discs and crosses, 12 epochs, as ``kerasxai.demo`` does).
2. kerasxai and tf-keras-vis (when installed) each make one image per unit --
   the two class logits, then every filter of ``last_conv`` -- with the same
   number of steps, one batch of units, timed from the call to the returned
   images (kerasxai's first call includes building and compiling its step).
   tf-keras-vis runs with its default settings (input modifiers, regularisers,
   optimizer, random seed images); the one thing set is ``input_range=(0, 1)``,
   the model's real input range (its default, 0..255, is meant for VGG-style
   inputs), the same information kerasxai gets as ``input_range=(0, 1)``.
   As its documentation shows, classes use ``ReplaceToLinear`` and
   ``CategoricalScore``; filters ``ExtractIntermediateLayer``,
   ``ReplaceToLinear`` and ``CategoricalScore``.
3. The activation each returned image reaches is measured the same way for
   both (and for 500 of the training images): a plain ``keras.Model`` from the
   input to the layer, without softmax for the logits, on the returned images
   (kerasxai's as uint8 / 255, tf-keras-vis's as returned, clipped to [0, 1]).

    python benchmarks/bench_visualize.py                 # 256 steps, writes bench-visualize/*.png
    python benchmarks/bench_visualize.py --steps 128 --no-tf-keras-vis

Goals: each class's image reaches a higher logit than every one of the 500
training images; each filter's image activates it more than any of them (a
filter that none of them activates is reported as dead); against tf-keras-vis,
a higher activation on every unit in at most half its time.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasxai  # noqa: E402
from kerasxai.evaluation import synthetic  # noqa: E402

LAYER = "last_conv"


def train(epochs: int, seed: int = 0):
    x, y, _ = synthetic.shapes_dataset(2000, seed=seed)
    model = synthetic.small_cnn(x.shape[1:], seed=seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    test_x, test_y, _ = synthetic.shapes_dataset(200, seed=seed + 1)
    return model, x, y, model.evaluate(test_x, test_y, verbose=0)[1]


def measurers(model):
    """Independent of kerasxai: plain sub-models for the logits and the layer's filters."""
    head = model.get_layer("predictions")
    features = keras.Model(model.inputs[0], head.input)
    kernel, bias = (np.asarray(w) for w in head.get_weights())
    layer = keras.Model(model.inputs[0], model.get_layer(LAYER).output)

    def logits(images):
        return features.predict(np.asarray(images, np.float32), verbose=0) @ kernel + bias

    def filters(images):
        return layer.predict(np.asarray(images, np.float32), verbose=0).mean(axis=(1, 2))

    return logits, filters


def kerasxai_run(model, layer, units, steps):
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = kerasxai.visualize_activation(model, layer, units, steps=steps, input_range=(0, 1),
                                               batch_size=len(units), progress=False)
    return result.images.astype(np.float32) / 255.0, time.perf_counter() - start, result, caught


def tf_keras_vis_run(model, layer, units, steps, seed=0):
    import tensorflow as tf
    from tf_keras_vis.activation_maximization import ActivationMaximization
    from tf_keras_vis.utils.model_modifiers import ExtractIntermediateLayer, ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    tf.random.set_seed(seed)
    start = time.perf_counter()
    modifiers = [ReplaceToLinear()] if layer is None else [ExtractIntermediateLayer(layer), ReplaceToLinear()]
    visualizer = ActivationMaximization(model, model_modifier=modifiers, clone=True)
    seed_input = tf.random.uniform((len(units),) + tuple(model.inputs[0].shape[1:]), 0.0, 1.0)
    images = visualizer(CategoricalScore(list(units)), seed_input=seed_input, input_range=(0.0, 1.0), steps=steps)
    return np.clip(np.asarray(images, np.float32), 0, 1), time.perf_counter() - start


def grid_png(images, path, cols=8, scale=3):
    from PIL import Image

    images = np.clip(np.round(np.asarray(images) * 255), 0, 255).astype(np.uint8)
    n, h, w, c = images.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + 2), cols * (w + 2), 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, q = divmod(i, cols)
        out[r * (h + 2) : r * (h + 2) + h, q * (w + 2) : q * (w + 2) + w] = image
    Image.fromarray(out).resize((out.shape[1] * scale, out.shape[0] * scale), Image.NEAREST).save(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--n-train", type=int, default=500, help="training images the results are compared with")
    parser.add_argument("--no-tf-keras-vis", action="store_true")
    parser.add_argument("--out", default="bench-visualize")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    model, x, y, accuracy = train(args.epochs)
    took = time.perf_counter() - start
    print(f"shapes model: test accuracy {accuracy:.1%} after {args.epochs} epochs ({took:.0f} s); "
          f"{args.steps} steps per image; keras backend {keras.backend.backend()}")
    logits, filters = measurers(model)
    data = x[: args.n_train]
    data_logits, data_filters = logits(data), filters(data)
    model.predict(data[:8], verbose=0)  # TensorFlow's runtime warmed up for both tools

    n_filters = model.get_layer(LAYER).output.shape[-1]
    jobs = [("class", None, [0, 1], logits), (f"{LAYER} filter", LAYER, list(range(n_filters)), filters)]
    compare = not args.no_tf_keras_vis
    if compare:
        try:
            import tf_keras_vis  # noqa: F401
        except ImportError:
            print("tf-keras-vis is not installed (pip install tf-keras-vis): kerasxai alone.")
            compare = False
    os.makedirs(args.out, exist_ok=True)
    rows, times = [], []
    for kind, layer, units, measure in jobs:
        ours, our_time, result, caught = kerasxai_run(model, layer, units, args.steps)
        _, warm_time, _, _ = kerasxai_run(model, layer, units, args.steps)
        for warning in caught:
            print(f"  kerasxai warning: {warning.message}")
        reached = measure(ours)[np.arange(len(units)), units]
        best = (data_logits if layer is None else data_filters)[:, units].max(axis=0)
        theirs, their_time = (tf_keras_vis_run(model, layer, units, args.steps) if compare else (None, float("nan")))
        their_reached = measure(theirs)[np.arange(len(units)), units] if compare else [float("nan")] * len(units)
        times.append((kind, len(units), our_time, warm_time, their_time))
        stem = "classes" if layer is None else f"filters_{layer}"
        grid_png(ours, os.path.join(args.out, f"{stem}_kerasxai.png"))
        if compare:
            grid_png(theirs, os.path.join(args.out, f"{stem}_tf_keras_vis.png"))
        for i, u in enumerate(units):
            name = synthetic.CLASS_NAMES[u] if layer is None else f"#{u}"
            rows.append((kind, name, float(reached[i]), float(best[i]), float(their_reached[i]), u in result.dead))

    print(f"\n| unit | kerasxai | best of {args.n_train} training images | kerasxai > all of them | "
          "tf-keras-vis | kerasxai > tf-keras-vis |")
    print("|---|---|---|---|---|---|")
    for kind, name, ours, best, theirs, dead in rows:
        verdict = "dead (0 on every image; warned)" if dead and best <= 0 else ("yes" if ours > best else "NO")
        versus = "–" if np.isnan(theirs) else ("yes" if ours > theirs else (
            "tie: dead for both" if dead and ours == theirs == 0 else "NO"))
        print(f"| {kind} {name} | {ours:.3f} | {best:.3f} | {verdict} | "
              f"{'–' if np.isnan(theirs) else f'{theirs:.3f}'} | {versus} |")
    live = [r for r in rows if not (r[5] and r[3] <= 0)]
    print(f"\nkerasxai above every training image: {sum(r[2] > r[3] for r in live)}/{len(live)} live units "
          f"({len(rows) - len(live)} dead)")
    if compare:
        print(f"kerasxai above tf-keras-vis: {sum(r[2] > r[4] for r in live)}/{len(live)} live units")
    print("\n| units | kerasxai first call (s) | kerasxai again (s) | tf-keras-vis (s) | first call / tf-keras-vis |")
    print("|---|---|---|---|---|")
    for kind, n, first, warm, theirs in times:
        ratio = "–" if np.isnan(theirs) else f"{first / theirs:.2f}"
        print(f"| {n} × {kind} | {first:.1f} | {warm:.1f} | {theirs:.1f} | {ratio} |")
    print(f"\nimages written to {args.out}/")


if __name__ == "__main__":
    main()
