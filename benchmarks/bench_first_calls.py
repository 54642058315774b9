"""What the first calls of a session cost: kerasxai's against hand-written floors', timed one by one.

What it measures. In a fresh Python process per (model, method, mode), VGG16,
ResNet50, MobileNetV2 or EfficientNetB0 (``weights=None``, batch 8, 224x224) is built and run once, then the
contender is called seven times on the same NumPy images and each call's wall
time is printed. Contenders:

- ``plain`` / ``xla`` / ``auto``: ``kerasxai.gradcam`` or ``kerasxai.saliency`` under
  ``kerasxai.backend.set_jit_compile(False | True | None)``. ``auto`` is the default:
  on a CPU with oneDNN the plain ``tf.function`` with nothing timed (XLA lost every
  floor measured there); on a CPU without oneDNN XLA from the first call for a large batch of a model of
  dense convolutions (VGG16 from 4 images), plain otherwise, the other tried once the first's calls have repaid
  its trial (never before call 8); on a GPU a step times plain and XLA on its calls 2 to 6 and
  keeps the faster (``kerasxai.backend.tensorflow``).
- ``floor-plain`` / ``floor-xla``: the least work the method needs, written by hand
  (``harness.tensorflow_floors``: forward and the gradient at the explained layer,
  or at the input, a ``tf.function`` plain or with XLA, given the NumPy batch,
  results copied to the host), its own tracing in its first call.

The verdict (issue 22): kerasxai's default, calls 1-7 summed, within 1.03x the
faster floor's calls 1-7 summed. Each process is run ``--repeats`` times, the
contenders one after the other (the order reversed every other repeat); the table
shows the median of each call, and the verdict is the median over repeats of the
ratio within a repeat (first calls swing with the machine's load, in spells longer
than one process: a pair run back to back shares its spell). The floor builds its
sub-model (``keras.Model(model.input, [layer.output, model.output])``) in its
first call, as kerasxai builds its probe in its own.

    python benchmarks/bench_first_calls.py                      # VGG16, Grad-CAM and saliency: 15-20 minutes
    python benchmarks/bench_first_calls.py --models ResNet50 --methods gradcam --modes auto,floor-plain
    python benchmarks/bench_first_calls.py --methods gradcam --calls 30 --repeats 1  # a longer session
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

LAYERS = {"VGG16": "block5_conv3", "ResNet50": "conv5_block3_out", "MobileNetV2": "out_relu",
          "EfficientNetB0": "top_activation"}
MODES = {"plain": False, "xla": True, "auto": None, "floor-plain": None, "floor-xla": None}
CALLS = 7


def _probe(name, method, mode, batch, size, calls=CALLS):
    harness.quiet_tensorflow()
    import keras
    import numpy as np

    import kerasxai
    from kerasxai import backend

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3))
    x = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    model(x, training=False)  # the model built and run once: what a user has before explaining
    if mode.startswith("floor-"):
        kind = "layer" if method == "gradcam" else "input"
        floors = []

        def fn(model, x, **kwargs):
            if not floors:  # its sub-model built in its first call, as kerasxai builds its probe in its own
                floors.append(harness.tensorflow_floors(model, LAYERS[name], {"": ([kind], x)}, host=True)[f"{kind}/{mode[6:]}"])
            return floors[0]()
    else:
        backend.set_jit_compile(MODES[mode])
        fn = getattr(kerasxai, method)
    kwargs = {"layer": LAYERS[name]} if method == "gradcam" else {}
    times = []
    with harness.steps_called() as steps:
        for _ in range(calls):
            start = time.perf_counter()
            fn(model, x, **kwargs)
            times.append(time.perf_counter() - start)
    harness.emit({"times": times, "choice": harness.choice_text(model, steps) if steps else ""})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="VGG16")
    parser.add_argument("--methods", default="gradcam,saliency")
    parser.add_argument("--modes", default="auto,floor-plain,floor-xla")
    parser.add_argument("--repeats", type=int, default=4, help="fresh processes per contender (median per call)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--calls", type=int, default=CALLS,
                        help="calls per process (more than 7: a longer session; the verdict stays on calls 1-7, and "
                             "a second one, target 1.05, covers them all)")
    parser.add_argument("--probe", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.calls < CALLS:
        parser.error(f"--calls must be at least {CALLS}")
    if args.probe:
        _probe(*args.probe, args.batch, args.size, args.calls)
        return
    n = args.calls
    print(f"# kerasxai: the first {n} calls, fresh process each (batch {args.batch}, {args.size}x{args.size})\n"
          f"{harness.machine_line()}\n")
    later = [f"calls {CALLS + 1}-{n} s"] if n > CALLS else []
    headers = (["model", "method", "mode"] + [f"call {i + 1} s" for i in range(CALLS)] + [f"sum of {CALLS} s"] + later
               + ([f"sum of {n} s"] if later else []))
    long_verdicts = []
    rows, verdicts = [], []
    modes = args.modes.split(",")
    for name in args.models.split(","):
        for method in args.methods.split(","):
            sums = {}
            runs = {mode: [] for mode in modes}
            for repeat in range(args.repeats):  # interleaved: each repeat runs every contender once, the order
                for mode in (modes if repeat % 2 == 0 else modes[::-1]):  # reversed every other repeat
                    res = harness.run_fresh([os.path.abspath(__file__), "--probe", name, method, mode,
                                             "--batch", str(args.batch), "--size", str(args.size), "--calls", str(n)])
                    runs[mode].append(res.get("times") or res.get("error"))
                    print(f"# {name} {method} {mode}: {runs[mode][-1]} {res.get('choice') or ''}", file=sys.stderr,
                          flush=True)
            for mode in modes:
                good = [t for t in runs[mode] if isinstance(t, list)]
                if not good:
                    rows.append([name, method, mode, str(runs[mode][0])] + [""] * (len(headers) - 4))
                    continue
                t = [statistics.median(call) for call in zip(*good)]
                sums[mode] = sum(t[:CALLS])
                rows.append([name, method, mode] + [f"{v:.2f}" for v in t[:CALLS]] + [f"{sum(t[:CALLS]):.2f}"]
                            + ([f"{sum(t[CALLS:]):.2f}", f"{sum(t):.2f}"] if later else []))
            floors = [m for m in ("floor-plain", "floor-xla") if m in sums]
            if "auto" in sums and floors:
                best = min(floors, key=sums.get)
                # paired: each repeat's kerasxai sum over the faster floor's sum in the same repeat, run
                # back to back (a slow spell of the machine, tens of seconds long, hits both of a pair)
                paired = [i for i, a in enumerate(runs["auto"])
                          if isinstance(a, list) and all(isinstance(runs[f][i], list) for f in floors)]
                pairs = [sum(runs["auto"][i][:CALLS]) / min(sum(runs[f][i][:CALLS]) for f in floors) for i in paired]
                ratio = statistics.median(pairs)
                if later:  # the whole session: after call 7, XLA may be tried (a CPU without oneDNN)
                    whole = [sum(runs["auto"][i]) / min(sum(runs[f][i]) for f in floors) for i in paired]
                    long_verdicts.append([name, method, " ".join(f"{r:.3f}" for r in whole),
                                          f"{statistics.median(whole):.3f}", "<= 1.05",
                                          harness.verdict(statistics.median(whole), 1.05)])
                verdicts.append([name, method, f"{sums['auto']:.2f}", f"{sums[best]:.2f} ({best[6:]})",
                                 f"{sums['auto'] / sums[best]:.3f}", " ".join(f"{r:.3f}" for r in pairs),
                                 f"{ratio:.3f}", "<= 1.03", harness.verdict(ratio, 1.03)])
    print(harness.table(headers, rows))
    if verdicts:
        print()
        print(harness.table(["model", "method", f"kerasxai calls 1-{CALLS} s", f"faster floor's calls 1-{CALLS} s",
                             "ratio of the sums", "ratio per repeat", "median ratio", "target", "verdict"],
                            verdicts))
    if long_verdicts:
        print()
        print(harness.table(["model", "method", f"calls 1-{n}: kerasxai / faster floor, per repeat", "median",
                             "target", "verdict"], long_verdicts))


if __name__ == "__main__":
    main()
