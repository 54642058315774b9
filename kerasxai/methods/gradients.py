"""Gradient methods: attributions computed from d(score)/d(input)."""

from __future__ import annotations

import tensorflow as tf

from kerasxai import maps as maps_lib
from kerasxai.probe import get_probe


def saliency_formula(input_gradients):
    """Vanilla saliency: |d(score)/d(input)|, maximum over colour channels. ``(N,H,W,C) -> (N,H,W)``."""
    return tf.reduce_max(tf.abs(input_gradients), axis=-1)


def saliency(model, images, target=None, *, raw=False):
    """Vanilla saliency maps: |d(score)/d(input)|, maximum over colour channels.

    One forward and one backward pass to the input. The score is the target
    class's logit (a final softmax or sigmoid is left out).

    Args:
        model: a Functional or Sequential Keras model; nested bases allowed.
        images: ``(N, H, W, C)`` or one ``(H, W, C)`` image, preprocessed for the model.
        target: ``None`` (predicted class), an int, one int per image, or a
            callable ``logits -> (N,) scores``.
        raw: return the un-normalised ``(N, H, W)`` gradient magnitudes.

    Returns:
        float32 ``(N, H, W)`` (or ``(H, W)``) in ``[0, 1]``.

    Example:
        >>> import keras, numpy as np
        >>> from kerasxai import saliency
        >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5)
        >>> saliency(model, np.random.rand(64, 64, 3).astype("float32"), target=3).shape
        (64, 64)

    Reference: Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks:
    Visualising Image Classification Models and Saliency Maps", ICLR workshop 2014.
    https://arxiv.org/abs/1312.6034
    """
    probe = get_probe(model, ())
    x, single = probe.prepare(images)
    result = probe.input_gradients(x, target)
    maps = saliency_formula(result.gradients[0])
    return maps_lib.finish("saliency", maps, x.shape[1:3], result, raw_output=raw, single=single)
