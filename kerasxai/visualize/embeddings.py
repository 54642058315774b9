"""What a layer has learned, through its embeddings: features, 2-D projections, nearest neighbours.

- :func:`layer_embeddings`: ``(N, K)`` features of a layer (nested bases
  included) for a set of images, pooled over the spatial axes, computed in
  batches by one compiled forward step, so memory stays bounded by the batch.
- :func:`project`: a 2-D projection with scikit-learn (PCA, t-SNE) or
  umap-learn (``pip install kerasxai[umap]``).
- :func:`nearest_neighbors`: the images closest to a query in a layer's space.

Figures of these are in :mod:`kerasxai.visualize.plots` (``plot_embeddings``,
``plot_layer_embeddings``, ``plot_neighbors``).

Examples:
    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name="conv"),
    ...                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    >>> x = np.random.default_rng(0).random((10, 16, 16, 3)).astype("float32")
    >>> features = layer_embeddings(model, x, "conv", batch_size=4)
    >>> features.shape, project(features, "pca").shape
    ((10, 4), (10, 2))
    >>> nearest_neighbors(features, [0], k=2)[0].shape
    (1, 2)
"""

from __future__ import annotations

import importlib

import numpy as np
from keras import ops

from kerasxai import backend
from kerasxai.visualize.probing import cached_step, layer_probe

POOLS = ("avg", "max", None)
METHODS = ("pca", "tsne", "umap")


def _pooled(activation, pool):
    axes = tuple(range(1, len(activation.shape) - 1))
    if not axes:  # a flat (batch, K) output: nothing to pool
        return activation
    if pool == "avg":
        return ops.mean(activation, axis=axes)
    if pool == "max":
        return ops.max(activation, axis=axes)
    return ops.reshape(activation, (ops.shape(activation)[0], -1))


def _batches(images, batch_size, rank):
    """Float32 NumPy batches from an array (one image or a batch) or an iterable of batches
    (``x`` or ``(x, y, ...)``)."""
    if hasattr(images, "shape") and not hasattr(images, "element_spec"):
        array = np.asarray(images, np.float32)
        if array.ndim == rank - 1:  # one image
            array = array[None]
        for start in range(0, len(array), batch_size):
            yield array[start : start + batch_size]
        return
    for batch in images:  # tf.data.Dataset, a generator, a list of batches
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        yield np.asarray(backend.to_numpy(x), np.float32)


def layer_embeddings(model, images, layer=None, *, pool="avg", batch_size: int = 64) -> np.ndarray:
    """``(N, K)`` features of ``layer`` for ``images``, computed ``batch_size`` at a time.

    Args:
        model: a Keras model (one input, one output).
        images: a batch ``(N, H, W, C)`` preprocessed for the model (or one
            image ``(H, W, C)``), or an iterable of such batches (a ``tf.data.Dataset`` of images or of
            ``(images, labels)`` pairs, a generator).
        layer: a layer name or Layer (nested bases included for spatial
            layers; a Dense/pooling layer of the outer model), or ``None`` for
            the logits.
        pool: for a spatial output ``(N, h, w, K)``: ``"avg"`` (global average,
            K features), ``"max"`` (global max) or ``None`` (flattened,
            ``h * w * K`` features). Ignored for a flat output.
        batch_size: images per forward pass (bounds memory).

    Returns:
        float32 ``(N, K)``.

    Examples:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, name="conv"),
        ...                           keras.layers.Flatten(), keras.layers.Dense(3, name="dense")])
        >>> x = np.zeros((5, 8, 8, 3), "float32")
        >>> [layer_embeddings(model, x, "conv", pool=p).shape for p in ("avg", "max", None)]
        [(5, 2), (5, 2), (5, 72)]
        >>> layer_embeddings(model, x, "dense").shape
        (5, 3)
    """
    if pool not in POOLS:
        raise ValueError(f"pool must be 'avg', 'max' or None. Received: {pool!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1. Received: {batch_size}")
    probe = layer_probe(model, layer)

    def build():
        def forward(x):
            acts, logits = probe.call(x)
            features = _pooled(acts[0], pool) if acts else logits
            return ops.zeros((1,)), ops.cast(features, "float32")

        specs = [((None,) + tuple(probe.input_shape[1:]), "float32")]
        return backend.compile_step(forward, probe.variables, post=lambda aux, _: aux, specs=specs)

    step = cached_step(model, ("embeddings", probe.layer_name, pool), build)
    expected = tuple(probe.input_shape[1:])
    out = []
    for batch in _batches(images, int(batch_size), len(probe.input_shape)):
        if batch.ndim != len(probe.input_shape) or (
            None not in expected and batch.shape[1:] != expected
        ):
            raise ValueError(f"images have shape {batch.shape[1:]} per image, but the model expects {expected}. "
                             "Resize and preprocess them for the model (kerasxai.load_images does both).")
        out.append(backend.to_numpy(step(batch)))
    if not out:
        raise ValueError("No images given.")
    return np.concatenate(out).astype(np.float32)


def _sklearn(module: str, name: str):
    try:
        return getattr(importlib.import_module(f"sklearn.{module}"), name)
    except ImportError:
        raise ImportError(f"{name} needs scikit-learn: pip install 'kerasxai[embeddings]' "
                          "(or pip install scikit-learn).") from None


def project(features, method: str = "pca", *, seed: int = 0, **options) -> np.ndarray:
    """``(N, 2)`` projection of ``(N, K)`` features by PCA, t-SNE or UMAP.

    Args:
        features: ``(N, K)`` array (e.g. from :func:`layer_embeddings`).
        method: ``"pca"`` (scikit-learn, linear, fast), ``"tsne"`` (scikit-learn;
            perplexity capped below N / 3 for small sets) or ``"umap"`` (umap-learn,
            ``pip install kerasxai[umap]``).
        seed: random state of the projection.
        options: passed to the scikit-learn / umap-learn estimator.

    Examples:
        >>> project(np.eye(5, 3), "pca").shape
        (5, 2)
    """
    x = np.asarray(features, np.float32)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"features must be (N, K) with N >= 3 points. Received shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf: a projection of them would be meaningless. Check the "
                         "model and the images (were they preprocessed for this model?).")
    if method == "pca":
        PCA = _sklearn("decomposition", "PCA")  # noqa: N806
        return PCA(n_components=2, random_state=seed, **options).fit_transform(x).astype(np.float32)
    if method == "tsne":
        TSNE = _sklearn("manifold", "TSNE")  # noqa: N806
        options.setdefault("perplexity", min(30.0, (len(x) - 1) / 3.0))
        options.setdefault("init", "pca")
        return TSNE(n_components=2, random_state=seed, **options).fit_transform(x).astype(np.float32)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise ImportError("method='umap' needs umap-learn: pip install 'kerasxai[umap]' "
                              "(or pip install umap-learn). 'pca' and 'tsne' need only scikit-learn.") from None
        options.setdefault("n_neighbors", min(15, len(x) - 1))
        return umap.UMAP(n_components=2, random_state=seed, **options).fit_transform(x).astype(np.float32)
    raise ValueError(f"Unknown projection method '{method}'. Expected one of: {', '.join(METHODS)}.")


def nearest_neighbors(features, queries, k: int = 5, *, metric: str = "cosine"):
    """The ``k`` nearest images to each query in a layer's feature space.

    Args:
        features: ``(N, K)`` features of the images searched.
        queries: indices into ``features`` (each query's own image is left out
            of its neighbours), or ``(Q, K)`` feature vectors of other images.
        k: neighbours per query.
        metric: any scikit-learn metric (``"cosine"``, ``"euclidean"``, ...).

    Returns:
        ``(indices, distances)``, each ``(Q, k)``, nearest first.

    Examples:
        >>> f = np.array([[0.0, 1.0], [0.0, 2.0], [1.0, 0.0]])
        >>> nearest_neighbors(f, [0], k=1)[0].tolist()
        [[1]]
    """
    NearestNeighbors = _sklearn("neighbors", "NearestNeighbors")  # noqa: N806
    features = np.asarray(features, np.float32)
    q = np.asarray(queries)
    by_index = q.ndim == 1 and np.issubdtype(q.dtype, np.integer)
    extra = 1 if by_index else 0
    if not 1 <= k <= len(features) - extra:
        raise ValueError(f"k must be between 1 and {len(features) - extra} for {len(features)} images. Received: {k}")
    if by_index:
        if q.size and (q.min() < 0 or q.max() >= len(features)):
            raise ValueError(f"query indices must be in 0..{len(features) - 1}. Received: {q.tolist()}")
        vectors = features[q]
    else:
        vectors = np.atleast_2d(q).astype(np.float32)
    search = NearestNeighbors(n_neighbors=k + extra, metric=metric).fit(features)
    distances, indices = search.kneighbors(vectors)
    if by_index:  # drop each query itself (wherever it landed among equals)
        keep = indices != q[:, None]
        rows = [np.flatnonzero(r)[:k] for r in keep]
        indices = np.stack([i[r] for i, r in zip(indices, rows)])
        distances = np.stack([d[r] for d, r in zip(distances, rows)])
    return indices, distances.astype(np.float32)
