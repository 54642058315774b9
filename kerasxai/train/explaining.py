"""The run's only calls into kerasxai's explanation API: load_images, explain, gradcam, overlay, plot_explanations.

Kept in this one file so that a change of that API touches nothing else of
the training script.
"""

from __future__ import annotations

import numpy as np

from kerasxai.data.images import load_images
from kerasxai.figures.images import plot_explanations
from kerasxai.figures.overlay import overlay
from kerasxai.methods.cams import gradcam
from kerasxai.methods.explain import explain as explain_methods

METHODS = ("saliency", "gradcam")


def load(model, paths):
    """``(display uint8, x)`` of image files for ``model``: the pixels training fed it, same preprocessing."""
    return load_images(list(paths), model)


def explain(model, x) -> dict:
    """Saliency and Grad-CAM maps of each image's predicted class: ``{method: (N, H, W)}``."""
    return explain_methods(model, x, methods=METHODS)


def gradcam_overlays(model, display, x) -> np.ndarray:
    """Grad-CAM of the predicted class blended over each display image: uint8 ``(N, H, W, 3)``."""
    maps = gradcam(model, x)
    return np.stack([overlay(d, m) for d, m in zip(display, maps)])


def explanation_figure(display, maps, titles):
    """One row per image: the image, then saliency and Grad-CAM."""
    return plot_explanations(display, maps, titles)
