"""Generated images where the right answer region is known: for demos and tests.

Each image holds one object — a disc (class 0) or a cross (class 1) — of
random colour, size and position, on textured noise; its mask marks the
object's pixels. A model that tells the classes apart must look at the
object, so a good explanation peaks inside the mask.
"""

from __future__ import annotations

import keras
import numpy as np

CLASS_NAMES = ("disc", "cross")


def shapes_dataset(n: int, size: int = 48, seed: int = 0, clutter: int = 0):
    """``n`` images ``(n, size, size, 3)`` float32 in [0, 1], labels ``(n,)`` and masks ``(n, size, size)``.

    ``clutter`` adds that many small bright distractor patches per image
    (outside the object and its mask), so that a method must find the object
    among other bright things.

    Examples:
        >>> images, labels, masks = shapes_dataset(4, size=32, seed=1)
        >>> images.shape, labels.tolist(), bool(masks[0].any())
        ((4, 32, 32, 3), [0, 1, 0, 1], True)
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images = rng.uniform(0.0, 0.35, (n, size, size, 3)).astype(np.float32)
    labels = np.arange(n) % 2
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        r = rng.uniform(0.12, 0.18) * size
        cy, cx = rng.uniform(r + 1, size - r - 1, 2)
        if labels[i] == 0:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        else:
            arm = max(1.5, r / 3)
            inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
            mask = inside & ((np.abs(yy - cy) <= arm) | (np.abs(xx - cx) <= arm))
        for _ in range(clutter):  # distractors: small squares away from the object
            side = max(2, int(size * 0.08))
            for _attempt in range(20):
                y, x = rng.integers(0, size - side, 2)
                patch = np.zeros((size, size), bool)
                patch[y : y + side, x : x + side] = True
                grown = np.zeros_like(mask)
                grown[max(0, y - 2) : y + side + 2, max(0, x - 2) : x + side + 2] = True
                if not (grown & mask).any():
                    images[i][patch] = rng.uniform(0.5, 1.0, 3).astype(np.float32)
                    break
        colour = rng.uniform(0.6, 1.0, 3).astype(np.float32)
        images[i][mask] = colour
        masks[i] = mask
    return images, labels.astype(np.int32), masks


def small_cnn(input_shape=(48, 48, 3), classes: int = 2, seed: int = 0):
    """A small CNN with a GAP -> Dense head (so CAM applies); its last conv layer is ``"last_conv"``.

    Examples:
        >>> small_cnn().get_layer("last_conv").output.shape
        (None, 12, 12, 32)
    """
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(name="pool1")(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(name="pool2")(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="last_conv")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def peak_in_mask(maps, masks) -> np.ndarray:
    """Per image, whether the map's maximum falls inside the mask (the pointing game's hit)."""
    maps = np.asarray(maps)
    flat = maps.reshape(len(maps), -1).argmax(axis=1)
    return np.asarray(masks).reshape(len(masks), -1)[np.arange(len(maps)), flat]
