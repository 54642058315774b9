"""Time of each method as a multiple of one compiled forward pass.

VGG16 (weights=None, 1000 classes), batch 8 at 224x224 by default; the median
of several runs after a warm-up call (which builds and traces the probe).

    python benchmarks/bench_methods.py            # VGG16, batch 8, 224x224
    python benchmarks/bench_methods.py --model ResNet50 --repeats 7

Targets on a 2-core CPU: Grad-CAM, CAM, LayerCAM, Grad-CAM++, XGrad-CAM and
HiResCAM <= 1.10x; explain() with four CAMs at one layer <= 1.15x; saliency
<= 2.1x; SmoothGrad with 20 samples <= 42x; Score-CAM with 10 channels <= 11x
(CAM needs a GAP -> Dense head, so it is timed on models that have one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerasxai  # noqa: E402

TARGETS = {
    "gradcam": 1.10,
    "cam": 1.10,
    "layercam": 1.10,
    "saliency": 2.1,
    "gradcam_plus_plus": 1.10,
    "xgradcam": 1.10,
    "hirescam": 1.10,
    "explain(4 CAMs)": 1.15,
    "smoothgrad(n=20)": 42.0,
    "scorecam(n=10)": 11.0,
}


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired_ratio(fn, forward, repeats):
    """Median over repeats of time(fn) / time(forward), each pair run back to back.

    Pairing cancels slow drifts of a shared machine, which otherwise move a
    single ratio by +-0.1.
    """
    fn()  # warm-up: builds the probe, traces the compiled step
    pairs = [(_seconds(forward), _seconds(fn)) for _ in range(repeats)]
    return statistics.median(m / f for f, m in pairs), statistics.median(m for _, m in pairs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="VGG16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--methods", default=None, help="comma-separated subset of the rows to time")
    args = parser.parse_args(argv)

    model = getattr(keras.applications, args.model)(weights=None, input_shape=(args.size, args.size, 3))
    x = np.random.default_rng(0).uniform(-1, 1, (args.batch, args.size, args.size, 3)).astype("float32")
    tensor = tf.constant(x)
    forward = tf.function(lambda t: model(t, training=False))
    run_forward = lambda: forward(tensor).numpy()  # noqa: E731
    run_forward()
    base = statistics.median(_seconds(run_forward) for _ in range(args.repeats))

    methods = {
        "saliency": lambda: kerasxai.saliency(model, x),
        "gradcam": lambda: kerasxai.gradcam(model, x),
        "layercam": lambda: kerasxai.layercam(model, x),
        "cam": lambda: kerasxai.cam(model, x),
        "gradcam_plus_plus": lambda: kerasxai.gradcam_plus_plus(model, x),
        "xgradcam": lambda: kerasxai.xgradcam(model, x),
        "hirescam": lambda: kerasxai.hirescam(model, x),
        "explain(4 CAMs)": lambda: kerasxai.explain(
            model, x, methods=("gradcam", "gradcam_plus_plus", "xgradcam", "layercam")
        ),
        "smoothgrad(n=20)": lambda: kerasxai.smoothgrad(model, x, n=20),
        "scorecam(n=10)": lambda: kerasxai.scorecam(model, x, n=10, progress=False),
    }
    slow = {"smoothgrad(n=20)", "scorecam(n=10)"}
    if args.methods:
        wanted = args.methods.split(",")
        methods = {k: v for k, v in methods.items() if k.split("(")[0] in wanted or k in wanted}
    print(f"{args.model}, batch {args.batch}, {args.size}x{args.size}, {os.cpu_count()} CPUs, "
          f"TensorFlow {tf.__version__}; median of {args.repeats} paired runs")
    print(f"{'method':<18}{'seconds':>9}{'x forward':>11}{'target':>8}")
    print(f"{'forward':<18}{base:>9.3f}{1.0:>11.2f}")
    for name, fn in methods.items():
        try:
            repeats = min(args.repeats, 3) if name in slow else args.repeats
            ratio, t = paired_ratio(fn, run_forward, repeats)
        except ValueError as err:  # CAM on a model without a GAP -> Dense head
            print(f"{name:<18}{'n/a':>9}   (no GAP -> Dense head in {args.model})")
            continue
        flag = "ok" if ratio <= TARGETS[name] else "OVER"
        print(f"{name:<18}{t:>9.3f}{ratio:>11.2f}{TARGETS[name]:>7.2f} {flag}", flush=True)


if __name__ == "__main__":
    main()
