"""The run's only calls into kerasxai's explanation API: load_images, top_k, get_probe, explain, gradcam, overlay,
plot_explanations.

Kept in this one file so that a change of that API touches nothing else of
the training script.
"""

from __future__ import annotations

import numpy as np

from kerasxai.data.images import load_images
from kerasxai.data.predictions import top_k
from kerasxai.figures.images import plot_explanations
from kerasxai.figures.overlay import overlay
from kerasxai.methods.cams import gradcam
from kerasxai.methods.explain import explain as explain_methods
from kerasxai.probe import get_probe

METHODS = ("saliency", "gradcam")


def load(model, paths):
    """``(display uint8, x)`` of image files for ``model``: the pixels training fed it, same preprocessing.

    The display images are those pixels too (the model's square), one array: TensorBoard logs the overlays as one batch.
    """
    return load_images(list(paths), model, display_side=None)


def top_classes(model, x, class_names=None) -> list:
    """``(index, name)`` of each image's predicted class: the class the figures explain."""
    return [row[0][:2] for row in top_k(model, x, k=1, class_names=class_names)]


def layer_name(model) -> str:
    """The layer Grad-CAM explains (the model's last spatial layer), for the figures' titles."""
    return get_probe(model).layer_names[0]


def explain(model, x, target=None) -> dict:
    """Saliency and Grad-CAM maps of ``target`` (default each image's predicted class): ``{method: (N, H, W)}``."""
    return explain_methods(model, x, methods=METHODS, target=target)


def gradcam_overlays(model, display, x) -> np.ndarray:
    """Grad-CAM of the predicted class blended over each display image: uint8 ``(N, H, W, 3)``."""
    maps = gradcam(model, x)
    return np.stack([overlay(d, m) for d, m in zip(display, maps)])


def explanation_figure(display, maps, titles, layer=None, targets=None):
    """One row per image: the image, then saliency and Grad-CAM, titled with ``layer`` and ``targets``."""
    return plot_explanations(display, maps, titles, layer=layer, targets=targets)
