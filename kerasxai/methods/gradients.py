"""Gradient methods: attributions computed from d(score)/d(input).

Every method here differentiates with respect to the *explained input* only
(for a multi-input model, the others are held fixed), as the model computes
with it: an integer input is differentiated through the float value fed to the
model. The noisy copies (SmoothGrad), path points (Integrated Gradients) and
their gradients are made inside the compiled step, ``batch_size`` at a time.
Arguments shared with the CAM methods are documented in :mod:`kerasxai.methods.engine`.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from kerasxai import backend
from kerasxai.methods import maps as maps_lib
from kerasxai.methods import cams, engine
from kerasxai.methods.engine import DEFAULT_BATCH_SIZE
from kerasxai.probe import Fn, get_probe
from kerasxai.probe.inputs import check_per_image
from kerasxai.probe.regions import fixed


def saliency_formula(input_gradients):
    """Vanilla saliency: |d(score)/d(input)|, maximum over channels. ``(N, spatial..., C) -> (N, spatial...)``;
    a tabular input ``(N, features)`` has no channel axis: one value per feature, ``(N, features)``."""
    if len(input_gradients.shape) == 2:
        return ops.abs(input_gradients)
    return ops.max(ops.abs(input_gradients), axis=-1)


def saliency_post(p, raw=False):
    """One step's saliency outputs."""
    out = engine.checks(p)
    out["zero_gradient"] = maps_lib.gradient_is_zero(p.input_gradient)
    out.update(maps_lib.finish(saliency_formula(p.input_gradient), None, raw_output=raw))
    return out


def saliency(model, images, target=None, *, output=None, input=None, batch_size=DEFAULT_BATCH_SIZE,
             progress=None, raw=False):
    """Vanilla saliency maps: |d(score)/d(input)|, maximum over channels.

    One forward and one backward pass to the input. The score is the target's
    logit (a final softmax or sigmoid is left out).

    Args:
        model: a Keras model; any model, subclassed ones included.
        images: ``(N, spatial..., C)`` or one example, preprocessed for the model (see
            :mod:`kerasxai.methods.engine` for datasets, memmaps and multi-input models).
        target: ``None`` (predicted class), an int, one int per image, ``"label"``, or a
            callable ``logits -> (N,) scores``.
        output, input: the output / input explained, for multi-output / multi-input models.
        batch_size, progress: images per pass; progress bar.
        raw: return the un-normalised ``(N, spatial...)`` gradient magnitudes.

    Returns:
        float32 ``(N, spatial...)`` (or without the batch axis for one example) in ``[0, 1]``.

    Examples:
        >>> import keras, numpy as np
        >>> from kerasxai import saliency
        >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5)
        >>> saliency(model, np.random.rand(64, 64, 3).astype("float32"), target=3).shape
        (64, 64)

    Reference: Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks:
    Visualising Image Classification Models and Saliency Maps", ICLR workshop 2014.
    https://arxiv.org/abs/1312.6034
    """
    return engine.explain_with("saliency", plan_saliency(model, target, None, output, input, raw=raw), images, target,
                               batch_size=batch_size, progress=progress)


def plan_saliency(model, target, layer=None, output=None, input=None, raw=False):
    """``(probe, compute)`` of saliency (at the input: ``layer`` is not used)."""
    probe = get_probe(model, (), output=output, input=input, target=target)
    step = probe.step("input", Fn(saliency_post, raw=raw), target=target)
    return probe, lambda batch, classes: step(batch.inputs, (), classes)


# --------------------------------------------------------------------------- many inputs per image


def _clean_pass(probe, batch, classes, target):
    """Scores, classes and checks on the images themselves: copies explain the class chosen here."""
    return probe.step(None, Fn(_checks_post), target=target)(batch.inputs, (), classes)


def _checks_post(p):
    return engine.checks(p)


def _copies(method, probe, batch, per_image, used, target, make_extra, post, pre, batch_size):
    """Runs ``per_image`` generated inputs of every image of ``batch``, ``batch_size`` at a time.

    ``make_extra(owner, copy)`` gives the extra step arguments of those copies.
    Yields ``(owner, copy, outputs)`` per chunk.
    """
    owner = np.repeat(np.arange(batch.size), per_image)
    copy = np.tile(np.arange(per_image), batch.size)
    step = probe.step("input", post, pre=pre, target=target)
    for start in range(0, len(owner), batch_size):
        idx = slice(start, min(start + batch_size, len(owner)))
        inputs = [a[owner[idx]] for a in batch.inputs]
        classes = None if used is None else used[owner[idx]]  # int32, or a TargetBatch
        out = step(inputs, make_extra(owner[idx], copy[idx]), classes)
        maps_lib.check_finite(method, out["finite"], batch.start)
        yield owner[idx], copy[idx], out


def add_noise(x, noise, sigma):
    """SmoothGrad's noisy copy: ``x + sigma * noise`` (noise unit Gaussian, sigma per copy)."""
    shape = (-1,) + (1,) * (len(x.shape) - 1)
    return x + ops.cast(ops.reshape(sigma, shape), x.dtype) * ops.cast(noise, x.dtype)


def _saliency_sum_post(p):
    return {"map": saliency_formula(p.input_gradient), "finite": maps_lib.logits_finite(p.logits),
            "zero_gradient": maps_lib.gradient_is_zero(p.input_gradient)}


def smoothgrad_noise(shape, seed: int, copy: int) -> np.ndarray:
    """Unit Gaussian noise of copy ``copy``: the same for a (seed, copy) on every backend and batch size.

    Every image of a call gets the same ``n`` noise patterns (each scaled to its own range): an image's
    map depends on neither the batch size, nor its place among the images, nor the backend, and the
    noise is drawn ``n`` times per call, not ``n`` times per image.
    """
    return np.random.default_rng([seed, copy]).standard_normal(shape, dtype=np.float32)


def smoothgrad(model, images, target=None, *, output=None, input=None, n=20, noise=0.2,
               batch_size=16, seed=0, progress=None, raw=False):
    """SmoothGrad: the mean saliency map over ``n`` noisy copies of each image.

    Gaussian noise with standard deviation ``noise * (max - min)`` of each image
    is added; the noisy copies go through the model ``batch_size`` at a time, so
    50 copies of 32 images at 224x224 run in bounded memory. The class explained
    is fixed on the clean image. Copy j of every image gets the same noise
    pattern, drawn from ``seed`` and j alone (scaled to each image's range), so
    an image's map depends on neither ``batch_size``, nor its place among the
    images, nor the backend. Other arguments as in :func:`saliency`.

    Examples:
        >>> import keras, numpy as np
        >>> from kerasxai import smoothgrad
        >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=5)
        >>> x = np.random.rand(2, 32, 32, 3).astype("float32")
        >>> a, b = smoothgrad(model, x, n=4, seed=1), smoothgrad(model, x, n=4, seed=1)
        >>> a.shape, bool((a == b).all())  # the same seed, the same maps
        ((2, 32, 32), True)

    Reference: Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017.
    https://arxiv.org/abs/1706.03825
    """
    planned = plan_smoothgrad(model, target, None, output, input, n=n, noise=noise, batch_size=batch_size, seed=seed,
                              raw=raw)
    return engine.explain_with("smoothgrad", planned, images, target, batch_size=batch_size, progress=progress)


def plan_smoothgrad(model, target, layer=None, output=None, input=None, *, n=20, noise=0.2, batch_size=16, seed=0,
                    raw=False):
    """``(probe, compute)`` of SmoothGrad (at the input: ``layer`` is not used)."""
    engine.check_count("n", n)
    engine.check_count("batch_size", batch_size)
    probe = get_probe(model, (), output=output, input=input, target=target)
    k = probe.explained_input
    channels_first = probe.input_layout == "channels_first"
    shared_patterns: dict = {}  # (copy, image shape) -> noise, drawn once per call

    def compute(batch, classes):
        clean = _clean_pass(probe, batch, classes, target)
        x = batch.inputs[k]
        axes = tuple(range(1, x.ndim))
        sigma = noise * (x.max(axis=axes) - x.min(axis=axes))
        used = fixed(classes, clean["classes"])

        def extra(owner, copy):
            shape, patterns = x.shape[1:], shared_patterns
            for c in copy.tolist():
                if (c, shape) not in patterns:  # drawn channels-last: the same noise whatever the data format
                    patterns[(c, shape)] = (np.moveaxis(smoothgrad_noise(shape[1:] + shape[:1], seed, c), -1, 0)
                                            if channels_first else smoothgrad_noise(shape, seed, c))
            return np.stack([patterns[(c, shape)] for c in copy]), sigma[owner].astype(np.float32)

        # tabular: one value per feature; images (either data format): one per position
        total = np.zeros(x.shape if x.ndim == 2 else (len(x),) + probe.spatial_shape(x), np.float32)
        zero = np.ones(len(x), bool)
        for owner, _, out in _copies("smoothgrad", probe, batch, n, used, target, extra, Fn(_saliency_sum_post), Fn(add_noise), batch_size):
            # owners come sorted: one sum per image of the chunk
            owners, first = np.unique(owner, return_index=True)
            total[owners] += np.add.reduceat(out["map"], first, axis=0)
            zero[owners] &= np.logical_and.reduceat(out["zero_gradient"], first)
        finished = maps_lib.finish(total / n, None, raw_output=raw)
        return {**clean, "zero_gradient": zero, **{key: backend.to_numpy(v) for key, v in finished.items()}}

    return probe, compute


def interpolate(x, baseline, alpha):
    """A point on Integrated Gradients' straight path: ``baseline + alpha * (x - baseline)``."""
    shape = (-1,) + (1,) * (len(x.shape) - 1)
    baseline = ops.cast(baseline, x.dtype)
    return baseline + ops.cast(ops.reshape(alpha, shape), x.dtype) * (x - baseline)


def _gradient_post(p, channels_first=False):
    """The input gradient in the model's own layout (Integrated Gradients multiplies it with the input)."""
    gradient = ops.moveaxis(p.input_gradient, -1, 1) if channels_first else p.input_gradient
    return {"gradient": gradient, "finite": maps_lib.logits_finite(p.logits)}


def _baseline_for(baseline, batch, x):
    if baseline is None:
        return np.zeros_like(x)
    base = np.asarray(baseline, np.float32)
    if not np.isfinite(base).all():
        bad = np.argwhere(~np.isfinite(base))[0].tolist()
        raise ValueError(f"baseline holds NaN or infinite values (first at index {bad}; a float32 baseline also "
                         "overflows above 3.4e38): the path from it to the image has no finite gradient. "
                         "Give a finite baseline, e.g. zeros or a blurred image.")
    if base.shape == x.shape[1:]:
        return np.broadcast_to(base, x.shape)
    if base.ndim == x.ndim and len(base) > 1 and base.shape[1:] == x.shape[1:]:  # one per image
        check_per_image("baseline", len(base), batch.start, len(x), batch.total, "example", "examples",
                        f"a single one of shape {x.shape[1:]}")
        return base[batch.start : batch.start + len(x)]
    try:
        return np.broadcast_to(base, x.shape)
    except ValueError:
        raise ValueError(
            f"baseline has shape {base.shape}; it must be one example {x.shape[1:]} or one per image."
        ) from None


def integrated_gradients(model, images, target=None, *, output=None, input=None, baseline=None, steps=50,
                         batch_size=16, progress=None, raw=False):
    """Integrated Gradients: (x - baseline) times the mean gradient along the straight path.

    The path integral uses the trapezoidal rule on ``steps + 1`` points, in
    batches of ``batch_size``; attributions then sum to about score(x) -
    score(baseline) (completeness). The class explained is fixed on the image itself.

    Args:
        baseline: one example (or one per image); default zeros — black for inputs
            scaled to [0, 1]. For caffe-style inputs (VGG16, ResNet50) pass
            ``preprocess_input(np.zeros((H, W, 3)))`` for black.
        steps: number of intervals of the path.
        raw: return the ``(N, spatial..., C)`` attributions themselves; otherwise the
            map is |sum over channels| normalised to [0, 1].
        Other arguments as in :func:`saliency`.

    Examples:
        >>> import keras, numpy as np
        >>> from kerasxai import integrated_gradients
        >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=5)
        >>> x = np.random.rand(32, 32, 3).astype("float32")
        >>> integrated_gradients(model, x, steps=8).shape, integrated_gradients(model, x, steps=8, raw=True).shape
        ((32, 32), (32, 32, 3))

    Reference: Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks",
    ICML 2017. https://arxiv.org/abs/1703.01365
    """
    planned = plan_integrated_gradients(model, target, None, output, input, baseline=baseline, steps=steps,
                                        batch_size=batch_size)
    return engine.explain_with("integrated_gradients", planned, images, target, batch_size=batch_size,
                               progress=progress, warn=not raw, key="attributions" if raw else "map")


def plan_integrated_gradients(model, target, layer=None, output=None, input=None, *, baseline=None, steps=50,
                              batch_size=16, raw=False):
    """``(probe, compute)`` of Integrated Gradients (outputs ``attributions`` and the ``map``; ``raw`` picks
    which one the caller keeps, so it changes nothing here; at the input: ``layer`` is not used)."""
    engine.check_count("steps", steps)
    engine.check_count("batch_size", batch_size)
    probe = get_probe(model, (), output=output, input=input, target=target)
    k = probe.explained_input
    first = probe.input_layout == "channels_first"
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    weights = np.full(steps + 1, 1.0 / steps, np.float32)
    weights[[0, -1]] *= 0.5  # trapezoid

    def compute(batch, classes):
        x = batch.inputs[k]
        base = _baseline_for(baseline, batch, x)  # checked before any pass
        clean = _clean_pass(probe, batch, classes, target)
        used = fixed(classes, clean["classes"])

        def extra(owner, copy):
            return base[owner].astype(np.float32), alphas[copy]

        mean_grad = np.zeros(x.shape, np.float32)
        for owner, copy, out in _copies("integrated_gradients", probe, batch, steps + 1, used, target, extra, Fn(_gradient_post, channels_first=first), Fn(interpolate), batch_size):
            np.add.at(mean_grad, owner, out["gradient"] * weights[copy].reshape((-1,) + (1,) * (x.ndim - 1)))
        attributions = (x - base) * mean_grad
        result = {**clean, "attributions": attributions}
        raw_map = np.abs(attributions if x.ndim == 2 else attributions.sum(axis=1 if first else -1))  # tabular: per feature
        finished = maps_lib.finish(raw_map, None)
        result.update({key: backend.to_numpy(v) for key, v in finished.items()})
        result["zero_gradient"] = ~mean_grad.reshape(len(x), -1).any(axis=1)
        return result

    return probe, compute


# --------------------------------------------------------------------------- guided


def _guided_post(p, raw=False, channels_first=False):
    out = saliency_post(p, raw=False)
    if raw:  # the guided gradients themselves, in the model's own layout
        out["map"] = ops.moveaxis(p.input_gradient, -1, 1) if channels_first else p.input_gradient
    return out


def guided_backprop(model, images, target=None, *, output=None, input=None, batch_size=DEFAULT_BATCH_SIZE,
                    progress=None, raw=False):
    """Guided backpropagation: input gradients through ReLUs gated on positive input and gradient.

    Computed on a guided probe of the model, in which each ReLU (a separate
    layer or a Conv/Dense layer's own activation) passes back only positive
    gradients where its input was positive. The user's model and its
    gradients are not changed. Returns ``max_c |guided gradient|`` normalised
    to [0, 1]; ``raw=True`` gives the ``(N, spatial..., C)`` guided gradients.
    Other arguments as in :func:`saliency`.

    Examples:
        >>> import keras, numpy as np
        >>> from kerasxai import guided_backprop
        >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=5)
        >>> x = np.random.rand(1, 32, 32, 3).astype("float32")
        >>> guided_backprop(model, x).shape, guided_backprop(model, x, raw=True).shape  # map; guided gradients
        ((1, 32, 32), (1, 32, 32, 3))

    Reference: Springenberg et al., "Striving for Simplicity: The All Convolutional
    Net", ICLR workshop 2015. https://arxiv.org/abs/1412.6806
    """
    return engine.explain_with("guided_backprop", plan_guided_backprop(model, target, None, output, input, raw=raw),
                               images, target, batch_size=batch_size, progress=progress, warn=not raw)


def plan_guided_backprop(model, target, layer=None, output=None, input=None, raw=False):
    """``(probe, compute)`` of guided backpropagation, on the guided probe."""
    probe = get_probe(model, (), output=output, input=input, guided=True, target=target)
    step = probe.step("input", Fn(_guided_post, raw=raw, channels_first=probe.input_layout == "channels_first"),
                      target=target)
    return probe, lambda batch, classes: step(batch.inputs, (), classes)


def guided_gradcam(model, images, target=None, layer=None, *, output=None, input=None,
                   batch_size=DEFAULT_BATCH_SIZE, progress=None, raw=False):
    """Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM map.

    Both factors are the normalised maps of :func:`guided_backprop` and
    :func:`kerasxai.gradcam` for the same target; the product is normalised
    again. ``raw=True`` returns the product before that last normalisation.

    Examples:
        >>> import keras, numpy as np
        >>> from kerasxai import guided_gradcam
        >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=5)
        >>> maps = guided_gradcam(model, np.random.rand(1, 32, 32, 3).astype("float32"), target=1)
        >>> maps.shape, float(maps.min()) >= 0.0, float(maps.max()) <= 1.0
        ((1, 32, 32), True, True)

    Reference: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization", ICCV 2017. https://arxiv.org/abs/1610.02391
    """
    return engine.explain_with("guided_gradcam", plan_guided_gradcam(model, target, layer, output, input, raw=raw),
                               images, target, batch_size=batch_size, progress=progress, warn=False)


def plan_guided_gradcam(model, target, layer=None, output=None, input=None, raw=False):
    """``(probe, compute)`` of Guided Grad-CAM: the guided pass, then Grad-CAM of the class it chose."""
    probe = get_probe(model, engine.one_layer("guided_gradcam", layer), output=output, input=input, target=target)
    guided = get_probe(model, (), output=output, input=input, guided=True, target=target)
    guided_step = guided.step("input", Fn(_guided_post), target=target)
    cam_step = probe.step("layers", Fn(cams.gradient_cam_post, formulas=(("gradcam", cams.gradcam_formula),)), target=target)

    def compute(batch, classes):
        out = guided_step(batch.inputs, (), classes)
        if classes is not None:  # Grad-CAM explains the class the guided pass chose
            classes = fixed(classes, out["classes"])
        cam = cam_step(batch.inputs, (), classes)["map:gradcam"]
        out["map"] = combine_guided(out["map"], cam, raw=raw)
        out["flat"] = ~(out["map"].reshape(len(out["map"]), -1).max(axis=1) > 0)  # the product's, not the factors'
        return out

    return guided, compute


def combine_guided(guided_map, gradcam_map, *, raw=False):
    """Element-wise product of guided-backprop and Grad-CAM maps, normalised unless ``raw``."""
    product = np.asarray(guided_map, np.float32) * np.asarray(gradcam_map, np.float32)
    if raw:
        return product
    out, _ = maps_lib.normalize(product)
    return out
