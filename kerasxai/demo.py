"""Offline demo: train a small CNN on generated shapes, then explain it.

    python -m kerasxai.demo [--out kerasxai-demo] [--epochs 12]

Needs no download. Writes ``OUT/demo.png`` (inputs with the model's top class,
then every method of kerasxai) and prints how often each method's peak falls
on the object, the region where the right answer is.
"""

from __future__ import annotations

import argparse
import os
import time

if __name__ == "__main__":  # the command (python -m kerasxai.demo): TensorFlow starts without its start-up lines
    from kerasxai._startup import start_tensorflow

    start_tensorflow()

import kerasxai  # noqa: E402
from kerasxai.evaluation import synthetic  # noqa: E402
from kerasxai.methods.table import METHODS  # noqa: E402
from kerasxai.figures.images import plot_explanations  # noqa: E402


def run(out_dir: str = "kerasxai-demo", epochs: int = 12, n_train: int = 2000, seed: int = 0) -> dict:
    """Trains the demo model, writes ``out_dir/demo.png`` and returns the scores per method.

    Examples:
        >>> scores = run("/tmp/kerasxai-demo", epochs=1, n_train=64)  # doctest: +SKIP
    """
    start = time.perf_counter()
    train_x, train_y, _ = synthetic.shapes_dataset(n_train, seed=seed)
    test_x, test_y, test_masks = synthetic.shapes_dataset(64, seed=seed + 1)
    model = synthetic.small_cnn(train_x.shape[1:], seed=seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_x, train_y, epochs=epochs, batch_size=32, verbose=2)
    accuracy = model.evaluate(test_x, test_y, verbose=0)[1]

    layer = kerasxai.get_probe(model).layer_names[0]  # the last conv layer: every CAM explains it
    maps = kerasxai.explain(model, test_x, methods=tuple(METHODS), layer=layer,
                            options={"scorecam": {"n": 16, "progress": False}, "rise": {"n": 1000, "progress": False},
                                     "occlusion": {"progress": False}})
    hits = {name: float(synthetic.peak_in_mask(m, test_masks).mean()) for name, m in maps.items()}

    probs = model.predict(test_x[:4], verbose=0)
    titles = [
        (int(p.argmax()), synthetic.CLASS_NAMES[int(p.argmax())], float(p.max())) for p in probs
    ]
    # the maps explain each image's top class (explain's default target), at ``layer``
    fig = plot_explanations(test_x[:4], {k: v[:4] for k, v in maps.items()}, titles, layer=layer, targets=titles,
                            cell_size=1.9)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "demo.png")
    fig.savefig(path, dpi=100)

    print(f"\nTest accuracy {accuracy:.1%} after {epochs} epochs ({time.perf_counter() - start:.0f} s).")
    print("How often each method's peak falls on the object (64 test images):")
    for name, rate in hits.items():
        print(f"  {name:<20} {rate:6.1%}")
    print(f"Figure written to {path}")
    return {"accuracy": accuracy, "peak_on_object": hits, "figure": path}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Offline kerasxai demo on generated shapes.")
    parser.add_argument("--out", default="kerasxai-demo", help="output folder (default: kerasxai-demo)")
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args(argv)
    run(args.out, epochs=args.epochs)


if __name__ == "__main__":
    main()
