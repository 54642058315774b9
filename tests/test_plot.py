"""Figures: pixels, titles and colour scales checked; flat maps marked; nothing opens a window."""

import io
import warnings

import numpy as np
import pytest
import tensorflow as tf

from kerasxai.figures.common import FLAT_TEXT, colorize, resize_linear
from kerasxai.figures.images import overlay, plot_explanations
from kerasxai.figures.nd import plot_signal, plot_volume


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def _colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


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


def test_resize_matches_tensorflow_bilinear_and_numpy_interp():
    heat = np.random.default_rng(0).random((7, 9)).astype("float32")
    for shape in [(30, 45), (5, 4), (7, 20)]:
        expected = tf.image.resize(heat[..., None], shape, method="bilinear").numpy()[..., 0]
        np.testing.assert_allclose(resize_linear(heat, shape), expected, atol=1e-5)
    line = np.array([0.0, 1.0, 0.0, 2.0], np.float32)
    x = np.clip((np.arange(10) + 0.5) * 4 / 10 - 0.5, 0, 3)
    np.testing.assert_allclose(resize_linear(line, (10,)), np.interp(x, np.arange(4), line), atol=1e-6)


def test_rows_titles_and_a_colour_scale_naming_the_target(tmp_path):
    images = np.random.default_rng(0).uniform(0, 1, (3, 16, 16, 3))
    maps = {"saliency": np.random.rand(3, 16, 16), "gradcam": np.random.rand(3, 16, 16)}
    preds = [(281, "tabby", 0.9), (1, "dog", 0.55), "custom title"]
    fig = plot_explanations(images, maps, preds, layer="block5_conv3", targets=[(281, "tabby"), 1, "dog"])
    panels = [ax for ax in fig.axes if ax not in _colorbars(fig)]
    assert len(panels) == 9 and len(_colorbars(fig)) == 1  # one scale: overlays and pixel maps share the colormap
    titles = [ax.get_title() for ax in panels]
    assert titles[:3] == ["tabby: 90.0%", "saliency @ input\nfor tabby (281)", "gradcam @ block5_conv3\nfor tabby (281)"]
    assert titles[4] == "saliency @ input\nfor class 1" and titles[6] == "custom title"
    (bar,) = _colorbars(fig)
    assert bar.get_ylabel() == "0 = least, 1 = most evidence\nfor each row's target" and bar.get_ylim() == (0.0, 1.0)
    assert bar._colorbar.cmap.name == "jet"
    # one target for all rows is named on the scale; without targets it says "the explained class"
    one = plot_explanations(images, {"gradcam": maps["gradcam"]}, targets=(281, "tabby"))
    assert _colorbars(one)[0].get_ylabel() == "0 = least, 1 = most evidence\nfor tabby (281)"
    assert _colorbars(one)[0]._colorbar.cmap.name == "jet"  # the scale shows the overlay's colormap
    anon = plot_explanations(images, {"gradcam": maps["gradcam"]}, layer={"gradcam": "conv2"}, cmap="viridis")
    assert anon.axes[1].get_title() == "gradcam @ conv2"
    assert _colorbars(anon)[0].get_ylabel().endswith("for the explained class")
    fig.savefig(tmp_path / "fig.png")
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _drawn_rgb(fig, ax, x, y):
    """The colour the saved figure shows at ``(x, y)`` (fractions of ``ax``'s width and height, from the top left)."""
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    box = ax.get_window_extent()
    return pixels[int(pixels.shape[0] - (box.y1 - y * box.height)), int(box.x0 + x * box.width)].astype(int)


@pytest.mark.parametrize("cmap", ["jet", "viridis"])
def test_saliency_is_drawn_in_the_colormap_of_the_overlays_and_of_the_one_colour_scale(cmap):
    """Pixel maps and CAM overlays read on one scale: a saliency panel shows the colormap's colours, not grey."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    photo = np.full((64, 64, 3), 128, np.uint8)
    heat = np.full((16, 16), 0.25, np.float32)
    heat[:, 8:] = 1.0
    fig = plot_explanations(photo, {"gradcam": heat, "saliency": heat}, cmap=cmap)
    FigureCanvasAgg(fig)
    sal_ax = fig.axes[2]
    (bar,) = _colorbars(fig)
    assert bar._colorbar.cmap.name == cmap
    expected = {0.25: colorize(np.array([[0.25]]), cmap)[0, 0], 1.0: colorize(np.array([[1.0]]), cmap)[0, 0]}
    assert np.abs(_drawn_rgb(fig, sal_ax, 0.2, 0.5) - expected[0.25]).max() <= 2
    assert np.abs(_drawn_rgb(fig, sal_ax, 0.8, 0.5) - expected[1.0]).max() <= 2
    # the colour scale shows those same colours (1 at its top, 0 at its bottom)
    for value in (0.25, 0.5, 0.95):
        assert np.abs(_drawn_rgb(fig, bar, 0.5, 1 - value) - colorize(np.array([[value]]), cmap)[0, 0]).max() <= 6
    # and the overlay is that colormap blended over the photo
    cam = _drawn_rgb(fig, fig.axes[1], 0.8, 0.5)
    assert np.abs(cam - np.round(0.6 * 128 + 0.4 * expected[1.0])).max() <= 2


def test_flat_map_is_a_marked_panel_not_a_dimmed_photo():
    photo = np.full((20, 30, 3), 200, np.uint8)
    maps = {"gradcam": np.stack([np.zeros((8, 8)), np.eye(8)]), "saliency": np.zeros((2, 8, 8))}
    fig = plot_explanations([photo, photo], maps, targets=3)
    flat_cam, ok_cam, flat_sal = fig.axes[1], fig.axes[4], fig.axes[2]
    for ax in (flat_cam, flat_sal, fig.axes[5]):
        assert FLAT_TEXT in _texts(ax)
        shown = ax.images[0].get_array()
        assert shown.shape[:2] == (20, 30) and np.ptp(shown) == 0  # a plain grey panel, no trace of the photo
        assert ax.patches and ax.patches[0].get_hatch() == "//"
    assert not _texts(ok_cam)
    np.testing.assert_array_equal(ok_cam.images[0].get_array(), overlay(photo, np.eye(8)))


def test_invalid_and_out_of_range_maps_are_refused_loudly():
    photo = np.zeros((8, 8, 3), np.uint8)
    bad = np.full((1, 8, 8), np.nan)
    with pytest.warns(RuntimeWarning, match=r"maps\['gradcam'\] has NaN or inf values for image\(s\) \[0\]") as shown:
        fig = plot_explanations(photo[None], {"gradcam": bad})
    assert shown[0].filename == __file__  # at the caller's line
    assert "invalid map:\nNaN or inf values" in _texts(fig.axes[1])
    with pytest.raises(ValueError, match=r"from 0 to 3.*not raw=True"):
        plot_explanations(photo[None], {"gradcam": np.full((1, 8, 8), 3.0) * np.eye(8)})
    with pytest.raises(ValueError, match="2 maps for 3 images"):
        plot_explanations(np.zeros((3, 8, 8, 3)), {"gradcam": np.zeros((2, 8, 8))})
    with pytest.raises(ValueError, match="targets has 2 entries for 3 images"):
        plot_explanations(np.zeros((3, 8, 8, 3)), {"gradcam": np.zeros((3, 8, 8))}, targets=[1, 2])


def test_photos_keep_their_aspect_ratio_with_the_map_resized_onto_them():
    rng = np.random.default_rng(1)
    wide, tall = rng.integers(0, 255, (30, 60, 3), dtype=np.uint8), rng.integers(0, 255, (50, 20, 3), dtype=np.uint8)
    heat = rng.random((2, 16, 16)).astype("float32")  # at the model's input resolution
    fig = plot_explanations([wide, tall], {"gradcam": heat, "saliency": heat})
    for row, photo in enumerate([wide, tall]):
        image_ax, cam_ax, sal_ax = fig.axes[3 * row: 3 * row + 3]
        np.testing.assert_array_equal(image_ax.images[0].get_array(), photo)
        # the overlay, recomputed with TensorFlow's resize: the map stretched back onto the photo
        big = tf.image.resize(heat[row][..., None], photo.shape[:2], method="bilinear").numpy()[..., 0]
        jet = np.asarray(__import__("matplotlib").colormaps["jet"](big)[..., :3] * 255).round()
        expected = np.clip(np.round(0.6 * photo + 0.4 * jet), 0, 255)
        assert np.abs(cam_ax.images[0].get_array().astype(int) - expected).max() <= 1
        np.testing.assert_array_equal(sal_ax.images[0].get_array(), colorize(big, "jet"))  # the map, coloured
        fig.savefig(io.BytesIO(), format="png")  # lays the figure out
        box = cam_ax.get_position()
        width, height = box.width * fig.get_figwidth(), box.height * fig.get_figheight()
        assert abs(width / height - photo.shape[1] / photo.shape[0]) < 0.05  # drawn at the photo's aspect


def test_one_image_with_its_title_alone():
    fig = plot_explanations(np.zeros((8, 8, 3), np.uint8), {"gradcam": np.eye(8)}, (281, "tabby", 0.62))
    assert fig.axes[0].get_title() == "tabby: 62.0%"
    assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


def test_layer_views_and_feature_maps():
    import keras

    import kerasxai
    from kerasxai.figures.images import depth_layers, plot_feature_maps, plot_layer_views

    model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=3)
    assert depth_layers(model) == ["block1_conv1", "block3_conv3", "block5_conv3"]
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    display = [(x[0] * 255).astype(np.uint8), np.full((20, 48, 3), 90, np.uint8)]  # any sizes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights: some maps may be flat
        fig = plot_layer_views(model, display, x)
        top = kerasxai.top_k(model, x, k=1)
        reference = kerasxai.layercam(model, x, target=[r[0][0] for r in top], layer="block3_conv3")
    panels = [ax for ax in fig.axes if ax not in _colorbars(fig)]
    assert len(panels) == 8 and len(_colorbars(fig)) == 1
    c, _, p = top[0][0]
    assert panels[0].get_title() == f"class {c}: {p:.1%}"
    assert [ax.get_title() for ax in panels[1:4]] == [f"layercam @ {name}\nfor class {c}" for name in depth_layers(model)]
    if not _texts(panels[6]):  # the second image's block3 view is the reference map resized onto a 20x48 photo
        np.testing.assert_array_equal(panels[6].images[0].get_array(), overlay(display[1], reference[1], alpha=0.5))
    grid = plot_feature_maps(model, x[0], "block2_conv1", n=10)
    shown = [ax for ax in grid.axes if ax.images]
    assert len(shown) == 10
    acts = keras.ops.convert_to_numpy(keras.Model(model.input, model.get_layer("block2_conv1").output)(x[:1]))[0]
    strongest = np.argsort(-acts.mean(axis=(0, 1)), kind="stable")[0]
    assert shown[0].get_title().startswith(f"#{strongest} ")


def test_signal_strips_follow_the_map_and_mark_flat_ones():
    t = np.arange(300)
    signals = np.stack([np.sin(t / 10.0), np.cos(t / 7.0)])[..., None].repeat(2, axis=-1)  # (2, 300, 2)
    cam = np.stack([np.linspace(0, 1, 50), np.zeros(50)])  # at the model's length, 50
    fig = plot_signal(signals, {"gradcam": cam, "saliency": np.ones((2, 50)) * np.linspace(1, 0, 50)},
                      [(1, "arrhythmia", 0.9), (0, "normal", 0.6)], layer="conv1d_2", targets=[1, 0],
                      channel_names=["I", "II"])
    bars = _colorbars(fig)
    rows = [ax for ax in fig.axes if ax not in bars]
    assert len(rows) == 6 and len(bars) == 1
    sig, cam_strip, sal_strip = rows[:3]
    assert len(sig.lines) == 2 and sig.get_title(loc="left") == "arrhythmia: 90.0% · explains class 1"
    assert cam_strip.get_ylabel() == "gradcam @ conv1d_2" and sal_strip.get_ylabel() == "saliency @ input"
    x = np.clip((t + 0.5) * 50 / 300 - 0.5, 0, 49)
    np.testing.assert_allclose(cam_strip.images[0].get_array()[0], np.interp(x, np.arange(50), cam[0]), atol=1e-6)
    assert "flat: no positive evidence" in _texts(rows[4])  # second signal's gradcam strip
    assert len(rows[5].get_xticks()) > 0 and rows[5].get_xlabel() == "time step"  # ticks kept under each signal
    assert bars[0].get_ylabel() == "0 = least, 1 = most evidence\nfor each row's target"
    # saliency's strip is coloured like gradcam's and the scale: one colormap for every method
    assert sal_strip.images[0].get_cmap().name == cam_strip.images[0].get_cmap().name == bars[0]._colorbar.cmap.name == "jet"
    one = plot_signal(np.sin(t / 5.0), np.linspace(0, 1, 300), method="layercam")  # one (T,) signal and map
    assert len([ax for ax in one.axes if ax.images]) == 1


def test_volume_slices_include_the_peak_and_flat_volumes_are_marked():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(20, 24, 24)).astype("float32")
    heat = np.zeros((10, 12, 12), np.float32)
    heat[7, 3, 9] = 1.0  # peak near slice 14-15 of 20, upper right
    fig = plot_volume(volume, heat, n_slices=5, method="gradcam", layer="conv3d", target=(1, "tumour"),
                      prediction=(1, "tumour", 0.8))
    panels = [ax for ax in fig.axes if ax.images]
    titles = [ax.get_title() for ax in panels]
    assert len(panels) == 5 and sum("(peak)" in title for title in titles) == 1
    peak_ax = next(ax for ax in panels if "(peak)" in ax.get_title())
    k = int(peak_ax.get_title().split()[1])
    big = resize_linear(heat, (20, 24, 24))
    assert k == int(np.argmax(big.max(axis=(1, 2))))
    red = peak_ax.images[0].get_array()[..., 0].astype(int) - peak_ax.images[0].get_array()[..., 2]
    y, x = np.unravel_index(np.argmax(red), red.shape)
    assert abs(y - 3 * 2) <= 2 and abs(x - 9 * 2) <= 2  # the hot spot where the map put it
    assert "gradcam @ conv3d for tumour (1)" in fig.get_suptitle() and "tumour: 80.0%" in fig.get_suptitle()
    assert len(_colorbars(fig)) == 1 and _colorbars(fig)[0]._colorbar.cmap.name == "jet"
    sal = plot_volume(volume, heat, n_slices=5, method="saliency")  # a pixel method: the same overlay, same colours
    np.testing.assert_array_equal(next(ax for ax in sal.axes if "(peak)" in ax.get_title()).images[0].get_array(),
                                  peak_ax.images[0].get_array())
    flat = plot_volume(volume, np.zeros_like(heat), n_slices=3, axis=2, method="gradcam")
    assert "FLAT MAP" in flat.get_suptitle() and not _colorbars(flat)
    shown = [ax for ax in flat.axes if ax.images]
    assert all("flat: no positive\nevidence" in _texts(ax) for ax in shown)
    assert shown[0].images[0].get_array().shape == (20, 24, 3)  # slices along the last axis: (D, H)
    with pytest.raises(ValueError, match="channel=3 but the volume has 2 channels"):
        plot_volume(np.zeros((4, 4, 4, 2)), np.zeros((4, 4, 4)), channel=3)


def test_a_class_agnostic_method_is_not_titled_with_a_class():
    from kerasxai.figures.common import panel_title

    assert panel_title("eigencam", "conv2", "cross (1)") == "eigencam @ conv2\nany class"
    assert panel_title("gradcam", "conv2", "cross (1)") == "gradcam @ conv2\nfor cross (1)"
    assert panel_title("rise", "conv2", "cross (1)") == "rise @ input\nfor cross (1)"


def test_maps_named_for_their_model_are_drawn_as_their_method_with_the_patch_grid():
    """"ViT saliency" is saliency: drawn as a pixel map, titled @ input, no patch grid over it."""
    from kerasxai.figures.images import plot_explanations

    imgs = np.zeros((1, 32, 32, 3), np.uint8)
    maps = {"CNN gradcam": np.random.rand(1, 32, 32), "ViT saliency": np.random.rand(1, 32, 32),
            "ViT attention_rollout": np.random.rand(1, 32, 32)}
    fig = plot_explanations(imgs, maps, layer={"CNN gradcam": "conv"}, targets=1, patch_grid=(4, 4, 1))
    axes = fig.axes[:4]
    assert [ax.get_title() for ax in axes[1:]] == ["CNN gradcam @ conv\nfor class 1", "ViT saliency @ input\nfor class 1",
                                                   "ViT attention_rollout @ attention\nany class"]
    assert [len(ax.lines) for ax in axes] == [6, 6, 0, 6]  # 3 + 3 grid lines; none over the pixel map
    with pytest.raises(ValueError, match="patch_grid is \\(rows, columns\\)"):
        plot_explanations(imgs, maps, patch_grid=4)
