"""``explain``: many methods on the same images, sharing their passes.

- every gradient CAM at one layer (Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM,
  LayerCAM), and saliency, come from **one** forward and backward pass, compiled
  together with every formula; Eigen-CAM, CAM (when its layer is the explained
  one) and Score-CAM's channel choice use the activations of that same pass;
- SmoothGrad, Integrated Gradients, Score-CAM's masked inputs and guided
  backpropagation need passes of their own; they explain the class the shared
  pass chose, batch by batch, so a dataset or generator is read once.

:func:`plan_explain` gives the per-batch computation itself (maps, logits,
classes): what the folder pipeline runs.
"""

from __future__ import annotations

import numpy as np

from kerasxai.methods import cams, engine, gradients
from kerasxai.methods import maps as maps_lib
from kerasxai.methods.table import ATTENTION_METHODS, GRADIENT_CAM, METHODS, check_methods
from kerasxai.probe import Fn, cam_layer, get_probe
from kerasxai.probe.regions import fixed


def shared_post(p, formulas=(), saliency=False, eigencam=False, cam=None, scorecam_n=False, raw=()):
    """The shared pass's outputs: ``map:<method>``, ``flat:<method>``... for each method it serves.

    ``formulas``: ``(name, formula)`` of every :data:`~kerasxai.methods.table.GRADIENT_CAM` asked for.
    """
    out = engine.checks(p)
    out["logits"] = p.logits
    size = engine.spatial_size(p.inputs)

    def add(name, raw_map, zero=None):
        for key, value in maps_lib.finish(raw_map, size, raw_output=name in raw).items():
            out[f"{key}:{name}"] = value
        if zero is not None:
            out[f"zero_gradient:{name}"] = zero

    if formulas:
        zero = maps_lib.gradient_is_zero(p.gradients[0])
        for name, formula in formulas:
            add(name, formula(p.activations[0], p.gradients[0]), zero)
    if saliency:
        for key, value in maps_lib.finish(gradients.saliency_formula(p.input_gradient), None,
                                          raw_output="saliency" in raw).items():
            out[f"{key}:saliency"] = value
        out["zero_gradient:saliency"] = maps_lib.gradient_is_zero(p.input_gradient)
    if eigencam:
        add("eigencam", cams.eigencam_formula(p.activations[0]))
    if cam is not None:
        dense, head = cam
        add("cam", cams.cam_formula(p.activations[0], cams.cam_class_weights(dense.kernel, head, p.classes)))
    if scorecam_n is not False:
        out["chosen"] = cams.scorecam_channels_post(p, n=scorecam_n)["chosen"]
    return out


def _check(methods, options, target=None, layer=None, batch_size=None):
    methods = check_methods(methods)
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"options is a dict method name -> dict of its options, e.g. {{'scorecam': {{'n': 10}}}}. "
                         f"Received: {options!r}")
    options = dict(options or {})
    if batch_size is not None:
        engine.check_count("batch_size", batch_size)
    if layer is not None and not any(METHODS[m].layer for m in methods):
        where = ("read from every attention layer" if all(m in ATTENTION_METHODS for m in methods)
                 else "explained at the input or from every attention layer" if any(m in ATTENTION_METHODS for m in methods)
                 else "explained at the input")
        raise ValueError(f"layer={getattr(layer, 'name', layer)!r} is given, but {', '.join(methods)} "
                         f"{'is' if len(methods) == 1 else 'are'} {where}, not at a layer: leave "
                         "layer out, or add a method that explains a layer.")
    if "cam" in methods:
        cams.check_cam_target(target)
    for name, given in options.items():
        if name not in methods:
            raise ValueError(f"options given for '{name}', which is not in methods {methods}.")
        if not isinstance(given, dict):
            raise ValueError(f"options['{name}'] must be a dict of {name}'s options ({', '.join(METHODS[name].options)}). "
                             f"Received: {given!r}")
        if name == "layercam" and "gamma" in given:
            raise ValueError("gamma scales LayerCAM's fusion of several layers, and explain() explains one layer: "
                             "leave it out, or call kerasxai.layercam(model, images, layer=[...], gamma=...).")
        if name == "scorecam" and "n" in given:
            cams.check_scorecam_n(given["n"])
        unknown = sorted(set(given) - set(METHODS[name].options) - {"progress"})
        if unknown:
            raise ValueError(f"options {unknown} are not options of '{name}', which takes "
                             f"{', '.join(METHODS[name].options)}.")
    return methods, options


def plan_explain(model, methods, target=None, layer=None, *, output=None, input=None, batch_size=None,
                 options=None):
    """``(probe, compute)`` for several methods: ``compute(batch, classes)`` gives ``map:<method>``,
    ``flat:<method>``, ``raw_max:<method>`` per method, and ``logits``, ``classes``, ``scores``.
    """
    methods, options = _check(methods, options, target, layer, batch_size)
    raw = tuple(m for m in methods if options.get(m, {}).get("raw"))
    formulas = tuple((m, METHODS[m].formula) for m in methods if METHODS[m].kind == GRADIENT_CAM)
    if engine.is_layer_list(layer) and any(METHODS[m].layer for m in methods):
        layer = engine.one_layer("explain()", layer)  # one layer for all its methods (LayerCAM's fusing is layercam()'s)
    wants_layer = any(METHODS[m].layer and METHODS[m].shared for m in methods)
    probe = get_probe(model, layer if wants_layer else (), output=output, input=input, target=target)
    cam = None
    separate = {}
    if "cam" in methods:
        own_layer = cam_layer(model) if layer is None else None
        if own_layer is not None and own_layer is not probe.layers[0]:  # CAM's layer feeds the pooling
            separate["cam"] = METHODS["cam"].plan(model, target, None, output, input, raw="cam" in raw)
        else:
            cam = (probe.cam_head(), probe.head)
    n_score = options.get("scorecam", {}).get("n") if "scorecam" in methods else False
    post = Fn(shared_post, formulas=formulas, saliency="saliency" in methods, eigencam="eigencam" in methods,
              cam=cam, scorecam_n=n_score, raw=raw)
    grads = "both" if formulas and "saliency" in methods else "layers" if formulas else "input" if "saliency" in methods else None
    step = probe.step(grads, post, target=target)
    for name in methods:
        method = METHODS[name]
        if method.shared:
            continue
        opts = {k: v for k, v in options.get(name, {}).items() if k != "progress"}
        if "progress" in method.options:  # a bar of its own copies only when asked: explain() shows the images'
            opts["progress"] = options.get(name, {}).get("progress", False)
        if batch_size is not None and "batch_size" in method.options:
            opts.setdefault("batch_size", batch_size)
        separate[name] = method.plan(model, target, layer, output, input, **opts)
    score_opts = {k: v for k, v in options.get("scorecam", {}).items() if k in ("batch_size", "progress")}
    score_opts.setdefault("batch_size", batch_size or engine.DEFAULT_BATCH_SIZE)
    fixed_classes = not (callable(target) and not isinstance(target, str))

    def compute(batch, classes):
        out = step(batch.inputs, (), classes)
        if "scorecam" in methods:
            first = {"chosen": out.pop("chosen"), "classes": out["classes"], "scores": out["scores"],
                     "finite": out["finite"]}
            done = cams.scorecam_finish(probe, batch, first, target, raw="scorecam" in raw, classes=classes, **score_opts)
            for key in ("map", "flat", "raw_max"):
                out[f"{key}:scorecam"] = done[key]
        chosen = fixed(classes, out["classes"]) if fixed_classes else None
        for name, (_, part) in separate.items():
            result = part(batch, chosen)
            key = "attributions" if name == "integrated_gradients" and name in raw else "map"
            out[f"map:{name}"] = result[key]
            for stat in ("flat", "raw_max", "zero_gradient"):
                if stat in result:
                    out[f"{stat}:{name}"] = result[stat]
        return out

    return probe, compute


def explain(model, images, methods=("saliency", "gradcam", "gradcam_plus_plus", "layercam"),
            target=None, layer=None, *, output=None, input=None, batch_size=None, options=None, progress=None):
    """Several explanations of the same images, as a dict method name -> maps.

    Args:
        model, images, target, layer, output, input, progress: as in :func:`kerasxai.gradcam`.
        methods: names from the method table, ``kerasxai.methods.table.METHODS``.
        batch_size: images per pass (default 32), and inputs per pass for the methods that
            run extra passes (SmoothGrad, Integrated Gradients, Score-CAM; their own default otherwise).
        options: per-method keyword options, e.g.
            ``{"scorecam": {"n": 10}, "smoothgrad": {"n": 50, "seed": 1}, "gradcam": {"raw": True}}``.

    Returns:
        ``{name: float32 (N, spatial...) maps in [0, 1]}`` (without the batch axis for one
        example), equal to what each single-method function returns.

    Examples:
        >>> import keras, numpy as np
        >>> from kerasxai import explain
        >>> model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=5)
        >>> out = explain(model, np.random.rand(2, 32, 32, 3).astype("float32"),
        ...               methods=("gradcam", "xgradcam", "saliency"))
        >>> sorted(out), out["gradcam"].shape
        (['gradcam', 'saliency', 'xgradcam'], (2, 32, 32))
    """
    methods, options = _check(methods, options, target, layer, batch_size)
    probe, compute = plan_explain(model, methods, target, layer, output=output, input=input,
                                  batch_size=batch_size, options=options)
    out, single = engine.run("explain", probe, images, target, compute,
                             batch_size=batch_size or engine.DEFAULT_BATCH_SIZE, progress=progress, warn=False)
    collector = maps_lib.Collector("explain")
    for name in methods:
        if f"flat:{name}" in out and not options.get(name, {}).get("raw"):
            collector.method = name
            collector.warn_flat({"flat": out[f"flat:{name}"], "scores": out.get("scores"), "classes": out.get("classes"),
                                 "raw_max": out.get(f"raw_max:{name}"),
                                 "zero_gradient": out.get(f"zero_gradient:{name}"),
                                 "nothing_to_explain": out.get("nothing_to_explain")}, "zero_gradient")
    return {name: engine.pick(out, single, f"map:{name}") for name in methods}
