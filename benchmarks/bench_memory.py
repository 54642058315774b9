"""Peak memory of Grad-CAM and saliency on 100 and on 10,000 images (64x64): bounded by batch_size?

What it measures. ``kerasxai.gradcam`` and ``kerasxai.saliency`` (default
``batch_size=32``) on a small CNN (four 3x3 convolutions, 16-64 channels, global
average pooling, ten classes; weights from a fixed seed) for N = 100 and
N = 10,000 images of 64x64x3, each call in a fresh Python process, with the
images given four ways:

- ``array``: an in-memory NumPy array (read from disk before the call; 47 MiB per
  1,000 images, the user's own data: not part of the call's rise);
- ``memmap``: a read-only ``np.memmap`` of a raw float32 file on disk;
- ``dataset``: ``tf.data.FixedLengthRecordDataset`` over the same file, decoded
  per image (unbatched; its length is unknown until the end, as it comes);
- ``dataset-known``: the same with ``assert_cardinality(N)`` (length known).

What "peak memory" means here. A process running TensorFlow holds several
hundred MiB for the runtime alone, and the returned maps are N x 64 x 64
float32 — 156 MiB at 10,000, which the user asked for. So each run reports:

- ``process peak RSS``: ``VmHWM``, the whole process's peak resident memory —
  what ``top`` and the out-of-memory killer see. It counts file pages mapped
  in (shared libraries; a memmap's pages once read, which the kernel may drop
  at any time) and, for ``array``, the user's images themselves;
- ``process peak anon``: the peak of the anonymous part of RSS (sampled every
  2 ms): what the process allocated (runtime, the user's in-memory images, the
  call), file pages left out;
- ``call rise``: the peak during the call minus the value just before it
  (anonymous, and whole RSS);
- ``maps``: the size of the returned array;
- ``working`` = call rise (anon) − maps: what the call needs beyond its result.

Target: the ratio 10,000 / 100 of the *working* memory < 1.3 — memory bounded
by ``batch_size``, whatever N. The process-level ratios are printed too; they
must grow by the maps (and, for ``array``, the user's data), nothing else.
The seconds of each call are printed as what each way of feeding costs.

    python benchmarks/bench_memory.py                     # about 10-15 minutes on 2 cores
    python benchmarks/bench_memory.py --inputs memmap,dataset --repeats 2
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SIZE, CHANNELS = 64, 3
INPUTS = ("array", "memmap", "dataset", "dataset-known")
TARGET = 1.3


def write_images(path: str, n: int, seed: int = 0) -> None:
    """A raw float32 file of ``n`` images 64x64x3 in [0, 1], written in chunks (bounded memory)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    with open(path, "wb") as fh:
        for start in range(0, n, 1000):
            k = min(1000, n - start)
            fh.write(rng.random((k, SIZE, SIZE, CHANNELS), dtype=np.float32).tobytes())


# --------------------------------------------------------------------------- the child process


def small_cnn():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, CHANNELS))
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="last_conv")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x), name="small_cnn")


def images_for(kind: str, path: str, n: int):
    import numpy as np

    shape = (n, SIZE, SIZE, CHANNELS)
    if kind == "array":
        return np.fromfile(path, dtype=np.float32).reshape(shape)
    if kind == "memmap":
        return np.memmap(path, dtype=np.float32, mode="r", shape=shape)
    import tensorflow as tf

    record = SIZE * SIZE * CHANNELS * 4
    ds = tf.data.FixedLengthRecordDataset(path, record).map(
        lambda r: tf.reshape(tf.io.decode_raw(r, tf.float32), (SIZE, SIZE, CHANNELS)))
    if kind == "dataset-known":
        ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    return ds


def call_kerasxai(method: str, model, images, batch_size: int):
    """The one call into kerasxai measured here."""
    import kerasxai

    fn = {"gradcam": kerasxai.gradcam, "saliency": kerasxai.saliency}[method]
    return fn(model, images, batch_size=batch_size, progress=False)


def child(method: str, kind: str, n: int, path: str, batch_size: int) -> None:
    with harness.MemorySampler() as whole:
        harness.quiet_tensorflow()
        import tensorflow as tf  # noqa: F401  (the runtime's own memory is in the start value)

        model = small_cnn()
        images = images_for(kind, path, n)
        gc.collect()
        with harness.MemorySampler() as call:
            start = time.perf_counter()
            maps = call_kerasxai(method, model, images, batch_size)
            seconds = time.perf_counter() - start
        assert maps.shape == (n, SIZE, SIZE), maps.shape
    harness.emit({
        "process_peak_rss": harness.process_peak_mib(),
        "process_peak_anon": whole.peak_anon,
        "start_anon": call.start_anon,
        "rise_rss": call.rise_rss,
        "rise_anon": call.rise_anon,
        "maps": maps.nbytes / 2**20,
        "working": call.rise_anon - maps.nbytes / 2**20,
        "seconds": seconds,
    })


# --------------------------------------------------------------------------- the parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="gradcam,saliency")
    parser.add_argument("--inputs", default=",".join(INPUTS), help="comma-separated: " + ", ".join(INPUTS))
    parser.add_argument("--sizes", default="100,10000", help="numbers of images; the ratio is last / first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of fresh processes (results: median)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        method, kind, n, path, batch_size = args.child
        child(method, kind, int(n), path, int(batch_size))
        return
    methods, kinds = args.methods.split(","), args.inputs.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    for k in kinds:
        if k not in INPUTS:
            parser.error(f"unknown input kind {k!r}: {', '.join(INPUTS)}")

    print(f"# kerasxai memory: Grad-CAM and saliency on {' and '.join(map(str, sizes))} images of "
          f"{SIZE}x{SIZE}x{CHANNELS}, batch_size={args.batch_size}, a fresh process per call\n{harness.machine_line()}")
    folder = tempfile.mkdtemp(prefix="kerasxai-bench-memory-")
    try:
        paths = {}
        for n in sizes:
            paths[n] = os.path.join(folder, f"images_{n}.f32")
            write_images(paths[n], n)
        runs = {}
        for r in range(args.repeats):
            for method in methods:
                for kind in kinds:
                    for n in sizes:
                        out = harness.run_fresh([os.path.abspath(__file__), "--child", method, kind, str(n), paths[n],
                                                 str(args.batch_size)])
                        runs.setdefault((method, kind, n), []).append(out)
                        print(f"# round {r + 1}: {method} {kind} N={n}: "
                              + (out["error"] if "error" in out else
                                 f"peak anon {out['process_peak_anon']:.0f} MiB, rise {out['rise_anon']:.0f} MiB, "
                                 f"{out['seconds']:.1f} s"), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(report(methods, kinds, sizes, runs, args.repeats))


def _median(outs, key):
    return harness.Spread([o.get(key, float("nan")) for o in outs if "error" not in o]).median


def report(methods, kinds, sizes, runs, repeats) -> str:
    keys = ("process_peak_rss", "process_peak_anon", "rise_rss", "rise_anon", "maps", "working", "seconds")
    rows = []
    for method in methods:
        for kind in kinds:
            for n in sizes:
                outs = runs[(method, kind, n)]
                errors = [o["error"] for o in outs if "error" in o]
                if len(errors) == len(outs):
                    rows.append([method, kind, n, f"failed: {errors[0]}"] + [""] * 6)
                    continue
                v = {k: _median(outs, k) for k in keys}
                rows.append([method, kind, f"{n:,}", f"{v['process_peak_rss']:.0f}", f"{v['process_peak_anon']:.0f}",
                             f"{v['rise_rss']:.0f}", f"{v['rise_anon']:.0f}", f"{v['maps']:.0f}", f"{v['working']:.0f}",
                             f"{v['seconds']:.1f}"])
    lines = [f"\nMiB; median of {repeats} fresh process(es) each\n",
             harness.table(["method", "images", "N", "process peak RSS", "process peak anon", "call rise RSS",
                            "call rise anon", "maps", "working (rise anon - maps)", "seconds"], rows)]
    first, last = sizes[0], sizes[-1]
    ratio_rows = []
    for method in methods:
        for kind in kinds:
            a, b = runs[(method, kind, first)], runs[(method, kind, last)]
            cells = [method, kind]
            for key in ("working", "rise_anon", "process_peak_anon", "process_peak_rss", "seconds"):
                lo, hi = _median(a, key), _median(b, key)
                cells.append(f"{hi / lo:.2f}" if lo and lo == lo and hi == hi else "–")
            cells.insert(3, harness.verdict(float(cells[2]) if cells[2] != "–" else float("nan"), TARGET))
            ratio_rows.append(cells)
    lines += [f"\nRatio {last:,} / {first:,} images (target: working memory < {TARGET})\n",
              harness.table(["method", "images", "working", "", "call rise anon", "process peak anon",
                             "process peak RSS", "seconds"], ratio_rows)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
