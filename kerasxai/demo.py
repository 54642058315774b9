"""Offline demo: train a small CNN and a small vision transformer on generated shapes, then explain them.

    python -m kerasxai.demo [--out kerasxai-demo] [--epochs 12]

Needs no download. Writes ``OUT/demo.png`` (inputs with the CNN's top class, then
every method of kerasxai) and ``OUT/demo_vit.png`` (the transformer's token
Grad-CAM, LayerCAM, attention rollout and transformer attribution beside the
CNN's Grad-CAM, the patch grid drawn), and prints how often each method's peak
falls on the object, the region where the right answer is.
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
from kerasxai.methods.table import methods_for  # noqa: E402
from kerasxai.figures.images import plot_explanations  # noqa: E402


VIT_METHODS = ("gradcam", "layercam", "attention_rollout", "transformer_attribution")


def run(out_dir: str = "kerasxai-demo", epochs: int = 12, n_train: int = 2000, seed: int = 0,
        vit_epochs: int = 20) -> dict:
    """Trains the demo models, writes ``out_dir/demo.png`` and ``out_dir/demo_vit.png`` and returns the scores
    per method.

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
    maps = kerasxai.explain(model, test_x, methods=methods_for(model), layer=layer,
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

    # the same images through a small vision transformer: token CAMs (its last block's first norm) and attention
    vit = synthetic.small_vit(train_x.shape[1:], seed=seed)
    vit.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    vit.fit(train_x, train_y, epochs=vit_epochs, batch_size=32, verbose=0)
    vit_accuracy = vit.evaluate(test_x, test_y, verbose=0)[1]
    vit_maps = kerasxai.explain(vit, test_x, methods=VIT_METHODS)
    vit_hits = {name: float(synthetic.peak_in_mask(m, test_masks).mean()) for name, m in vit_maps.items()}
    vit_layer = kerasxai.get_probe(vit).layer_names[0]
    grid = next(info.grid for info in kerasxai.explainable_layers(vit) if info.path == vit_layer)
    side = {"CNN gradcam": maps["gradcam"][:4], **{f"ViT {k}": v[:4] for k, v in vit_maps.items()}}
    where = {"CNN gradcam": layer, "ViT gradcam": vit_layer, "ViT layercam": vit_layer,
             "ViT attention_rollout": None, "ViT transformer_attribution": None}  # every attention layer
    fig = plot_explanations(test_x[:4], side, titles, layer=where, targets=titles, patch_grid=grid, cell_size=1.9)
    vit_path = os.path.join(out_dir, "demo_vit.png")
    fig.savefig(vit_path, dpi=100)

    print(f"\nCNN test accuracy {accuracy:.1%} after {epochs} epochs; ViT {vit_accuracy:.1%} after {vit_epochs} "
          f"({time.perf_counter() - start:.0f} s in all).")
    print("How often each method's peak falls on the object (64 test images):")
    for name, rate in hits.items():
        print(f"  {name:<24} {rate:6.1%}")
    print(f"The ViT ({grid[0]}x{grid[1]} patches and a class token; token CAMs at {vit_layer}):")
    for name, rate in vit_hits.items():
        print(f"  {name:<24} {rate:6.1%}")
    print(f"Figures written to {path} and {vit_path}")
    return {"accuracy": accuracy, "peak_on_object": hits, "figure": path, "vit_accuracy": vit_accuracy,
            "vit_peak_on_object": vit_hits, "vit_figure": vit_path}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Offline kerasxai demo on generated shapes.")
    parser.add_argument("--out", default="kerasxai-demo", help="output folder (default: kerasxai-demo)")
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args(argv)
    run(args.out, epochs=args.epochs)


if __name__ == "__main__":
    main()
