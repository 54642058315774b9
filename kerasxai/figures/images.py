"""Pictures: heatmap overlays and figures of explanations for images, signals and volumes.

Figures are ``matplotlib.figure.Figure`` objects made without ``pyplot``, so
nothing opens a window (tests and servers need no display) and a notebook
shows them inline. ``fig.savefig("explained.png")`` saves one.

Every figure is made so that it cannot be misread:

- a colour scale says what the colours mean ("0 = least, 1 = most evidence
  for <target>": maps are min-max normalised per image, so 1 is the map's own
  maximum, not an absolute amount);
- a flat map (kerasxai returns all zeros, with a warning, when there is no
  positive evidence) is drawn as a grey, hatched panel marked "flat: no
  positive evidence", never as a dimmed photo that looks like "the model
  looked nowhere"; a map with NaN or inf values is marked as invalid, with a
  warning;
- panel titles say the method, the layer (``method @ layer``) and the target
  explained, when the caller passes them;
- photos are shown at their own aspect ratio, with the map (at the model's
  input resolution) resized back onto them.

Signals (1-D models) get :func:`plot_signal`, volumes (3-D models)
:func:`plot_volume`; the shared pieces live in :mod:`kerasxai.figures.common`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from kerasxai.data.predictions import top_k
from kerasxai.figures.common import (
    MAP_CMAP,
    PIXEL_METHODS,
    Figure,
    as_uint8_rgb,
    check_maps,
    colorize,
    draw_unusable,
    evidence_label,
    map_state,
    method_of,
    panel_title,
    per_image,
    prediction_title,
    resize_linear,
    scale_colorbar,
    target_label,
    warn_invalid,
)
from kerasxai.figures.nd import plot_signal, plot_volume  # noqa: F401  (re-exported: every figure is here)
from kerasxai.figures.overlay import overlay
from kerasxai.methods.explain import explain
from kerasxai.probe import explainable_layers, get_probe

__all__ = [
    "Figure", "PIXEL_METHODS", "colorize", "overlay", "plot_explanations", "depth_layers", "plot_layer_views",
    "plot_feature_maps", "plot_signal", "plot_volume",
]
_as_uint8_rgb = as_uint8_rgb  # the name other modules have used


def _as_image_list(images, single: bool) -> list:
    if single:
        return [np.asarray(images)]
    if isinstance(images, np.ndarray):
        return list(images)
    return [np.asarray(image) for image in images]


def _cell_size(images, cell_size: float):
    """(width, height) of one panel for the widest and tallest of ``images``, aspect kept."""
    aspects = [image.shape[1] / image.shape[0] for image in images]
    return cell_size * float(np.clip(max(aspects), 1.0, 2.2)), cell_size * float(np.clip(1 / min(aspects), 1.0, 2.2))


def _draw_map(ax, rgb, heat, name, *, cmap, alpha) -> str:
    """One method's panel: overlay (CAMs) or the coloured map (pixel methods), both in ``cmap``, or a marked
    unusable panel."""
    state = map_state(heat)
    if state != "ok":
        draw_unusable(ax, rgb.shape[:2], state)
    elif method_of(name) in PIXEL_METHODS:
        ax.imshow(colorize(resize_linear(heat, rgb.shape[:2]), cmap))
    else:
        ax.imshow(overlay(rgb, heat, cmap=cmap, alpha=alpha))
    return state


def _outlines(outlines, row_targets, n: int, map_shape) -> list:
    """Per row: a boolean mask, a ``(4,)`` box, or None, checked."""
    if outlines is None:
        return [t.outline(i) if hasattr(t, "outline") else None for i, t in enumerate(row_targets)]
    array = np.asarray(outlines)
    if array.shape[-1:] == (4,) and array.ndim in (1, 2) and array.dtype != bool:
        rows = [array] * n if array.ndim == 1 else list(array)
    elif array.ndim == len(map_shape):
        rows = [array] * n
    elif array.ndim == len(map_shape) + 1:
        rows = list(array)
    else:
        raise ValueError(f"outlines must be boolean masks (N, H, W) or boxes (N, 4) (y1, x1, y2, x2). Received shape "
                         f"{array.shape}.")
    if len(rows) != n:
        raise ValueError(f"outlines has {len(rows)} entries for {n} images.")
    for row in rows:
        row = np.asarray(row)
        if row.shape != (4,) and abs(row.shape[0] / row.shape[1] - map_shape[0] / map_shape[1]) > 0.05:
            raise ValueError(f"an outline mask of shape {row.shape} does not have the maps' aspect {tuple(map_shape)}: "
                             "give masks at the output's resolution (kerasxai.targets.regions gives them).")
    return rows


def _check_patch_grid(patch_grid):
    if patch_grid is None:
        return None
    grid = tuple(patch_grid) if isinstance(patch_grid, (tuple, list)) else ()
    if len(grid) not in (2, 3) or not all(isinstance(g, (int, np.integer)) and g >= 1 for g in grid[:2]):
        raise ValueError(f"patch_grid is (rows, columns) of patches, e.g. (14, 14). Received: {patch_grid!r}")
    return int(grid[0]), int(grid[1])


def _draw_patch_grid(ax, grid, image_shape):
    """Thin white lines between the patches of a ``(rows, columns)`` grid laid over the image."""
    height, width = image_shape
    for k in range(1, grid[0]):
        ax.axhline(k * height / grid[0] - 0.5, color="white", linewidth=0.6, alpha=0.6)
    for k in range(1, grid[1]):
        ax.axvline(k * width / grid[1] - 0.5, color="white", linewidth=0.6, alpha=0.6)


def _draw_outline(ax, outline, image_shape, map_shape):
    """A region's contour or a box, in white over a dark edge so it reads on any colour."""
    outline = np.asarray(outline)
    if outline.shape == (4,) and outline.dtype != bool:  # y1, x1, y2, x2 in the maps' (model input) pixels
        sy, sx = image_shape[0] / map_shape[0], image_shape[1] / map_shape[1]
        y1, x1, y2, x2 = (float(v) for v in outline)
        ys = np.array([y1, y1, y2, y2, y1]) * sy - 0.5
        xs = np.array([x1, x2, x2, x1, x1]) * sx - 0.5
        for width, colour in ((3.0, "black"), (1.4, "white")):
            ax.plot(xs, ys, color=colour, linewidth=width)
    else:
        mask = resize_linear(outline.astype(np.float32), image_shape)
        if mask.max() > 0.5 > mask.min():
            for width, colour in ((3.0, "black"), (1.4, "white")):
                ax.contour(mask, levels=[0.5], colors=colour, linewidths=width)
    ax.set_xlim(-0.5, image_shape[1] - 0.5)
    ax.set_ylim(image_shape[0] - 0.5, -0.5)


def plot_explanations(
    images,
    maps: Mapping[str, np.ndarray],
    predictions: Sequence | None = None,
    *,
    layer=None,
    targets=None,
    outlines=None,
    patch_grid=None,
    cmap: str = MAP_CMAP,
    alpha: float = 0.4,
    cell_size: float = 2.6,
) -> Figure:
    """A figure with one row per image: the input, then one panel per method, and a colour scale.

    Region methods (CAMs) are drawn as overlays on the image; pixel methods
    (saliency and other gradients) as the coloured map itself, whose fine detail
    a blend would wash out. Both use ``cmap``, so one colour scale reads them
    all, as in a folder run's overlays and its report. A flat map is drawn as a
    marked "flat: no positive evidence" panel.

    Args:
        images: display images (not preprocessed): ``(N, H, W, 3)``, one image
            ``(H, W, 3)``, or a list of images of different sizes — each is
            shown at its own aspect ratio, the maps resized onto it.
        maps: method name -> ``(N, h, w)`` maps in ``[0, 1]`` (what
            ``kerasxai.gradcam`` etc. return, at the model's input size).
        predictions: per image, a title for the input panel: a string or
            ``(class_index, name, probability)`` — e.g. the first entry of
            ``kerasxai.top_k`` per image (for one image, the title alone).
        layer: the layer the CAMs explain (a name), or a dict method -> layer;
            titles then read ``gradcam @ block5_conv3``. Pixel methods are
            ``@ input``.
        targets: the class explained, for the titles and the colour scale: an
            int, a name, ``(index, name[, probability])``, a
            :class:`~kerasxai.targets.Segmentation` or :class:`~kerasxai.targets.Detection`
            target (a given mask, or the box, is outlined on every panel; a predicted
            region needs ``outlines=``), or a list of those, one per image.
        outlines: what to outline on every panel of each row, in the maps' pixels: boolean
            masks ``(N, H, W)`` (a segmentation target's region: the contour is drawn) or
            boxes ``(N, 4)`` as y1, x1, y2, x2 (one ``(H, W)`` mask or ``(4,)`` box for all);
            ``kerasxai.targets.regions(model, x, target)`` gives a target's. Default: the
            mask or box a segmentation/detection ``targets`` carries.
        patch_grid: ``(rows, columns)`` (or a token layer's ``(rows, columns, extra)``, as
            ``kerasxai.explainable_layers(model)`` lists it): a vision transformer's patch grid, drawn
            as thin lines on the input and on every map that is not at the input's pixels.
        cmap: the colormap of every panel and of the scale (default ``"jet"``).
        alpha: the weight of the colour in the CAMs' overlays.

    Returns:
        ``matplotlib.figure.Figure``; ``fig.savefig("out.png")`` saves it.

    Examples:
        >>> import numpy as np
        >>> imgs = np.zeros((2, 32, 32, 3), np.uint8)
        >>> fig = plot_explanations(imgs, {"gradcam": np.random.rand(2, 32, 32)}, layer="conv2", targets=3)
        >>> [ax.get_title() for ax in fig.axes[:2]], fig.axes[-1].get_ylabel()
        (['input', 'gradcam @ conv2\\nfor class 3'], '0 = least, 1 = most evidence\\nfor class 3')
    """
    maps = {name: np.asarray(m, np.float32) for name, m in maps.items()}
    if not maps:
        raise ValueError("maps is empty: give at least one method's maps, e.g. {'gradcam': kerasxai.gradcam(model, x)}.")
    single = all(m.ndim == 2 for m in maps.values())
    if single:
        maps = {name: m[None] for name, m in maps.items()}
        if isinstance(predictions, (str, tuple)):
            predictions = [predictions]
    images = _as_image_list(images, single)
    n, names = len(images), list(maps)
    check_maps(maps, n, predictions, "(N, H, W)")
    row_targets = per_image(targets, n, "targets")
    labels = [t.describe(i) if hasattr(t, "describe") else target_label(t) for i, t in enumerate(row_targets)]
    shapes = {name: m.shape[1:] for name, m in maps.items()}
    lines = _outlines(outlines, row_targets, n, next(iter(shapes.values())))
    grid = _check_patch_grid(patch_grid)
    width, height = _cell_size(images, cell_size)
    fig = Figure(figsize=(width * (1 + len(names)) + 0.7, (height + 0.4) * n),
                 layout="compressed")
    axes = fig.subplots(n, 1 + len(names), squeeze=False)
    unusable = {}
    for i in range(n):
        rgb = as_uint8_rgb(images[i])
        axes[i, 0].imshow(rgb)
        axes[i, 0].set_title(prediction_title(predictions[i]) if predictions is not None else "input", fontsize=9)
        for j, name in enumerate(names, start=1):
            state = _draw_map(axes[i, j], rgb, maps[name][i], name, cmap=cmap, alpha=alpha)
            if state == "invalid":
                unusable.setdefault(name, []).append(i)
            axes[i, j].set_title(panel_title(name, layer, labels[i]), fontsize=8)
        if lines[i] is not None:
            for ax in axes[i]:
                _draw_outline(ax, lines[i], rgb.shape[:2], next(iter(shapes.values())))
        if grid is not None:
            for j, ax in enumerate(axes[i]):
                if j == 0 or method_of(names[j - 1]) not in PIXEL_METHODS:
                    _draw_patch_grid(ax, grid, rgb.shape[:2])
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        if ax.images and not ax.patches:
            ax.set_axis_off()
    for name, rows in unusable.items():
        warn_invalid(f"maps['{name}']", rows)
    scale_colorbar(fig, axes, cmap, evidence_label(labels))  # one scale: overlays and pixel maps share cmap
    return fig


def depth_layers(model, count: int = 3) -> list:
    """``count`` explainable conv layers spread from first to last (qualified names).

    Examples:
        >>> import keras
        >>> depth_layers(keras.applications.VGG16(weights=None))
        ['block1_conv1', 'block3_conv3', 'block5_conv3']
    """
    infos = [i for i in explainable_layers(model) if "Conv" in i.kind] or explainable_layers(model)
    picks = np.unique(np.linspace(0, len(infos) - 1, count).round().astype(int))
    return [infos[i].path for i in picks]


def _explain_at_layers(model, x, method, layers, target):
    """The calls into the core for :func:`plot_layer_views`: maps per layer, targets explained, top classes.

    The target is fixed first (the top class, named by ``top_k``) so every
    layer explains the same class.
    """
    top = [row[0] for row in top_k(model, x, k=1)]
    if target is None:
        target = [c for c, _, _ in top]
        labels = [(c, name) for c, name, _ in top]
    else:
        labels = list(target) if isinstance(target, (list, tuple, np.ndarray)) else [target] * len(x)
    maps = {name: explain(model, x, methods=(method,), target=target, layer=name)[method] for name in layers}
    return maps, labels, top


def plot_layer_views(model, display, x, method: str = "layercam", layers=None, target=None, *,
                     cmap: str = MAP_CMAP, alpha: float = 0.5, cell_size: float = 2.6) -> Figure:
    """One method's heatmaps at several depths, side by side: how the explanation sharpens.

    Args:
        model: the model.
        display: display images ``(N, H, W, 3)`` (or one, or a list of
            differently sized ones), e.g. from ``load_images``.
        x: the same images preprocessed for the model.
        method: a CAM method name (``"layercam"`` suits shallow layers; Grad-CAM blurs there).
        layers: layer names; default the first, middle and last conv layers.
        target: as in ``kerasxai.gradcam``; fixed from the top class so every
            column explains the same class.

    Examples:
        >>> import keras, numpy as np
        >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=3)
        >>> x = np.random.rand(1, 32, 32, 3).astype("float32")
        >>> fig = plot_layer_views(model, (x * 255).astype("uint8"), x, target=1)
        >>> [ax.get_title() for ax in fig.axes[1:3]]
        ['layercam @ block1_conv1\\nfor class 1', 'layercam @ block3_conv3\\nfor class 1']
    """
    x = np.asarray(x)
    if x.ndim == 3:
        display, x = [np.asarray(display)], x[None]
    display = _as_image_list(display, False)
    layers = list(layers) if layers is not None else depth_layers(model)
    heat, targets, top = _explain_at_layers(model, x, method, layers, target)
    labels = [target_label(t) for t in targets]
    width, height = _cell_size(display, cell_size)
    fig = Figure(figsize=(width * (1 + len(layers)) + 0.7, (height + 0.4) * len(display)), layout="compressed")
    axes = fig.subplots(len(display), 1 + len(layers), squeeze=False)
    for i in range(len(display)):
        rgb = as_uint8_rgb(display[i])
        axes[i, 0].imshow(rgb)
        axes[i, 0].set_title(prediction_title(top[i]), fontsize=9)
        for j, name in enumerate(layers, start=1):
            _draw_map(axes[i, j], rgb, heat[name][i], method, cmap=cmap, alpha=alpha)
            axes[i, j].set_title(panel_title(method, name, labels[i]), fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        if ax.images and not ax.patches:
            ax.set_axis_off()
    scale_colorbar(fig, axes, cmap, evidence_label(labels))
    return fig


def plot_feature_maps(model, x, layer=None, n: int = 16, *, cmap: str = "viridis", cell_size: float = 1.6) -> Figure:
    """A grid of the ``n`` strongest feature maps (highest mean activation) of ``layer`` for one image.

    Args:
        model: the model.
        x: one preprocessed image ``(H, W, C)`` (or a batch, of which the first is shown).
        layer: a layer name or object; default the layer CAM methods use.
        n: how many channels.

    Examples:
        >>> import keras, numpy as np
        >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=3)
        >>> fig = plot_feature_maps(model, np.random.rand(32, 32, 3).astype("float32"), "block1_conv2", n=8)
        >>> len([ax for ax in fig.axes if ax.images])
        8
    """
    probe = get_probe(model, layer)
    batch = np.asarray(x, np.float32)
    batch = batch if batch.ndim == len(probe.input_shape) else batch[None]
    acts = probe.forward(batch[:1]).activations[0][0]  # (h, w, K)
    strength = acts.mean(axis=(0, 1))
    order = np.argsort(-strength, kind="stable")[: min(n, acts.shape[-1])]
    cols = int(np.ceil(np.sqrt(len(order))))
    rows = int(np.ceil(len(order) / cols))
    fig = Figure(figsize=(cell_size * cols, cell_size * rows + 0.4), layout="compressed")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, k in zip(axes.ravel(), order):
        ax.imshow(acts[..., k], cmap=cmap)
        ax.set_title(f"#{k}  mean {strength[k]:.3g}", fontsize=7)
    fig.suptitle(f"{probe.layer_names[0]}: {len(order)} strongest of {acts.shape[-1]} feature maps "
                 "(each channel on its own colour range)", fontsize=9)
    return fig


