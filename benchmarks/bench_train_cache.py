"""Epoch time of the frozen phase: the head trained on cached base features vs the base run every epoch.

VGG16 (weights=None: the speed is the same as with ImageNet weights) frozen
under the flatten head, at 224x224, on a generated PetImages-like folder;
both runs in this one process, same data, same order, same initial weights.
Reported: the one-off cost of computing the features, and the median epoch
time of each path (from the runs' log.csv), then their ratio.

    python benchmarks/bench_train_cache.py [--per-class 150] [--epochs 3] [--image-size 224]

Target: cached-feature epochs at least 5x faster than recomputing the base
(the issue measured about 10x for head-only epochs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from kerasxai.train import Config, train, write_demo_folder  # noqa: E402
from kerasxai.train.checkpoints import read_log  # noqa: E402

TARGET = 5.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="kerasxai-bench-")
    try:
        demo = write_demo_folder(os.path.join(work, "pets"), per_class=args.per_class)
        results = {}
        for name, cache in (("cached features", True), ("base every epoch", False)):
            started = time.perf_counter()
            summary = train(Config(data_dir=demo.data_dir, out=os.path.join(work, name.replace(" ", "-")),
                                   weights="none", base="vgg16", freeze_base=True, head="flatten",
                                   image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size,
                                   patience=args.epochs, feature_cache=cache, verbose=0))
            rows = read_log(os.path.join(work, name.replace(" ", "-"), "log.csv"))
            epochs = [r["seconds"] for r in rows]
            results[name] = {"caching": summary["feature_caching_seconds"].get("head", 0.0),
                             "first": epochs[0], "median": statistics.median(epochs[1:] or epochs),
                             "total": time.perf_counter() - started}
        n = len(demo.images)
        print(f"\nVGG16 frozen, flatten head, {n} images ({summary['train_images']} training) at "
              f"{args.image_size}x{args.image_size}, batch {args.batch_size}, {args.epochs} epochs:")
        print(f"{'path':<18} {'features once':>14} {'epoch 1':>9} {'later epochs (median)':>22} {'whole run':>10}")
        for name, r in results.items():
            print(f"{name:<18} {r['caching']:>12.1f} s {r['first']:>7.2f} s {r['median']:>20.2f} s "
                  f"{r['total']:>8.1f} s")
        ratio = results["base every epoch"]["median"] / results["cached features"]["median"]
        print(f"later epochs {ratio:.0f}x faster with cached features (target >= {TARGET:.0f}x): "
              f"{'OK' if ratio >= TARGET else 'MISSED'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
