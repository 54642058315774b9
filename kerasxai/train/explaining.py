"""The run's only calls into kerasxai's explanation API: load_images, explain, gradcam, overlay, plot_explanations.

Kept in this one file so that a change of that API touches nothing else of
the training script.
"""

from __future__ import annotations

import numpy as np

import kerasxai

METHODS = ("saliency", "gradcam")


def load(model, paths):
    """``(display uint8, x)`` of image files for ``model``: the pixels training fed it, same preprocessing."""
    return kerasxai.load_images(list(paths), model)


def explain(model, x) -> dict:
    """Saliency and Grad-CAM maps of each image's predicted class: ``{method: (N, H, W)}``."""
    return kerasxai.explain(model, x, methods=METHODS)


def gradcam_overlays(model, display, x) -> np.ndarray:
    """Grad-CAM of the predicted class blended over each display image: uint8 ``(N, H, W, 3)``."""
    maps = kerasxai.gradcam(model, x)
    return np.stack([kerasxai.overlay(d, m) for d, m in zip(display, maps)])


def explanation_figure(display, maps, titles):
    """One row per image: the image, then saliency and Grad-CAM."""
    return kerasxai.plot_explanations(display, maps, titles)
