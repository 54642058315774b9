"""The run's figures: learning curves, confusion matrix, and the explained images (or why they are not shown).

Figures are ``matplotlib.figure.Figure`` made without pyplot. When the model
is at chance level every figure says so in red, and the image figures show
no heatmaps: a map of a model that learned nothing explains nothing.
"""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import MaxNLocator, PercentFormatter

from kerasxai.figures.images import Figure
from kerasxai.train import explaining

WARNING_COLOUR = "#b00020"


def banner(fig, text: str):
    """A red warning line across the top of ``fig``."""
    fig.suptitle(text, color=WARNING_COLOUR, fontweight="bold", fontsize=9, wrap=True)
    return fig


def curves_figure(rows, best_epoch: int, chance: float, fine_tune_start=None, warning=None) -> Figure:
    """Loss and accuracy per epoch (training and validation), the best epoch, fine-tuning's start, chance.

    Examples:
        >>> rows = [{"epoch": e, "loss": 1 / e, "val_loss": 1.2 / e, "accuracy": 0.5 + e / 10,
        ...          "val_accuracy": 0.5 + e / 12} for e in (1, 2, 3)]
        >>> fig = curves_figure(rows, best_epoch=3, chance=0.5, fine_tune_start=3)
        >>> [ax.get_title() for ax in fig.axes]
        ['loss', 'accuracy (best validation: 75.0% at epoch 3)']
    """
    fig = Figure(figsize=(10, 3.9), layout="constrained")
    epochs = [r["epoch"] for r in rows]
    best = next(r for r in rows if r["epoch"] == best_epoch)
    for ax, key in zip(fig.subplots(1, 2), ("loss", "accuracy")):
        ax.plot(epochs, [r.get(key) for r in rows], "-o", ms=3, color="tab:blue", label=f"training {key}")
        ax.plot(epochs, [r.get("val_" + key) for r in rows], "--o", ms=3, color="tab:orange",
                label=f"validation {key}")
        ax.axvline(best_epoch, color="tab:green", lw=1.2, alpha=0.7, label=f"best epoch ({best_epoch})")
        if fine_tune_start:
            ax.axvline(fine_tune_start - 0.5, color="dimgrey", ls=":", lw=1.5,
                       label=f"fine-tuning starts (epoch {fine_tune_start})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.25)
    ax_loss, ax_acc = fig.axes
    ax_loss.set_title("loss")
    ax_acc.axhline(chance, color="black", ls="-.", lw=0.8, label=f"chance level ({chance:.0%})")
    ax_acc.plot([best_epoch], [best["val_accuracy"]], "*", ms=14, color="tab:green")
    ax_acc.set_ylim(min(0.4, chance - 0.1), 1.02)
    ax_acc.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax_acc.set_title(f"accuracy (best validation: {best['val_accuracy']:.1%} at epoch {best_epoch})")
    for ax in fig.axes:
        ax.legend(fontsize=7, loc="best")
    return banner(fig, warning) if warning else fig


def confusion_figure(matrix, names, warning=None) -> Figure:
    """Counts and per-row (true class) percentages, with the accuracy in the title.

    Examples:
        >>> fig = confusion_figure(np.array([[9, 1], [2, 8]]), ["cat", "dog"])
        >>> fig.axes[0].get_title()
        'validation accuracy 85.0% (17 of 20)'
    """
    matrix = np.asarray(matrix)
    total, correct = int(matrix.sum()), int(np.trace(matrix))
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = 2.2 + 0.9 * len(names)
    fig = Figure(figsize=(side + 0.8, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, f"{count}\n({rates[i, j]:.0%})", ha="center", va="center", fontsize=10,
                color="white" if rates[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"validation accuracy {correct / max(total, 1):.1%} ({correct} of {total})")
    fig.colorbar(image, ax=ax, shrink=0.8, format=PercentFormatter(1.0), label="share of the true class")
    return banner(fig, warning) if warning else fig


def images_figure(display, titles, note: str) -> Figure:
    """The images and their titles without heatmaps, under ``note`` (why there are none)."""
    n = max(len(display), 1)
    fig = Figure(figsize=(2.3 * min(n, 6), 2.6 * ((n + 5) // 6) + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots((n + 5) // 6, min(n, 6), squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, title in zip(axes, display, titles):
        ax.imshow(image)
        ax.set_title(title, fontsize=8)
    return banner(fig, note)


def message_figure(text: str) -> Figure:
    """A small figure holding one sentence (e.g. that there is no mistake to show)."""
    fig = Figure(figsize=(5, 1.0))
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, wrap=True)
    return fig


def explained_figure(model, display, x, titles, warning=None, class_names=None) -> Figure:
    """Saliency and Grad-CAM of each image's predicted class, or, at chance level, the images and ``warning``.

    Panels are titled with the method, its layer and the class explained
    (``gradcam @ conv2 / for cat (0)``), named from ``class_names``.
    """
    if warning:
        return images_figure(display, titles, warning + " Heatmaps are not drawn.")
    targets = explaining.top_classes(model, x, class_names)
    maps = explaining.explain(model, x, target=[index for index, _ in targets])
    return explaining.explanation_figure(display, maps, titles, layer=explaining.layer_name(model), targets=targets)
