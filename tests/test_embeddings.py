"""Layer embeddings against plain sub-models, projections against scikit-learn and NumPy, neighbours, figures."""

import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasxai.visualize.embeddings import layer_embeddings, nearest_neighbors, project
from kerasxai.visualize.embedding_plots import depth_picks, plot_embeddings, plot_layer_embeddings, plot_neighbors


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(7).uniform(-1, 1, (7, 32, 32, 3)).astype("float32")


def test_embeddings_equal_a_plain_submodel_pooled(flatten_model, batch):
    sub = keras.Model(flatten_model.inputs, flatten_model.get_layer("conv2").output)
    maps = sub.predict(batch, verbose=0)  # (7, 16, 16, 8)
    np.testing.assert_allclose(layer_embeddings(flatten_model, batch, "conv2", batch_size=3),
                               maps.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer_embeddings(flatten_model, batch, "conv2", pool="max", batch_size=3),
                               maps.max(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer_embeddings(flatten_model, batch, "conv2", pool=None, batch_size=4),
                               maps.reshape(7, -1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer_embeddings(flatten_model, batch[3], "conv2"),  # one image
                               maps[3:4].mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_nested_layer_and_dense_layer(nested_sequential, batch):
    base = nested_sequential.get_layer("base")
    inner = keras.Model(base.inputs, base.get_layer("conv1").output).predict(batch, verbose=0)
    np.testing.assert_allclose(layer_embeddings(nested_sequential, batch, "conv1", batch_size=2),
                               inner.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    dense = nested_sequential.layers[2]  # Dense(16, relu) after the base and Flatten
    kernel, bias = dense.get_weights()
    flat = base.predict(batch, verbose=0).reshape(len(batch), -1)
    np.testing.assert_allclose(layer_embeddings(nested_sequential, batch, dense.name),
                               np.maximum(flat @ kernel + bias, 0), rtol=1e-4, atol=1e-5)


def test_logits_and_batches_from_tf_data(gap_model, batch):
    labels = np.arange(len(batch))
    dataset = tf.data.Dataset.from_tensor_slices((batch, labels)).batch(3)
    logits = layer_embeddings(gap_model, dataset, None)
    probs = gap_model.predict(batch, verbose=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.softmax(logits)), probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(layer_embeddings(gap_model, (b for b in np.split(batch, [2, 5])), "conv1"),
                               layer_embeddings(gap_model, batch, "conv1"), rtol=1e-6)


def test_pca_equals_scikit_learn_and_numpy_svd():
    from sklearn.decomposition import PCA

    features = np.random.default_rng(0).normal(size=(40, 6)).astype("float32") * [5, 3, 1, 1, 0.5, 0.1]
    points = project(features, "pca")
    np.testing.assert_allclose(points, PCA(n_components=2).fit_transform(features), rtol=1e-4, atol=1e-4)
    centred = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    reference = centred @ vt[:2].T
    signs = np.sign((points * reference).sum(axis=0))  # a component's sign is arbitrary
    np.testing.assert_allclose(points * signs, reference, rtol=1e-3, atol=1e-3)


def test_tsne_is_seeded_and_umap_missing_is_explained(monkeypatch):
    features = np.random.default_rng(1).normal(size=(20, 5)).astype("float32")
    a, b = (project(features, "tsne", seed=3, max_iter=250) for _ in range(2))
    assert a.shape == (20, 2)
    np.testing.assert_array_equal(a, b)
    monkeypatch.setitem(sys.modules, "umap", None)  # as if umap-learn were not installed
    with pytest.raises(ImportError, match=r"pip install 'kerasxai\[umap\]'"):
        project(features, "umap")
    with pytest.raises(ValueError, match="Unknown projection method 'mds'"):
        project(features, "mds")
    with pytest.raises(ValueError, match="NaN or inf"):
        project(np.full((5, 2), np.nan), "pca")


def test_nearest_neighbors_by_brute_force():
    features = np.random.default_rng(2).normal(size=(15, 4)).astype("float32")
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    distances = 1 - unit @ unit.T
    np.fill_diagonal(distances, np.inf)  # a query is not its own neighbour
    indices, found = nearest_neighbors(features, [0, 5], k=3)
    np.testing.assert_array_equal(indices, np.argsort(distances[[0, 5]], axis=1)[:, :3])
    np.testing.assert_allclose(found, np.sort(distances[[0, 5]], axis=1)[:, :3], atol=1e-5)
    outside, _ = nearest_neighbors(features, features[:1] * 2.0, k=1)  # a vector: same direction as #0
    assert outside.tolist() == [[0]]


def test_clear_errors(flatten_model, batch):
    with pytest.raises(ValueError, match="pool must be"):
        layer_embeddings(flatten_model, batch, "conv2", pool="mean")
    with pytest.raises(ValueError, match="No layer named 'conv7'"):
        layer_embeddings(flatten_model, batch, "conv7")
    with pytest.raises(ValueError, match=r"images have shape \(16, 16, 3\) per image"):
        layer_embeddings(flatten_model, batch[:, :16, :16], "conv2")
    with pytest.raises(ValueError, match="k must be between 1 and 14"):
        nearest_neighbors(np.zeros((15, 2)), [0], k=15)


def test_figures(gap_model, batch):
    features = layer_embeddings(gap_model, batch, "conv2")
    display = ((batch + 1) * 127.5).astype(np.uint8)
    labels = np.array([0, 1, 0, 1, 0, 1, 1])
    fig = plot_embeddings(features, labels, thumbnails=display, class_names=["disc", "cross"])
    ax = fig.axes[0]
    assert len(ax.artists) == 7 and [t.get_text() for t in ax.get_legend().get_texts()] == ["disc", "cross"]
    fig = plot_layer_embeddings(gap_model, batch, labels=labels, method="pca")
    assert [a.get_title().split("\n")[0] for a in fig.axes] == ["conv1", "conv2"]  # its two conv layers
    assert depth_picks(["a", "b", "c", "d", "e", "f", "g"]) == ["a", "d", "g"]
    fig = plot_neighbors(display, features, [0, 3], k=2, labels=labels, class_names=["disc", "cross"])
    assert len(fig.axes) == 6 and fig.axes[0].get_title() == "query #0\ndisc"
