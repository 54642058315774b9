"""The method table: every method kerasxai computes, declared once.

:func:`kerasxai.explain`, the folder job (:mod:`kerasxai.folder.job`), the
command line's ``--methods``, :func:`kerasxai.evaluation.evaluate.evaluate` and
the figures read :data:`METHODS`; nothing else lists methods.

A :class:`Method` says what a method is (its kind, its formula when it has one),
how it is planned (``plan(model, target, layer, output, input, **options) ->
(probe, compute)``, the per-batch computation), and what its map is (at the
input's resolution or a layer's, whether a list of layers is fused).

Adding a CAM that is a formula of the activations and gradients at one layer:

1. write the formula in :mod:`kerasxai.methods.cams`, in ``keras.ops``:
   ``(activations, gradients)``, both ``(N, spatial..., K)`` -> ``(N, spatial...)``;
2. add one entry here: ``gradient_cam("mycam", cams.mycam_formula, "My-CAM")``;
3. add one test against a NumPy reference in ``tests/test_cams.py``.

The method then runs in ``explain(methods=("mycam",))`` (sharing Grad-CAM's
single pass), in folder runs, in ``kerasxai explain --methods mycam`` and in
``kerasxai evaluate``. A top-level ``kerasxai.mycam`` function is optional: a
signature, a docstring with an example, and one line, as ``gradcam``'s.

Examples:
    >>> from kerasxai.methods.table import METHODS
    >>> METHODS["gradcam"].kind, METHODS["saliency"].pixel, METHODS["layercam"].fuses
    ('gradient_cam', True, True)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

from kerasxai.methods import attention, cams, gradients, perturbation
from kerasxai.probe.attention import attention_layers

GRADIENT_CAM = "gradient_cam"
"""A formula of (activations, gradients) at one layer: ``explain`` computes all of them in one pass."""
LAYER = "layer"
"""Another map at a layer: forward-only (Eigen-CAM, CAM) or with passes of its own (Score-CAM)."""
INPUT = "input"
"""A map at the input's resolution, from gradients with respect to the input."""
PERTURBATION = "perturbation"
"""A map at the input's resolution from the scores of perturbed copies: forward passes only, no gradient."""
ATTENTION = "attention"
"""A map on the patch grid from a transformer's attention probabilities (and their gradients), every layer's."""
KINDS = (GRADIENT_CAM, LAYER, INPUT, PERTURBATION, ATTENTION)
SHARED_BY_NAME = ("saliency", "eigencam", "cam", "scorecam")
"""The other methods explain()'s shared pass knows by name (see :func:`kerasxai.methods.explain.shared_post`)."""


@dataclasses.dataclass(frozen=True)
class Method:
    """One method, as every part of kerasxai sees it.

    Attributes:
        name: the name used everywhere (``explain(methods=...)``, ``--methods``, map keys, file names).
        title: the name as papers write it, for figures and pages.
        kind: :data:`GRADIENT_CAM`, :data:`LAYER`, :data:`INPUT`, :data:`PERTURBATION` or :data:`ATTENTION`.
        plan: ``plan(model, target, layer, output, input, **options) -> (probe, compute)``, where
            ``compute(batch, classes)`` gives the batch's ``map``, ``flat``, ``scores``, ``classes``...
        formula: the formula of a :data:`GRADIENT_CAM`, ``(activations, gradients) -> raw map``.
        shared: ``explain`` serves it from its one shared pass (no pass of its own per method).
        layer: explained at a layer (``layer=`` applies); False for maps made at the input alone.
        pixel: its map is at the input's resolution (not a layer's, upsampled).
        fuses: ``layer=`` may be a list of layers, whose maps are fused.
        class_specific: the map depends on the target (False for Eigen-CAM, the same for every class).
        options: the method's own keyword options beyond the shared arguments.
        evaluate_options: the options ``kerasxai evaluate`` runs it with (fewer samples, no bars).
    """

    name: str
    title: str
    kind: str
    plan: Callable
    formula: Callable | None = None
    shared: bool = False
    layer: bool = True
    pixel: bool = False
    fuses: bool = False
    class_specific: bool = True
    options: tuple = ("raw",)
    evaluate_options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Method {self.name!r}: kind must be one of {KINDS}. Received: {self.kind!r}")
        if (self.kind == GRADIENT_CAM) != (self.formula is not None):
            raise ValueError(f"Method {self.name!r}: a {GRADIENT_CAM} has a formula, and only it.")
        if self.shared and self.kind != GRADIENT_CAM and self.name not in SHARED_BY_NAME:
            raise ValueError(f"Method {self.name!r}: explain()'s shared pass computes {GRADIENT_CAM} formulas and "
                             f"{', '.join(SHARED_BY_NAME)}; another method plans its own pass (shared=False).")


def gradient_cam(name: str, formula: Callable, title: str, **fields) -> Method:
    """A :data:`GRADIENT_CAM` entry: planned from its formula alone, served by ``explain``'s shared pass."""
    return Method(name, title, GRADIENT_CAM, functools.partial(cams.plan_gradient_cam, name, formula),
                  formula=formula, shared=True, **fields)


_ENTRIES = (
    gradient_cam("gradcam", cams.gradcam_formula, "Grad-CAM"),
    gradient_cam("gradcam_plus_plus", cams.gradcam_plus_plus_formula, "Grad-CAM++"),
    gradient_cam("xgradcam", cams.xgradcam_formula, "XGrad-CAM"),
    gradient_cam("hirescam", cams.hirescam_formula, "HiResCAM"),
    dataclasses.replace(gradient_cam("layercam", cams.layercam_formula, "LayerCAM"), plan=cams.plan_layercam,
                        fuses=True, options=("raw", "gamma")),
    Method("eigencam", "Eigen-CAM", LAYER, cams.plan_eigencam, shared=True, class_specific=False),
    Method("scorecam", "Score-CAM", LAYER, cams.plan_scorecam, shared=True,
           options=("n", "batch_size", "progress", "raw"), evaluate_options={"n": 16, "progress": False}),
    Method("cam", "CAM", LAYER, cams.plan_cam, shared=True),
    Method("saliency", "Saliency", INPUT, gradients.plan_saliency, shared=True, layer=False, pixel=True),
    Method("smoothgrad", "SmoothGrad", INPUT, gradients.plan_smoothgrad, layer=False, pixel=True,
           options=("n", "noise", "batch_size", "seed", "raw"), evaluate_options={"n": 10}),
    Method("integrated_gradients", "Integrated Gradients", INPUT, gradients.plan_integrated_gradients, layer=False,
           pixel=True, options=("baseline", "steps", "batch_size", "raw"), evaluate_options={"steps": 16}),
    Method("guided_backprop", "Guided backprop", INPUT, gradients.plan_guided_backprop, layer=False, pixel=True),
    Method("guided_gradcam", "Guided Grad-CAM", LAYER, gradients.plan_guided_gradcam, pixel=True),
    Method("occlusion", "Occlusion", PERTURBATION, perturbation.plan_occlusion, layer=False, pixel=True,
           options=("window", "stride", "baseline", "batch_size", "progress", "raw"),
           evaluate_options={"window": 8, "stride": 4, "progress": False}),
    Method("rise", "RISE", PERTURBATION, perturbation.plan_rise, layer=False, pixel=True,
           options=("n", "cells", "p", "seed", "batch_size", "progress", "raw"),
           evaluate_options={"n": 1000, "progress": False}),
    Method("attention_rollout", "Attention rollout", ATTENTION, attention.plan_attention_rollout, layer=False,
           class_specific=False, options=("discard_ratio", "head_fusion", "grid", "raw")),
    Method("transformer_attribution", "Transformer attribution", ATTENTION, attention.plan_transformer_attribution,
           layer=False, options=("grid", "raw")),
)

METHODS: dict = {m.name: m for m in _ENTRIES}
"""Every method by name, in the order figures and tables show them."""

NAMES = tuple(METHODS)
BLACK_BOX = ("drise",)
"""Methods of a function rather than a model (not in the table: ``kerasxai.drise(fn, ...)``), named for figures."""
PIXEL_METHODS = frozenset([m.name for m in _ENTRIES if m.pixel] + list(BLACK_BOX))
"""Methods whose maps are at the input's resolution (drawn as maps, not layer overlays)."""
ATTENTION_METHODS = frozenset(m.name for m in _ENTRIES if m.kind == ATTENTION)
"""Methods explained from every attention layer of a transformer, not at one layer."""
INPUT_METHODS = frozenset([m.name for m in _ENTRIES if not m.layer and m.kind != ATTENTION] + list(BLACK_BOX))
"""Methods explained at the input, not at a layer."""


def where(method: str, layer=None):
    """Where a method looks, as figures and pages name it: ``"input"``, ``"attention"`` or the layer.

    Examples:
        >>> where("saliency", "conv2"), where("gradcam", "conv2"), where("attention_rollout", "conv2")
        ('input', 'conv2', 'attention')
    """
    return "attention" if method in ATTENTION_METHODS else "input" if method in INPUT_METHODS else layer
CLASS_AGNOSTIC = frozenset(m.name for m in _ENTRIES if not m.class_specific)
"""Methods whose map is the same whatever the target (figures do not title them with a class)."""


def methods_for(model) -> tuple:
    """Every method that applies to ``model``, in table order: the attention methods only for a model with
    ``MultiHeadAttention`` layers.

    Examples:
        >>> import keras
        >>> cnn = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
        ...                         keras.layers.Dense(2)])
        >>> "gradcam" in methods_for(cnn), "attention_rollout" in methods_for(cnn)
        (True, False)
    """
    attends = bool(attention_layers(model))
    return tuple(name for name, method in METHODS.items() if method.kind != ATTENTION or attends)


def check_methods(methods, *, what: str = "methods") -> tuple:
    """``methods`` (a name or several) as a tuple of known names, or one clear ``ValueError``.

    Examples:
        >>> check_methods("gradcam"), check_methods(["saliency", "layercam"])
        (('gradcam',), ('saliency', 'layercam'))
    """
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    if not methods:
        raise ValueError(f"{what} is empty: name at least one of {', '.join(NAMES)}.")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method '{unknown[0]}': choose from {', '.join(NAMES)}.")
    return methods
