"""Class activation maps: each method is a formula on activations and gradients.

The formulas take float32 tensors ``activations`` and ``gradients`` of shape
``(N, h, w, K)`` (one explained layer) and return raw maps ``(N, h, w)``.
Running the model, targets, upsampling and normalising happen once, in
:mod:`kerasxai.probe` and :mod:`kerasxai.maps`; the public functions at the
bottom only connect the two. Adding a method means writing its formula, a
public wrapper, and a test against a NumPy reference.
"""

from __future__ import annotations

import keras
import numpy as np
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


def gradcam_plus_plus_formula(activations, gradients):
    """Grad-CAM++, closed form for an exponential score S = exp(score).

    With S = exp(score), every higher derivative of S is a power of the first
    derivative of the score g, and exp(score) cancels from the pixel weights:
    a_ij = g^2 / (2 g^2 + sum_ab A_ab g^3), alpha_k = sum_ij a_ij ReLU(g_ij),
    map = ReLU(sum_k alpha_k A_k). This is the form of the paper's eq. 19 used by
    the common implementations.
    """
    g2 = tf.square(gradients)
    g3 = g2 * gradients
    total = tf.reduce_sum(activations, axis=(1, 2), keepdims=True)
    denom = 2.0 * g2 + total * g3
    a = tf.where(gradients != 0, tf.math.divide_no_nan(g2, denom), 0.0)
    alpha = tf.reduce_sum(a * tf.nn.relu(gradients), axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(alpha * activations, axis=-1))


def xgradcam_formula(activations, gradients):
    """XGrad-CAM: alpha_k = sum_ij (A_k,ij / sum_ij A_k,ij) dS/dA_k,ij; map = ReLU(sum_k alpha_k A_k)."""
    total = tf.reduce_sum(activations, axis=(1, 2), keepdims=True)
    alpha = tf.reduce_sum(tf.math.divide_no_nan(activations, total) * gradients, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(alpha * activations, axis=-1))


def hirescam_formula(activations, gradients):
    """HiResCAM: ReLU(sum_k dS/dA_k * A_k), the gradient kept at every position."""
    return tf.nn.relu(tf.reduce_sum(gradients * activations, axis=-1))


def eigencam_formula(activations):
    """Eigen-CAM: projection of the activations on their first principal component.

    ``(N, h, w, K) -> (N, h, w)``. The positions' activation vectors are centred,
    the first right singular vector gives the component, and its sign is chosen
    so that the map correlates positively with the mean activation over
    channels; then ReLU. No gradients.
    """
    n, h, w, k = tf.unstack(tf.shape(activations))
    x = tf.reshape(activations, [n, h * w, k])
    centred = x - tf.reduce_mean(x, axis=1, keepdims=True)
    _, _, v = tf.linalg.svd(centred, full_matrices=False)
    proj = tf.einsum("npk,nk->np", centred, v[:, :, 0])
    mean_act = tf.reduce_mean(x, axis=-1)
    corr = tf.reduce_sum(
        (proj - tf.reduce_mean(proj, 1, keepdims=True)) * (mean_act - tf.reduce_mean(mean_act, 1, keepdims=True)),
        axis=1,
    )
    proj = proj * tf.where(corr < 0, -1.0, 1.0)[:, None]
    return tf.nn.relu(tf.reshape(proj, [n, h, w]))


GRADIENT_FORMULAS = {
    "gradcam": gradcam_formula,
    "gradcam_plus_plus": gradcam_plus_plus_formula,
    "xgradcam": xgradcam_formula,
    "hirescam": hirescam_formula,
    "layercam": layercam_formula,
}
"""Methods that are a formula of (activations, gradients) at one layer; ``explain`` shares their pass."""


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


def cam_class_weights(probe, result):
    """``(N, K)`` classifier column of each image's target class (negated for sigmoid class 0)."""
    kernel = tf.cast(probe.cam_head().kernel, tf.float32)  # (K, C)
    if kernel.shape[-1] == 1:  # one sigmoid unit: class 0 is -logit
        sign = tf.where(result.classes == 1, 1.0, -1.0)
        return tf.transpose(kernel)[0][None, :] * sign[:, None]
    if int(tf.reduce_min(result.classes)) < 0:
        raise ValueError("CAM needs a class target (an int or one per image), not a callable.")
    return tf.transpose(tf.gather(kernel, result.classes, axis=1))


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


def gradcam_plus_plus(model, images, target=None, layer=None, *, raw=False):
    """Grad-CAM++ heatmaps; arguments and returns as in :func:`gradcam`.

    Uses the closed form for an exponential score (exp(score)), as in the
    paper's eq. 19 and the common implementations: pixel weights
    a = g^2 / (2 g^2 + sum(A) g^3) from the first derivative g of the logit,
    channel weights sum_ij a_ij ReLU(g_ij). Same single pass as Grad-CAM.

    Example:
        >>> import keras, numpy as np
        >>> from kerasxai import gradcam_plus_plus
        >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5)
        >>> gradcam_plus_plus(model, np.random.rand(1, 64, 64, 3).astype("float32")).shape
        (1, 64, 64)

    Reference: Chattopadhay et al., "Grad-CAM++: Improved Visual Explanations for Deep
    Convolutional Networks", WACV 2018. https://arxiv.org/abs/1710.11063
    """
    return _gradient_cam("gradcam_plus_plus", gradcam_plus_plus_formula, model, images, target, layer, raw)


def xgradcam(model, images, target=None, layer=None, *, raw=False):
    """XGrad-CAM heatmaps: channel weights sum_ij (A_k,ij / sum A_k) dS/dA_k,ij.

    Arguments and returns as in :func:`gradcam`; same single pass.

    Example:
        >>> import keras, numpy as np
        >>> from kerasxai import xgradcam
        >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5)
        >>> xgradcam(model, np.random.rand(1, 64, 64, 3).astype("float32")).shape
        (1, 64, 64)

    Reference: Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and
    Explanation of CNNs", BMVC 2020. https://arxiv.org/abs/2008.02312
    """
    return _gradient_cam("xgradcam", xgradcam_formula, model, images, target, layer, raw)


def hirescam(model, images, target=None, layer=None, *, raw=False):
    """HiResCAM heatmaps: ReLU(sum_k dS/dA_k * A_k), no spatial averaging of the gradients.

    Arguments and returns as in :func:`gradcam`; same single pass.

    Example:
        >>> import keras, numpy as np
        >>> from kerasxai import hirescam
        >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5)
        >>> hirescam(model, np.random.rand(1, 64, 64, 3).astype("float32")).shape
        (1, 64, 64)

    Reference: Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful
    explanations of convolutional neural networks", 2020. https://arxiv.org/abs/2011.08891
    """
    return _gradient_cam("hirescam", hirescam_formula, model, images, target, layer, raw)


def eigencam(model, images, target=None, layer=None, *, raw=False):
    """Eigen-CAM heatmaps: the first principal component of the layer's activations.

    Class-agnostic (``target`` only picks the class reported in warnings); a
    forward pass only. Arguments and returns as in :func:`gradcam`.

    Example:
        >>> import keras, numpy as np
        >>> from kerasxai import eigencam
        >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5)
        >>> eigencam(model, np.random.rand(1, 64, 64, 3).astype("float32")).shape
        (1, 64, 64)

    Reference: Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal
    Components", IJCNN 2020. https://arxiv.org/abs/2008.00299
    """
    probe = get_probe(model, layer)
    x, single = probe.prepare(images)
    result = probe.forward(x, target)
    maps = eigencam_formula(result.activations[0])
    return maps_lib.finish("eigencam", maps, x.shape[1:3], result, raw_output=raw, single=single)


def scorecam(model, images, target=None, layer=None, *, n=None, batch_size=32, raw=False, progress=None):
    """Score-CAM heatmaps: channels weighted by the score of the input they mask.

    Each activation channel A_k is upsampled to the input size, min-max
    normalised to [0, 1] and multiplies the input; the channel's weight is the
    softmax over channels of the target score (logit) of that masked input;
    map = ReLU(sum_k w_k A_k). The masked inputs go through the model in
    batches of ``batch_size``.

    Args:
        n: keep only the ``n`` channels whose activation maps vary most (the
            faster variant; ``n=10`` is about 10 forward passes per image);
            ``None`` uses every channel.
        batch_size: masked inputs per forward pass.
        progress: show a progress bar; ``None`` shows one when more than 8
            batches are needed.
        Other arguments as in :func:`gradcam`.

    Example:
        >>> import keras, numpy as np
        >>> from kerasxai import scorecam
        >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=5)
        >>> scorecam(model, np.random.rand(1, 32, 32, 3).astype("float32"), n=8).shape
        (1, 32, 32)

    Reference: Wang et al., "Score-CAM: Score-Weighted Visual Explanations for
    Convolutional Neural Networks", CVPR workshops 2020. https://arxiv.org/abs/1910.01279
    """
    if n is not None and n < 1:
        raise ValueError(f"n must be at least 1 (or None for every channel). Received: n={n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1. Received: {batch_size}")
    probe = get_probe(model, layer)
    x, single = probe.prepare(images)
    result = probe.forward(x, target)
    maps = scorecam_maps(model, x, result, target, n=n, batch_size=batch_size, progress=progress)
    return maps_lib.finish("scorecam", maps, x.shape[1:3], result, raw_output=raw, single=single)


def scorecam_maps(model, x, result, target=None, *, n=None, batch_size=32, progress=None):
    """Raw Score-CAM maps ``(N, h, w)`` from a forward ``result`` (activations, classes) on ``x``.

    The masked inputs of all images are scored ``batch_size`` at a time (masks
    are made per batch, so memory stays bounded with every channel), for the
    class chosen on the unmasked image (or by the callable ``target``).
    """
    acts = result.activations[0]  # (N, h, w, K)
    n_images, k_total = acts.shape[0], acts.shape[-1]
    if n is not None and n < k_total:
        channels = tf.math.top_k(tf.math.reduce_variance(acts, axis=(1, 2)), k=n).indices
    else:
        channels = tf.tile(tf.range(k_total)[None], [n_images, 1])
    chosen = tf.gather(acts, channels, axis=3, batch_dims=1)  # (N, h, w, n)
    per_image = chosen.shape[-1]
    flat_maps = tf.reshape(tf.transpose(chosen, [0, 3, 1, 2]), [-1, acts.shape[1], acts.shape[2], 1])
    owner = np.repeat(np.arange(n_images), per_image)  # masked input -> image
    classes = np.asarray(result.classes)[owner]
    logits_probe = get_probe(model, ())
    total = len(owner)
    show = progress if progress is not None else -(-total // batch_size) > 8
    bar = keras.utils.Progbar(total, unit_name="masked input") if show else None
    scores = []
    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        masks, _ = maps_lib.normalize(tf.image.resize(flat_maps[start:stop], x.shape[1:3]))
        masked = tf.gather(x, owner[start:stop]) * masks  # a flat channel masks everything out
        part_target = target if callable(target) else classes[start:stop].tolist()
        scores.append(logits_probe.forward(masked, part_target).scores)
        if bar is not None:
            bar.update(stop)
    weights = tf.nn.softmax(tf.reshape(tf.concat(scores, 0), [n_images, per_image]), axis=-1)
    return tf.nn.relu(tf.einsum("nhwk,nk->nhw", chosen, weights))


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
    models get a ``ValueError`` that points to :func:`gradcam`. With
    ``layer=None`` the layer feeding the pooling is used (``block5_pool`` for
    a GAP head on ``VGG16(include_top=False)``). Needs a forward
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
    if layer is None:  # CAM's layer is the one that feeds global average pooling
        from kerasxai.probe import cam_layer

        layer = cam_layer(model)
    probe = get_probe(model, layer)
    probe.cam_head()  # refuse models without a GAP -> Dense head before running anything
    x, single = probe.prepare(images)
    result = probe.forward(x, target)
    maps = cam_formula(result.activations[0], cam_class_weights(probe, result))
    return maps_lib.finish("cam", maps, x.shape[1:3], result, raw_output=raw, single=single)
