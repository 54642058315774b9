"""Benchmark the methods where the right answer is known.

    python -m kerasxai.evaluation.evaluate        (or: kerasxai evaluate)

Trains the small CNN of :mod:`kerasxai.evaluation.synthetic` on generated discs and
crosses among clutter (under a minute on 2 CPU cores), then prints one row per
method: pointing game, energy pointing game, deletion and insertion AUC, the
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
from kerasxai.methods.table import METHODS, check_methods  # noqa: E402


def _trained_model(images, labels, epochs, seed):
    model = synthetic.small_cnn(images.shape[1:], seed=seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images, labels, epochs=epochs, batch_size=32, verbose=0)
    return model


def evaluate(methods=None, *, n_train: int = 2000, n_test: int = 32, epochs: int = 12, clutter: int = 3,
             steps: int = 10, seed: int = 0, verbose: bool = True) -> dict:
    """Scores each method on the generated localisation set; returns ``{method: {metric: value}}``.

    ``methods``: names from the method table (default: every method).

    Examples:
        >>> table = evaluate(["gradcam"], n_train=200, n_test=4, epochs=1, verbose=False)  # doctest: +SKIP
    """
    methods = {m: dict(METHODS[m].evaluate_options) for m in (check_methods(methods) if methods else METHODS)}
    start = time.perf_counter()
    train_x, train_y, _ = synthetic.shapes_dataset(n_train, seed=seed, clutter=clutter)
    test_x, test_y, test_masks = synthetic.shapes_dataset(n_test, seed=seed + 1, clutter=clutter)
    model = _trained_model(train_x, train_y, epochs, seed)
    accuracy = float((model.predict(test_x, verbose=0).argmax(1) == test_y).mean())
    shuffled = _trained_model(train_x, np.random.default_rng(seed).permutation(train_y), epochs, seed)

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
    centre = np.zeros(test_masks.shape, np.float32)  # the baseline a method must beat: a peak at the centre
    centre[:, test_masks.shape[1] // 2, test_masks.shape[2] // 2] = 1.0
    baseline = {"pointing_game": float(metrics.pointing_game(centre, test_masks).mean())}
    if verbose:
        area = float(test_masks.mean())
        print(f"Small CNN on generated discs/crosses with clutter: test accuracy {accuracy:.1%}, "
              f"objects cover {area:.1%} of each image ({time.perf_counter() - start:.0f} s in all).")
        print("Higher is better for pointing, energy and insertion; lower for deletion and the two "
              "randomisation correlations.")
        print(f"{'method':<22}{'pointing':>9}{'energy':>8}{'deletion':>10}{'insertion':>11}"
              f"{'model-rand':>12}{'data-rand':>11}{'ms/image':>10}")
        for name, row in table.items():
            print(f"{name:<22}{row['pointing_game']:>9.2f}{row['energy_pointing_game']:>8.2f}"
                  f"{row['deletion_auc']:>10.3f}{row['insertion_auc']:>11.3f}"
                  f"{row['model_randomization_corr']:>12.2f}{row['data_randomization_corr']:>11.2f}"
                  f"{row['seconds_per_image'] * 1000:>10.1f}")
        print(f"{'(a peak at the centre)':<22}{baseline['pointing_game']:>9.2f}")
    return {"accuracy": accuracy, "methods": table, "centre_baseline": baseline}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="kerasxai evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=None, help="comma-separated subset (default: all)")
    parser.add_argument("--epochs", type=int, default=12)
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
