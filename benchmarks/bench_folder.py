"""Throughput of explaining a folder against predicting on it (not a test; tens of minutes on 2 cores).

    python benchmarks/bench_folder.py                 # 512 JPEGs, VGG16 (weights=None) 224x224, batch 16, 3 rounds
    python benchmarks/bench_folder.py --images 64 --rounds 1    # a quick look

A generated folder of JPEGs of mixed sizes (160..640 px a side, many aspect
ratios), in chunks of 64 (one sub-folder each). For every chunk, in this order
and in this process:

- ``predict``: ``model.predict`` over ``keras.utils.image_dataset_from_directory``
  (parallel decode and resize, prefetch) with VGG16's ``preprocess_input`` mapped on it;
- ``maps + jsonl``: ``kerasxai.explain_folder(..., methods=("gradcam",))`` with its
  defaults (maps, display photos, predictions.jsonl and CSV);
- ``+ overlays``: the same with ``overlays=True``.

Interleaving by chunks of a minute or two, not by whole passes over the
folder, keeps other load on a shared machine from favouring one side: each
ratio is taken between neighbouring runs on the same chunk, and the median
over chunks and rounds is reported. Inside the explain runs the time spent in
the per-batch explanation (``kerasxai.folder.job.BatchExplainer.explain``) is
measured too, which splits a run into compute and pipeline overhead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

import kerasxai  # noqa: E402
from kerasxai.folder import job as job_lib  # noqa: E402


def make_folder(path, n, seed=0):
    """n JPEGs, sides 160..640 px, smooth shapes with a little noise (decode cost like photos)."""
    rng = np.random.default_rng(seed)
    os.makedirs(path, exist_ok=True)
    for i in range(n):
        h, w = (int(v) for v in rng.integers(160, 641, 2))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(20, 120)
        base = np.stack([xx / w * 255, yy / h * 255, np.full_like(xx, rng.uniform(0, 255))], -1)
        base[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
        noisy = base + rng.normal(0, 8, base.shape)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(os.path.join(path, f"{i:04d}.jpg"), quality=90)


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 0.1 s), in MiB above its start."""

    def __enter__(self):
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _rss(self):
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _sample(self):
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.rise = self.peak - self.start


class Timed:
    """Wraps a function, adding up the seconds spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def predict_folder(model, folder, batch_size):
    ds = keras.utils.image_dataset_from_directory(folder, labels=None, image_size=(224, 224), batch_size=batch_size,
                                                  shuffle=False, verbose=False)
    ds = ds.map(keras.applications.vgg16.preprocess_input, num_parallel_calls=tf.data.AUTOTUNE)
    return model.predict(ds.prefetch(tf.data.AUTOTUNE), verbose=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=64, help="images per interleaved chunk")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workdir", default=None, help="where the images and runs go (default: a temp folder)")
    args = parser.parse_args(argv)

    work = args.workdir or tempfile.mkdtemp(prefix="bench_folder_")
    chunks = [os.path.join(work, f"images_{args.images}", f"part{c}") for c in range(-(-args.images // args.chunk))]
    for c, folder in enumerate(chunks):
        if not os.path.isdir(folder):
            make_folder(folder, min(args.chunk, args.images - c * args.chunk), seed=c)
    warm = os.path.join(work, "warm")
    if not os.path.isdir(warm):
        make_folder(warm, args.batch_size * 2 + 3, seed=99)
    model = keras.applications.VGG16(weights=None)
    # The ImageNet class index cannot be downloaded here; names are given so top_k never tries.
    names = [f"class {i}" for i in range(1000)]
    print(f"{args.images} JPEGs in {len(chunks)} chunks under {os.path.dirname(chunks[0])}, VGG16 (weights=None) "
          f"224x224, batch {args.batch_size}; TensorFlow {tf.__version__}, {os.cpu_count()} CPU(s)", flush=True)

    timers = {"explain_batch": Timed(job_lib.BatchExplainer.explain)}
    job_lib.BatchExplainer.explain = lambda self, x, target: timers["explain_batch"](self, x, target)

    def run(name, folder, options):
        out = os.path.join(work, "run")
        shutil.rmtree(out, ignore_errors=True)
        for t in timers.values():
            t.seconds = 0.0
        with PeakRSS() as mem:
            start = time.perf_counter()
            if name == "predict":
                predict_folder(model, folder, args.batch_size)
            else:
                kerasxai.explain_folder(model, folder, out, methods=("gradcam",), batch_size=args.batch_size,
                                        class_names=names, progress=False, **options)
            seconds = time.perf_counter() - start
        shutil.rmtree(out, ignore_errors=True)
        return {"s": seconds, "compute": timers["explain_batch"].seconds,
                "mib": mem.rise}

    variants = {"predict": {}, "maps + jsonl": {}, "+ overlays": {"overlays": True}}
    for name, options in variants.items():  # warm-up: traces and compiles everything once
        run(name, warm, options)

    pairs = {name: [] for name in variants}  # one entry per (round, chunk)
    for r in range(args.rounds):
        for folder in chunks:
            for name, options in variants.items():
                pairs[name].append(run(name, folder, options))
            print(f"# round {r + 1} {os.path.basename(folder)}: " + ", ".join(
                f"{name} {pairs[name][-1]['s']:.1f} s (explaining {pairs[name][-1]['compute']:.1f} s)"
                for name in variants), file=sys.stderr, flush=True)
        last = slice(-len(chunks), None)
        line = ", ".join(f"{name} {sum(m['s'] for m in pairs[name][last]):.1f} s" for name in variants)
        print(f"round {r + 1}: {line}", flush=True)

    base = [m["s"] for m in pairs["predict"]]
    total = {name: sum(m["s"] for m in runs) for name, runs in pairs.items()}
    n_images = args.images * args.rounds

    def median_ratio(values):
        return statistics.median(v / b for v, b in zip(values, base))

    print()
    print(f"| {args.images} JPEGs × {args.rounds} rounds, VGG16 224², batch {args.batch_size} | images/s "
          "| × predict (median of chunks) | in the per-batch explanation | peak RSS rise |")
    print("|---|---|---|---|---|")
    for name, runs in pairs.items():
        mib = max(m["mib"] for m in runs)
        if name == "predict":
            print(f"| `model.predict` via image_dataset_from_directory | {n_images / total[name]:.2f} | 1.00 "
                  f"| – | {mib:.0f} MiB |")
            continue
        compute = sum(m["compute"] for m in runs) / total[name]
        print(f"| explain_folder gradcam, {name} | {n_images / total[name]:.2f} "
              f"| {median_ratio([m['s'] for m in runs]):.2f} | {compute:.0%} of the run "
              f"| {mib:.0f} MiB |")
    print()
    for name in ("maps + jsonl", "+ overlays"):
        runs = pairs[name]
        overhead = median_ratio([m["s"] - m["compute"] for m in runs])
        explain_only = median_ratio([m["compute"] for m in runs])
        print(f"{name}: outside the per-batch explanation {overhead:.2f}× predict; the per-batch explanation "
              f"alone {explain_only:.2f}× predict")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
