"""Class activation maps: each method is a formula on activations and gradients.

The formulas take float32 tensors ``activations`` and ``gradients`` of shape
``(N, h, w, K)`` (one explained layer) and return raw maps ``(N, h, w)``.
Running the model, targets, upsampling and normalising happen once, in
:mod:`kerasxai.probe` and :mod:`kerasxai.maps`; the public functions at the
bottom only connect the two. Adding a method means writing its formula, a
public wrapper, and a test against a NumPy reference.
"""

from __future__ import annotations

import tensorflow as tf

from kerasxai import maps as maps_lib
from kerasxai.probe import get_probe

# --------------------------------------------------------------------------- formulas


def gradcam_formula(activations, gradients):
    """Grad-CAM: ReLU(sum_k alpha_k A_k), alpha_k = spatial mean of dS/dA_k."""
    alpha = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(alpha * activations, axis=-1))


def layercam_formula(activations, gradients):
    """LayerCAM: ReLU(sum_k ReLU(dS/dA_k) * A_k), a weight per position."""
    return tf.nn.relu(tf.reduce_sum(tf.nn.relu(gradients) * activations, axis=-1))


def cam_formula(activations, class_weights):
    """CAM: sum_k w_k^c A_k, with ``class_weights`` ``(N, K)`` the classifier column of each image."""
    return tf.einsum("nhwk,nk->nhw", activations, class_weights)


def layercam_fuse(raw_maps, size, gamma: float = 2.0):
    """Fuses LayerCAM maps of several layers as in Jiang et al. 2021 (eq. 9).

    Each map is divided by its maximum, scaled by ``tanh(gamma * map)`` (which
    lifts the weak maps of shallow layers), upsampled to ``size``, and the maps
    are combined by element-wise maximum.
    """
    fused = None
    for raw in raw_maps:
        peak = tf.reduce_max(raw, axis=(1, 2), keepdims=True)
        scaled = tf.tanh(gamma * tf.math.divide_no_nan(raw, peak))
        up = maps_lib.upsample(scaled, size)
        fused = up if fused is None else tf.maximum(fused, up)
    return fused


# --------------------------------------------------------------------------- public API


def _gradient_cam(name, formula, model, images, target, layer, raw):
    probe = get_probe(model, layer)
    x, single = probe.prepare(images)
    result = probe.gradients(x, target)
    maps = formula(result.activations[0], result.gradients[0])
    return maps_lib.finish(name, maps, x.shape[1:3], result, raw_output=raw, single=single)


def gradcam(model, images, target=None, layer=None, *, raw=False):
    """Grad-CAM heatmaps of ``model`` for ``images``.

    ReLU(sum_k alpha_k A_k) where A_k are the explained layer's activations and
    alpha_k the spatial mean of d(score)/dA_k. The score is the target class's
    logit (a final softmax or sigmoid is left out). One forward pass and a
    backward pass that stops at the explained layer.

    Args:
        model: a Functional or Sequential Keras model; nested bases allowed.
        images: ``(N, H, W, C)`` or one ``(H, W, C)`` image, preprocessed for the model.
        target: ``None`` (predicted class), an int, one int per image, or a
            callable ``logits -> (N,) scores``. For a one-unit sigmoid head, 1 is
            the positive class and 0 the negative class.
        layer: layer name (searched in nested models), Layer object, or ``None``
            for the last spatial layer (``kerasxai.explainable_layers`` lists them).
        raw: return the ``(N, h, w)`` map at the layer's resolution, not
            upsampled or normalised.

    Returns:
        float32 ``(N, H, W)`` (or ``(H, W)`` for one image) in ``[0, 1]``.

    Example:
        >>> import keras, numpy as np
        >>> from kerasxai import gradcam
        >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5)
        >>> gradcam(model, np.random.rand(2, 64, 64, 3).astype("float32")).shape
        (2, 64, 64)

    Reference: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization", ICCV 2017. https://arxiv.org/abs/1610.02391
    """
    return _gradient_cam("gradcam", gradcam_formula, model, images, target, layer, raw)


def layercam(model, images, target=None, layer=None, *, raw=False, gamma=2.0):
    """LayerCAM heatmaps: ReLU(sum_k ReLU(d(score)/dA_k) * A_k), per position.

    Works at any layer, shallow ones too, where Grad-CAM's averaged weights
    blur. ``layer`` may be a list of layers: their maps are fused as in the
    paper (each max-normalised, scaled by ``tanh(gamma * map)``, upsampled and
    combined by element-wise maximum); with ``raw=True`` a list of raw maps,
    one per layer, is returned. Other arguments as in :func:`gradcam`.

    Example:
        >>> import keras, numpy as np
        >>> from kerasxai import layercam
        >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5)
        >>> x = np.random.rand(64, 64, 3).astype("float32")
        >>> layercam(model, x, layer=["block3_conv3", "block5_conv3"]).shape
        (64, 64)

    Reference: Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps
    for Localization", IEEE TIP 2021. http://mmcheng.net/mftp/Papers/21TIP_LayerCAM.pdf
    """
    if not isinstance(layer, (list, tuple)):
        return _gradient_cam("layercam", layercam_formula, model, images, target, layer, raw)
    probe = get_probe(model, list(layer))
    x, single = probe.prepare(images)
    result = probe.gradients(x, target)
    raws = [layercam_formula(a, g) for a, g in zip(result.activations, result.gradients)]
    if raw:
        return [r.numpy()[0] if single else r.numpy() for r in raws]
    fused = layercam_fuse(raws, x.shape[1:3], gamma)
    return maps_lib.finish("layercam", fused, x.shape[1:3], result, single=single)


def cam(model, images, target=None, layer=None, *, raw=False):
    """Class activation maps: sum_k w_k^c A_k, w the classifier's weights for class c.

    Defined for models whose explained layer feeds ``GlobalAveragePooling2D``
    and then the classifier ``Dense`` (ResNet50, MobileNetV2, DenseNet121,
    InceptionV3, EfficientNetB0, or a ``gap`` head on a fine-tuned base); other
    models get a ``ValueError`` that points to :func:`gradcam`. Needs a forward
    pass only. No ReLU is applied: with ``raw=True`` negative evidence is kept.
    ``target`` must be a class (not a callable). Other arguments as in :func:`gradcam`.

    Example:
        >>> import keras, numpy as np
        >>> from kerasxai import cam
        >>> model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=4)
        >>> cam(model, np.random.rand(1, 64, 64, 3).astype("float32"), target=2).shape
        (1, 64, 64)

    Reference: Zhou et al., "Learning Deep Features for Discriminative Localization",
    CVPR 2016. https://arxiv.org/abs/1512.04150
    """
    if callable(target):
        raise ValueError("cam() needs a class target (an int or one per image), not a callable.")
    probe = get_probe(model, layer)
    dense = probe.cam_head()
    x, single = probe.prepare(images)
    result = probe.forward(x, target)
    kernel = tf.cast(dense.kernel, tf.float32)  # (K, C)
    if kernel.shape[-1] == 1:  # one sigmoid unit: class 0 is -logit
        sign = tf.where(result.classes == 1, 1.0, -1.0)
        weights = tf.transpose(kernel)[0][None, :] * sign[:, None]
    else:
        weights = tf.transpose(tf.gather(kernel, result.classes, axis=1))
    maps = cam_formula(result.activations[0], weights)
    return maps_lib.finish("cam", maps, x.shape[1:3], result, raw_output=raw, single=single)
