"""Occlusion and RISE against the least work they need: the same masked copies through a compiled forward.

What it measures. In one process, for a model (``weights=None``, a batch of
random images), in interleaved rounds (``benchmarks/harness.py``):

- the *floor*, written by hand: the copies each method needs (occlusion: every
  window hidden in turn; RISE: ``n`` masks) made on the host with NumPy and sent
  through one ``tf.function`` forward of the model ``batch_size`` at a time,
  the target logits copied to the host, plus the clean pass — the forward
  passes no implementation can avoid, with the masks' cost as small as NumPy
  makes it (RISE's masks are drawn once, outside the timing: a generous floor);
- ``kerasxai.occlusion`` and ``kerasxai.rise`` with the same arguments.

Targets (issue 23): each <= 1.15 x its floor, on the CPU-time median (on a
busy machine wall times swing; wall ratios are shown too).

    python benchmarks/bench_perturbation.py                      # MobileNetV2 96x96, 4 images: a few minutes
    python benchmarks/bench_perturbation.py --model VGG16 --size 64 --rounds 3
"""

from __future__ import annotations

import argparse

import harness

harness.quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerasxai  # noqa: E402
from kerasxai.methods.perturbation import occlusion_windows, rise_masks  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="MobileNetV2")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--n", type=int, default=256, help="RISE masks per image")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(harness.machine_line())

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, args.model)(weights=None, input_shape=(args.size, args.size, 3), classes=10)
    x = np.random.default_rng(0).uniform(-1, 1, (args.images, args.size, args.size, 3)).astype("float32")
    target, batch = 3, args.batch_size
    # the floor scores the same logits kerasxai explains: the classifier Dense without its softmax
    dense = model.layers[-1]
    features = keras.Model(model.input, dense.input)

    @tf.function
    def forward(z):
        return tf.matmul(features(z, training=False), dense.kernel)[:, target] + dense.bias[target]

    windows = occlusion_windows((args.size, args.size), args.window, args.stride)
    masks = rise_masks((args.size, args.size), 0, args.n, seed=0)

    def floor(copies_of, count):
        def run():
            clean = forward(x).numpy()
            scores = []
            for image in range(len(x)):
                for start in range(0, count, batch):
                    scores.append(forward(copies_of(image, slice(start, start + batch))).numpy())
            return clean, np.concatenate(scores)
        return run

    hidden = windows[..., None]
    contenders = {
        "occlusion floor": floor(lambda i, part: np.where(hidden[part], 0.0, x[i]).astype("float32"),
                                   len(windows)),
        "kerasxai.occlusion": lambda: kerasxai.occlusion(model, x, target=target, window=args.window,
                                                         stride=args.stride, batch_size=batch, progress=False),
        "rise floor": floor(lambda i, part: (x[i] * masks[part][..., None]).astype("float32"), args.n),
        "kerasxai.rise": lambda: kerasxai.rise(model, x, target=target, n=args.n, batch_size=batch, progress=False),
    }
    for fn in contenders.values():  # tracing and first calls
        fn()
    result = harness.interleaved(contenders, args.rounds)
    rows = []
    for name, reference, goal in (("kerasxai.occlusion", "occlusion floor", 1.15), ("kerasxai.rise", "rise floor", 1.15)):
        cpu = harness.ratios(result["cpu"], name, reference)
        wall = harness.ratios(result["wall"], name, reference)
        rows.append([name, harness.times_of(result["wall"], reference).text(2), harness.times_of(result["wall"], name).text(2),
                     cpu.text(), wall.text(), f"<= {goal}", harness.verdict(cpu.median, goal)])
    print(f"{args.model} {args.size}x{args.size}, {args.images} images, batch {batch}: occlusion {len(windows)} windows "
          f"(window {args.window}, stride {args.stride}), RISE n={args.n}; {args.rounds} rounds")
    print(harness.table(["method", "floor s (wall)", "kerasxai s (wall)", "x floor (CPU)", "x floor (wall)", "target",
                         "verdict"], rows))


if __name__ == "__main__":
    main()
