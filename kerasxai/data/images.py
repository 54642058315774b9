"""Loading images for a model, keeping the original RGB image for display.

``load_images`` reads paths (JPEG, PNG — RGBA and grayscale become RGB), PIL
images and NumPy arrays and returns *two* things: the uint8 RGB photos to draw
on, at their own aspect ratio (long side at most 512 pixels, as a folder run
keeps them), and the batch the model eats, resized to its input size and
preprocessed. Overlays are drawn on the first, never on the second; figures
resize the maps onto each photo.

Preprocessing goes through ``keras.applications.<family>.preprocess_input``
(VGG's caffe BGR mean, ResNet's, MobileNet's [-1, 1], ...), chosen from the
model's (or its nested base's) name, or given as a family name or a function.

One pixel path, the one ``keras.utils.image_dataset_from_directory`` uses by
default: files are decoded by ``decode_image_bytes`` (``tf.io.decode_image``,
3 channels, first frame of a GIF) and resized by ``resize_image``
(``tf.image.resize``, bilinear, no antialiasing, on float32 0..255 pixels).
``load_images`` and ``kerasxai.train``'s ``tf.data`` pipeline both go through
these two functions, so a model is explained on exactly the pixels it was
trained on (``display_side=None`` gives those pixels, rounded to uint8, as the
display images).
"""

from __future__ import annotations

import os
import re
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

DISPLAY_SIDE = 512  # long side of a display photo at most: a folder run's (kerasxai.folder.sources.DISPLAY_SIDE)

# model-name prefix -> keras.applications module holding preprocess_input
FAMILIES = {
    "vgg16": "vgg16",
    "vgg19": "vgg19",
    "resnet50v2": "resnet_v2",
    "resnet101v2": "resnet_v2",
    "resnet152v2": "resnet_v2",
    "resnet": "resnet",
    "mobilenetv2": "mobilenet_v2",
    "mobilenet_v2": "mobilenet_v2",
    "mobilenetv3": "mobilenet_v3",
    "mobilenet": "mobilenet",
    "densenet": "densenet",
    "inception_v3": "inception_v3",
    "inception_resnet_v2": "inception_resnet_v2",
    "xception": "xception",
    "efficientnetv2": "efficientnet_v2",
    "efficientnet": "efficientnet",
    "convnext": "convnext",
    "nasnet": "nasnet",
}


def _family_of(name: str) -> str | None:
    name = name.lower()
    for prefix in sorted(FAMILIES, key=len, reverse=True):
        if name.startswith(prefix):
            return FAMILIES[prefix]
    return None


def detect_family(model) -> str | None:
    """The ``keras.applications`` family of ``model`` or of a model nested in it, or None.

    Examples:
        >>> import keras
        >>> detect_family(keras.applications.MobileNetV2(weights=None))
        'mobilenet_v2'
    """
    family = _family_of(model.name)
    if family:
        return family
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            family = detect_family(layer)
            if family:
                return family
    return None


def preprocess_function(preprocess, model=None) -> Callable | None:
    """Resolves ``preprocess`` ("auto", a family name, a callable or None) to a function or None."""
    if preprocess is None or callable(preprocess):
        return preprocess
    if preprocess == "auto":
        family = detect_family(model) if model is not None else None
        if family is None:
            return None
        preprocess = family
    module = getattr(keras.applications, str(preprocess), None)
    if module is None or not hasattr(module, "preprocess_input"):
        known = sorted(set(FAMILIES.values()))
        raise ValueError(f"Unknown preprocessing family '{preprocess}'. Known: {', '.join(known)}, or pass a function.")
    return module.preprocess_input


def decode_image_bytes(data) -> tf.Tensor:
    """Encoded image bytes (JPEG, PNG, GIF, BMP, WebP) -> uint8 RGB tensor ``(H, W, 3)``.

    ``tf.io.decode_image`` with 3 channels and the first frame of an animated
    GIF, exactly as ``keras.utils.image_dataset_from_directory`` decodes:
    grayscale is repeated, alpha dropped, CMYK JPEGs converted. The format is
    read from the bytes, not the file name (a PNG named ``.jpg`` decodes).
    Works eagerly and inside ``tf.data``; raises ``tf.errors.InvalidArgumentError``
    on data it cannot decode.

    Examples:
        >>> png = tf.io.encode_png(tf.zeros((4, 6, 1), tf.uint8))
        >>> decode_image_bytes(png).shape
        TensorShape([4, 6, 3])
    """
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape((None, None, 3))
    return image


def resize_image(images, size) -> tf.Tensor:
    """Resizes ``(H, W, C)`` or ``(N, H, W, C)`` pixels to ``size = (h, w)``: float32, 0..255 kept.

    The one resize of kerasxai: ``tf.image.resize`` with bilinear
    interpolation and no antialiasing on float32 pixels, the default of
    ``keras.utils.image_dataset_from_directory``, so that images explained by
    ``load_images`` match the ones a model was trained on. Images already at
    ``size`` come back unchanged (as float32). Round and clip to get uint8
    display pixels.

    Examples:
        >>> x = resize_image(np.array([[[0.0], [255.0]]]), (1, 4))
        >>> x.numpy()[0, :, 0].tolist()
        [0.0, 63.75, 191.25, 255.0]
    """
    images = tf.cast(images, tf.float32)
    return tf.image.resize(images, tuple(int(v) for v in size), method="bilinear", antialias=False)


def decode_file(path) -> tf.Tensor:
    """Reads and decodes one image file to uint8 RGB ``(H, W, 3)`` with :func:`decode_image_bytes`.

    Works eagerly and inside ``tf.data`` (a folder run's parallel decoding).

    Examples:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "x.png")
        >>> _ = tf.io.write_file(path, tf.io.encode_png(tf.zeros((4, 6, 3), tf.uint8)))
        >>> decode_file(path).shape
        TensorShape([4, 6, 3])
    """
    return decode_image_bytes(tf.io.read_file(path))


def read_error(path) -> str:
    """Why ``path`` cannot be read, in one line (from trying to decode it again).

    Examples:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "notes.jpg")
        >>> _ = open(path, "w").write("not a photo")
        >>> read_error(path)
        'not an image file that can be read (Unknown image file format. One of JPEG, ...)'
    """
    try:
        decode_file(path)
    except Exception as err:  # a TF error: strip its op decorations
        return f"not an image file that can be read ({tf_error_text(err)})"
    return "could not be read"


def display_jpeg(pixels, side) -> tf.Tensor:
    """The photo, long side shrunk to at most ``side`` (antialiased; aspect ratio kept), as JPEG bytes."""
    hw = tf.shape(pixels)[:2]
    scale = tf.minimum(1.0, side / tf.cast(tf.reduce_max(hw), tf.float32))
    new = tf.maximum(1, tf.cast(tf.round(tf.cast(hw, tf.float32) * scale), tf.int32))
    small = tf.cond(
        scale < 1.0,
        lambda: tf.cast(tf.clip_by_value(tf.round(tf.image.resize(tf.cast(pixels, tf.float32), new,
                                                                  antialias=True)), 0, 255), tf.uint8),
        lambda: tf.cast(tf.clip_by_value(tf.round(tf.cast(pixels, tf.float32)), 0, 255), tf.uint8),
    )
    return tf.io.encode_jpeg(small, quality=90)


def image_tensors(pixels, size, display_side=0):
    """One decoded image -> ``(x, jpeg, size)``: model-size float pixels, the display JPEG (or b""), original ``(H, W)``.

    ``x`` is :func:`resize_image`'s; the display photo is :func:`display_jpeg`'s (none when
    ``display_side`` is 0). The one function a folder run's ``tf.data`` pipeline and its Ray
    workers (eagerly) use, so both feed the model the same numbers.

    Examples:
        >>> x, jpeg, size = image_tensors(np.zeros((600, 300, 3), np.uint8), (32, 32), 512)
        >>> x.shape, size.numpy().tolist(), tf.io.decode_jpeg(jpeg).shape  # photo: long side 512
        (TensorShape([32, 32, 3]), [600, 300], TensorShape([512, 256, 3]))
    """
    pixels = tf.ensure_shape(pixels, [None, None, 3])
    jpeg = display_jpeg(pixels, display_side) if display_side else tf.constant(b"")
    return resize_image(pixels, size), jpeg, tf.shape(pixels)[:2]


def _to_uint8(pixels) -> np.ndarray:
    return np.clip(np.round(np.asarray(pixels)), 0, 255).astype(np.uint8)


def tf_error_text(err) -> str:
    """TensorFlow's message without its ``{{function_node ...}}`` prefix and ``[Op:...] name:`` suffix.

    Examples:
        >>> tf_error_text(ValueError("{{function_node f}} Invalid PNG data, size 9 [Op:DecodeImage] name: "))
        'Invalid PNG data, size 9'
    """
    text = str(getattr(err, "message", None) or err).strip().splitlines()[0] if str(err).strip() else ""
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:[^\]]*\].*$", "", text)
    return text.strip().rstrip(".")


def _read_path(path: str) -> np.ndarray:
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such image file: '{path}'")
    try:
        return decode_file(path).numpy()
    except tf.errors.InvalidArgumentError as err:
        if "Unknown image file format" not in str(err):  # a damaged JPEG/PNG/...: say why
            raise ValueError(f"'{path}' is not an image file that can be read ({tf_error_text(err)})") from None
    try:  # a format TensorFlow does not decode (TIFF, ...): PIL's turn
        return np.asarray(keras.utils.load_img(path).convert("RGB"), np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ValueError(f"'{path}' is not an image file that can be read ({type(err).__name__}: {err})") from None


def _load_uint8(source) -> np.ndarray:
    """One source as uint8 RGB ``(H, W, 3)`` at its own size."""
    if isinstance(source, (str, os.PathLike)):
        array = _read_path(os.fspath(source))
    elif isinstance(source, Image.Image):
        array = np.asarray(source.convert("RGB"), np.uint8)  # RGBA, grayscale, palette -> RGB
    else:
        array = np.asarray(source)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
            raise ValueError(f"An image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4). Received: {array.shape}")
        if array.dtype != np.uint8:
            array = array.astype(np.float32)
            array = _to_uint8(array * 255.0 if array.max() <= 1.0 else array)
        array = np.asarray(Image.fromarray(array).convert("RGB"), np.uint8)
    return array


def _resized(array, size=None) -> np.ndarray:
    """uint8 ``(H, W, 3)`` as float32 pixels 0..255 resized by ``resize_image`` to ``size`` (if given)."""
    if size is None or tuple(array.shape[:2]) == tuple(size):
        return array.astype(np.float32)
    return resize_image(array, size).numpy()


def _load_float(source, size=None) -> np.ndarray:
    """One source as float32 RGB ``(H, W, 3)`` pixels 0..255, resized by ``resize_image``."""
    return _resized(_load_uint8(source), size)


def display_image(image, side: int = DISPLAY_SIDE) -> np.ndarray:
    """A photo for display: uint8 RGB, aspect ratio kept, long side shrunk (antialiased) to at most ``side``.

    What a folder run keeps of each photo; never enlarged.

    Example:
        >>> display_image(np.zeros((600, 300, 3), np.uint8)).shape, display_image(np.zeros((40, 80, 3), np.uint8)).shape
        ((512, 256, 3), (40, 80, 3))
    """
    image = np.asarray(image)
    h, w = image.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale >= 1.0:
        return _to_uint8(image)
    new = (max(1, round(h * scale)), max(1, round(w * scale)))
    return _to_uint8(tf.image.resize(tf.cast(image, tf.float32), new, method="bilinear", antialias=True))


def load_image(source, size=None) -> np.ndarray:
    """One image as uint8 RGB ``(H, W, 3)``, resized by ``resize_image`` to ``size = (H, W)`` if given.

    ``source``: a path, a PIL image, or an array ``(H, W)``, ``(H, W, 1|3|4)``
    (uint8, or floats in [0, 1] or [0, 255]). Files are decoded by
    ``decode_image_bytes`` (PIL only for formats TensorFlow cannot read, such
    as TIFF).

    Examples:
        >>> load_image(np.zeros((10, 20), np.uint8), size=(5, 5)).shape
        (5, 5, 3)
    """
    return _to_uint8(_load_float(source, size))


def model_input_size(model, default=(224, 224)):
    """``(H, W)`` of the model's input, or ``default`` when it accepts any size."""
    h, w = model.inputs[0].shape[1:3]
    return (h, w) if h and w else tuple(default)


def load_images(sources, model=None, *, size=None, preprocess="auto", display_side=DISPLAY_SIDE):
    """Loads images for ``model``: returns ``(display, x)``, the photos to draw on and the model's batch.

    Args:
        sources: one source or a list of paths, PIL images or arrays.
        model: sets the size (its input size) and, with ``preprocess="auto"``,
            the preprocessing of its family (VGG16 -> caffe BGR mean, MobileNetV2
            -> [-1, 1], ...).
        size: ``(H, W)`` to resize to; default the model's input size (224x224
            if it takes any size), or the first image's size without a model.
        preprocess: "auto", a family name ("vgg16", "resnet", ...), a function
            ``uint8-like float batch -> model input``, or None (float32 0..255).
        display_side: the longest side of a display photo (default 512, as a
            folder run keeps them); larger photos are shrunk, aspect kept, none
            is enlarged. ``None``: the display images are the model's pixels.

    Returns:
        ``display``: the photos for plotting, uint8 RGB at their own aspect
        ratio: one array ``(N, H, W, 3)`` when they all have the same size, a
        list of ``(H, W, 3)`` arrays otherwise (``plot_explanations``,
        ``plot_layer_views`` and ``overlay`` take either and resize the maps
        onto each photo). With ``display_side=None``: always one array, the
        ``resize_image`` pixels of ``x`` rounded to uint8 (the model's square).
        ``x``: float32 ``(N, h, w, 3)`` at the model's input size, preprocessed
        (resized as ``image_dataset_from_directory`` and ``kerasxai.train``
        feed a model).

    Examples:
        >>> import keras, numpy as np
        >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=3)
        >>> display, x = load_images([np.full((40, 80, 3), 255, np.uint8)], model)
        >>> display.shape, display.dtype.name, x.shape, round(float(x[0, 0, 0, 0]), 3)  # blue minus caffe mean
        ((1, 40, 80, 3), 'uint8', (1, 64, 64, 3), 151.061)
        >>> [d.shape for d in load_images([np.zeros((40, 80, 3)), np.zeros((600, 300, 3))], model)[0]]
        [(40, 80, 3), (512, 256, 3)]
    """
    if isinstance(sources, (str, os.PathLike, Image.Image)) or (
        isinstance(sources, np.ndarray) and sources.ndim in (2, 3) and sources.dtype != object
    ):
        sources = [sources]
    sources = list(sources)
    if not sources:
        raise ValueError("No images given.")
    if size is None and model is not None:
        size = model_input_size(model)
    pixels, shown = [], []
    for source in sources:
        array = _load_uint8(source)
        size = size if size is not None else array.shape[:2]  # without a model: the first image's size
        pixels.append(_resized(array, size))  # float32 0..255, as in training
        if display_side is not None:
            shown.append(display_image(array, display_side))
    pixels = np.stack(pixels)
    if display_side is None:
        display = _to_uint8(pixels)
    else:
        display = np.stack(shown) if len({d.shape for d in shown}) == 1 else shown
    fn = preprocess_function(preprocess, model)
    x = pixels
    if fn is not None:
        x = np.asarray(fn(x.copy()), np.float32)
    return display, x
