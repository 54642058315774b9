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


@keras.saving.register_keras_serializable(package="kerasxai")
class ClassToken(keras.layers.Layer):
    """A learned class token put before the patch tokens ``(N, T, C) -> (N, 1 + T, C)``."""

    def build(self, shape):
        self.token = self.add_weight(shape=(1, 1, shape[-1]), initializer="zeros", name="token")

    def call(self, tokens):
        batch = keras.ops.shape(tokens)[0]
        return keras.ops.concatenate([keras.ops.broadcast_to(self.token, (batch, 1, tokens.shape[-1])), tokens], axis=1)

    def compute_output_shape(self, shape):
        return (shape[0], None if shape[1] is None else shape[1] + 1, shape[2])


@keras.saving.register_keras_serializable(package="kerasxai")
class PositionEmbedding(keras.layers.Layer):
    """A learned position embedding added to the tokens."""

    def build(self, shape):
        self.positions = self.add_weight(shape=(1,) + tuple(shape[1:]), initializer="random_normal", name="positions")

    def call(self, tokens):
        return tokens + self.positions


@keras.saving.register_keras_serializable(package="kerasxai")
class FirstToken(keras.layers.Layer):
    """The first token of ``(N, T, C)``: a class-token model's pooling."""

    def call(self, tokens):
        return tokens[:, 0]

    def compute_output_shape(self, shape):
        return (shape[0], shape[2])


def small_vit(input_shape=(48, 48, 3), classes: int = 2, *, patch: int = 6, dim: int = 32, depth: int = 3,
              heads: int = 4, class_token: bool = True, seed: int = 0):
    """A small vision transformer: a strided ``Conv2D`` patch embedding, ``Reshape`` to tokens, a class token
    (or, with ``class_token=False``, tokens averaged by ``GlobalAveragePooling1D``), a position embedding,
    ``depth`` pre-norm blocks ``LayerNormalization -> MultiHeadAttention -> Add``, ``LayerNormalization ->
    MLP -> Add`` (block ``i``'s layers are ``block{i}_norm1``, ``block{i}_attn``...), a final norm and a
    softmax head. Every layer is a Keras built-in or registered, so the model saves and loads.

    Examples:
        >>> model = small_vit((32, 32, 3), patch=8, depth=2)
        >>> model.get_layer("block1_attn").num_heads, model.output.shape
        (4, (None, 2))
    """
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(dim, patch, strides=patch, name="patch_embed")(inputs)
    x = layers.Reshape((-1, dim), name="tokens")(x)
    if class_token:
        x = ClassToken(name="class_token")(x)
    x = PositionEmbedding(name="position_embed")(x)
    for i in range(depth):
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm1")(x)
        h = layers.MultiHeadAttention(heads, dim // heads, name=f"block{i}_attn")(h, h)
        x = layers.Add(name=f"block{i}_add1")([x, h])
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm2")(x)
        h = layers.Dense(2 * dim, activation="gelu", name=f"block{i}_mlp1")(h)
        h = layers.Dense(dim, name=f"block{i}_mlp2")(h)
        x = layers.Add(name=f"block{i}_add2")([x, h])
    x = layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    x = FirstToken(name="class_pool")(x) if class_token else layers.GlobalAveragePooling1D(name="token_pool")(x)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="small_vit" if class_token else "small_vit_pooled")


def peak_in_mask(maps, masks) -> np.ndarray:
    """Per image, whether the map's maximum falls inside the mask (the pointing game's hit)."""
    maps = np.asarray(maps)
    flat = maps.reshape(len(maps), -1).argmax(axis=1)
    return np.asarray(masks).reshape(len(masks), -1)[np.arange(len(maps)), flat]
