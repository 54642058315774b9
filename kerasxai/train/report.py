"""The end of a run: the best model on the validation images, the chance test, figures, ``summary.json``."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time

import keras
import numpy as np

from kerasxai.train import explaining, figures
from kerasxai.train.pipeline import image_dataset


def warn(message: str):
    """A warning the user must see, whatever ``verbose`` says."""
    print(f"kerasxai: warning: {message}", file=sys.stderr, flush=True)


def chance_check(true, predicted, names, choices: int = 1) -> dict:
    """Is the accuracy above what always answering the commonest class gets? One-sided binomial test.

    ``choices``: how many epochs the model was picked from by its accuracy on
    these same images; the p-value is multiplied by it (Bonferroni), since the
    best of many chance-level epochs looks better than chance. ``warning`` is
    None when the accuracy is above the chance level at that adjusted p < 0.05.

    Examples:
        >>> chance_check(np.array([0, 1] * 10), np.zeros(20, int), ["cat", "dog"])["warning"][:40]
        'AT CHANCE LEVEL: validation accuracy 50%'
    """
    true, predicted = np.asarray(true), np.asarray(predicted)
    n, correct = len(true), int((true == predicted).sum())
    counts = np.bincount(true, minlength=len(names))
    chance = float(counts.max() / n)
    # P(X >= correct) for X ~ Binomial(n, chance), in logs so that n = 6000 does not overflow
    terms = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
             + (k * math.log(chance) if k else 0.0) + ((n - k) * math.log1p(-chance) if n - k else 0.0)
             for k in range(correct, n + 1)] if chance < 1 else [0.0]
    top = max(terms)
    p_value = float(min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms)))
    adjusted = min(1.0, p_value * max(1, int(choices)))
    warning = None
    if adjusted >= 0.05:
        answers = sorted(set(predicted.tolist()))
        one = f" It answers '{names[answers[0]]}' for every image." if len(answers) == 1 else ""
        picked = f", adjusted for picking the best of {choices} epochs on these images" if choices > 1 else ""
        warning = (f"AT CHANCE LEVEL: validation accuracy {correct / n:.0%} ({correct} of {n}) is not above what "
                   f"always answering '{names[int(counts.argmax())]}' gets ({chance:.0%}; p = {adjusted:.2f}"
                   f"{picked}).{one} The model has not learned to tell the classes apart, so its Grad-CAM maps "
                   "explain nothing.")
    return {"accuracy": correct / n, "chance_level": chance, "p_value": p_value, "p_adjusted": adjusted,
            "above_chance": warning is None, "warning": warning}


def write_report(cfg, settings, folder, scan, bad, renamed, data, caching, started, say) -> dict:
    """Evaluates ``best.keras`` on the validation images, writes the figures and ``summary.json``; returns it."""
    paths, labels, preprocess = data.paths, data.labels, data.preprocess
    train_idx, val_idx = data.train_idx, data.val_idx
    display, x_shown = data.display, data.x_shown
    names, state = scan.class_names, folder.state
    best = keras.models.load_model(folder.file("best.keras"), safe_mode=True)
    val_paths = [paths[i] for i in val_idx]
    probs = best.predict(image_dataset(val_paths, labels[val_idx], cfg.image_size, preprocess, cfg.batch_size),
                         verbose=0)
    if probs.shape[-1] == 1:
        probs = np.concatenate([1 - probs, probs], axis=1)
    true, predicted = labels[val_idx], probs.argmax(axis=1)
    check = chance_check(true, predicted, names, choices=len(state["rows"]))
    warning = check["warning"]
    matrix = np.zeros((len(names), len(names)), np.int64)
    np.add.at(matrix, (true, predicted), 1)

    rows = state["rows"]
    fine_tune = next((p["first_epoch"] for p in state["phases"] if p["name"] == "fine-tune"), None)
    figures.curves_figure(rows, state["best"]["epoch"], check["chance_level"], fine_tune, warning).savefig(
        folder.file("curves.png"), dpi=100)
    figures.confusion_figure(matrix, names, warning).savefig(folder.file("confusion.png"), dpi=100)

    shown_probs = keras.ops.convert_to_numpy(best(x_shown, training=False))
    shown_probs = np.concatenate([1 - shown_probs, shown_probs], 1) if shown_probs.shape[-1] == 1 else shown_probs
    shown_true = labels[data.shown_idx]
    titles = [f"said {names[p.argmax()]} ({p.max():.0%}), true {names[t]}" for p, t in zip(shown_probs, shown_true)]
    figures.explained_figure(best, display, x_shown, titles, warning, names).savefig(folder.file("explanations.png"), dpi=90)

    wrong = np.flatnonzero(predicted != true)
    wrong = wrong[np.argsort(-probs[wrong].max(axis=1), kind="stable")][:6]  # the most confident mistakes first
    if len(wrong):
        w_display, w_x = explaining.load(best, [val_paths[i] for i in wrong])
        w_titles = [f"true {names[true[i]]}, said {names[predicted[i]]} ({probs[i].max():.0%})" for i in wrong]
        fig = figures.explained_figure(best, w_display, w_x, w_titles, warning, names)
        fig.suptitle(warning or f"The {len(wrong)} most confident of {int((predicted != true).sum())} mistakes on "
                     f"{len(true)} validation images", color=figures.WARNING_COLOUR if warning else "black",
                     fontsize=9, fontweight="bold" if warning else "normal", wrap=True)
    else:
        fig = figures.message_figure(f"No mistakes on the {len(true)} validation images.")
    fig.savefig(folder.file("misclassified.png"), dpi=90)

    seconds = {}
    for phase in state["phases"]:
        times = [r["seconds"] for r in rows if r["phase"] == phase["name"]]
        seconds[phase["name"]] = round(float(np.median(times)), 3) if times else None
    summary = {
        "classes": names,
        "data_root": scan.root,
        "layout": scan.layout,
        "image_files": len(scan.paths),
        "unreadable_files": len(bad),
        "ignored": {reason: len(p) for reason, p in scan.ignored.items()},
        "nested_folders_used": scan.nested,
        "decoded_despite_name": renamed,
        "train_images": len(train_idx),
        "validation_images": len(val_idx),
        "base": settings.base,
        "base_weights": str(cfg.weights) if settings.pretrained else "random",
        "base_trained": "frozen" if settings.freeze_base else "all layers",
        "head": settings.head,
        "epochs_run": len(rows),
        "phases": [{k: p[k] for k in ("name", "first_epoch", "epochs", "stopped_early")} for p in state["phases"]],
        "best_epoch": state["best"]["epoch"],
        "best_val_accuracy": state["best"]["val_accuracy"],
        "validation_accuracy": check["accuracy"],
        "chance_level": check["chance_level"],
        "p_value_vs_chance": check["p_value"],
        "p_value_adjusted_for_epoch_choice": check["p_adjusted"],
        "above_chance": check["above_chance"],
        "warning": warning,
        "confusion_matrix": matrix.tolist(),
        "median_epoch_seconds": seconds,
        "feature_caching_seconds": caching,
        "checkpoint": folder.file("best.keras"),
        "seconds": round(time.perf_counter() - started, 1),
        "config": dataclasses.asdict(cfg),
    }
    with open(folder.file("summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    say(f"\nValidation accuracy {check['accuracy']:.1%} on {len(val_idx)} held-out images with the best model "
        f"(epoch {summary['best_epoch']} of {len(rows)}; chance level {check['chance_level']:.0%}, "
        f"p = {check['p_adjusted']:.2g} adjusted for picking the best of {len(rows)} epochs).")
    say(f"Confusion matrix (rows: true {names}; columns: predicted):\n{matrix}")
    if warning:
        warn(warning)
    say(f"Best model: {folder.file('best.keras')}; figures, log.csv and summary.json in {cfg.out}")
    return summary

