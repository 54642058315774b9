"""Loading images: files of several kinds, PIL, arrays, preprocessing per family."""

import keras
import numpy as np
import pytest
from PIL import Image

from kerasxai.data.images import detect_family, load_image, load_images


@pytest.fixture()
def files(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.full((16, 16), 90, np.uint8), "L").save(tmp_path / "gray.jpg", quality=100)
    (tmp_path / "notes.jpg").write_text("this is not an image")
    return tmp_path


def test_rgba_png_and_grayscale_jpeg_become_rgb(files):
    rgba = load_image(files / "rgba.png")
    assert rgba.shape == (20, 30, 3) and rgba.dtype == np.uint8
    assert (rgba[..., 0] == 200).all() and (rgba[..., 1:] == 0).all()
    gray = load_image(files / "gray.jpg", size=(8, 8))
    assert gray.shape == (8, 8, 3)
    assert np.abs(gray.astype(int) - 90).max() <= 2 and (gray[..., 0] == gray[..., 2]).all()


def test_text_file_named_jpg_and_missing_file_name_the_file(files):
    with pytest.raises(ValueError, match=r"notes\.jpg' is not an image file"):
        load_image(files / "notes.jpg")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_images([files / "missing.png"])


def test_arrays_and_pil_images():
    assert load_image(np.ones((4, 4, 1), np.float32)).max() == 255  # floats in [0, 1]
    assert load_image(Image.new("RGB", (5, 3), (1, 2, 3)))[0, 0].tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        load_image(np.zeros((4, 4, 2)))


def test_vgg_preprocessing_keeps_display_image(files):
    model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=2)
    display, x = load_images([files / "rgba.png", files / "gray.jpg"], model, display_side=None)
    assert display.shape == x.shape == (2, 32, 32, 3) and display.dtype == np.uint8
    # caffe: RGB -> BGR, minus the ImageNet mean; display stays RGB 0..255
    expected = display[..., ::-1].astype(np.float32) - np.array([103.939, 116.779, 123.68], np.float32)
    np.testing.assert_allclose(x, expected, atol=1e-4)


def test_display_photos_keep_their_aspect_ratio(files):
    """The model gets its square; the photos to draw on keep their shape (long side at most 512, as a folder run's)."""
    from kerasxai.data.images import DISPLAY_SIDE
    from kerasxai.folder.sources import DISPLAY_SIDE as FOLDER_SIDE

    model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=2)
    photo = np.random.default_rng(0).integers(0, 255, (40, 80, 3), dtype=np.uint8)
    display, x = load_images(photo, model)
    assert x.shape == (1, 32, 32, 3) and display.shape == (1, 40, 80, 3) and display.dtype == np.uint8
    np.testing.assert_array_equal(display[0], photo)  # small enough: the photo itself
    # photos of different shapes: a list, each at its own aspect; large ones shrunk to a long side of 512
    display, x = load_images([photo, np.zeros((1200, 600, 3), np.uint8), files / "rgba.png"], model)
    assert isinstance(display, list) and [d.shape for d in display] == [(40, 80, 3), (512, 256, 3), (20, 30, 3)]
    assert x.shape == (3, 32, 32, 3) and DISPLAY_SIDE == FOLDER_SIDE == 512
    from kerasxai.figures.images import plot_explanations  # which draws each photo at its aspect

    fig = plot_explanations(display, {"gradcam": np.random.default_rng(1).random((3, 32, 32))})
    assert [fig.axes[2 * i].images[0].get_array().shape for i in range(3)] == [d.shape for d in display]


def test_family_detection_and_explicit_preprocessing():
    nested = keras.Sequential([keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3)),
                               keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1, activation="sigmoid")])
    nested(np.zeros((1, 32, 32, 3)))
    assert detect_family(nested) == "mobilenet_v2"
    _, x = load_images(np.full((32, 32, 3), 255, np.uint8), nested)
    np.testing.assert_allclose(x, 1.0)  # MobileNet scales to [-1, 1]
    _, x = load_images(np.zeros((8, 8, 3), np.uint8), preprocess=lambda b: b / 255.0 - 0.5)
    np.testing.assert_allclose(x, -0.5)
    with pytest.raises(ValueError, match="Unknown preprocessing family 'vgg17'"):
        load_images(np.zeros((8, 8, 3), np.uint8), preprocess="vgg17")
