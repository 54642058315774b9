"""What the automatic plain-or-XLA choice costs a short session: the first calls, timed one by one.

What it measures. In a fresh Python process per (method, mode), VGG16 or
ResNet50 (``weights=None``, batch 8, 224x224) is built, then
``kerasxai.gradcam`` or ``kerasxai.saliency`` is called six times on the same
images and each call's wall time is printed. Modes:

- ``plain``: ``kerasxai.backend.set_jit_compile(False)`` — ``tf.function`` only;
- ``xla``: ``set_jit_compile(True)`` — XLA only;
- ``auto``: the default. A step traces plain on its 1st call, times plain on
  its 2nd, compiles XLA on its 3rd, times XLA, plain, XLA on its 4th to 6th and
  keeps the faster (best of two each; XLA only if at least 3 % faster) from
  the 7th on.

So the first call of a session costs what ``plain`` costs (tracing), the 3rd
call pays XLA's compilation, and the total of the first calls is the price of
the choice. The steady state is what ``bench_methods.py`` measures.

    python benchmarks/bench_first_calls.py                      # about 10 minutes on 2 cores
    python benchmarks/bench_first_calls.py --models ResNet50 --methods gradcam
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

LAYERS = {"VGG16": "block5_conv3", "ResNet50": "conv5_block3_out"}
MODES = {"plain": False, "xla": True, "auto": None}
CALLS = 7


def _probe(name, method, mode, batch, size):
    harness.quiet_tensorflow()
    import keras
    import numpy as np

    import kerasxai
    from kerasxai import backend

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3))
    x = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    model(x, training=False)  # the model built and run once: what a user has before explaining
    backend.set_jit_compile(MODES[mode])
    kwargs = {"layer": LAYERS[name]} if method == "gradcam" else {}
    fn = getattr(kerasxai, method)
    times = []
    for _ in range(CALLS):
        start = time.perf_counter()
        fn(model, x, **kwargs)
        times.append(time.perf_counter() - start)
    harness.emit({"times": times})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="VGG16,ResNet50")
    parser.add_argument("--methods", default="gradcam,saliency")
    parser.add_argument("--modes", default="plain,xla,auto")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--probe", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        _probe(*args.probe, args.batch, args.size)
        return
    print(f"# kerasxai: the first {CALLS} calls, fresh process each (batch {args.batch}, {args.size}x{args.size})\n"
          f"{harness.machine_line()}\n")
    headers = ["model", "method", "mode"] + [f"call {i + 1} s" for i in range(CALLS)] + [f"sum of {CALLS} s"]
    rows = []
    for name in args.models.split(","):
        for method in args.methods.split(","):
            for mode in args.modes.split(","):
                res = harness.run_fresh([os.path.abspath(__file__), "--probe", name, method, mode,
                                         "--batch", str(args.batch), "--size", str(args.size)])
                if "error" in res:
                    rows.append([name, method, mode, res["error"]] + [""] * CALLS)
                else:
                    t = res["times"]
                    rows.append([name, method, mode] + [f"{v:.2f}" for v in t] + [f"{sum(t):.1f}"])
                print(f"# {name} {method} {mode}: {rows[-1][3:]}", file=sys.stderr, flush=True)
    print(harness.table(headers, rows))


if __name__ == "__main__":
    main()
