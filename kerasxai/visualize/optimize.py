"""Activation maximization: the image that most excites a class, a filter or a unit.

:func:`visualize_activation` optimises one image per unit, many units in one
batch. Its heart is one compiled step (:func:`kerasxai.backend.compile_step`):

    image = parameterization.image(params)          # in [0, 1], what is shown
    x = warp(image, random transform)               # jitter, scale, rotation, resize
    score = objective(probe.call(preprocess(x)))    # the model's own preprocessing
    params += Adam(d score / d params)

written in ``keras.ops``, so it runs on TensorFlow (``tf.function``), JAX
(``jax.jit``) and PyTorch alike. Adam is written out in the step, with the
parameters and both moments passed in and returned: a pure function with no
optimizer variables, which is what ``jax.jit`` needs and what makes a seed
reproduce the same images on every backend. All randomness (initial
parameters, transforms) comes from NumPy generators seeded by ``seed``, one per
unit, so a unit's image does not depend on which other units share its batch.

A unit that gets no gradient at the start (a ReLU filter negative everywhere on
a near-grey image) restarts from louder noise, up to three times; one that is
still silent is named in a warning. The activation reported is measured again
on the returned uint8 image, without transforms: it is what that picture makes
the unit do.

References:
    Erhan, Bengio, Courville & Vincent, "Visualizing Higher-Layer Features of a Deep
    Network", 2009.
    Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017.
    https://distill.pub/2017/feature-visualization/
"""

from __future__ import annotations

import dataclasses
import warnings

import keras
import numpy as np
from keras import ops

from kerasxai import _warn, backend
from kerasxai.visualize import objectives, param as param_lib, transforms as transforms_lib
from kerasxai.visualize.preprocessing import to_model_input
from kerasxai.visualize.probing import cached_step, layer_probe

_BETA1, _BETA2, _EPSILON = 0.9, 0.999, 1e-8
_RESTARTS, _LOUDER = 3, 4.0


def _restart_silent(params, m, v, largest, rngs, param, attempt):
    """Units with no gradient at all restart from louder noise (x4 per attempt, up to x64).

    A near-grey start leaves some filters negative everywhere (a ReLU gives 0
    and no gradient) even though other images excite them; a start with more
    contrast reaches them. Only units still silent after the loudest start are
    reported as never activated.
    """
    silent = np.flatnonzero(backend.to_numpy(largest) == 0)
    if not len(silent):
        return params, m, v
    params, m, v = (np.array(backend.to_numpy(a)) for a in (params, m, v))
    for j in silent:
        params[j] = param.init(rngs[j], 1)[0] * _LOUDER**attempt
        m[j] = 0.0
        v[j] = 0.0
    return params, m, v


@dataclasses.dataclass
class ActivationImages:
    """What :func:`visualize_activation` returns.

    Attributes:
        images: uint8 ``(M, H, W, C)``, one image per unit.
        activations: ``(M,)`` the objective each returned uint8 image reaches,
            measured without transforms.
        units: the M units (class indices, channels or dense units).
        layer: qualified layer name, or ``None`` for class logits.
        objective: ``"logit"``, ``"channel"`` or ``"unit"``.
        history: ``(steps, M)`` the objective at each step, on that step's
            transformed image (before the update).
        frames: uint8 ``(F, M, H, W, C)`` snapshots at ``frame_steps`` (when
            ``frames`` was asked for), else ``None``.
        frame_steps: the steps the frames were taken after (0: the start).
        dead: units whose gradient was zero at every step (their image is the
            starting noise; a warning names them).
    """

    images: np.ndarray
    activations: np.ndarray
    units: list
    layer: str | None
    objective: str
    history: np.ndarray
    frames: np.ndarray | None = None
    frame_steps: list = dataclasses.field(default_factory=list)
    dead: list = dataclasses.field(default_factory=list)


def _units(units, n_units: int, what: str) -> list:
    if units is None:
        return list(range(n_units))
    items = [units] if isinstance(units, (int, np.integer)) else list(units)
    if not items:
        raise ValueError("units is empty: give a unit index or a list of them.")
    out = []
    for u in items:
        if isinstance(u, bool) or not isinstance(u, (int, np.integer)):
            raise TypeError(f"units must be integers. Received: {u!r}")
        if not 0 <= int(u) < n_units:
            raise ValueError(f"unit {int(u)} is out of range: {what} has {n_units} units (0 to {n_units - 1}).")
        out.append(int(u))
    return out


def _sizes(input_shape, size):
    """``(image size, model input size)``."""
    if len(input_shape) != 4:
        raise ValueError(f"visualize_activation makes images (batch, height, width, channels); the model's input "
                         f"has shape {tuple(input_shape)}.")
    fixed = tuple(input_shape[1:3])
    if size is None:
        size = fixed if None not in fixed else (224, 224)
    size = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
    model_size = fixed if None not in fixed else size
    return size, model_size


def _scorer(probe, objective, to_input, out_size):
    """``score(images in [0, 1], matrices, units) -> (n,)``: transform, preprocess, probe, objective."""

    def score(images, matrices, units):
        x = to_input(transforms_lib.warp(images, matrices, out_size))
        acts, logits = probe.call(x)
        values = objectives.per_unit(objective, acts[0] if acts else None, logits)
        return ops.cast(objectives.select(values, units), "float32")

    return score


def _compile(probe, param, objective, to_input, out_size, channels, *, learning_rate, tv, lp, lp_p):
    """The optimisation step, the evaluation step and the rendering step, compiled."""
    score_of = _scorer(probe, objective, to_input, out_size)

    def forward(params, m, v, t, units, matrices):
        image = param.image(params)
        raw = score_of(image, matrices, units)
        score = raw
        if tv:
            score = score - tv * objectives.total_variation(image)
        if lp:
            score = score - lp * objectives.lp_norm(image, lp_p)
        return score, (raw, params, m, v, t)

    def adam(aux, grads):  # gradient *ascent*
        raw, params, m, v, t = aux
        g = grads[0]
        m = _BETA1 * m + (1 - _BETA1) * g
        v = _BETA2 * v + (1 - _BETA2) * g * g
        m_hat = m / (1 - ops.power(_BETA1, t))
        v_hat = v / (1 - ops.power(_BETA2, t))
        largest = ops.max(ops.reshape(ops.abs(g), (ops.shape(g)[0], -1)), axis=1)
        return params + learning_rate * m_hat / (ops.sqrt(v_hat) + _EPSILON), m, v, raw, largest

    p_spec = ((None,) + tuple(param.shape), "float32")
    step = backend.compile_step(
        forward, probe.variables, differentiate=(0,), post=adam,
        specs=[p_spec, p_spec, p_spec, ((), "float32"), ((None,), "int32"), ((None, 6), "float32")],
    )
    identity = ops.convert_to_tensor(transforms_lib.identity_matrices(1))

    def evaluate_forward(images, units):
        matrices = ops.repeat(identity, ops.shape(images)[0], axis=0)
        return ops.zeros((1,)), score_of(images, matrices, units)

    image_shape = (None,) + tuple(param.size) + (channels,)
    evaluate = backend.compile_step(evaluate_forward, probe.variables, post=lambda aux, _: aux,
                                    specs=[(image_shape, "float32"), ((None,), "int32")])
    render = backend.compile_step(lambda p: (ops.zeros((1,)), param.image(p)), [], post=lambda aux, _: aux,
                                  specs=[p_spec])
    return step, evaluate, render


def _selection_score(evaluate, images, units, *, tv, lp, lp_p, learning_rate=None) -> np.ndarray:
    """``(n,)`` what the optimisation maximises, on ``images`` as they are returned (uint8, no transform):
    the objective less the penalties asked for (the objective alone is what `activations` reports).
    Picks the best image seen."""
    x = images.astype(np.float32) / 255.0
    value = np.asarray(backend.to_numpy(evaluate(x, units)), np.float32)
    if tv:
        value = value - tv * np.asarray(backend.to_numpy(objectives.total_variation(ops.convert_to_tensor(x))))
    if lp:
        value = value - lp * np.asarray(backend.to_numpy(objectives.lp_norm(ops.convert_to_tensor(x), lp_p)))
    return value


def _to_uint8(images) -> np.ndarray:
    return np.clip(np.round(backend.to_numpy(images) * 255.0), 0, 255).astype(np.uint8)


def visualize_activation(
    model,
    layer=None,
    units=None,
    *,
    objective=None,
    parameterization="fourier",
    transforms=True,
    steps: int = 256,
    learning_rate: float = 0.05,
    size=None,
    seed: int = 0,
    batch_size: int = 16,
    tv: float = 0.0,
    lp: float = 0.0,
    lp_p: float = 6.0,
    preprocess="auto",
    input_range=None,
    frames: int = 0,
    progress: bool = True,
) -> ActivationImages:
    """Images that maximise a class logit, a conv filter's mean activation or a dense unit.

    Args:
        model: a Keras image model (one input ``(batch, H, W, C)``, one output).
        layer: ``None`` for class logits (softmax/sigmoid left out), or a layer
            name or Layer: a conv layer (nested bases included) for its filters,
            a Dense layer of the outer model for its units.
        units: a unit index or a list of them (classes, filters, dense units);
            default every unit of the layer (every class for ``layer=None``).
        objective: ``None`` chooses from the layer (``"logit"``, ``"channel"``
            for a spatial output, ``"unit"`` for a flat one); an explicit name is
            checked against the layer.
        parameterization: ``"fourier"`` (decorrelated colours, the default),
            ``"pixel"`` (the classic keras-vis look) or an object from
            :mod:`kerasxai.visualize.param`.
        transforms: random jitter, scale and rotation at every step, fading out
            over the last steps: ``True`` (default), ``False``, a dict of
            :class:`~kerasxai.visualize.transforms.Transforms` fields (e.g.
            ``{"jitter": 0.1, "fade": None}``) or a ``Transforms``.
        steps: optimisation steps per image.
        learning_rate: Adam's step size.
        size: ``(H, W)`` (or an int) of the images; default the model's input
            size (224 if it takes any size). When the model's input size is
            fixed and differs, each step resizes the image to it.
        seed: seeds the initial images and the transforms; the same seed gives
            the same images.
        batch_size: how many units are optimised together in one batch.
        tv: weight of a total-variation penalty (smoother images); 0: off.
        lp: weight of an Lp-norm penalty on the distance from grey; 0: off.
        lp_p: the ``p`` of that norm.
        preprocess: how images in ``[0, 1]`` become the model's input: "auto"
            (the ``keras.applications`` family's ``preprocess_input``, found from
            the model's name, on 0..255 values), a family name, a function of a
            0..255 batch, or ``None`` (0..255 as they are), as in ``load_images``.
        input_range: ``(low, high)`` for a model that takes images scaled to that
            range, e.g. ``(0, 1)``; overrides ``preprocess``.
        frames: keep this many snapshots of the images during the optimisation
            (for :func:`~kerasxai.visualize.plots.save_gif`); 0: none.
        progress: show a progress bar.

    Returns:
        :class:`ActivationImages`: ``images`` (uint8: for each unit the best image seen, scored as
        returned every ``steps // 16`` steps and at the end, not merely the last) and ``activations``
        (the objective each returned image reaches), with the history of the run. A
        unit whose gradient stays zero (a filter that never activates) gets a
        warning naming it.

    Examples:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name="conv"),
        ...                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
        >>> result = visualize_activation(model, "conv", units=[0, 1], steps=8, input_range=(0, 1), progress=False)
        >>> result.images.shape, result.images.dtype.name, result.activations.shape
        ((2, 16, 16, 3), 'uint8', (2,))
    """
    probe = layer_probe(model, layer)
    objective = objectives.choose(objective, probe.layer_name, probe.output_shape)
    n_units = probe.output_shape[-1]
    what = "the model's output" if probe.layer_name is None else f"layer '{probe.layer_name}'"
    units = _units(units, n_units, what)
    if int(steps) < 1 or int(batch_size) < 1:
        raise ValueError(f"steps and batch_size must be at least 1. Received: steps={steps}, batch_size={batch_size}")
    size, model_size = _sizes(probe.input_shape, size)
    channels = int(probe.input_shape[-1])
    param = param_lib.make(parameterization, size, channels)
    transforms = transforms_lib.resolve(transforms)
    to_input = to_model_input(model, preprocess, input_range, channels)
    settings = dict(learning_rate=float(learning_rate), tv=float(tv), lp=float(lp), lp_p=float(lp_p))

    def build():
        return _compile(probe, param, objective, to_input, model_size, channels, **settings)

    if isinstance(parameterization, str) and (preprocess is None or isinstance(preprocess, str)):
        key = ("activation", probe.layer_name, objective, parameterization, size, model_size, channels, preprocess,
               None if input_range is None else tuple(float(v) for v in input_range), tuple(settings.items()))
        step, evaluate, render = cached_step(model, key, build)
    else:  # a custom parameterisation or preprocessing function: compiled for this call only
        step, evaluate, render = build()

    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(units))]
    start = np.stack([param.init(rng, 1)[0] for rng in rngs])
    unit_array = np.asarray(units, np.int32)
    history = np.zeros((int(steps), len(units)), np.float32)
    largest_grad = np.zeros(len(units), np.float32)
    frame_steps = sorted({int(round(s)) for s in np.linspace(0, steps, frames)}) if frames else []
    snapshots = {s: [] for s in frame_steps}
    images = []
    chunks = [list(range(i, min(i + batch_size, len(units)))) for i in range(0, len(units), batch_size)]
    # updated at every step: the bar's time left is there from the first steps of a long run (VGG16's
    # filters take minutes on a CPU); Progbar itself redraws at most every 0.05 s
    bar = keras.utils.Progbar(len(chunks) * steps, unit_name="step") if progress else None
    every = 1
    # The image returned is the best one seen, not the last: every `check` steps (and at the end) the
    # rendered image itself (no transform, rounded to uint8, as it is returned) is scored.
    check = max(1, steps // 16)
    for c, rows in enumerate(chunks):
        params = start[rows]
        m = np.zeros_like(params)
        v = np.zeros_like(params)
        if 0 in snapshots:
            snapshots[0].append(_to_uint8(render(params)))
        scores, grads = [], []
        best_images, best = None, np.full(len(rows), -np.inf, np.float32)
        for t in range(1, steps + 1):
            if transforms is None:
                matrices = transforms_lib.identity_matrices(len(rows))
            else:
                matrices = transforms.draw([rngs[i] for i in rows], transforms.strength(t, steps))
            params, m, v, raw, largest = step(params, m, v, np.float32(t), unit_array[rows], matrices)
            scores.append(raw)
            grads.append(largest)
            if t <= _RESTARTS:
                params, m, v = _restart_silent(params, m, v, largest, [rngs[i] for i in rows], param, t)
            if t in snapshots:
                snapshots[t].append(_to_uint8(render(params)))
            if t % check == 0 or t == steps:
                now = _to_uint8(render(params))
                value = _selection_score(evaluate, now, unit_array[rows], **settings)
                better = np.isfinite(value) & (value > best)
                best_images = now if best_images is None else np.where(better[:, None, None, None], now, best_images)
                best = np.where(better, value, best)
            if bar is not None and (t % every == 0 or t == steps):
                bar.update(c * steps + t)
        history[:, rows] = np.stack(backend.to_numpy(scores))
        largest_grad[rows] = np.max(np.stack(backend.to_numpy(grads)), axis=0)
        images.append(best_images)

    images = np.concatenate(images)
    reached = np.concatenate([
        backend.to_numpy(evaluate(images[rows].astype(np.float32) / 255.0, unit_array[rows])) for rows in chunks
    ]).astype(np.float32)
    dead = [units[i] for i in np.flatnonzero(largest_grad == 0)]
    broken = [units[i] for i in np.flatnonzero(~np.isfinite(reached) | ~np.isfinite(history).all(axis=0))]
    label = "class" if objective == "logit" else ("filter" if objective == "channel" else "unit")
    if dead:
        warnings.warn(
            f"{label.capitalize()}(s) {dead} of {what} never activated: the gradient stayed zero at every step, "
            "so their images are the starting noise, not what they detect (a 'dead' unit, e.g. a ReLU that is "
            "negative for every input). Try another seed or a larger learning_rate; if it stays dead, the unit "
            "responds to nothing.", RuntimeWarning, stacklevel=_warn.caller_stacklevel())
    if broken:
        warnings.warn(f"{label.capitalize()}(s) {broken} of {what} reached non-finite values (NaN or inf): their "
                      "images are meaningless. Lower the learning_rate or check the model for overflow.",
                      RuntimeWarning, stacklevel=_warn.caller_stacklevel())
    frames_array = np.stack([np.concatenate(snapshots[s]) for s in frame_steps]) if frame_steps else None
    return ActivationImages(images, reached, units, probe.layer_name, objective, history, frames_array,
                            frame_steps, dead)


def objective_gradients(model, images, layer=None, units=0, *, objective=None, preprocess="auto",
                        input_range=None):
    """The objective :func:`visualize_activation` climbs, and its gradient, for given display images.

    Args:
        model, layer, objective, preprocess, input_range: as in :func:`visualize_activation`.
        images: float ``(N, H, W, C)`` in ``[0, 1]`` (display space, before the
            model's preprocessing), at the model's input size.
        units: one unit for all images, or one per image.

    Returns:
        ``(scores, gradients)``: ``(N,)`` objective values and ``(N, H, W, C)``
        their gradients with respect to the display images (no transforms).

    Examples:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.GlobalAveragePooling2D(),
        ...     keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")])
        >>> scores, grads = objective_gradients(model, np.full((1, 4, 4, 3), 0.5, "float32"), input_range=(0, 1))
        >>> round(float(scores[0]), 3), round(float(grads[0, 0, 0, 0]), 4)  # 3 * 0.5; 1 / 16
        (1.5, 0.0625)
    """
    probe = layer_probe(model, layer)
    objective = objectives.choose(objective, probe.layer_name, probe.output_shape)
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C) in [0, 1]. Received shape {images.shape}")
    n_units = probe.output_shape[-1]
    what = "the model's output" if probe.layer_name is None else f"layer '{probe.layer_name}'"
    unit_list = _units([units] * len(images) if isinstance(units, (int, np.integer)) else units, n_units, what)
    if len(unit_list) != len(images):
        raise ValueError(f"units must be one index or one per image ({len(images)}). Received {len(unit_list)}.")
    _, model_size = _sizes(probe.input_shape, images.shape[1:3])
    score_of = _scorer(probe, objective, to_model_input(model, preprocess, input_range, images.shape[-1]), model_size)
    step = backend.compile_step(lambda x, m, u: (lambda score: (score, score))(score_of(x, m, u)),
                                probe.variables, differentiate=(0,), post=lambda score, grads: (score, grads[0]))
    scores, grads = step(images, transforms_lib.identity_matrices(len(images)), np.asarray(unit_list, np.int32))
    return backend.to_numpy(scores), backend.to_numpy(grads)
