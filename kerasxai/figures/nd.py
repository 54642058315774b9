"""Figures for 1-D and 3-D models: signals with heat strips, volumes as grids of slices.

The same rules as the image figures (:mod:`kerasxai.figures.images`): a colour scale
that says what 0 and 1 mean, flat maps marked as such, titles that name the
method, the layer and the target, maps resized onto the data they explain.
Both are also available as ``kerasxai.plot_signal`` and ``kerasxai.plot_volume``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from kerasxai.figures.overlay import overlay
from kerasxai.figures.common import (
    MAP_CMAP,
    Figure,
    check_maps,
    draw_unusable,
    evidence_label,
    map_state,
    panel_title,
    per_image,
    prediction_title,
    resize_linear,
    scale_colorbar,
    target_label,
    validate_range,
    warn_invalid,
)


def plot_signal(
    signals,
    maps,
    predictions: Sequence | None = None,
    *,
    method: str | None = None,
    layer=None,
    targets=None,
    channel_names: Sequence[str] | None = None,
    cmap: str = MAP_CMAP,
    width: float = 9.0,
    row_height: float = 1.4,
) -> Figure:
    """Signals (1-D models: ECG, audio features, sensor series) with a heat strip per method under each.

    Args:
        signals: one signal ``(T,)`` or ``(T, C)``, a batch ``(N, T)`` /
            ``(N, T, C)``, or a list of signals of different lengths.
        maps: ``(T',)`` for one signal or ``(N, T')`` maps in ``[0, 1]``, or a
            dict method -> such maps (one strip each); resized (linearly) to
            each signal's length, so maps at the model's input length fit.
        predictions: per signal, a title: a string or ``(index, name, probability)``.
        method: the method's name when ``maps`` is an array (for the strip's label).
        layer: the layer explained (a name, or a dict method -> name).
        targets: the class explained: an int, a name, ``(index, name)``, or a list, one per signal.
        channel_names: a legend for multi-channel signals.

    Returns:
        ``matplotlib.figure.Figure``: per signal, its plot and a strip per method
        (flat maps as marked strips), and a colour scale.

    Examples:
        >>> t = np.linspace(0, 6.28, 200)
        >>> fig = plot_signal(np.sin(t), np.clip(np.sin(t), 0, 1), method="gradcam", layer="conv1d_2", targets=1)
        >>> fig.axes[1].get_ylabel(), fig.axes[-1].get_ylabel()
        ('gradcam @ conv1d_2', '0 = least, 1 = most evidence\\nfor class 1')
    """
    if not isinstance(maps, Mapping):
        maps = {method or "map": maps}
    maps = {name: np.asarray(m, np.float32) for name, m in maps.items()}
    if not maps:
        raise ValueError("maps is empty: give at least one method's maps.")
    single = all(m.ndim == 1 for m in maps.values())
    if single:
        maps = {name: m[None] for name, m in maps.items()}
        signals = [signals]
    signals = [np.asarray(s, np.float32) for s in signals]
    signals = [s[:, None] if s.ndim == 1 else s for s in signals]
    n, names = len(signals), list(maps)
    for s in signals:
        if s.ndim != 2:
            raise ValueError(f"A signal must be (T,) or (T, C). Received: shape {s.shape}")
    check_maps(maps, n, predictions, "(N, T)", "signals")
    labels = [target_label(t) for t in per_image(targets, n, "targets")]
    per_row = 1 + len(names)
    ratios = ([3.0] + [0.55] * len(names)) * n
    fig = Figure(figsize=(width, n * row_height * (1 + 0.3 * len(names)) + 0.3), layout="constrained")
    axes = fig.subplots(n * per_row, 1, gridspec_kw={"height_ratios": ratios})
    strips = []
    for i, signal in enumerate(signals):
        length = len(signal)
        ax = axes[i * per_row]
        for c in range(signal.shape[1]):
            label = channel_names[c] if channel_names is not None and c < len(channel_names) else f"channel {c}"
            ax.plot(np.arange(length), signal[:, c], linewidth=0.9, label=label)
        if signal.shape[1] > 1:
            ax.legend(fontsize=7, loc="upper right", ncols=min(signal.shape[1], 6))
        ax.set_xlim(-0.5, length - 0.5)
        ax.tick_params(labelsize=7, labelbottom=False)
        parts = [p for p in (prediction_title(predictions[i]) if predictions is not None else "",
                             f"explains {labels[i]}" if labels[i] else "") if p]
        ax.set_title(" · ".join(parts), fontsize=9, loc="left")
        for j, name in enumerate(names, start=1):
            strip = axes[i * per_row + j]
            strip.sharex(ax)
            heat = resize_linear(maps[name][i], (length,))
            state = map_state(heat)
            if state == "ok":
                strip.imshow(heat[None], aspect="auto", cmap=cmap, vmin=0, vmax=1, interpolation="nearest",
                             extent=(-0.5, length - 0.5, 0.5, -0.5))
                strips.append(strip)
            else:
                if state == "invalid":
                    warn_invalid(f"maps['{name}']", [i])
                text = {"flat": "flat: no positive evidence", "uniform": "flat: the same value everywhere"}
                draw_unusable(strip, (1, length), state, text.get(state, "invalid map: NaN or inf values"), ticks=True)
                strip.set_aspect("auto")
            strip.set_yticks([])
            strip.set_ylabel(panel_title(name, layer, None), rotation=0, ha="right", va="center", fontsize=8)
            strip.tick_params(labelsize=7, labelbottom=j == len(names))
            strip.set_xlim(-0.5, length - 0.5)
        axes[(i + 1) * per_row - 1].set_xlabel("time step", fontsize=8)
    scale_colorbar(fig, [axes[i * per_row + j] for i in range(n) for j in range(1, per_row)], cmap,
                   evidence_label(labels))
    return fig


def _display_volume(volume, channel):
    """uint8 RGB ``(D, H, W, 3)`` for display and a note on what is shown."""
    volume = np.asarray(volume)
    if volume.ndim == 4 and volume.shape[-1] == 3 and channel is None:
        v = volume.astype(np.float32)
        if volume.dtype != np.uint8:
            v = v * 255.0 if v.max() <= 1.0 + 1e-6 and v.min() >= 0 else v
        return np.clip(np.round(v), 0, 255).astype(np.uint8), ""
    note = ""
    if volume.ndim == 4:
        channels = volume.shape[-1]
        channel = 0 if channel is None else channel
        if not 0 <= channel < channels:
            raise ValueError(f"channel={channel} but the volume has {channels} channels.")
        note = f", channel {channel} of {channels}" if channels > 1 else ""
        volume = volume[..., channel]
    v = volume.astype(np.float32)
    finite = v[np.isfinite(v)]
    low, high = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 0.0)
    gray = np.clip((v - low) / (high - low), 0, 1) if high > low else np.zeros_like(v)
    gray = np.round(np.nan_to_num(gray) * 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1), note


def _slice_indices(length: int, n_slices: int, peak: int | None) -> list:
    """``n_slices`` evenly spread indices along an axis of ``length``, the ``peak`` among them."""
    n = max(1, min(n_slices, length))
    picks = sorted(set(np.round((np.arange(n) + 0.5) * length / n - 0.5).astype(int).tolist()))
    if peak is not None and peak not in picks:
        picks[int(np.argmin([abs(p - peak) for p in picks]))] = peak
        picks = sorted(set(picks))
    return picks


def plot_volume(
    volume,
    heatmap,
    n_slices: int = 8,
    axis: int = 0,
    *,
    method: str | None = None,
    layer: str | None = None,
    target=None,
    prediction=None,
    channel: int | None = None,
    cmap: str = MAP_CMAP,
    alpha: float = 0.4,
    cols: int | None = None,
    cell_size: float = 1.9,
) -> Figure:
    """A 3-D explanation as a grid of slices with the map overlaid, the slice with the peak always among them.

    Args:
        volume: ``(D, H, W)`` or ``(D, H, W, C)`` (CT, MRI, video as frames);
            3 channels are shown as RGB, otherwise ``channel`` (default 0) in
            grey, scaled to the volume's 0.5-99.5 percentiles.
        heatmap: ``(d, h, w)`` map in ``[0, 1]``; resized (trilinear) onto the volume.
        n_slices: how many slices along ``axis``, evenly spread (the peak's slice replaces the nearest).
        axis: the axis sliced (0, 1 or 2).
        method, layer, target, prediction: for the titles (as in :func:`kerasxai.figures.images.plot_explanations`).

    Returns:
        ``matplotlib.figure.Figure`` with a colour scale. A flat map shows the
        slices without overlay, each marked "flat: no positive evidence".

    Examples:
        >>> vol = np.random.default_rng(0).normal(size=(16, 20, 20))
        >>> heat = np.zeros((8, 10, 10)); heat[6, 5, 5] = 1.0
        >>> fig = plot_volume(vol, heat, n_slices=4, method="gradcam", layer="conv3d_1", target=2)
        >>> [ax.get_title() for ax in fig.axes[:4]]  # evenly spread, and the peak's slice
        ['slice 2', 'slice 6', 'slice 12 (peak)', 'slice 14']
        >>> fig.axes[-1].get_ylabel()
        '0 = least, 1 = most evidence\\nfor class 2'
    """
    volume = np.asarray(volume)
    if volume.ndim not in (3, 4):
        raise ValueError(f"A volume must be (D, H, W) or (D, H, W, C). Received: shape {volume.shape}")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2 (a spatial axis of the volume). Received: {axis}")
    heat = np.asarray(heatmap, np.float32)
    if heat.ndim != 3:
        raise ValueError(f"heatmap must be (D, H, W). Received: shape {heat.shape}")
    validate_range("heatmap", heat)
    rgb, note = _display_volume(volume, channel)
    heat = resize_linear(heat, rgb.shape[:3])
    state = map_state(heat)
    if state == "invalid":
        warn_invalid("heatmap", [0])
    length = rgb.shape[axis]
    peak = None
    if state == "ok":
        peak = int(np.argmax(heat.max(axis=tuple(a for a in range(3) if a != axis))))
    picks = _slice_indices(length, n_slices, peak)
    cols = cols or (len(picks) if len(picks) <= 4 else int(np.ceil(len(picks) / 2)) if len(picks) <= 8
                    else int(np.ceil(np.sqrt(len(picks)))))
    rows = int(np.ceil(len(picks) / cols))
    h, w = np.take(rgb, 0, axis=axis).shape[:2]
    scale = cell_size / max(h, w)
    fig = Figure(figsize=(cols * max(w * scale, 1.0) + 1.3, rows * (max(h * scale, 1.0) + 0.35) + 0.5),
                 layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    label = target_label(target)
    for ax in axes.ravel()[len(picks):]:
        ax.set_axis_off()
    for ax, k in zip(axes.ravel(), picks):
        image, part = np.take(rgb, k, axis=axis), np.take(heat, k, axis=axis)
        if state == "ok":
            ax.imshow(overlay(image, part, cmap=cmap, alpha=alpha))
            ax.set_axis_off()
        else:
            ax.imshow(image)
            text = {"flat": "flat: no positive\nevidence", "uniform": "flat: the same\nvalue everywhere"}
            ax.text(0.5, 0.08, text.get(state, "invalid map:\nNaN or inf"), transform=ax.transAxes, ha="center",
                    va="bottom", fontsize=7, color="#b00020" if state == "invalid" else "#222222",
                    bbox=dict(boxstyle="round,pad=0.3", facecolor="white", edgecolor="#888888", linewidth=0.8))
            for spine in ax.spines.values():
                spine.set_linestyle((0, (3, 2)))
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(f"slice {k}" + (" (peak)" if k == peak else ""), fontsize=8,
                     fontweight="bold" if k == peak else "normal")
    head = panel_title(method or "map", layer, label).replace("\n", " ")
    lines = [prediction_title(prediction), f"{head} · {len(picks)} of {length} slices along axis {axis}{note}"]
    if state != "ok":
        lines.append({"invalid": "INVALID MAP (NaN or inf values): nothing overlaid",
                      "uniform": "FLAT MAP: the same value everywhere, nothing to overlay"}.get(
            state, "FLAT MAP: no positive evidence, nothing to overlay"))
    fig.suptitle("\n".join(line for line in lines if line), fontsize=9)
    if state == "ok":
        scale_colorbar(fig, axes[:, : min(cols, len(picks))], cmap, evidence_label([label]))
    return fig
