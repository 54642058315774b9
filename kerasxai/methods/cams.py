"""Class activation maps: each method is a formula on activations and gradients.

A formula takes float32 tensors ``activations`` and ``gradients`` of shape
``(N, spatial..., K)`` — one spatial axis for signals (Conv1D), two for images,
three for volumes (Conv3D) — and returns raw maps ``(N, spatial...)``, in
``keras.ops`` (every backend). Running the model, targets, batching,
upsampling and normalising happen once, in :mod:`kerasxai.probe`,
:mod:`kerasxai.methods.engine` and :mod:`kerasxai.methods.maps`; the whole per-batch
computation of a method is one compiled step.

Adding a CAM is one formula here, one ``Method`` entry in
:mod:`kerasxai.methods.table` (which makes it a method of ``explain()``, the
folder job, the command line and ``evaluate``), and one test against a NumPy
reference in ``tests/test_cams.py``. A top-level function of its own
(``kerasxai.<name>``) is a signature, a docstring and one line, as
:func:`gradcam`'s.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from kerasxai import backend
from kerasxai.methods import maps as maps_lib
from kerasxai.methods import engine
from kerasxai.methods.engine import DEFAULT_BATCH_SIZE, spatial_axes
from kerasxai.probe import Fn, cam_layer, get_probe
from kerasxai.probe.regions import fixed, is_structured

# --------------------------------------------------------------------------- formulas


def gradcam_formula(activations, gradients):
    """Grad-CAM: ReLU(sum_k alpha_k A_k), alpha_k = spatial mean of dS/dA_k."""
    alpha = ops.mean(gradients, axis=spatial_axes(gradients), keepdims=True)
    return ops.relu(ops.sum(alpha * activations, axis=-1))


def layercam_formula(activations, gradients):
    """LayerCAM: ReLU(sum_k ReLU(dS/dA_k) * A_k), a weight per position."""
    return ops.relu(ops.sum(ops.relu(gradients) * activations, axis=-1))


def gradcam_plus_plus_formula(activations, gradients):
    """Grad-CAM++, closed form for an exponential score S = exp(score).

    With S = exp(score), every higher derivative of S is a power of the first
    derivative of the score g, and exp(score) cancels from the pixel weights:
    a_ij = g^2 / (2 g^2 + sum_ab A_ab g^3), alpha_k = sum_ij a_ij ReLU(g_ij),
    map = ReLU(sum_k alpha_k A_k). This is the form of the paper's eq. 19 used by
    the common implementations.
    """
    axes = spatial_axes(gradients)
    g2 = ops.square(gradients)
    g3 = g2 * gradients
    total = ops.sum(activations, axis=axes, keepdims=True)
    denom = 2.0 * g2 + total * g3
    a = ops.where(gradients != 0, ops.divide_no_nan(g2, denom), 0.0)
    alpha = ops.sum(a * ops.relu(gradients), axis=axes, keepdims=True)
    return ops.relu(ops.sum(alpha * activations, axis=-1))


def xgradcam_formula(activations, gradients):
    """XGrad-CAM: alpha_k = sum_ij (A_k,ij / sum_ij A_k,ij) dS/dA_k,ij; map = ReLU(sum_k alpha_k A_k)."""
    axes = spatial_axes(gradients)
    total = ops.sum(activations, axis=axes, keepdims=True)
    alpha = ops.sum(ops.divide_no_nan(activations, total) * gradients, axis=axes, keepdims=True)
    return ops.relu(ops.sum(alpha * activations, axis=-1))


def hirescam_formula(activations, gradients):
    """HiResCAM: ReLU(sum_k dS/dA_k * A_k), the gradient kept at every position."""
    return ops.relu(ops.sum(gradients * activations, axis=-1))


def eigencam_formula(activations):
    """Eigen-CAM: projection of the activations on their first principal component.

    ``(N, spatial..., K) -> (N, spatial...)``. The positions' activation vectors
    are centred, the first right singular vector gives the component, and its
    sign is chosen so that the map correlates positively with the mean
    activation over channels; then ReLU. No gradients.
    """
    shape = ops.shape(activations)
    n, k = shape[0], shape[-1]
    x = ops.reshape(activations, (n, -1, k))
    centred = x - ops.mean(x, axis=1, keepdims=True)
    _, _, vh = ops.svd(centred, full_matrices=False)
    proj = ops.einsum("npk,nk->np", centred, vh[:, 0, :])
    mean_act = ops.mean(x, axis=-1)
    corr = ops.sum(
        (proj - ops.mean(proj, axis=1, keepdims=True)) * (mean_act - ops.mean(mean_act, axis=1, keepdims=True)),
        axis=1,
    )
    proj = proj * ops.expand_dims(ops.where(corr < 0, -1.0, 1.0), 1)
    return ops.relu(ops.reshape(proj, shape[:-1]))


def cam_formula(activations, class_weights):
    """CAM: sum_k w_k^c A_k, with ``class_weights`` ``(N, K)`` the classifier column of each image."""
    w = ops.reshape(class_weights, (ops.shape(class_weights)[0],) + (1,) * (len(activations.shape) - 2) + (-1,))
    return ops.sum(activations * w, axis=-1)


def layercam_fuse(raw_maps, size, gamma: float = 2.0):
    """Fuses LayerCAM maps of several layers as in Jiang et al. 2021 (eq. 9).

    Each map is divided by its maximum, scaled by ``tanh(gamma * map)`` (which
    lifts the weak maps of shallow layers), upsampled to ``size``, and the maps
    are combined by element-wise maximum.
    """
    fused = None
    for raw in raw_maps:
        peak = ops.max(raw, axis=tuple(range(1, len(raw.shape))), keepdims=True)
        up = maps_lib.resize_linear(ops.tanh(gamma * ops.divide_no_nan(raw, peak)), size)
        fused = up if fused is None else ops.maximum(fused, up)
    return fused


def cam_class_weights(kernel, head, classes):
    """``(N, K)`` classifier column of each image's target class (negated for sigmoid class 0)."""
    kernel = ops.cast(kernel, "float32")  # (K, C)
    if head.kind == "binary":
        sign = ops.where(classes == 1, 1.0, -1.0)
        return ops.expand_dims(kernel[:, 0], 0) * ops.expand_dims(sign, 1)
    return ops.transpose(ops.take(kernel, ops.maximum(classes, 0), axis=1))


# --------------------------------------------------------------------------- per-batch steps


def gradient_cam_post(p, formulas, raw=False):
    """One step's outputs for several gradient CAMs at one layer: ``map:<name>`` per ``(name, formula)``."""
    out = engine.checks(p)
    out["zero_gradient"] = maps_lib.gradient_is_zero(p.gradients[0])
    size = engine.spatial_size(p.inputs)
    for name, formula in formulas:
        raw_map = formula(p.activations[0], p.gradients[0])
        for key, value in maps_lib.finish(raw_map, size, raw_output=raw).items():
            out[f"{key}:{name}"] = value
    return out


def _single_method(outputs, name):
    """Renames ``map:<name>``-style keys of a one-method run to ``map``, ``flat``, ``raw_max``."""
    renamed = {k.split(":")[0]: v for k, v in outputs.items() if k.endswith(f":{name}")}
    return {**{k: v for k, v in outputs.items() if ":" not in k}, **renamed}


def plan_gradient_cam(name, formula, model, target, layer=None, output=None, input=None, raw=False):
    """``(probe, compute)`` of one gradient CAM: ``formula(activations, gradients)`` at one layer."""
    probe = get_probe(model, engine.one_layer(name, layer), output=output, input=input, target=target)
    step = probe.step("layers", Fn(gradient_cam_post, formulas=((name, formula),), raw=raw), target=target)
    return probe, lambda batch, classes: _single_method(step(batch.inputs, (), classes), name)


def _gradient_cam(name, formula, model, images, target, layer, output, input, batch_size, progress, raw):
    return engine.explain_with(name, plan_gradient_cam(name, formula, model, target, layer, output, input, raw),
                               images, target, batch_size=batch_size, progress=progress)


# --------------------------------------------------------------------------- public API


def gradcam(model, images, target=None, layer=None, *, output=None, input=None,
            batch_size=DEFAULT_BATCH_SIZE, progress=None, raw=False):
    """Grad-CAM heatmaps of ``model`` for ``images``.

    ReLU(sum_k alpha_k A_k) where A_k are the explained layer's activations and
    alpha_k the mean of d(score)/dA_k over the spatial axes. The score is the
    target's logit (a final softmax or sigmoid is left out). One forward pass
    and a backward pass that stops at the explained layer, compiled together with
    the formula, upsampling and normalising. Signals (Conv1D), images and volumes
    (Conv3D) alike.

    Args:
        model: a Keras model (see :mod:`kerasxai.methods.engine` for what it may be).
        images: ``(N, spatial..., C)`` preprocessed for the model, one example, a list/dict per
            input, a memmap, a ``tf.data.Dataset`` or an iterable of batches.
        target: ``None`` (predicted class), an int, one int per image, ``"label"``, or a callable
            ``logits -> (N,) scores``. For a one-unit sigmoid head, 1 is the positive class and 0
            the negative class; for a one-unit regression head, the value itself.
        layer: layer name (searched in nested models), Layer object, or ``None`` for the last
            layer with spatial axes on the way from the explained input to the explained output,
            among layers called once on that way (``kerasxai.explainable_layers`` lists them). A
            layer called more than once (shared weights: a conv applied twice, one layer in two
            branches) has different activations and gradients at each call: name the call,
            ``layer=("shared", 1)`` (the layer's name or object and the call index, 0-based, in
            the order of the graph: ``explainable_layers`` lists each call with its ``call``; for a
            subclassed model, the order its ``call()`` runs them); the perturbation is added at
            that call's output only. A layer that does not lie between the explained
            input and output is refused.
        output: the output explained, for a multi-output model (name or index).
        input: the input explained, for a multi-input model (name or index).
        batch_size: images per pass.
        progress: show a progress bar (None: when there are more than 8 batches).
        raw: return the ``(N, spatial...)`` map at the layer's resolution, not
            upsampled or normalised.

    Returns:
        float32 ``(N, spatial...)`` (or without the batch axis for one example) in ``[0, 1]``,
            at the explained input's resolution.

    Examples:
        >>> import keras, numpy as np
        >>> from kerasxai import gradcam
        >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5)
        >>> gradcam(model, np.random.rand(2, 64, 64, 3).astype("float32")).shape
        (2, 64, 64)

    Reference: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization", ICCV 2017. https://arxiv.org/abs/1610.02391
    """
    return _gradient_cam("gradcam", gradcam_formula, model, images, target, layer, output, input, batch_size, progress, raw)


def gradcam_plus_plus(model, images, target=None, layer=None, *, output=None, input=None,
                      batch_size=DEFAULT_BATCH_SIZE, progress=None, raw=False):
    """Grad-CAM++ heatmaps; arguments and returns as in :func:`gradcam`.

    Uses the closed form for an exponential score (exp(score)), as in the
    paper's eq. 19 and the common implementations: pixel weights
    a = g^2 / (2 g^2 + sum(A) g^3) from the first derivative g of the logit,
    channel weights sum_ij a_ij ReLU(g_ij). Same single pass as Grad-CAM.

    Examples:
        >>> import keras, numpy as np
        >>> from kerasxai import gradcam_plus_plus
        >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5)
        >>> gradcam_plus_plus(model, np.random.rand(1, 64, 64, 3).astype("float32")).shape
        (1, 64, 64)

    Reference: Chattopadhay et al., "Grad-CAM++: Improved Visual Explanations for Deep
    Convolutional Networks", WACV 2018. https://arxiv.org/abs/1710.11063
    """
    return _gradient_cam("gradcam_plus_plus", gradcam_plus_plus_formula, model, images, target, layer, output, input, batch_size, progress, raw)


def xgradcam(model, images, target=None, layer=None, *, output=None, input=None,
             batch_size=DEFAULT_BATCH_SIZE, progress=None, raw=False):
    """XGrad-CAM heatmaps: channel weights sum_ij (A_k,ij / sum A_k) dS/dA_k,ij.

    Arguments and returns as in :func:`gradcam`; same single pass.

    Examples:
        >>> import keras, numpy as np
        >>> from kerasxai import xgradcam
        >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5)
        >>> maps = xgradcam(model, np.random.rand(2, 64, 64, 3).astype("float32"), target=[0, 3])
        >>> maps.shape, maps.dtype.name
        ((2, 64, 64), 'float32')

    Reference: Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and
    Explanation of CNNs", BMVC 2020. https://arxiv.org/abs/2008.02312
    """
    return _gradient_cam("xgradcam", xgradcam_formula, model, images, target, layer, output, input, batch_size, progress, raw)


def hirescam(model, images, target=None, layer=None, *, output=None, input=None,
             batch_size=DEFAULT_BATCH_SIZE, progress=None, raw=False):
    """HiResCAM heatmaps: ReLU(sum_k dS/dA_k * A_k), no spatial averaging of the gradients.

    Arguments and returns as in :func:`gradcam`; same single pass.

    Examples:
        >>> import keras, numpy as np
        >>> from kerasxai import hirescam
        >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5)
        >>> x = np.random.rand(1, 64, 64, 3).astype("float32")
        >>> hirescam(model, x, raw=True).shape  # at block5_conv3's 4 x 4 grid
        (1, 4, 4)

    Reference: Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful
    explanations of convolutional neural networks", 2020. https://arxiv.org/abs/2011.08891
    """
    return _gradient_cam("hirescam", hirescam_formula, model, images, target, layer, output, input, batch_size, progress, raw)


def layercam_fused_post(p, gamma=2.0):
    """One step's outputs for LayerCAM fused over several layers."""
    out = engine.checks(p)
    raws = [layercam_formula(a, g) for a, g in zip(p.activations, p.gradients)]
    size = engine.spatial_size(p.inputs)
    out.update(maps_lib.finish(layercam_fuse(raws, size, gamma), None))
    out["zero_gradient"] = ops.all(ops.stack([maps_lib.gradient_is_zero(g) for g in p.gradients]), axis=0)
    return out


def layercam_raw_post(p):
    """One step's raw LayerCAM maps, one per layer (``map_<i>``)."""
    out = engine.checks(p)
    for i, (a, g) in enumerate(zip(p.activations, p.gradients)):
        out[f"map_{i}"] = layercam_formula(a, g)
    return out


def layercam(model, images, target=None, layer=None, *, output=None, input=None,
             batch_size=DEFAULT_BATCH_SIZE, progress=None, raw=False, gamma=None):
    """LayerCAM heatmaps: ReLU(sum_k ReLU(d(score)/dA_k) * A_k), per position.

    Works at any layer, shallow ones too, where Grad-CAM's averaged weights
    blur. ``layer`` may be a list of layers: their maps are fused as in the
    paper (each max-normalised, scaled by ``tanh(gamma * map)``, ``gamma`` 2 by
    default, upsampled and combined by element-wise maximum) — one pass for all
    of them; with ``raw=True`` a list of raw maps, one per layer, is returned.
    A list of one layer is that layer (``gamma`` applies to fusing only). Other
    arguments as in :func:`gradcam`.

    Examples:
        >>> import keras, numpy as np
        >>> from kerasxai import layercam
        >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5)
        >>> x = np.random.rand(64, 64, 3).astype("float32")
        >>> layercam(model, x, layer=["block3_conv3", "block5_conv3"]).shape
        (64, 64)

    Reference: Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps
    for Localization", IEEE TIP 2021. http://mmcheng.net/mftp/Papers/21TIP_LayerCAM.pdf
    """
    planned = plan_layercam(model, target, layer, output, input, raw=raw, gamma=gamma)
    if raw and engine.is_layer_list(layer):  # one raw map per layer
        probe, compute = planned
        out, single = engine.run("layercam", probe, images, target, compute, batch_size=batch_size,
                                 progress=progress, warn=False)
        return [engine.pick(out, single, f"map_{i}") for i in range(len(layer))]
    return engine.explain_with("layercam", planned, images, target, batch_size=batch_size, progress=progress)


def plan_layercam(model, target, layer=None, output=None, input=None, raw=False, gamma=None):
    """``(probe, compute)`` of LayerCAM at one layer, or fused over a list of layers (raw: ``map_<i>`` each)."""
    fused = engine.is_layer_list(layer) and (len(layer) > 1 or raw)  # raw=True keeps a list's list of maps
    if gamma is not None:
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0:
            raise ValueError(f"gamma must be a number > 0 (LayerCAM's fusion uses tanh(gamma * map)). Received: gamma={gamma!r}")
        if not (fused and not raw):
            raise ValueError(f"gamma={gamma} scales LayerCAM's fusion of several layers' maps, and "
                             f"{'raw maps are not fused' if raw else 'one layer is explained here'}: leave gamma out, "
                             "or give layer=[...] with two layers or more.")
    if not fused:
        layer = engine.one_layer("layercam", layer)
        return plan_gradient_cam("layercam", layercam_formula, model, target, layer, output, input, raw)
    gamma = 2.0 if gamma is None else float(gamma)
    probe = get_probe(model, list(layer), output=output, input=input, target=target)
    post = Fn(layercam_raw_post) if raw else Fn(layercam_fused_post, gamma=gamma)
    step = probe.step("layers", post, target=target)
    return probe, lambda batch, classes: step(batch.inputs, (), classes)


def eigencam_post(p, raw=False):
    """One step's Eigen-CAM outputs (forward only)."""
    out = engine.checks(p)
    out.update(maps_lib.finish(eigencam_formula(p.activations[0]), engine.spatial_size(p.inputs), raw_output=raw))
    return out


def eigencam(model, images, target=None, layer=None, *, output=None, input=None,
             batch_size=DEFAULT_BATCH_SIZE, progress=None, raw=False):
    """Eigen-CAM heatmaps: the first principal component of the layer's activations.

    Class-agnostic (``target`` only picks the class reported in warnings); a
    forward pass only. Arguments and returns as in :func:`gradcam`.

    Examples:
        >>> import keras, numpy as np
        >>> from kerasxai import eigencam
        >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5)
        >>> eigencam(model, np.random.rand(1, 64, 64, 3).astype("float32")).shape
        (1, 64, 64)

    Reference: Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal
    Components", IJCNN 2020. https://arxiv.org/abs/2008.00299
    """
    return engine.explain_with("eigencam", plan_eigencam(model, target, layer, output, input, raw), images, target,
                               batch_size=batch_size, progress=progress)


def plan_eigencam(model, target, layer=None, output=None, input=None, raw=False):
    """``(probe, compute)`` of Eigen-CAM."""
    probe = get_probe(model, engine.one_layer("eigencam", layer), output=output, input=input, target=target)
    step = probe.step(None, Fn(eigencam_post, raw=raw), target=target)
    return probe, lambda batch, classes: step(batch.inputs, (), classes)


def cam_post(p, kernel_owner, head, raw=False):
    """One step's CAM outputs: the classifier's weights of each image's class times the activations."""
    out = engine.checks(p)
    weights = cam_class_weights(kernel_owner.kernel, head, p.classes)
    out.update(maps_lib.finish(cam_formula(p.activations[0], weights), engine.spatial_size(p.inputs), raw_output=raw))
    return out


def cam(model, images, target=None, layer=None, *, output=None, input=None,
        batch_size=DEFAULT_BATCH_SIZE, progress=None, raw=False):
    """Class activation maps: sum_k w_k^c A_k, w the classifier's weights for class c.

    Defined for models whose explained layer feeds global average pooling (1-D,
    2-D or 3-D) and then the classifier ``Dense`` (ResNet50, MobileNetV2,
    DenseNet121, InceptionV3, EfficientNetB0, or a ``gap`` head on a fine-tuned
    base); other models get a ``ValueError`` that points to :func:`gradcam`.
    With ``layer=None`` the layer feeding the pooling is used (``block5_pool``
    for a GAP head on ``VGG16(include_top=False)``). A forward pass only. No ReLU
    is applied: with ``raw=True`` negative evidence is kept. ``target`` must be a
    class (not a callable). Other arguments as in :func:`gradcam`.

    Examples:
        >>> import keras, numpy as np
        >>> from kerasxai import cam
        >>> model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=4)
        >>> cam(model, np.random.rand(1, 64, 64, 3).astype("float32"), target=2).shape
        (1, 64, 64)

    Reference: Zhou et al., "Learning Deep Features for Discriminative Localization",
    CVPR 2016. https://arxiv.org/abs/1512.04150
    """
    return engine.explain_with("cam", plan_cam(model, target, layer, output, input, raw), images, target,
                               batch_size=batch_size, progress=progress)


def check_cam_target(target) -> None:
    """CAM weighs the classifier's column of a class: a callable, segmentation or detection target has none."""
    if is_structured(target):
        raise ValueError(f"cam needs a class target (an int or one per image), not {target!r}: CAM weighs a "
                         "classifier's column of one class. Use gradcam, layercam or hirescam for a region or a box.")
    if callable(target) and not isinstance(target, str):
        raise ValueError("cam needs a class target (an int or one per image), not a callable: CAM weighs the "
                         "classifier's column of that class. Use gradcam for a score given by a function.")


def plan_cam(model, target, layer=None, output=None, input=None, raw=False):
    """``(probe, compute)`` of CAM; refuses models without a GAP -> Dense head before running anything."""
    check_cam_target(target)
    layer = engine.one_layer("cam", layer)
    if layer is None:  # CAM's layer is the one that feeds global average pooling
        layer = cam_layer(model)
    probe = get_probe(model, layer, output=output, input=input, target=target)
    dense = probe.cam_head()
    step = probe.step(None, Fn(cam_post, kernel_owner=dense, head=probe.head, raw=raw), target=target)
    return probe, lambda batch, classes: step(batch.inputs, (), classes)


# --------------------------------------------------------------------------- Score-CAM


def scorecam_channels_post(p, n=None):
    """The forward pass of Score-CAM: the ``n`` most varied channels of each image (all if None)."""
    out = engine.checks(p)
    acts = p.activations[0]
    k_total = acts.shape[-1]
    axes = spatial_axes(acts)
    if n is not None and n < k_total:
        _, channels = ops.top_k(ops.var(acts, axis=axes), k=n)
        chosen = ops.take_along_axis(acts, ops.reshape(channels, (-1,) + (1,) * len(axes) + (n,)), axis=-1)
    else:
        chosen = acts
    out["chosen"] = chosen
    out["raw_max"] = ops.max(ops.reshape(chosen, (ops.shape(chosen)[0], -1)), axis=1)
    return out


def masked_input(x, masks, channels_first=False):
    """Score-CAM's masked input: ``x`` times each low-resolution mask upsampled to it and min-max scaled.

    ``x`` as the model takes it: ``(N, spatial..., C)``, or ``(N, C, spatial...)`` with ``channels_first``.
    """
    size = tuple(x.shape[2:]) if channels_first else engine.spatial_size(x)
    scaled, _ = maps_lib.minmax(maps_lib.resize_linear(masks, size))
    return x * ops.expand_dims(ops.cast(scaled, x.dtype), 1 if channels_first else -1)


def _scores_post(p):
    return {"scores": p.scores, "finite": maps_lib.logits_finite(p.logits)}


def scorecam_maps(probe, batch, first, target, *, batch_size=DEFAULT_BATCH_SIZE, progress=None, classes=None):
    """Score-CAM's raw maps for one batch, from a forward pass's outputs ``first`` (with ``chosen``)."""
    first = dict(first)
    chosen = first.pop("chosen")  # (N, spatial..., n)
    n_images, per_image = chosen.shape[0], chosen.shape[-1]
    masks = np.moveaxis(chosen, -1, 1).reshape((n_images * per_image,) + chosen.shape[1:-1])
    owner = np.repeat(np.arange(n_images), per_image)  # masked input -> image
    used = fixed(classes, first["classes"])[owner]
    input_first = probe.input_layout == "channels_first"
    scorer = probe.step(None, Fn(_scores_post), pre=Fn(masked_input, channels_first=input_first), target=target)
    total = len(owner)
    show = progress if progress is not None else -(-total // batch_size) > 8
    bar = engine.keras.utils.Progbar(total, unit_name="masked input") if show else None
    scores = np.empty(total, np.float32)
    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        idx = owner[start:stop]
        inputs = [a[idx] for a in batch.inputs]
        part = scorer(inputs, (masks[start:stop],), used[start:stop])
        maps_lib.check_finite("scorecam", part["finite"], batch.start)
        scores[start:stop] = part["scores"]
        if bar is not None:
            bar.update(stop)
    weights = ops.softmax(ops.convert_to_tensor(scores.reshape(n_images, per_image)), axis=-1)
    first["raw"] = backend.to_numpy(cam_formula(ops.convert_to_tensor(chosen), weights))
    return first


def scorecam(model, images, target=None, layer=None, *, output=None, input=None, n=None,
             batch_size=DEFAULT_BATCH_SIZE, progress=None, raw=False):
    """Score-CAM heatmaps: channels weighted by the score of the input they mask.

    Each activation channel A_k is upsampled to the input size, min-max
    normalised to [0, 1] and multiplies the input; the channel's weight is the
    softmax over channels of the target score (logit) of that masked input;
    map = ReLU(sum_k w_k A_k). The masked inputs go through the model in
    batches of ``batch_size``, masking included in the compiled step.

    Args:
        n: keep only the ``n`` channels whose activation maps vary most (the
            faster variant; ``n=10`` is about 10 forward passes per image);
            ``None`` uses every channel.
        batch_size: images, and masked inputs, per forward pass.
        Other arguments as in :func:`gradcam`.

    Examples:
        >>> import keras, numpy as np
        >>> from kerasxai import scorecam
        >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=5)
        >>> scorecam(model, np.random.rand(1, 32, 32, 3).astype("float32"), n=8).shape
        (1, 32, 32)

    Reference: Wang et al., "Score-CAM: Score-Weighted Visual Explanations for
    Convolutional Neural Networks", CVPR workshops 2020. https://arxiv.org/abs/1910.01279
    """
    planned = plan_scorecam(model, target, layer, output, input, n=n, batch_size=batch_size, progress=progress, raw=raw)
    return engine.explain_with("scorecam", planned, images, target, batch_size=batch_size, progress=False)


def check_scorecam_n(n) -> None:
    """Score-CAM's ``n``: an int >= 1, or None for every channel."""
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"n must be at least 1 (or None for every channel). Received: n={n}")


def plan_scorecam(model, target, layer=None, output=None, input=None, *, n=None, batch_size=DEFAULT_BATCH_SIZE,
                  progress=None, raw=False):
    """``(probe, compute)`` of Score-CAM."""
    check_scorecam_n(n)
    engine.check_count("batch_size", batch_size)
    probe = get_probe(model, engine.one_layer("scorecam", layer), output=output, input=input, target=target)

    def compute(batch, classes):
        first = probe.step(None, Fn(scorecam_channels_post, n=n), target=target)(batch.inputs, (), classes)
        return scorecam_finish(probe, batch, first, target, batch_size=batch_size, progress=progress, raw=raw,
                               classes=classes)

    return probe, compute


def scorecam_finish(probe, batch, first, target, *, batch_size, progress=None, raw=False, classes=None):
    """Score-CAM's masked passes from a forward pass's ``chosen`` channels; the finished outputs.
    ``classes``: the batch's target (a structured target's mask or box follows its masked copies)."""
    out = scorecam_maps(probe, batch, first, target, batch_size=batch_size, progress=progress, classes=classes)
    raw_map = ops.relu(ops.convert_to_tensor(out.pop("raw")))
    size = probe.spatial_shape(batch.inputs[probe.explained_input])
    finished = maps_lib.finish(raw_map, size, raw_output=raw)
    return {**out, **{k: backend.to_numpy(v) for k, v in finished.items()}}
