"""The model of a run: a base (VGG16, or a small CNN trained from scratch) nested in a new head.

``build_model`` returns ``(model, base)``: ``model`` is a Sequential
``[base, head..., predictions]``, so kerasxai explains layers inside the base
by name (``vgg16/block5_conv3``). ``head_model`` wraps the same head layers
on the base's features: training it on features computed once is the fast
frozen phase.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from kerasxai.train.config import Settings, TrainError


def small_base(size: int) -> keras.Model:
    """Three conv blocks (32, 64, 64 filters; batch norm; two 2x2 poolings), rescaling 0..255 inputs itself.

    The offline base: trained from scratch, it learns generated shapes in a few
    epochs from a few dozen images. Its batch norm's moving statistics follow
    quickly (momentum 0.5), so validation is not stuck at chance for the first
    epochs of a small data set, as it is with the usual 0.99.

    Examples:
        >>> small_base(48).output.shape
        (None, 12, 12, 64)
    """
    layers = keras.layers
    inputs = keras.Input((size, size, 3))
    x = layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    for block, filters in enumerate((32, 64, 64), start=1):
        if block > 1:
            x = layers.MaxPooling2D(name=f"block{block - 1}_pool")(x)
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{block}_conv")(x)
        x = layers.BatchNormalization(momentum=0.5, name=f"block{block}_bn")(x)
        x = layers.ReLU(name=f"block{block}_relu")(x)
    return keras.Model(inputs, x, name="small_cnn")


def _vgg16(settings: Settings, weights, size: int):
    try:
        return keras.applications.VGG16(include_top=False, weights=weights, input_shape=(size, size, 3))
    except Exception as err:  # no internet, a proxy, a bad weights file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if weights == "imagenet":
            raise TrainError(f"could not download VGG16's ImageNet weights ({first[:160]}): offline? use "
                             "--weights none (the base is then random and trained from scratch)") from None
        raise TrainError(f"could not load VGG16 weights from '{weights}' ({first[:160]})") from None


def build_model(settings: Settings, image_size: int, output: str, n_classes: int, weights) -> tuple:
    """``(model, base)`` for a run; ``base.trainable`` is set as ``settings.freeze_base`` says.

    Examples:
        >>> from kerasxai.train.config import Config, resolve
        >>> model, base = build_model(resolve(Config("d", "o", weights="none")), 32, "sigmoid", 2, None)
        >>> model.name, base.name, tuple(model(np.zeros((2, 32, 32, 3))).shape)
        ('small_gap_sigmoid', 'small_cnn', (2, 1))
    """
    size = image_size
    if settings.base == "vgg16":
        base = _vgg16(settings, None if not settings.pretrained else weights, size)
    else:
        base = small_base(size)
    base.trainable = not settings.freeze_base
    layers = keras.layers
    if settings.head == "flatten":
        head = [layers.Flatten(name="flatten"), layers.Dense(256, activation="relu", name="dense"),
                layers.Dropout(0.5, name="dropout")]
    else:
        head = [layers.GlobalAveragePooling2D(name="gap"), layers.Dropout(0.3, name="dropout")]
    units, activation = (1, "sigmoid") if output == "sigmoid" else (n_classes, "softmax")
    model = keras.Sequential(
        [keras.Input((size, size, 3)), base, *head, layers.Dense(units, activation=activation, name="predictions")],
        name=f"{settings.base}_{settings.head}_{output}",
    )
    return model, base


def head_model(model, base) -> keras.Model:
    """The layers after ``base`` (the same objects, so the same weights) on the base's features as input."""
    return keras.Sequential([keras.Input(base.output.shape[1:]), *model.layers[1:]], name="head_on_features")


def set_trainable(model, base, what: str, last_block: str = "block5"):
    """``what``: "head" (base frozen), "all", or "last block" (only ``last_block*`` layers of the base)."""
    base.trainable = what != "head"
    if what == "last block":
        for layer in base.layers:
            layer.trainable = layer.name.startswith(last_block)
    elif what == "all":
        for layer in base.layers:
            layer.trainable = True


def compile_model(model, output: str, learning_rate: float):
    loss = "binary_crossentropy" if output == "sigmoid" else "sparse_categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=["accuracy"])


def compute_features(base, image_ds, n: int, path: str, progress=None) -> np.ndarray:
    """The frozen ``base``'s outputs on ``image_ds`` (in order), written batch by batch to a ``.npy`` memmap.

    Memory stays bounded by one batch; the file is written as ``path + ".partial"``
    and renamed when complete, so a finished file can be reused after an
    interruption.
    """
    if os.path.exists(path):
        cached = np.load(path, mmap_mode="r")
        if cached.shape[0] == n:
            return cached
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = path + ".partial"
    shape = (n, *base.output.shape[1:])
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=shape)
    start = 0
    for x, _ in image_ds:
        features = keras.ops.convert_to_numpy(base(x, training=False)).astype(np.float32, copy=False)
        out[start : start + len(features)] = features
        start += len(features)
        if progress is not None:
            progress(start)
    out.flush()
    del out
    os.replace(partial, path)
    return np.load(path, mmap_mode="r")


def cam_resolution(base) -> tuple:
    """``(layer name, (h, w))`` of the base's last spatial conv layer, where Grad-CAM's map comes from."""
    conv = [layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D)][-1]
    return conv.name, tuple(conv.output.shape[1:3])
