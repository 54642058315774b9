"""kerasxai's methods against hand-written compiled floors: VGG16 and ResNet50, batch 8, 224x224.

What it measures. In one process, for each model (``weights=None``, 1000
classes, a batch of 8 random 224x224 images), one complete call of every
contender, in interleaved rounds (each round runs every contender once, in an
order rotated per round), timed on wall-clock and on the process's CPU time
(see ``benchmarks/harness.py``):

- hand-written floors, each a ``tf.function`` plain and with ``jit_compile=True``
  (XLA), results copied to the host: *forward*; *layer gradient* — forward and
  the gradient at the explained layer, a ``GradientTape`` on
  ``keras.Model(model.input, [layer.output, model.output])`` (VGG16
  ``block5_conv3``, ResNet50 ``conv5_block3_out``); *input gradient* — forward
  and the gradient at the input (the input watched, nothing else); and the
  input gradient at batch 16 (SmoothGrad's default pass);
- kerasxai's Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM, ``explain``
  with four CAMs (Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM), saliency,
  SmoothGrad with 20 samples and Score-CAM with 10 channels, each as it runs by
  default (the automatic plain-or-XLA choice) and under
  ``kerasxai.backend.set_jit_compile(False)`` and ``(True)`` (``--modes``;
  ``--slow-modes`` for SmoothGrad and Score-CAM, automatic only by default:
  each of their calls costs 11-20 forward passes);
- tf-keras-vis's Grad-CAM, Grad-CAM++, LayerCAM and saliency side by side, if
  it is importable (``pip install tf-keras-vis``; not a dependency).

Before the rounds, every kerasxai method is called until each of its compiled
steps has made its automatic choice (a step times plain and XLA on its first
calls); SmoothGrad is warmed up with ``n`` small enough for one noisy pass of
the real shapes (same steps, same shapes, 1/20 of the time). The table says
what each step chose and the two times it saw.

Each row is a multiple of its reference: the *faster* (lower median, by the
same clock) of the plain and XLA versions of the matching floor, taken in the
same round; median over the rounds and (min–max). The verdict is on the
CPU-time median (on a busy machine wall times of one call swing 2x, CPU times
a few per cent); wall-time ratios are shown too. Targets:

- Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM <= 1.03 x layer-gradient floor;
- ``explain`` with 4 CAMs <= 1.06 x layer-gradient floor;
- saliency <= 1.03 x input-gradient floor;
- SmoothGrad-20 <= 20.6 x input-gradient floor. Compared fairly two ways: at
  ``batch_size=8`` (the image batch) every noisy pass has the floor's shape, so
  its 20 passes face 20 floors; at its default ``batch_size=16``, its 10 passes
  of 16 face 10 floors at batch 16 (so both rows read in input-gradient floors
  of the image batch, target 20.6; the clean pass that picks the class is
  inside the 0.6);
- Score-CAM n=10 <= 1.05 x (1 + 10) forward passes = 11.55 x forward.

With ``--memory``, each method's peak memory is also measured in a fresh
process per method: the rise of resident memory (RSS / its anonymous part)
during its first call, after one forward pass (allocator-dependent; rough).

    python benchmarks/bench_methods.py                          # both models: about an hour on a busy 2-core CPU
    python benchmarks/bench_methods.py --models ResNet50        # about 20 minutes
    python benchmarks/bench_methods.py --methods gradcam,saliency --modes auto --rounds 7
    python benchmarks/bench_methods.py --slow-modes auto,plain,xla --models ResNet50
    python benchmarks/bench_methods.py --memory --rounds 3
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

harness.quiet_tensorflow()
os.environ.update(harness.thread_env(harness.threads_from_argv(sys.argv)))  # before TensorFlow starts

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerasxai  # noqa: E402
from kerasxai import backend  # noqa: E402

LAYERS = {"VGG16": "block5_conv3", "ResNet50": "conv5_block3_out"}
MODES = {"auto": None, "plain": False, "xla": True}
CAMS4 = ("gradcam", "gradcam_plus_plus", "xgradcam", "layercam")

# row -> (floor family, target as a multiple of that floor)
ROWS = {
    "gradcam": ("layer", 1.03),
    "gradcam_plus_plus": ("layer", 1.03),
    "xgradcam": ("layer", 1.03),
    "hirescam": ("layer", 1.03),
    "layercam": ("layer", 1.03),
    "explain(4 CAMs)": ("layer", 1.06),
    "saliency": ("input", 1.03),
    "smoothgrad-20 (batch_size = image batch)": ("input", 20.6),
    "smoothgrad-20 (default batch_size=16)": ("input16", 20.6),
    "scorecam(n=10)": ("forward", 1.05 * 11),
}
SLOW = {"smoothgrad-20 (batch_size = image batch)", "smoothgrad-20 (default batch_size=16)", "scorecam(n=10)"}
SHORT = {"smoothgrad-20 (batch_size = image batch)": "smoothgrad8", "smoothgrad-20 (default batch_size=16)": "smoothgrad16",
         "scorecam(n=10)": "scorecam", "explain(4 CAMs)": "explain"}


def short(row):
    return SHORT.get(row, row)


# --------------------------------------------------------------------------- the calls into kerasxai


def kerasxai_calls(model, x, layer):
    """``{row: (call, warm_ups)}``: one complete call of each method, and cheaper calls that run the
    same compiled steps on the same shapes (used to make the automatic choice before the rounds)."""

    batch = len(x)

    def call(fn, *args, **kw):
        return lambda: fn(model, x, *args, **kw)

    return {
        "gradcam": (call(kerasxai.gradcam, layer=layer), None),
        "gradcam_plus_plus": (call(kerasxai.gradcam_plus_plus, layer=layer), None),
        "xgradcam": (call(kerasxai.xgradcam, layer=layer), None),
        "hirescam": (call(kerasxai.hirescam, layer=layer), None),
        "layercam": (call(kerasxai.layercam, layer=layer), None),
        "explain(4 CAMs)": (call(kerasxai.explain, methods=CAMS4, layer=layer), None),
        "saliency": (call(kerasxai.saliency), None),
        # cheap: one clean pass and one noisy pass of the real call's shapes
        "smoothgrad-20 (batch_size = image batch)": (call(kerasxai.smoothgrad, n=20, batch_size=batch),
                                                     call(kerasxai.smoothgrad, n=1, batch_size=batch)),
        "smoothgrad-20 (default batch_size=16)": (call(kerasxai.smoothgrad, n=20),
                                                  call(kerasxai.smoothgrad, n=16 // batch) if 16 % batch == 0 else None),
        "scorecam(n=10)": (call(kerasxai.scorecam, layer=layer, n=10, progress=False), None),
    }


def in_mode(fn, mode):
    """``fn`` run under ``set_jit_compile(MODES[mode])`` (automatic again afterwards)."""

    def run():
        backend.set_jit_compile(MODES[mode])
        try:
            return fn()
        finally:
            backend.set_jit_compile(None)

    return run


# --------------------------------------------------------------------------- floors


def floors(model, x, layer, batch16):
    """Hand-written compiled floors (``harness.tensorflow_floors``): ``{name: call}`` for plain and XLA;
    ``input16``: the input gradient at batch 16, SmoothGrad's default pass."""
    inputs = {"": (("forward", "layer", "input"), x)}
    if batch16:
        inputs["16"] = (("input",), np.concatenate([x, x[::-1]])[:16])
    return {key.replace("input@16", "input16"): call for key, call in harness.tensorflow_floors(model, layer, inputs).items()}


# --------------------------------------------------------------------------- tf-keras-vis


TKV_ROWS = ("gradcam", "gradcam_plus_plus", "layercam", "saliency")


def tf_keras_vis_calls(model, x, layer):
    """tf-keras-vis's versions, built once (as its documentation shows), or {} if it is absent."""
    try:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.layercam import Layercam
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore
    except ImportError:
        return {}
    score = CategoricalScore(np.argmax(model.predict(x, verbose=0), axis=1).tolist())
    linear = dict(model_modifier=ReplaceToLinear(), clone=True)
    saliency, gradcam = Saliency(model, **linear), Gradcam(model, **linear)
    plus, layercam = GradcamPlusPlus(model, **linear), Layercam(model, **linear)
    return {
        "gradcam": lambda: gradcam(score, x, penultimate_layer=layer),
        "gradcam_plus_plus": lambda: plus(score, x, penultimate_layer=layer),
        "layercam": lambda: layercam(score, x, penultimate_layer=layer),
        "saliency": lambda: saliency(score, x),
    }


# --------------------------------------------------------------------------- memory


def memory_in_fresh_process(name, batch, size, library, row):
    return harness.run_fresh([os.path.abspath(__file__), "--memory-probe", name, str(batch), str(size), library, row])


def _memory_probe(name, batch, size, library, row):
    model, x = _model_and_images(name, batch, size)
    model(x[:batch], training=False)  # one forward pass: the model's own memory is in the start value
    layer = LAYERS[name]
    calls = ({r: c for r, (c, _) in kerasxai_calls(model, x, layer).items()} if library == "kerasxai"
             else tf_keras_vis_calls(model, x, layer))
    with harness.MemorySampler() as mem:
        calls[row]()
    harness.emit({"rise_rss": mem.rise_rss, "rise_anon": mem.rise_anon, "peak_rss": harness.process_peak_mib()})


# --------------------------------------------------------------------------- one model


def _model_and_images(name, batch, size):
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3))
    x = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    return model, x


def run_model(name, args, log):
    rows = [r for r in ROWS if not args.methods or short(r) in args.methods or r in args.methods]
    model, x = _model_and_images(name, args.batch, args.size)
    layer = LAYERS[name]
    need16 = any(ROWS[r][0] == "input16" for r in rows)
    contenders = floors(model, x, layer, need16)
    log(f"{name}: compiling the floors")
    for fn in contenders.values():
        fn()
        fn()

    ours = kerasxai_calls(model, x, layer)
    chosen = {}
    log(f"{name}: warming up kerasxai until each step has chosen plain or XLA")
    for row in rows:
        call, cheap = ours[row]
        chosen[row] = harness.warm_up_automatic(model, cheap or call, lambda t: log(f"  {row}: {t}"))
    modes = {r: (args.slow_modes if r in SLOW else args.modes) for r in rows}
    for row in rows:
        call, cheap = ours[row]
        for mode in modes[row]:
            contenders[f"{short(row)}@{mode}"] = in_mode(call, mode)
            if mode != "auto":  # compiles what this mode needs, for every shape of the real call
                in_mode(cheap or call, mode)()
    theirs = {} if args.no_tf_keras_vis else tf_keras_vis_calls(model, x, layer)
    for row, fn in theirs.items():
        if row in rows:
            fn()
            fn()
            contenders[f"{row}@tf-keras-vis"] = fn
    slow_names = {short(r) for r in SLOW} | {"input16/plain", "input16/xla"}  # input16: SmoothGrad's reference
    slow = {k: args.slow_rounds for k in contenders if k.split("@")[0] in slow_names}
    log(f"{name}: {args.rounds} rounds of {len(contenders)} contenders ({args.slow_rounds} for the slow ones)")
    result = harness.interleaved(contenders, args.rounds, only_first=slow, log=lambda t: log(f"{name}: {t}"))
    mib = {}
    if args.memory:
        for row in rows:
            mib[row] = memory_in_fresh_process(name, args.batch, args.size, "kerasxai", row)
            if row in theirs:
                mib[f"{row}@tf-keras-vis"] = memory_in_fresh_process(name, args.batch, args.size, "tf-keras-vis", row)
    return report(name, args, rows, modes, result, chosen, theirs, mib)


def report(name, args, rows, modes, result, chosen, theirs, mib):
    cpu, wall = result["cpu"], result["wall"]
    lines = [f"\n## {name}, batch {args.batch}, {args.size}x{args.size}, weights=None, layer {LAYERS[name]}",
             f"{args.rounds} interleaved rounds ({args.slow_rounds} for SmoothGrad, Score-CAM and the batch-16 floor); "
             "median (min–max) over the rounds\n"]
    floor_rows = []
    for fam in ("forward", "layer", "input", "input16"):
        if not any(f"{fam}/plain" in r for r in cpu):
            continue
        cells = [fam if fam != "input16" else "input (batch 16)"]
        for mode in ("plain", "xla"):
            key = f"{fam}/{mode}"
            cells += [harness.times_of(wall, key).text(3), harness.times_of(cpu, key).text(3)]
        cells += [harness.ratios(wall, f"{fam}/xla", f"{fam}/plain").text(),
                  harness.ratios(cpu, f"{fam}/xla", f"{fam}/plain").text(),
                  harness.ratios(cpu, f"{fam}/plain", "forward/plain").text()]
        floor_rows.append(cells)
    lines.append(harness.table(["floor", "plain s (wall)", "plain s (CPU)", "XLA s (wall)", "XLA s (CPU)",
                                "XLA / plain (wall)", "XLA / plain (CPU)", "plain x plain forward (CPU)"], floor_rows))
    lines.append("")

    header = ["method", "reference (CPU / wall)", "auto (CPU)", "plain (CPU)", "XLA (CPU)", "auto (wall)", "target",
              "", "auto s (wall)", "auto chose"]
    if theirs:
        header.insert(8, "tf-keras-vis (CPU)")
    if mib:
        header += ["MiB (RSS / anon)"] + (["tf-keras-vis MiB"] if theirs else [])
    body = []
    for row in rows:
        fam, target = ROWS[row]
        ref_cpu = harness.faster(cpu, f"{fam}/plain", f"{fam}/xla")
        ref_wall = harness.faster(wall, f"{fam}/plain", f"{fam}/xla")
        what = {"forward": "forward", "layer": "layer gradient", "input": "input gradient",
                "input16": f"input gradient, batch 16, x {args.batch}/16"}[fam]
        factor = args.batch / 16 if fam == "input16" else 1.0

        def cell(table, key, ref):
            if not any(key in r for r in table):
                return "–"
            return harness.ratios(table, key, ref, factor=factor).text()

        key = short(row)
        auto = harness.ratios(cpu, f"{key}@auto", ref_cpu, factor=factor)
        cells = [row, f"{what} ({ref_cpu.split('/')[1]} / {ref_wall.split('/')[1]})",
                 cell(cpu, f"{key}@auto", ref_cpu), cell(cpu, f"{key}@plain", ref_cpu), cell(cpu, f"{key}@xla", ref_cpu),
                 cell(wall, f"{key}@auto", ref_wall), f"{target:.2f}", harness.verdict(auto.median, target)]
        if theirs:
            cells.append(cell(cpu, f"{row}@tf-keras-vis", ref_cpu))
        cells += [harness.times_of(wall, f"{key}@auto").text(2), chosen.get(row, "")]
        if mib:
            for m in [mib.get(row)] + ([mib.get(f"{row}@tf-keras-vis")] if theirs else []):
                cells.append("–" if not m or "error" in m else f"{m['rise_rss']:.0f} / {m['rise_anon']:.0f}")
        body.append(cells)
    lines.append(harness.table(header, body))
    lines.append("Multiples of the reference: the faster (plain or XLA; by the same clock) hand-written floor of the "
                 "same round. auto: kerasxai's automatic choice; plain/XLA: set_jit_compile(False/True). The verdict "
                 "is on the CPU-time median. SmoothGrad: in one input gradient of the image batch (target 20 x 1.03); "
                 "Score-CAM: in forward passes (target 11 x 1.05).")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="VGG16,ResNet50", help="comma-separated: VGG16, ResNet50")
    parser.add_argument("--methods", default=None,
                        help="comma-separated subset: gradcam, gradcam_plus_plus, xgradcam, hirescam, layercam, "
                             "explain, saliency, smoothgrad8, smoothgrad16, scorecam")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--slow-rounds", type=int, default=2, help="rounds for SmoothGrad and Score-CAM")
    parser.add_argument("--modes", default="auto,plain,xla", help="kerasxai modes for the one-pass methods")
    parser.add_argument("--slow-modes", default="auto", help="kerasxai modes for SmoothGrad and Score-CAM")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: its default)")
    parser.add_argument("--memory", action="store_true", help="peak memory per method, fresh process each")
    parser.add_argument("--no-tf-keras-vis", action="store_true", help="leave tf-keras-vis out even if installed")
    parser.add_argument("--memory-probe", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        name, batch, size, library, row = args.memory_probe
        _memory_probe(name, int(batch), int(size), library, row)
        return
    args.methods = set(args.methods.split(",")) if args.methods else None
    args.modes = [m for m in args.modes.split(",") if m]
    args.slow_modes = [m for m in args.slow_modes.split(",") if m]
    for m in args.modes + args.slow_modes:
        if m not in MODES:
            parser.error(f"unknown mode {m!r}: auto, plain, xla")
    logging.getLogger("kerasxai").setLevel(logging.WARNING)
    # tf-keras-vis feeds a list to one-input models; Keras says so once per model
    warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")

    def log(text):
        print(f"# {text}", file=sys.stderr, flush=True)

    print(f"# kerasxai methods vs hand-written floors\n{harness.machine_line()}\n"
          f"TensorFlow {tf.__version__}, Keras {keras.__version__}, NumPy {np.__version__}")
    for name in args.models.split(","):
        print(run_model(name, args, log), flush=True)


if __name__ == "__main__":
    main()
