"""Benchmark the methods where the right answer is known.

    python -m kerasxai.evaluation.evaluate        (or: kerasxai evaluate)

Trains the small CNN and the small vision transformer of :mod:`kerasxai.evaluation.synthetic` on
generated discs and crosses among clutter (about a minute each on 2 CPU cores), then prints one row per
method and model: pointing game, energy pointing game, deletion and insertion AUC, the
rank correlation after cascading model randomisation and after training on
shuffled labels (data randomisation; lower is better for both), and the time
per image.
"""

from __future__ import annotations

import argparse
import time

if __name__ == "__main__":  # the command: TensorFlow starts without its start-up lines
    from kerasxai._startup import start_tensorflow

    start_tensorflow()

import numpy as np  # noqa: E402

from kerasxai.evaluation import metrics, synthetic  # noqa: E402
from kerasxai.methods.explain import explain  # noqa: E402
from kerasxai.probe import get_probe  # noqa: E402
from kerasxai.methods.table import ATTENTION, METHODS, check_methods  # noqa: E402


VIT_METHODS = ("gradcam", "layercam", "attention_rollout", "transformer_attribution", "saliency")
"""The methods ``evaluate`` scores on the small vision transformer (token CAMs at its last block's first norm)."""


def _trained_model(images, labels, epochs, seed, vit=False):
    if vit:
        model = synthetic.small_vit(images.shape[1:], seed=seed)
    else:
        model = synthetic.small_cnn(images.shape[1:], seed=seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images, labels, epochs=epochs, batch_size=32, verbose=0)
    return model


def _scores(model, shuffled, methods, test_x, test_y, test_masks, steps, seed) -> dict:
    """``{method: {metric: value}}`` of ``model`` (``shuffled``: the same model trained on shuffled labels)."""
    table = {}
    for name, options in methods.items():
        def call(m, x, t, name=name, options=options):
            return explain(m, x, methods=(name,), target=t, options={name: options})[name]

        call(model, test_x[:1], test_y[:1].tolist())  # warm-up: probe build and tracing
        t0 = time.perf_counter()
        maps = call(model, test_x, test_y.tolist())
        per_image = (time.perf_counter() - t0) / len(test_x)
        faith = metrics.deletion_insertion(model, test_x, maps, test_y.tolist(), steps=steps, baseline="black")
        cascade = metrics.randomization_check(model, test_x[:8], call, test_y[:8].tolist(), seed=seed)
        data_maps = call(shuffled, test_x[:8], test_y[:8].tolist())
        table[name] = {
            "pointing_game": float(metrics.pointing_game(maps, test_masks).mean()),
            "energy_pointing_game": float(metrics.energy_pointing_game(maps, test_masks).mean()),
            "deletion_auc": float(faith["deletion_auc"].mean()),
            "insertion_auc": float(faith["insertion_auc"].mean()),
            "model_randomization_corr": cascade[-1][1],
            "data_randomization_corr": float(np.mean(
                [metrics.rank_correlation(a, b) for a, b in zip(maps[:8], data_maps)])),
            "seconds_per_image": per_image,
        }
    return table


def _print_rows(table):
    for name, row in table.items():
        print(f"{name:<24}{row['pointing_game']:>9.2f}{row['energy_pointing_game']:>8.2f}"
              f"{row['deletion_auc']:>10.3f}{row['insertion_auc']:>11.3f}"
              f"{row['model_randomization_corr']:>12.2f}{row['data_randomization_corr']:>11.2f}"
              f"{row['seconds_per_image'] * 1000:>10.1f}")


def evaluate(methods=None, *, n_train: int = 2000, n_test: int = 32, epochs: int = 12, vit_epochs: int = 20,
             clutter: int = 3, steps: int = 10, seed: int = 0, verbose: bool = True) -> dict:
    """Scores each method on the generated localisation set, on a small CNN and a small vision transformer.

    ``methods``: names from the method table (default: every method on the CNN but the attention methods, and
    :data:`VIT_METHODS` on the transformer); the ViT is trained only when one of its methods is asked for.

    Returns:
        ``{"accuracy": ..., "methods": {method: {metric: value}}, "vit_accuracy": ..., "vit_methods": {...},
        "centre_baseline": {"pointing_game": ...}}`` (the ViT's entries only when it was trained).

    Examples:
        >>> table = evaluate(["gradcam"], n_train=200, n_test=4, epochs=1, verbose=False)  # doctest: +SKIP
    """
    asked = check_methods(methods) if methods else None
    cnn_methods = [m for m in (asked or METHODS) if METHODS[m].kind != ATTENTION]
    vit_methods = [m for m in (asked or VIT_METHODS) if m in VIT_METHODS]
    start = time.perf_counter()
    train_x, train_y, _ = synthetic.shapes_dataset(n_train, seed=seed, clutter=clutter)
    test_x, test_y, test_masks = synthetic.shapes_dataset(n_test, seed=seed + 1, clutter=clutter)
    shuffled_y = np.random.default_rng(seed).permutation(train_y)
    result = {"methods": {}}
    test = (test_x, test_y, test_masks, steps, seed)
    if cnn_methods:
        model = _trained_model(train_x, train_y, epochs, seed)
        result["accuracy"] = float((model.predict(test_x, verbose=0).argmax(1) == test_y).mean())
        shuffled = _trained_model(train_x, shuffled_y, epochs, seed)
        result["methods"] = _scores(model, shuffled, {m: dict(METHODS[m].evaluate_options) for m in cnn_methods}, *test)
    if vit_methods:
        vit = _trained_model(train_x, train_y, vit_epochs, seed, vit=True)
        result["vit_accuracy"] = float((vit.predict(test_x, verbose=0).argmax(1) == test_y).mean())
        result["vit_layer"] = get_probe(vit).layer_names[0]
        shuffled = _trained_model(train_x, shuffled_y, vit_epochs, seed, vit=True)
        result["vit_methods"] = _scores(vit, shuffled, {m: dict(METHODS[m].evaluate_options) for m in vit_methods},
                                        *test)
    centre = np.zeros(test_masks.shape, np.float32)  # the baseline a method must beat: a peak at the centre
    centre[:, test_masks.shape[1] // 2, test_masks.shape[2] // 2] = 1.0
    result["centre_baseline"] = {"pointing_game": float(metrics.pointing_game(centre, test_masks).mean())}
    if verbose:
        area = float(test_masks.mean())
        print(f"Generated discs/crosses with clutter, {n_test} test images; objects cover {area:.1%} of each image "
              f"({time.perf_counter() - start:.0f} s in all).")
        print("Higher is better for pointing, energy and insertion; lower for deletion and the two "
              "randomisation correlations.")
        print(f"{'method':<24}{'pointing':>9}{'energy':>8}{'deletion':>10}{'insertion':>11}"
              f"{'model-rand':>12}{'data-rand':>11}{'ms/image':>10}")
        if cnn_methods:
            print(f"-- small CNN (test accuracy {result['accuracy']:.1%}), CAMs at last_conv")
            _print_rows(result["methods"])
        if vit_methods:
            print(f"-- small ViT (test accuracy {result['vit_accuracy']:.1%}; 8x8 patches of 6 px and a class "
                  f"token), token CAMs at {result['vit_layer']}")
            _print_rows(result["vit_methods"])
        print(f"{'(a peak at the centre)':<24}{result['centre_baseline']['pointing_game']:>9.2f}")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="kerasxai evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=None, help="comma-separated subset (default: all)")
    parser.add_argument("--epochs", type=int, default=12, help="the CNN's training epochs (the ViT's: 20)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    methods = None
    if args.methods:
        try:
            methods = check_methods([m.strip() for m in args.methods.split(",") if m.strip()], what="--methods")
        except ValueError as err:
            parser.error(str(err))  # one "kerasxai evaluate: error:" line, exit status 2
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1; got {args.epochs}")
    evaluate(methods, epochs=args.epochs, seed=args.seed)


if __name__ == "__main__":
    main()
