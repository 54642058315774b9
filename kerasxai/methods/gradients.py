"""Gradient methods: attributions computed from d(score)/d(input)."""

from __future__ import annotations

import numpy as np
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


def _check_count(name, value):
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int of at least 1. Received: {name}={value!r}")


def _fixed_targets(probe, x, target):
    """Classes chosen on the clean images, so noisy or scaled copies explain the same class."""
    if callable(target):
        return target, None
    result = probe.forward(x, target)
    return None, result


def _input_gradient_batches(probe, inputs_fn, count, classes_fn, batch_size, target):
    """Yields (start, gradients) over ``count`` generated inputs, ``batch_size`` at a time."""
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        batch = inputs_fn(start, stop)
        batch_target = target if callable(target) else classes_fn(start, stop)
        yield start, stop, probe.input_gradients(batch, batch_target).gradients[0]


def smoothgrad_noise(shape, seed, start, stop):
    """Unit Gaussian noise for copies ``start..stop-1``: copy j uses the stateless seed (seed, j).

    The noise of a copy does not depend on ``batch_size``, so results do not either.
    """
    return tf.stack([tf.random.stateless_normal(shape, seed=[seed, j]) for j in range(start, stop)])


def smoothgrad(model, images, target=None, *, n=20, noise=0.2, batch_size=16, seed=0, raw=False):
    """SmoothGrad: the mean saliency map over ``n`` noisy copies of each image.

    Gaussian noise with standard deviation ``noise * (max - min)`` of each image
    is added; the noisy copies go through the model ``batch_size`` at a time,
    so 50 copies of 32 images at 224x224 run in bounded memory (VGG16, first
    call: about 0.35 GB at 16, 1.4 GB at 32, 3.7 GB at 64; the speed hardly
    changes). The class explained is fixed on the clean image. ``seed`` makes
    the noise repeatable. Other arguments as in :func:`saliency`.

    Example:
        >>> import keras, numpy as np
        >>> from kerasxai import smoothgrad
        >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=5)
        >>> smoothgrad(model, np.random.rand(2, 32, 32, 3).astype("float32"), n=4).shape
        (2, 32, 32)

    Reference: Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017.
    https://arxiv.org/abs/1706.03825
    """
    _check_count("n", n)
    _check_count("batch_size", batch_size)
    probe = get_probe(model, ())
    x, single = probe.prepare(images)
    target_fn, clean = _fixed_targets(probe, x, target)
    sigma = noise * (tf.reduce_max(x, axis=[1, 2, 3]) - tf.reduce_min(x, axis=[1, 2, 3]))
    owner = np.repeat(np.arange(x.shape[0]), n)  # copy -> image

    def inputs(start, stop):
        idx = owner[start:stop]
        scale = tf.reshape(tf.gather(sigma, idx), [-1, 1, 1, 1])
        return tf.gather(x, idx) + scale * smoothgrad_noise(x.shape[1:], seed, start, stop)

    def classes(start, stop):
        return clean.classes.numpy()[owner[start:stop]].tolist()

    total = np.zeros(x.shape[:3], np.float32)
    for start, stop, grads in _input_gradient_batches(probe, inputs, len(owner), classes, batch_size, target_fn):
        np.add.at(total, owner[start:stop], saliency_formula(grads).numpy())
    maps = total / n
    result = clean if clean is not None else probe.forward(x, target)
    return maps_lib.finish("smoothgrad", maps, x.shape[1:3], result, raw_output=raw, single=single)


def integrated_gradients(model, images, target=None, *, baseline=None, steps=50, batch_size=16, raw=False):
    """Integrated Gradients: (x - baseline) times the mean gradient along the straight path.

    The path integral uses the trapezoidal rule on ``steps + 1`` points, in
    batches of ``batch_size`` (memory as for :func:`smoothgrad`); attributions then sum to about
    score(x) - score(baseline) (completeness). The class explained is fixed on
    the image itself.

    Args:
        baseline: an input of the same shape as one image (or the batch); default
            zeros — black for inputs scaled to [0, 1]. For caffe-style inputs
            (VGG16, ResNet50) pass ``preprocess_input(np.zeros((H, W, 3)))`` for black.
        steps: number of intervals of the path.
        raw: return the ``(N, H, W, C)`` attributions themselves; otherwise the
            map is |sum over channels| normalised to [0, 1].
        Other arguments as in :func:`saliency`.

    Example:
        >>> import keras, numpy as np
        >>> from kerasxai import integrated_gradients
        >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=5)
        >>> integrated_gradients(model, np.random.rand(32, 32, 3).astype("float32"), steps=8).shape
        (32, 32)

    Reference: Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks",
    ICML 2017. https://arxiv.org/abs/1703.01365
    """
    _check_count("steps", steps)
    _check_count("batch_size", batch_size)
    probe = get_probe(model, ())
    x, single = probe.prepare(images)
    base = tf.zeros_like(x) if baseline is None else tf.broadcast_to(tf.cast(baseline, tf.float32), x.shape)
    target_fn, clean = _fixed_targets(probe, x, target)
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    weights = np.full(steps + 1, 1.0 / steps, np.float32)
    weights[[0, -1]] *= 0.5  # trapezoid
    owner = np.repeat(np.arange(x.shape[0]), steps + 1)
    alpha_of = np.tile(alphas, x.shape[0])
    weight_of = np.tile(weights, x.shape[0])

    def inputs(start, stop):
        idx = owner[start:stop]
        a = tf.reshape(tf.constant(alpha_of[start:stop]), [-1, 1, 1, 1])
        b = tf.gather(base, idx)
        return b + a * (tf.gather(x, idx) - b)

    def classes(start, stop):
        return clean.classes.numpy()[owner[start:stop]].tolist()

    mean_grad = np.zeros(x.shape, np.float32)
    for start, stop, grads in _input_gradient_batches(probe, inputs, len(owner), classes, batch_size, target_fn):
        np.add.at(mean_grad, owner[start:stop], grads.numpy() * weight_of[start:stop, None, None, None])
    attributions = (x - base).numpy() * mean_grad
    if raw:
        return attributions[0] if single else attributions
    maps = np.abs(attributions.sum(axis=-1))
    result = clean if clean is not None else probe.forward(x, target)
    return maps_lib.finish("integrated_gradients", maps, x.shape[1:3], result, single=single)


def guided_backprop(model, images, target=None, *, raw=False):
    """Guided backpropagation: input gradients through ReLUs gated on positive input and gradient.

    Computed on a guided probe of the model, in which each ReLU (a separate
    layer or a Conv/Dense layer's own activation) passes back only positive
    gradients where its input was positive. The user's model and its
    gradients are not changed. Returns ``max_c |guided gradient|`` normalised
    to [0, 1]; ``raw=True`` gives the ``(N, H, W, C)`` guided gradients.
    Other arguments as in :func:`saliency`.

    Example:
        >>> import keras, numpy as np
        >>> from kerasxai import guided_backprop
        >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=5)
        >>> guided_backprop(model, np.random.rand(1, 32, 32, 3).astype("float32")).shape
        (1, 32, 32)

    Reference: Springenberg et al., "Striving for Simplicity: The All Convolutional
    Net", ICLR workshop 2015. https://arxiv.org/abs/1412.6806
    """
    x, single, result = _guided_pass(model, images, target)
    if raw:
        out = result.gradients[0].numpy()
        return out[0] if single else out
    maps = saliency_formula(result.gradients[0])
    return maps_lib.finish("guided_backprop", maps, x.shape[1:3], result, single=single)


def _guided_pass(model, images, target):
    """One forward and backward pass of the guided probe: ``(batch, was_single, Gradients)``."""
    probe = get_probe(model, (), guided=True)
    x, single = probe.prepare(images)
    return x, single, probe.input_gradients(x, target)


def guided_gradcam(model, images, target=None, layer=None, *, raw=False):
    """Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM map.

    Both factors are the normalised maps of :func:`guided_backprop` and
    :func:`kerasxai.gradcam` for the same target; the product is normalised
    again. ``raw=True`` returns the product before that last normalisation.

    Example:
        >>> import keras, numpy as np
        >>> from kerasxai import guided_gradcam
        >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=5)
        >>> guided_gradcam(model, np.random.rand(1, 32, 32, 3).astype("float32"), target=1).shape
        (1, 32, 32)

    Reference: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization", ICCV 2017. https://arxiv.org/abs/1610.02391
    """
    from kerasxai.methods.cams import gradcam

    x, single, result = _guided_pass(model, images, target)
    guided = maps_lib.finish("guided_backprop", saliency_formula(result.gradients[0]), x.shape[1:3], result)
    if not callable(target):  # Grad-CAM explains the class the guided pass chose
        target = result.classes.numpy().tolist()
    combined = combine_guided(guided, gradcam(model, x, target, layer), raw=raw)
    return combined[0] if single else combined


def combine_guided(guided_map, gradcam_map, *, raw=False):
    """Element-wise product of guided-backprop and Grad-CAM maps, normalised unless ``raw``."""
    product = np.asarray(guided_map, np.float32) * np.asarray(gradcam_map, np.float32)
    if raw:
        return product
    single = product.ndim == 2
    out, _ = maps_lib.normalize(product[None] if single else product)
    out = out.numpy()
    return out[0] if single else out
