"""Time and peak memory of each method, as multiples of one compiled forward pass.

VGG16 and ResNet50 (weights=None, 1000 classes), batch 8 at 224x224; each
method is timed right after a forward pass, and the median of the paired
ratios is reported (pairing cancels the slow drifts of a shared machine). Peak
memory is measured in a fresh process per method (TensorFlow's allocator keeps
what it once took, so a shared process would hide it): the largest rise of
resident memory during the method's first call, after one forward pass.
If tf-keras-vis is installed, its versions of the same methods are timed in the
same run, side by side (it is not a dependency of kerasxai).

    python benchmarks/bench_methods.py                      # VGG16 and ResNet50
    python benchmarks/bench_methods.py --models VGG16 --methods gradcam,saliency

Targets on a 2-core CPU (VGG16): Grad-CAM, CAM, LayerCAM, Grad-CAM++,
XGrad-CAM, HiResCAM <= 1.10x; explain() with four CAMs at one layer <= 1.15x;
saliency <= 2.1x; SmoothGrad with 20 samples <= 42x; Score-CAM with 10
channels <= 11x (CAM needs a GAP -> Dense head, so VGG16 has none).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerasxai  # noqa: E402

TARGETS = {
    "saliency": 2.1,
    "gradcam": 1.10,
    "cam": 1.10,
    "layercam": 1.10,
    "gradcam_plus_plus": 1.10,
    "xgradcam": 1.10,
    "hirescam": 1.10,
    "explain(4 CAMs)": 1.15,
    "smoothgrad(n=20)": 42.0,
    "scorecam(n=10)": 11.0,
}
SLOW = {"smoothgrad(n=20)", "scorecam(n=10)"}
LAYERS = {"VGG16": "block5_conv3", "ResNet50": "conv5_block3_out"}


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _rss_mib():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_memory(fn):
    """MiB: the largest rise of resident memory while ``fn`` runs (Linux /proc sampling)."""
    if not os.path.exists("/proc/self/statm"):
        fn()
        return float("nan")
    start, peak, done = _rss_mib(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mib())
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return max(peak[0], _rss_mib()) - start


def paired_ratio(fn, forward, repeats):
    """Median of time(fn) / time(forward) over back-to-back pairs, and the median seconds."""
    pairs = [(_seconds(forward), _seconds(fn)) for _ in range(repeats)]
    return statistics.median(m / f for f, m in pairs), statistics.median(m for _, m in pairs)


def kerasxai_methods(model, x):
    return {
        "saliency": lambda: kerasxai.saliency(model, x),
        "gradcam": lambda: kerasxai.gradcam(model, x),
        "cam": lambda: kerasxai.cam(model, x),
        "layercam": lambda: kerasxai.layercam(model, x),
        "gradcam_plus_plus": lambda: kerasxai.gradcam_plus_plus(model, x),
        "xgradcam": lambda: kerasxai.xgradcam(model, x),
        "hirescam": lambda: kerasxai.hirescam(model, x),
        "explain(4 CAMs)": lambda: kerasxai.explain(
            model, x, methods=("gradcam", "gradcam_plus_plus", "xgradcam", "layercam")),
        "smoothgrad(n=20)": lambda: kerasxai.smoothgrad(model, x, n=20),
        "scorecam(n=10)": lambda: kerasxai.scorecam(model, x, n=10, progress=False),
    }


def tf_keras_vis_methods(model, x, layer):
    """The same methods through tf-keras-vis, built once (as a user would), or {} if absent."""
    try:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.layercam import Layercam
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.scorecam import Scorecam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore
    except ImportError:
        return {}
    score = CategoricalScore(np.argmax(model.predict(x, verbose=0), axis=1).tolist())
    linear = dict(model_modifier=ReplaceToLinear(), clone=True)
    saliency, gradcam = Saliency(model, **linear), Gradcam(model, **linear)
    plus, layercam, scorecam = GradcamPlusPlus(model, **linear), Layercam(model, **linear), Scorecam(model, **linear)
    return {
        "saliency": lambda: saliency(score, x),
        "gradcam": lambda: gradcam(score, x, penultimate_layer=layer),
        "layercam": lambda: layercam(score, x, penultimate_layer=layer),
        "gradcam_plus_plus": lambda: plus(score, x, penultimate_layer=layer),
        "smoothgrad(n=20)": lambda: saliency(score, x, smooth_samples=20, smooth_noise=0.2),
        "scorecam(n=10)": lambda: scorecam(score, x, penultimate_layer=layer, max_N=10),
    }


def measure(fn, forward, repeats):
    try:
        fn()  # warm-up: builds the probe, traces the compiled steps
    except ValueError:
        return None  # e.g. CAM on a model without a GAP -> Dense head
    return paired_ratio(fn, forward, repeats)


def _setup(name, batch, size):
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3))
    x = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    tensor = tf.constant(x)
    compiled = tf.function(lambda t: model(t, training=False))
    forward = lambda: compiled(tensor).numpy()  # noqa: E731
    forward()
    return model, x, forward


def memory_in_fresh_process(name, batch, size, library, method):
    """Peak MiB of one first call of ``method`` in a new Python process (NaN if it fails)."""
    cmd = [sys.executable, __file__, "--memory-probe", name, str(batch), str(size), library, method]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return float("nan")


def _memory_probe(name, batch, size, library, method):
    model, x, _ = _setup(name, batch, size)
    table = kerasxai_methods(model, x) if library == "kerasxai" else tf_keras_vis_methods(model, x, LAYERS.get(name))
    print(f"{peak_memory(table[method]):.1f}")


def run_model(name, batch, size, repeats, wanted):
    model, x, forward = _setup(name, batch, size)
    base = statistics.median(_seconds(forward) for _ in range(repeats))
    ours = kerasxai_methods(model, x)
    theirs = tf_keras_vis_methods(model, x, LAYERS.get(name))
    print(f"\n{name}, batch {batch}, {size}x{size}, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}; "
          f"forward pass {base:.3f} s; median of {repeats} paired runs ({min(repeats, 3)} for the slow ones)")
    header = f"{'method':<18}{'kerasxai':>10}{'MiB':>7}{'target':>7}{'':<5}"
    if theirs:
        header += f"{'tf-keras-vis':>10}{'MiB':>7}"
    print(header)
    for method, fn in ours.items():
        if wanted and method.split("(")[0] not in wanted and method not in wanted:
            continue
        reps = min(repeats, 3) if method in SLOW else repeats
        got = measure(fn, forward, reps)
        if got is None:
            line = f"{method:<18}{'n/a':>10}{'':>7}{TARGETS[method]:>7.2f}{'':<5}"
        else:
            mib = memory_in_fresh_process(name, batch, size, "kerasxai", method)
            flag = "" if name != "VGG16" else (" ok" if got[0] <= TARGETS[method] else " OVER")
            line = f"{method:<18}{got[0]:>9.2f}x{mib:>7.0f}{TARGETS[method]:>7.2f}{flag:<5}"
        if method in theirs:
            other = measure(theirs[method], forward, reps)
            mib = memory_in_fresh_process(name, batch, size, "tf-keras-vis", method)
            line += f"{other[0]:>9.2f}x{mib:>7.0f}" if other else f"{'n/a':>10}"
        print(line, flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="VGG16,ResNet50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--methods", default=None, help="comma-separated subset of the rows to time")
    parser.add_argument("--memory-probe", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        name, batch, size, library, method = args.memory_probe
        _memory_probe(name, int(batch), int(size), library, method)
        return
    wanted = set(args.methods.split(",")) if args.methods else None
    for name in args.models.split(","):
        run_model(name, args.batch, args.size, args.repeats, wanted)


if __name__ == "__main__":
    main()
