"""Pieces every kerasxai figure shares: colour scales, flat-map panels, titles, resizing.

Kept in one place so that images (:mod:`kerasxai.figures.images`), signals and volumes
(:mod:`kerasxai.figures.nd`) say the same things the same way.
"""

from __future__ import annotations

import io

import matplotlib
import matplotlib.cm
import matplotlib.colors
import matplotlib.figure
import matplotlib.patches
import numpy as np

from kerasxai import _warn, backend
from kerasxai.methods.maps import resize_linear as resize_batch
# Methods whose maps are about pixels rather than regions (shown as maps), and of those the ones
# computed at the input alone (guided Grad-CAM also depends on a layer): read from the method table.
from kerasxai.methods.table import CLASS_AGNOSTIC, INPUT_METHODS, PIXEL_METHODS, where as method_where  # noqa: F401


class Figure(matplotlib.figure.Figure):
    """A matplotlib Figure that notebooks display as PNG, with or without pyplot."""

    def _repr_png_(self):
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=90)
        return buffer.getvalue()


# The colormap of every map kerasxai draws, so that a colour means the same everywhere: figures (CAM
# overlays and pixel maps alike), signal strips, volume overlays, a folder run's overlays, the report's scale.
MAP_CMAP = "jet"

FLAT_TEXT = "flat:\nno positive evidence"


def as_uint8_rgb(image) -> np.ndarray:
    """An image as uint8 RGB ``(H, W, 3)``: grayscale repeated, alpha dropped, floats in [0, 1] or [0, 255] scaled."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"A display image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4). Received: {image.shape}")
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

    Examples:
        >>> colorize(np.array([[0.0, 1.0]]), "jet")[0].tolist()
        [[0, 0, 128], [128, 0, 0]]
    """
    colors = matplotlib.colormaps[cmap](np.clip(np.asarray(heatmap, np.float32), 0, 1))[..., :3]
    return np.round(colors * 255).astype(np.uint8)


def resize_linear(values, shape) -> np.ndarray:
    """Linear resize of an n-D array to ``shape`` (one size per axis), half-pixel centres.

    The same sampling as ``tf.image.resize(..., "bilinear")`` (no antialiasing), on any
    number of axes — maps onto photos (2-D), signals (1-D), volumes (3-D) — through the
    one implementation the methods use (:func:`kerasxai.methods.maps.resize_linear`).

    Examples:
        >>> resize_linear(np.array([0.0, 1.0]), (4,)).tolist()
        [0.0, 0.25, 0.75, 1.0]
    """
    out = np.asarray(values, np.float32)
    if out.ndim != len(shape):
        raise ValueError(f"Cannot resize an array of shape {out.shape} to {tuple(shape)}: the ranks differ.")
    if out.shape == tuple(shape):
        return out
    return backend.to_numpy(resize_batch(out[None], tuple(shape)))[0]


def map_state(heat) -> str:
    """``"invalid"`` (NaN or inf), ``"flat"`` (no positive evidence: all zeros), ``"uniform"`` or ``"ok"``.

    Examples:
        >>> map_state(np.zeros((4, 4))), map_state(np.eye(4)), map_state(np.full((4, 4), np.nan))
        ('flat', 'ok', 'invalid')
    """
    heat = np.asarray(heat)
    if not np.all(np.isfinite(heat)):
        return "invalid"
    if heat.size == 0 or float(heat.max()) <= 0:
        return "flat"
    if float(heat.max() - heat.min()) <= 1e-6:
        return "uniform"
    return "ok"


def validate_range(name: str, maps) -> None:
    """Refuses maps outside ``[0, 1]``: the colour scale would lie about them."""
    finite = np.asarray(maps)[np.isfinite(maps)]
    if finite.size and (finite.min() < -1e-3 or finite.max() > 1 + 1e-3):
        raise ValueError(
            f"maps['{name}'] has values from {finite.min():.4g} to {finite.max():.4g}; figures show maps in [0, 1], "
            "as kerasxai's methods return them (not raw=True). Normalise first: kerasxai.methods.maps.normalize(maps)[0]."
        )


def check_maps(maps, n: int, predictions, shape_text: str, what: str = "images") -> None:
    """Refuses maps that are not ``shape_text`` (e.g. ``"(N, H, W)"``) with one map per row and values in
    [0, 1], and ``predictions`` without one entry per row."""
    rank = shape_text.count(",") + 1
    for name, m in maps.items():
        if m.ndim != rank:
            raise ValueError(f"maps['{name}'] must be {shape_text} or one map. Received: shape {m.shape}")
        if len(m) != n:
            raise ValueError(f"maps['{name}'] has {len(m)} maps for {n} {what}.")
        validate_range(name, m)
    if predictions is not None and len(predictions) != n:
        raise ValueError(f"predictions has {len(predictions)} entries for {n} {what}.")


def per_image(value, n: int, what: str) -> list:
    """``value`` for each of ``n`` rows: a list (or array) gives one per row, anything else is shared."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (list, np.ndarray)):
        if len(value) != n:
            raise ValueError(f"{what} has {len(value)} entries for {n} images.")
        return list(value)
    return [value] * n


def target_label(target) -> str | None:
    """How a target reads in titles: ``281`` -> "class 281", ``(281, "tabby", 0.6)`` -> "tabby (281)".

    Examples:
        >>> target_label(281), target_label((281, "tabby", 0.62)), target_label("cat"), target_label(None)
        ('class 281', 'tabby (281)', 'cat', None)
    """
    if target is None:
        return None
    if isinstance(target, str):
        return target
    if hasattr(target, "describe"):  # a segmentation or detection target
        return target.describe()
    if isinstance(target, (int, np.integer)):
        return f"class {int(target)}"
    if isinstance(target, (tuple, list)) and len(target) >= 2:
        index, name = target[0], target[1]
        return f"{name} ({index})" if name else target_label(index)
    if callable(target):
        return f"score {getattr(target, '__name__', 'function')}"
    return str(target)


def method_of(key: str) -> str:
    """The method a map's key names: ``"ViT saliency"`` (a method named for its model) is ``"saliency"``.

    Examples:
        >>> method_of("ViT saliency"), method_of("gradcam")
        ('saliency', 'gradcam')
    """
    return key.split()[-1] if key else key


def panel_title(method: str, layer, target: str | None) -> str:
    """``"gradcam @ block5_conv3\\nfor tabby (281)"``: the method, where it looked, what it explains."""
    known = method_of(method)  # "ViT gradcam": a method of the table, named for its model
    if isinstance(layer, dict):
        where = layer.get(method, method_where(known))
    else:  # one layer name: the CAMs' layer; gradient methods look at the input, attention methods at every layer
        where = method_where(known, layer)
    title = f"{method} @ {where}" if where else method
    if known in CLASS_AGNOSTIC:
        return title + "\nany class"  # the same map whatever the target
    return title + (f"\nfor {target}" if target else "")


def evidence_label(targets) -> str:
    """The colour scale's label: what 0 and 1 mean, for the target(s) explained (two lines).

    Examples:
        >>> evidence_label(["tabby (281)", "tabby (281)"])
        '0 = least, 1 = most evidence\\nfor tabby (281)'
    """
    named = {t for t in targets if t}
    if len(named) == 1 and all(targets):
        what = named.pop()
    elif named:
        what = "each row's target"
    else:
        what = "the explained class"
    return f"0 = least, 1 = most evidence\nfor {what}"


def scale_colorbar(fig, axes, cmap: str, label: str):
    """A 0..1 colour scale beside ``axes``, labelled with what the colours mean."""
    mappable = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap=cmap)
    bar = fig.colorbar(mappable, ax=list(np.ravel(axes)), location="right", fraction=0.03, pad=0.01, aspect=30, shrink=0.9)
    bar.set_ticks([0, 0.5, 1])
    bar.ax.tick_params(labelsize=7)
    bar.set_label(label, fontsize=8)
    return bar


def warn_invalid(what: str, rows) -> None:
    """Warns that ``what`` has NaN or inf values for ``rows`` (drawn as invalid panels)."""
    import warnings

    if len(rows):
        warnings.warn(f"kerasxai.figures.images: {what} has NaN or inf values for image(s) {list(rows)[:10]}; drawn as "
                      "invalid panels. kerasxai's methods never return those: check where the map came from.",
                      RuntimeWarning, stacklevel=_warn.caller_stacklevel())


def draw_unusable(ax, shape, state: str, text: str | None = None, *, ticks: bool = False) -> None:
    """Marks ``ax`` as showing no map: a grey hatched panel of the image's ``shape`` with the reason."""
    h, w = shape
    ax.imshow(np.full((h, w, 3), 0.94, np.float32), interpolation="nearest")
    ax.add_patch(matplotlib.patches.Rectangle((-0.5, -0.5), w, h, fill=False, hatch="//",
                                              edgecolor=(0.72, 0.72, 0.72), linewidth=0))
    if text is None:
        text = {"flat": FLAT_TEXT, "uniform": "flat:\nthe same value everywhere"}.get(state, "invalid map:\nNaN or inf values")
    color = "#b00020" if state == "invalid" else "#222222"
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8, color=color,
            bbox=dict(boxstyle="round,pad=0.35", facecolor="white", edgecolor=color, linewidth=0.8))
    for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linestyle((0, (3, 2)))
    if not ticks:  # (an axis sharing x with others keeps its ticks: the locator is shared)
        ax.set_xticks([])
        ax.set_yticks([])


def prediction_title(prediction) -> str:
    """A panel's title for a prediction: ``None``, a string, or ``(index, name, probability)``.

    Examples:
        >>> prediction_title((281, "tabby", 0.62)), prediction_title((3, None, 0.5))
        ('tabby: 62.0%', 'class 3: 50.0%')
    """
    if prediction is None:
        return ""
    if isinstance(prediction, str):
        return prediction
    index, name, probability = prediction
    return f"{name or f'class {index}'}: {probability:.1%}"

