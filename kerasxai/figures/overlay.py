"""The one overlay of kerasxai: a heatmap blended over the photo it explains.

:func:`overlay` is what figures, the training's pictures, the folder job's
overlay files and the report show. :func:`overlay_panel` is the same overlay
as a picture that stands alone (an ``overlays/<id>_<method>.png`` of a folder
run): it carries a slim colour scale and the ``method @ layer`` it shows, as
every figure does, and a flat map is drawn as a grey photo marked "flat: no
positive evidence" rather than as a photo tinted with the colour of 0.

Colours go through the colormap's 256-entry table, indexed as matplotlib
indexes it (the same colours as evaluating the colormap per pixel), and the map is
resized onto the photo with bilinear interpolation: fast enough to draw an
overlay per image and method while a folder is explained.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw

from kerasxai.figures.common import as_uint8_rgb, colorize, resize_linear

FLAT_LABEL = "flat: no positive evidence"


@functools.lru_cache(maxsize=8)
def _table(cmap: str) -> np.ndarray:
    """The colormap's 256 colours, float32 ``(256, 3)``."""
    return colorize(np.linspace(0, 1, 256, dtype=np.float32)[None], cmap)[0].astype(np.float32)


def _onto(heatmap, shape) -> np.ndarray:
    """``heatmap`` resized (bilinear, half-pixel centres) to ``shape`` ``(H, W)``, float32."""
    heat = np.asarray(heatmap, np.float32)
    if heat.ndim != 2:
        raise ValueError(f"overlay draws a 2-D map (h, w) on an image. Received a map of shape {heat.shape}.")
    h, w = shape
    if heat.shape == (h, w):
        return heat
    if heat.shape[0] <= h and heat.shape[1] <= w:  # enlarged: PIL's bilinear is the half-pixel one, and fast
        return np.asarray(Image.fromarray(heat, "F").resize((w, h), Image.BILINEAR))
    return resize_linear(heat, (h, w))  # shrunk: sampled as everywhere else, not PIL's smoothing filter


def overlay(image, heatmap, cmap: str = "jet", alpha: float = 0.4) -> np.ndarray:
    """Blends a heatmap over an image: ``(1 - alpha) * image + alpha * colormap(heatmap)``.

    Args:
        image: the *display* image ``(H, W, 3)`` (or grayscale ``(H, W)``), uint8
            or float in ``[0, 1]`` or ``[0, 255]``, at any size — not the
            preprocessed tensor.
        heatmap: ``(h, w)`` map in ``[0, 1]``; resized (bilinear) onto the image,
            whatever its size (a photo at its own aspect ratio, or the model's square pixels).
        cmap: a matplotlib colormap name.
        alpha: weight of the heatmap.

    Returns:
        ``(H, W, 3)`` uint8 RGB. A flat (all-zero) map gives the image tinted
        with the colormap's 0 colour: figures draw those as marked panels
        instead (see :func:`kerasxai.plot_explanations` and :func:`overlay_panel`).

    Examples:
        >>> img = np.zeros((64, 96, 3), np.uint8)
        >>> overlay(img, np.ones((7, 7))).shape
        (64, 96, 3)
    """
    rgb = as_uint8_rgb(image)
    heat = np.nan_to_num(_onto(heatmap, rgb.shape[:2]), nan=0.0)
    index = np.clip(heat * 256, 0, 255).astype(np.uint8)  # matplotlib's own index into its 256 colours
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * _table(cmap)[index]
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def _marked_flat(rgb) -> Image.Image:
    grey = np.asarray(Image.fromarray(rgb).convert("L").convert("RGB"))
    return Image.fromarray((grey * 0.6 + 40).astype(np.uint8))


def outline_region(rgb, region) -> np.ndarray:
    """``rgb`` with the border of a boolean ``region`` (any resolution: resized onto the image, nearest)
    drawn in white over a dark halo, so it reads on any colour.

    Examples:
        >>> region = np.zeros((4, 4), bool); region[1:3, 1:3] = True
        >>> drawn = outline_region(np.zeros((8, 8, 3), np.uint8), region)
        >>> int(drawn[2, 2, 0]), int(drawn[4, 4, 0]), int(drawn[0, 0, 0])
        (255, 0, 0)
    """
    rgb = np.array(rgb, np.uint8)
    h, w = rgb.shape[:2]
    region = np.asarray(region, bool)
    rows = (np.arange(h) * region.shape[0] // h)[:, None]
    cols = (np.arange(w) * region.shape[1] // w)[None, :]
    inside = region[rows, cols]
    padded = np.pad(inside, 1, mode="edge")
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    border = inside & ~interior
    halo = np.zeros_like(border)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            halo |= np.roll(np.roll(border, dy, 0), dx, 1)
    rgb[halo & ~border] = (0, 0, 0)
    rgb[border] = (255, 255, 255)
    return rgb


def overlay_panel(image, heatmap, *, method: str, layer=None, flat: bool = False, cmap: str = "jet",
                  alpha: float = 0.4, region=None) -> np.ndarray:
    """:func:`overlay` with what it shows written under it: ``method @ layer`` and a slim colour scale.

    The strip under the picture (18 pixels) reads ``<method> @ <layer>`` (or ``<method> @ input``
    for methods made at the input) and a colour bar from 0 (least) to 1 (most evidence: maps are
    normalised per image). A flat map (``flat=True``: no positive evidence) is drawn as a grey
    photo marked "flat: no positive evidence", and the strip says so instead of showing a scale.
    ``region``: a segmentation target's boolean mask, outlined on the picture (:func:`outline_region`).

    Returns:
        ``(H + 18, W, 3)`` uint8 RGB.

    Examples:
        >>> panel = overlay_panel(np.zeros((40, 60, 3), np.uint8), np.ones((7, 7)), method="gradcam", layer="conv")
        >>> panel.shape
        (58, 60, 3)
    """
    rgb = as_uint8_rgb(image)
    h, w = rgb.shape[:2]
    picture = _marked_flat(rgb) if flat else Image.fromarray(overlay(rgb, heatmap, cmap=cmap, alpha=alpha))
    if region is not None:
        picture = Image.fromarray(outline_region(np.asarray(picture), region))
    strip = 18
    panel = Image.new("RGB", (w, h + strip), (255, 255, 255))
    panel.paste(picture, (0, 0))
    draw = ImageDraw.Draw(panel)
    label = f"{method} @ {layer or 'input'}"
    if flat:
        draw.rectangle([0, 0, w, 14], fill=(0, 0, 0))
        draw.text((3, 2), FLAT_LABEL, fill=(255, 255, 255))
        draw.text((3, h + 3), label, fill=(0, 0, 0))
        return np.asarray(panel)
    bar_w = max(0, min(90, w // 3))
    text_w = draw.textlength(label)
    draw.text((3, h + 3), label if text_w <= w - bar_w - 24 else label[: max(3, (w - bar_w - 24) // 6)] + "…",
              fill=(0, 0, 0))
    if bar_w >= 24:
        x0 = w - bar_w - 10
        colours = _table(cmap)[np.round(np.linspace(0, 255, bar_w - 12)).astype(int)].astype(np.uint8)
        bar = np.repeat(colours[None], 8, axis=0)
        panel.paste(Image.fromarray(bar), (x0 + 6, h + 5))
        draw.text((x0 - 1, h + 3), "0", fill=(0, 0, 0))
        draw.text((x0 + bar_w - 5, h + 3), "1", fill=(0, 0, 0))
    return np.asarray(panel)
