"""``explain``: many methods on the same images, sharing their passes.

- every CAM method at one layer (Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM,
  LayerCAM, CAM, Eigen-CAM, and Score-CAM's activations) uses one forward pass
  and one backward pass to that layer;
- saliency takes its input gradient from that same backward pass;
- SmoothGrad, Integrated Gradients and Score-CAM's masked inputs need passes of
  their own, batched by ``batch_size``; guided backpropagation needs one pass
  of its guided probe, and Guided Grad-CAM multiplies it with the shared Grad-CAM.
"""

from __future__ import annotations


from kerasxai import maps as maps_lib
from kerasxai.methods import cams, gradients
from kerasxai.probe import cam_layer, get_probe

_LAYER_ONLY = ("cam", "eigencam", "scorecam")
_SEPARATE = {
    "smoothgrad": gradients.smoothgrad,
    "integrated_gradients": gradients.integrated_gradients,
    "guided_backprop": gradients.guided_backprop,
}
METHODS = tuple(cams.GRADIENT_FORMULAS) + _LAYER_ONLY + ("saliency",) + tuple(_SEPARATE) + ("guided_gradcam",)


def explain(model, images, methods=("saliency", "gradcam", "gradcam_plus_plus", "layercam"),
            target=None, layer=None, *, batch_size=None, options=None):
    """Several explanations of the same images, as a dict method name -> maps.

    Args:
        model, images, target, layer: as in :func:`kerasxai.gradcam`.
        methods: names from ``kerasxai.methods.explain.METHODS``.
        batch_size: inputs per pass for the methods that run extra passes
            (SmoothGrad, Integrated Gradients, Score-CAM); memory grows with it.
            ``None`` keeps each method's own default.
        options: per-method keyword options, e.g.
            ``{"scorecam": {"n": 10}, "smoothgrad": {"n": 50, "seed": 1}}``.

    Returns:
        ``{name: float32 (N, H, W) maps in [0, 1]}`` (``(H, W)`` for one image),
        equal to what each single-method function returns.

    Example:
        >>> import keras, numpy as np
        >>> from kerasxai import explain
        >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=5)
        >>> out = explain(model, np.random.rand(2, 32, 32, 3).astype("float32"),
        ...               methods=("gradcam", "xgradcam", "saliency"))
        >>> sorted(out), out["gradcam"].shape
        (['gradcam', 'saliency', 'xgradcam'], (2, 32, 32))
    """
    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}. Known methods: {', '.join(METHODS)}.")
    options = dict(options or {})
    for name in options:
        if name not in methods:
            raise ValueError(f"options given for '{name}', which is not in methods {methods}.")

    requested = methods
    if "guided_gradcam" in methods:  # built from the two maps below
        methods = tuple(dict.fromkeys(methods + ("gradcam", "guided_backprop")))
    wants_layer = [m for m in methods if m in cams.GRADIENT_FORMULAS or m in _LAYER_ONLY]
    out, result, single = {}, None, False
    if wants_layer or "saliency" in methods:
        probe = get_probe(model, layer if wants_layer else ())
        x, single = probe.prepare(images)
        size = x.shape[1:3]
        needs_grads = any(m in cams.GRADIENT_FORMULAS for m in methods) or "saliency" in methods
        if not needs_grads:
            result = probe.forward(x, target)
        elif "saliency" in methods:
            result = probe.all_gradients(x, target)  # layer gradients and input gradient together
        else:
            result = probe.gradients(x, target)
        acts = result.activations[0] if wants_layer else None
        grads = result.gradients[0] if wants_layer and needs_grads else None

        def finish(name, raw):
            raw_output = options.get(name, {}).get("raw", False)
            return maps_lib.finish(name, raw, size, result, raw_output=raw_output, single=single)

        for name in methods:
            if name in cams.GRADIENT_FORMULAS:
                out[name] = finish(name, cams.GRADIENT_FORMULAS[name](acts, grads))
            elif name == "saliency":
                out[name] = finish(name, gradients.saliency_formula(result.gradients[-1]))
            elif name == "eigencam":
                out[name] = finish(name, cams.eigencam_formula(acts))
            elif name == "cam" and layer is None and cam_layer(model) not in (None, probe.layers[0]):
                # CAM's layer is the one feeding the pooling (block5_pool on a VGG16 base)
                out[name] = cams.cam(model, images, target, **options.get(name, {}))
            elif name == "cam":  # at the explained layer, which must feed GAP -> Dense
                out[name] = finish(name, cams.cam_formula(acts, cams.cam_class_weights(probe, result)))
            elif name == "scorecam":
                opts = {k: v for k, v in options.get(name, {}).items() if k in ("n", "progress", "batch_size")}
                if batch_size is not None:
                    opts.setdefault("batch_size", batch_size)
                raw = cams.scorecam_maps(model, x, result, target, **opts)
                out[name] = finish(name, raw)
    guided_target = target
    if target is None and result is not None:  # guided maps explain the class the shared pass chose
        guided_target = result.classes.numpy().tolist()
        guided_target = guided_target[0] if single else guided_target
    for name in methods:
        if name == "guided_backprop":
            out[name] = gradients.guided_backprop(model, images, guided_target, **options.get(name, {}))
        elif name in _SEPARATE:
            opts = dict(options.get(name, {}))
            if batch_size is not None:
                opts.setdefault("batch_size", batch_size)
            out[name] = _SEPARATE[name](model, images, target, **opts)
    if "guided_gradcam" in methods:
        out["guided_gradcam"] = gradients.combine_guided(out["guided_backprop"], out["gradcam"])
    return {name: out[name] for name in requested}
