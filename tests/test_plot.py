"""Overlays and figures: pixels and axes checked, nothing opens a window."""

import numpy as np
import pytest

from kerasxai.plot import overlay, plot_explanations


def test_overlay_is_red_where_high_and_blue_where_low():
    image = np.full((40, 40, 3), 128, np.uint8)
    heat = np.zeros((10, 10), np.float32)
    heat[:, 5:] = 1.0  # right half hot; resized to the image
    out = overlay(image, heat, cmap="jet", alpha=0.5)
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
    r, g, b = out[20, 35].astype(int)
    assert r > b + 40 and r > g + 40  # hot: red-dominant
    r, g, b = out[20, 3].astype(int)
    assert b > r + 40  # cold: blue-dominant
    # alpha = 0 leaves the image as it is; float images in [0, 1] are accepted
    np.testing.assert_array_equal(overlay(image / 255.0, heat, alpha=0.0), image)


def test_figure_has_one_row_per_image_and_titles(tmp_path):
    images = np.random.default_rng(0).uniform(0, 1, (3, 16, 16, 3))
    maps = {"saliency": np.random.rand(3, 16, 16), "gradcam": np.random.rand(3, 16, 16)}
    preds = [(281, "tabby", 0.9), (1, "dog", 0.55), "custom title"]
    fig = plot_explanations(images, maps, preds)
    assert len(fig.axes) == 9
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["tabby: 90.0%", "saliency", "gradcam"] and titles[6] == "custom title"
    path = tmp_path / "fig.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 maps for 3 images"):
        plot_explanations(np.zeros((3, 8, 8, 3)), {"gradcam": np.zeros((2, 8, 8))})


def test_layer_views_and_feature_maps():
    import keras

    from kerasxai.plot import depth_layers, plot_feature_maps, plot_layer_views

    model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=3)
    assert depth_layers(model) == ["block1_conv1", "block3_conv3", "block5_conv3"]
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    fig = plot_layer_views(model, (x * 255).astype(np.uint8), x)
    assert len(fig.axes) == 8
    assert [ax.get_title() for ax in fig.axes[1:4]] == ["layercam\nblock1_conv1", "layercam\nblock3_conv3", "layercam\nblock5_conv3"]
    grid = plot_feature_maps(model, x[0], "block2_conv1", n=10)
    shown = [ax for ax in grid.axes if ax.images]
    assert len(shown) == 10
    acts = keras.Model(model.input, model.get_layer("block2_conv1").output)(x[:1]).numpy()[0]
    strongest = np.argsort(-acts.mean(axis=(0, 1)), kind="stable")[0]
    assert shown[0].get_title().startswith(f"#{strongest} ")


def test_figures_display_in_notebooks_without_pyplot():
    fig = plot_explanations(np.zeros((1, 8, 8, 3), np.uint8), {"gradcam": np.zeros((1, 8, 8))})
    assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
