"""Figures of layer embeddings: 2-D projections coloured by class, with thumbnails; layers side by
side; nearest neighbours.

The features come from :func:`kerasxai.visualize.embeddings.layer_embeddings`, the
projections from :func:`kerasxai.visualize.embeddings.project` (scikit-learn's PCA and
t-SNE, umap-learn's UMAP).

Examples:
    >>> import numpy as np
    >>> features = np.random.default_rng(0).normal(size=(30, 8))
    >>> fig = plot_embeddings(features, labels=np.arange(30) % 3, class_names=["a", "b", "c"])
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['a', 'b', 'c']
"""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.offsetbox import AnnotationBbox, OffsetImage

from kerasxai.visualize.embeddings import layer_embeddings, nearest_neighbors, project
from kerasxai.figures.images import Figure
from kerasxai.visualize.probing import spatial_layers

_METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def _label_name(label, class_names):
    if class_names is None:
        return str(label)
    try:
        return str(class_names[int(label)])
    except (IndexError, KeyError, TypeError, ValueError):
        return str(label)


def _draw_embedding(ax, points, labels=None, *, class_names=None, thumbnails=None, max_thumbnails: int = 120,
                   seed: int = 0, legend: bool = True):
    """Draws 2-D ``points`` on ``ax``: coloured by ``labels``, with image thumbnails if given."""
    points = np.asarray(points)
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=12, color="tab:blue", alpha=0.8)
    else:
        labels = np.asarray(labels)
        if len(labels) != len(points):
            raise ValueError(f"labels has {len(labels)} entries for {len(points)} points.")
        kinds = list(dict.fromkeys(labels.tolist()))
        colors = matplotlib.colormaps["tab10" if len(kinds) <= 10 else "tab20"]
        for i, kind in enumerate(kinds):
            where = labels == kind
            ax.scatter(points[where, 0], points[where, 1], s=12, color=colors(i % colors.N), alpha=0.85,
                       label=_label_name(kind, class_names))
        if legend:
            ax.legend(fontsize=7, markerscale=1.5, loc="best", framealpha=0.8)
    if thumbnails is not None:
        thumbnails = np.asarray(thumbnails)
        if len(thumbnails) != len(points):
            raise ValueError(f"thumbnails has {len(thumbnails)} images for {len(points)} points.")
        rng = np.random.default_rng(seed)
        picks = np.arange(len(points)) if len(points) <= max_thumbnails else rng.choice(
            len(points), max_thumbnails, replace=False)
        zoom = 18.0 / max(thumbnails.shape[1:3])  # about 18 points wide, whatever the image size
        for i in picks:
            image = thumbnails[i]
            box = OffsetImage(image[..., 0] if image.shape[-1] == 1 else image, zoom=zoom,
                              cmap="gray" if image.shape[-1] == 1 else None)
            ax.add_artist(AnnotationBbox(box, points[i], frameon=False, pad=0.0))
    ax.set_xticks([])
    ax.set_yticks([])


def plot_embeddings(features, labels=None, *, method: str = "pca", thumbnails=None, class_names=None,
                    title=None, seed: int = 0, cell_size: float = 5.0, max_thumbnails: int = 120,
                    **options) -> Figure:
    """A 2-D projection of ``(N, K)`` features, coloured by class (or prediction), optionally with thumbnails.

    Args:
        features: ``(N, K)`` features, e.g. from :func:`kerasxai.visualize.embeddings.layer_embeddings`.
        labels: ``(N,)`` class (or predicted class) of each point.
        method: ``"pca"``, ``"tsne"`` or ``"umap"`` (see :func:`kerasxai.visualize.embeddings.project`).
        thumbnails: uint8 ``(N, H, W, 3)`` display images drawn at their points
            (at most ``max_thumbnails``, a seeded random subset).
        class_names: names of the label values (a list or dict).
        title: the axes' title.
        options: passed to the projection's estimator (e.g. ``max_iter=250`` for t-SNE).

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> fig = plot_embeddings(rng.normal(size=(12, 4)), thumbnails=rng.integers(0, 255, (12, 8, 8, 3), np.uint8))
        >>> len(fig.axes[0].artists)
        12
    """
    points = project(features, method, seed=seed, **options)
    fig = Figure(figsize=(cell_size, cell_size), layout="constrained")
    ax = fig.subplots()
    _draw_embedding(ax, points, labels, class_names=class_names, thumbnails=thumbnails, seed=seed,
                   max_thumbnails=max_thumbnails)
    ax.set_title(title or f"{_METHOD_NAMES.get(method, method)} of {np.shape(features)[1]} features", fontsize=9)
    return fig


def depth_picks(names, count: int = 3) -> list:
    """``count`` names spread from first to last (first, middle, last for 3).

    Examples:
        >>> depth_picks(["a", "b", "c", "d", "e"])
        ['a', 'c', 'e']
    """
    if not names:
        return []
    picks = np.unique(np.linspace(0, len(names) - 1, count).round().astype(int))
    return [names[i] for i in picks]


def plot_layer_embeddings(model, images, layers=None, labels=None, *, method: str = "pca", pool="avg",
                          thumbnails=None, class_names=None, batch_size: int = 64, seed: int = 0,
                          cell_size: float = 4.0) -> Figure:
    """The same images embedded by several layers, side by side: how the classes separate with depth.

    Args:
        model: the model.
        images: ``(N, H, W, C)`` preprocessed for the model (or an iterable of batches).
        layers: layer names; default the first, middle and last spatial layers.
        labels: ``(N,)`` class of each image, for the colours.
        method, thumbnails, class_names, seed: as in :func:`plot_embeddings`.
        pool: as in :func:`kerasxai.visualize.embeddings.layer_embeddings`.

    Examples:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name="c1"),
        ...     keras.layers.Conv2D(4, 3, name="c2"), keras.layers.Conv2D(4, 3, name="c3"),
        ...     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
        >>> x = np.random.default_rng(0).random((12, 16, 16, 3)).astype("float32")
        >>> [ax.get_title().split(chr(10))[0] for ax in plot_layer_embeddings(model, x).axes]
        ['c1', 'c2', 'c3']
    """
    layers = list(layers) if layers is not None else depth_picks(spatial_layers(model))
    if not layers:
        raise ValueError(f"Model '{model.name}' has no spatial layer to embed; pass layers=[...] (e.g. a Dense layer).")
    if not hasattr(images, "shape"):  # an iterable of batches is read once, then reused for every layer
        images = np.concatenate([np.asarray(b[0] if isinstance(b, (tuple, list)) else b) for b in images])
    fig = Figure(figsize=(cell_size * len(layers), cell_size + 0.3), layout="constrained")
    axes = fig.subplots(1, len(layers), squeeze=False)[0]
    for i, (ax, layer) in enumerate(zip(axes, layers)):
        features = layer_embeddings(model, images, layer, pool=pool, batch_size=batch_size)
        points = project(features, method, seed=seed)
        _draw_embedding(ax, points, labels, class_names=class_names, thumbnails=thumbnails, seed=seed,
                       legend=i == len(layers) - 1)
        ax.set_title(f"{layer}\n{_METHOD_NAMES.get(method, method)} of {features.shape[1]} features", fontsize=9)
    return fig


def plot_neighbors(display, features, queries, k: int = 5, *, metric: str = "cosine", labels=None,
                   class_names=None, cell_size: float = 1.4, title=None) -> Figure:
    """Each query image, then its ``k`` nearest images in a layer's feature space (distance above each).

    Args:
        display: uint8 ``(N, H, W, 3)`` images for display, aligned with ``features``.
        features: ``(N, K)`` features of those images.
        queries: indices of the query images (each is left out of its own neighbours).
        labels: ``(N,)`` classes, shown in the titles.

    Examples:
        >>> import numpy as np
        >>> display = np.zeros((6, 8, 8, 3), np.uint8)
        >>> f = np.arange(12, dtype="float32").reshape(6, 2)
        >>> fig = plot_neighbors(display, f, [0], k=2, metric="euclidean")
        >>> [ax.get_title().split(chr(10))[0] for ax in fig.axes]
        ['query #0', '#1', '#2']
    """
    display = np.asarray(display)
    queries = np.atleast_1d(np.asarray(queries, int))
    indices, distances = nearest_neighbors(features, queries, k, metric=metric)
    fig = Figure(figsize=(cell_size * (k + 1), cell_size * len(queries) + 0.5), layout="constrained")
    axes = fig.subplots(len(queries), k + 1, squeeze=False)

    def label(i):
        return "" if labels is None else "\n" + _label_name(np.asarray(labels)[i], class_names)

    for row, q in enumerate(queries):
        axes[row, 0].imshow(display[q])
        axes[row, 0].set_title(f"query #{q}{label(q)}", fontsize=8)
        for col, (i, d) in enumerate(zip(indices[row], distances[row]), start=1):
            axes[row, col].imshow(display[i])
            axes[row, col].set_title(f"#{i}{label(i)}\nd={d:.3g}", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"Nearest neighbours ({metric} distance)", fontsize=9)
    return fig
