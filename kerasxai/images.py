"""Loading images for a model, keeping the original RGB image for display.

``load_images`` reads paths (JPEG, PNG — RGBA and grayscale become RGB), PIL
images and NumPy arrays, resizes them to the model's input size and returns
*two* arrays: the uint8 RGB images to draw on, and the preprocessed batch the
model eats. Overlays are drawn on the first, never on the second.

Preprocessing goes through ``keras.applications.<family>.preprocess_input``
(VGG's caffe BGR mean, ResNet's, MobileNet's [-1, 1], ...), chosen from the
model's (or its nested base's) name, or given as a family name or a function.
"""

from __future__ import annotations

import os
from typing import Callable

import keras
import numpy as np
from PIL import Image, UnidentifiedImageError

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

    Example:
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


def load_image(source, size=None) -> np.ndarray:
    """One image as uint8 RGB ``(H, W, 3)``, resized (bilinear) to ``size = (H, W)`` if given.

    ``source``: a path, a PIL image, or an array ``(H, W)``, ``(H, W, 1|3|4)``
    (uint8, or floats in [0, 1] or [0, 255]).

    Example:
        >>> load_image(np.zeros((10, 20), np.uint8), size=(5, 5)).shape
        (5, 5, 3)
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"No such image file: '{path}'")
        try:
            pil = keras.utils.load_img(path)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise ValueError(f"'{path}' is not an image file that can be read ({type(err).__name__}: {err})") from None
    elif isinstance(source, Image.Image):
        pil = source
    else:
        array = np.asarray(source)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
            raise ValueError(f"An image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4). Received: {array.shape}")
        if array.dtype != np.uint8:
            array = array.astype(np.float32)
            array = array * 255.0 if array.max() <= 1.0 else array
            array = np.clip(np.round(array), 0, 255).astype(np.uint8)
        pil = Image.fromarray(array)
    pil = pil.convert("RGB")  # RGBA, grayscale, palette -> RGB
    if size is not None and tuple(pil.size) != (size[1], size[0]):
        pil = pil.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(pil, np.uint8)


def model_input_size(model, default=(224, 224)):
    """``(H, W)`` of the model's input, or ``default`` when it accepts any size."""
    h, w = model.inputs[0].shape[1:3]
    return (h, w) if h and w else tuple(default)


def load_images(sources, model=None, *, size=None, preprocess="auto"):
    """Loads images for ``model``: returns ``(display, x)``.

    Args:
        sources: one source or a list of paths, PIL images or arrays.
        model: sets the size (its input size) and, with ``preprocess="auto"``,
            the preprocessing of its family (VGG16 -> caffe BGR mean, MobileNetV2
            -> [-1, 1], ...).
        size: ``(H, W)`` to resize to; default the model's input size (224x224
            if it takes any size), or the first image's size without a model.
        preprocess: "auto", a family name ("vgg16", "resnet", ...), a function
            ``uint8-like float batch -> model input``, or None (float32 0..255).

    Returns:
        ``display``: uint8 RGB ``(N, H, W, 3)`` for plotting; ``x``: float32
        ``(N, H, W, 3)`` preprocessed for the model.

    Example:
        >>> import keras, numpy as np
        >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=3)
        >>> display, x = load_images([np.full((80, 80, 3), 255, np.uint8)], model)
        >>> display.shape, display.dtype.name, round(float(x[0, 0, 0, 0]), 3)  # blue minus caffe mean
        ((1, 64, 64, 3), 'uint8', 151.061)
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
    if size is None:
        size = load_image(sources[0]).shape[:2]
    display = np.stack([load_image(s, size) for s in sources])
    fn = preprocess_function(preprocess, model)
    x = display.astype(np.float32)
    if fn is not None:
        x = np.asarray(fn(x.copy()), np.float32)
    return display, x
