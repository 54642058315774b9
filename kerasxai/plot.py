"""Pictures: heatmap overlays and figures of several methods side by side.

Figures are ``matplotlib.figure.Figure`` objects made without ``pyplot``, so
nothing opens a window (tests and servers need no display) and a notebook
shows them inline. ``fig.savefig("explained.png")`` saves one.
"""

from __future__ import annotations

import io
from typing import Mapping, Sequence

import matplotlib
import matplotlib.figure
import numpy as np
import tensorflow as tf


class Figure(matplotlib.figure.Figure):
    """A matplotlib Figure that notebooks display as PNG, with or without pyplot."""

    def _repr_png_(self):
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=90)
        return buffer.getvalue()

# Methods whose maps are about pixels rather than regions: shown as grayscale maps.
PIXEL_METHODS = {"saliency", "smoothgrad", "integrated_gradients", "guided_backprop", "guided_gradcam"}


def _as_uint8_rgb(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.shape[-1] == 4:
        image = image[..., :3]
    if image.dtype == np.uint8:
        return image
    image = image.astype(np.float32)
    if image.max() <= 1.0 + 1e-6 and image.min() >= 0:
        image = image * 255.0
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def colorize(heatmap, cmap: str = "jet") -> np.ndarray:
    """A ``(H, W)`` map in ``[0, 1]`` as a ``(H, W, 3)`` uint8 RGB image through a matplotlib colormap.

    Example:
        >>> colorize(np.array([[0.0, 1.0]]), "jet")[0].tolist()
        [[0, 0, 128], [128, 0, 0]]
    """
    colors = matplotlib.colormaps[cmap](np.clip(np.asarray(heatmap, np.float32), 0, 1))[..., :3]
    return np.round(colors * 255).astype(np.uint8)


def overlay(image, heatmap, cmap: str = "jet", alpha: float = 0.4) -> np.ndarray:
    """Blends a heatmap over an image: ``(1 - alpha) * image + alpha * colormap(heatmap)``.

    Args:
        image: the *display* image ``(H, W, 3)`` (or grayscale ``(H, W)``), uint8
            or float in ``[0, 1]`` or ``[0, 255]`` — not the preprocessed tensor.
        heatmap: ``(h, w)`` map in ``[0, 1]``; resized (bilinear) to the image.
        cmap: a matplotlib colormap name.
        alpha: weight of the heatmap.

    Returns:
        ``(H, W, 3)`` uint8 RGB.

    Example:
        >>> img = np.zeros((64, 64, 3), np.uint8)
        >>> overlay(img, np.ones((7, 7))).shape
        (64, 64, 3)
    """
    rgb = _as_uint8_rgb(image)
    heat = np.asarray(heatmap, np.float32)
    if heat.shape != rgb.shape[:2]:
        heat = tf.image.resize(heat[..., None], rgb.shape[:2], method="bilinear").numpy()[..., 0]
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * colorize(heat, cmap).astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def _title_for(prediction) -> str:
    if prediction is None:
        return ""
    if isinstance(prediction, str):
        return prediction
    index, name, probability = prediction
    return f"{name or index}: {probability:.1%}"


def plot_explanations(
    images,
    maps: Mapping[str, np.ndarray],
    predictions: Sequence | None = None,
    *,
    cmap: str = "jet",
    alpha: float = 0.4,
    cell_size: float = 2.6,
) -> Figure:
    """A figure with one row per image: the input, then one column per method.

    Region methods (CAMs) are drawn as overlays on the image; pixel methods
    (saliency and other gradients) as grayscale maps.

    Args:
        images: ``(N, H, W, 3)`` display images (not preprocessed), or one image.
        maps: method name -> ``(N, H, W)`` maps in ``[0, 1]`` (what
            ``kerasxai.gradcam`` etc. return).
        predictions: per image, a title: a string or ``(class_index, name,
            probability)`` — e.g. the first entry of ``kerasxai.top_k`` per image.

    Returns:
        ``matplotlib.figure.Figure``; ``fig.savefig("out.png")`` saves it.

    Example:
        >>> import numpy as np
        >>> imgs = np.zeros((2, 32, 32, 3), np.uint8)
        >>> fig = plot_explanations(imgs, {"gradcam": np.random.rand(2, 32, 32)})
        >>> len(fig.axes)
        4
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
        maps = {k: np.asarray(v)[None] for k, v in maps.items()}
    n, names = len(images), list(maps)
    for name, m in maps.items():
        if len(m) != n:
            raise ValueError(f"maps['{name}'] has {len(m)} maps for {n} images.")
    if predictions is not None and len(predictions) != n:
        raise ValueError(f"predictions has {len(predictions)} entries for {n} images.")
    fig = Figure(figsize=(cell_size * (1 + len(names)), cell_size * n), layout="constrained")
    axes = fig.subplots(n, 1 + len(names), squeeze=False)
    for i in range(n):
        rgb = _as_uint8_rgb(images[i])
        axes[i, 0].imshow(rgb)
        axes[i, 0].set_title(_title_for(predictions[i]) if predictions is not None else "input", fontsize=9)
        for j, name in enumerate(names, start=1):
            ax = axes[i, j]
            if name in PIXEL_METHODS:
                ax.imshow(maps[name][i], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(overlay(rgb, maps[name][i], cmap=cmap, alpha=alpha))
            ax.set_title(name, fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    return fig


def depth_layers(model, count: int = 3) -> list:
    """``count`` explainable conv layers spread from first to last (qualified names).

    Example:
        >>> import keras
        >>> depth_layers(keras.applications.VGG16(weights=None))
        ['block1_conv1', 'block3_conv3', 'block5_conv3']
    """
    from kerasxai.probe import explainable_layers

    infos = [i for i in explainable_layers(model) if "Conv" in i.kind] or explainable_layers(model)
    picks = np.unique(np.linspace(0, len(infos) - 1, count).round().astype(int))
    return [infos[i].path for i in picks]


def plot_layer_views(model, display, x, method: str = "layercam", layers=None, target=None, *,
                     cmap: str = "jet", alpha: float = 0.5, cell_size: float = 2.6) -> Figure:
    """One method's heatmaps at several depths, side by side: how the explanation sharpens.

    Args:
        model: the model.
        display: uint8 RGB images ``(N, H, W, 3)`` (or one), e.g. from ``load_images``.
        x: the same images preprocessed for the model.
        method: a CAM method name (``"layercam"`` suits shallow layers; Grad-CAM blurs there).
        layers: layer names; default the first, middle and last conv layers.
        target: as in ``kerasxai.gradcam``; fixed from the top class so every
            column explains the same class.

    Example:
        >>> import keras, numpy as np
        >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=3)
        >>> x = np.random.rand(1, 32, 32, 3).astype("float32")
        >>> len(plot_layer_views(model, (x * 255).astype("uint8"), x).axes)
        4
    """
    import kerasxai
    from kerasxai.probe import get_probe

    display = np.asarray(display)
    if display.ndim == 3:
        display, x = display[None], np.asarray(x)[None]
    layers = list(layers) if layers is not None else depth_layers(model)
    if target is None:
        target = get_probe(model, ()).predict(x)["classes"].tolist()
    fn = getattr(kerasxai, method)
    heat = {name: fn(model, x, target=target, layer=name) for name in layers}
    fig = Figure(figsize=(cell_size * (1 + len(layers)), cell_size * len(display)), layout="constrained")
    axes = fig.subplots(len(display), 1 + len(layers), squeeze=False)
    for i in range(len(display)):
        axes[i, 0].imshow(_as_uint8_rgb(display[i]))
        axes[i, 0].set_title("input", fontsize=9)
        for j, name in enumerate(layers, start=1):
            axes[i, j].imshow(overlay(display[i], heat[name][i], cmap=cmap, alpha=alpha))
            axes[i, j].set_title(f"{method}\n{name}", fontsize=8)
    for ax in axes.ravel():
        ax.set_axis_off()
    return fig


def plot_feature_maps(model, x, layer=None, n: int = 16, *, cmap: str = "viridis", cell_size: float = 1.6) -> Figure:
    """A grid of the ``n`` strongest feature maps (highest mean activation) of ``layer`` for one image.

    Args:
        model: the model.
        x: one preprocessed image ``(H, W, C)`` (or a batch, of which the first is shown).
        layer: a layer name or object; default the layer CAM methods use.
        n: how many channels.

    Example:
        >>> import keras, numpy as np
        >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=3)
        >>> fig = plot_feature_maps(model, np.random.rand(32, 32, 3).astype("float32"), "block1_conv2", n=8)
        >>> len([ax for ax in fig.axes if ax.images])
        8
    """
    from kerasxai.probe import get_probe

    probe = get_probe(model, layer)
    batch = np.asarray(x, np.float32)
    batch = batch if batch.ndim == len(probe.input_shape) else batch[None]
    acts = probe.forward(batch[:1]).activations[0][0]  # (h, w, K)
    strength = acts.mean(axis=(0, 1))
    order = np.argsort(-strength, kind="stable")[: min(n, acts.shape[-1])]
    cols = int(np.ceil(np.sqrt(len(order))))
    rows = int(np.ceil(len(order) / cols))
    fig = Figure(figsize=(cell_size * cols, cell_size * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, k in zip(axes.ravel(), order):
        ax.imshow(acts[..., k], cmap=cmap)
        ax.set_title(f"#{k}  mean {strength[k]:.3g}", fontsize=7)
    fig.suptitle(f"{probe.layer_names[0]}: {len(order)} strongest of {acts.shape[-1]} feature maps", fontsize=9)
    return fig
