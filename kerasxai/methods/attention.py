"""Attention methods for vision transformers: attention rollout and transformer attribution.

Both are formulas of what an attention probe gives (:mod:`kerasxai.probe.attention`): the attention
probabilities ``A`` of every ``MultiHeadAttention`` call, ``(N, heads, T, T)`` float32 in call order, and
(transformer attribution) their gradients d(score)/dA — read from the model's own attention layers inside
the probe's compiled step, so one forward (and backward) pass per batch gives the whole map. Both end in
a relevance matrix ``R`` ``(N, T, T)`` over the tokens; the map is the class token's row over the patch
tokens (:func:`token_row`; the mean over rows for a model that pools its tokens without a class token),
on the patch grid, upsampled to the image like a CAM.
"""

from __future__ import annotations

import numbers

from keras import ops

from kerasxai.methods import engine, maps as maps_lib
from kerasxai.methods.engine import DEFAULT_BATCH_SIZE
from kerasxai.probe import Fn, get_probe
from kerasxai.probe.attention import patch_grid

HEAD_FUSIONS = ("mean", "max", "min")

# --------------------------------------------------------------------------- formulas


def token_row(relevance, grid):
    """The map of a token relevance matrix ``(N, T, T)`` on the patch grid ``(gh, gw, n_extra)``: the class
    token's (token 0's) row over the patch tokens, or with no extra token the mean over the rows.
    ``-> (N, gh, gw)``."""
    gh, gw, extra = grid
    row = relevance[:, 0, extra:] if extra else ops.mean(relevance, axis=1)
    return ops.reshape(row, (-1, gh, gw))


def fuse_heads(attention, head_fusion: str = "mean"):
    """``(N, heads, T, S) -> (N, T, S)``: the mean, max or min over the heads."""
    return {"mean": ops.mean, "max": ops.max, "min": ops.min}[head_fusion](attention, axis=1)


def discard_lowest(attention, ratio: float, keep_first: bool = True):
    """``(N, T, S)`` with each image's lowest weights — those at or below its ``ratio`` quantile, the
    ``int(T * S * ratio)``-th smallest — set to zero; the class token's weight on itself (entry 0) kept
    when ``keep_first``."""
    t, s = attention.shape[1], attention.shape[2]
    k = int(t * s * ratio)
    if k == 0:
        return attention
    flat = ops.reshape(attention, (-1, t * s))
    threshold = ops.sort(flat, axis=-1)[:, k - 1 : k]
    keep = flat > threshold
    if keep_first:
        keep = ops.logical_or(keep, ops.arange(t * s) == 0)
    return ops.reshape(ops.where(keep, flat, ops.zeros_like(flat)), (-1, t, s))


def _square(attentions):
    if any(len(a.shape) != 4 for a in attentions):
        raise ValueError(
            f"Attention rollout and transformer attribution read attention (N, heads, T, S) over one token axis; this "
            f"model's attention has shape {[tuple(a.shape) for a in attentions if len(a.shape) != 4][0]} "
            "(MultiHeadAttention's attention_axes over several axes). Explain its layers with a CAM instead.")
    shapes = {tuple(a.shape[2:]) for a in attentions}
    if len(shapes) != 1 or any(t != s for t, s in shapes):
        raise ValueError(
            f"Attention rollout and transformer attribution chain the attention of every layer over the same tokens; "
            f"this model's attention calls attend between {sorted(shapes)} tokens (cross-attention, or tokens merged "
            "between blocks). Explain its token layers with a CAM (kerasxai.gradcam(model, images, layer=...)).")
    return shapes.pop()[0]


def rollout_formula(attentions, grid, discard_ratio: float = 0.0, head_fusion: str = "mean"):
    """Attention rollout (Abnar & Zuidema 2020): per layer Â = ½·fused A + ½·I, rows renormalised,
    ``R = Â_L ⋯ Â_1``; the map :func:`token_row` of ``R``. ``attentions``: ``(N, heads, T, T)`` each."""
    t = _square(attentions)
    eye = ops.eye(t, dtype="float32")
    relevance = None
    for attention in attentions:
        fused = fuse_heads(attention, head_fusion)
        if discard_ratio:
            fused = discard_lowest(fused, discard_ratio, keep_first=grid[2] > 0)
        fused = 0.5 * fused + 0.5 * eye
        fused = fused / ops.sum(fused, axis=-1, keepdims=True)
        relevance = fused if relevance is None else ops.matmul(fused, relevance)
    return token_row(relevance, grid)


def transformer_attribution_formula(attentions, gradients, grid):
    """Transformer attribution (Chefer, Gur & Wolf 2021): ``R = I``; per layer, in order,
    Ā = mean over heads of ReLU(dS/dA ⊙ A) and ``R = R + Ā·R``; the map :func:`token_row` of ``R``."""
    t = _square(attentions)
    relevance = ops.eye(t, dtype="float32")
    for attention, gradient in zip(attentions, gradients):
        weighted = ops.mean(ops.relu(gradient * attention), axis=1)
        relevance = relevance + ops.matmul(weighted, relevance)
    if len(relevance.shape) == 2:  # pragma: no cover - a probe always has at least one attention call
        relevance = ops.expand_dims(relevance, 0)
    return token_row(relevance, grid)


# --------------------------------------------------------------------------- per-batch steps


def rollout_post(p, grid, discard_ratio=0.0, head_fusion="mean", raw=False):
    """One step's attention rollout outputs (forward only)."""
    out = engine.checks(p)
    raw_map = rollout_formula(p.activations, grid, discard_ratio, head_fusion)
    out.update(maps_lib.finish(raw_map, engine.spatial_size(p.inputs), raw_output=raw))
    del out["raw_max"]  # attention weights are never negative: a flat rollout is constant, not "negative evidence"
    return out


def transformer_attribution_post(p, grid, raw=False):
    """One step's transformer attribution outputs."""
    out = engine.checks(p)
    zero = [maps_lib.gradient_is_zero(g) for g in p.gradients]
    out["zero_gradient"] = zero[0] if len(zero) == 1 else ops.all(ops.stack(zero), axis=0)
    raw_map = transformer_attribution_formula(p.activations, p.gradients, grid)
    out.update(maps_lib.finish(raw_map, engine.spatial_size(p.inputs), raw_output=raw))
    return out


def check_grid(grid) -> tuple | None:
    """``grid=`` as ``(rows, columns, extra)`` ints, or None; a clear error otherwise."""
    if grid is None:
        return None
    ok = (isinstance(grid, (tuple, list)) and len(grid) == 3
          and all(isinstance(g, numbers.Integral) and not isinstance(g, bool) for g in grid)
          and grid[0] >= 1 and grid[1] >= 1 and grid[2] >= 0)
    if not ok:
        raise ValueError("grid is (rows, columns, extra): the patch grid and the number of tokens before the patches "
                         f"(class, distillation, register tokens), e.g. grid=(14, 14, 1). Received: grid={grid!r}")
    return tuple(int(g) for g in grid)


def _check_rollout(discard_ratio, head_fusion):
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}. Received: head_fusion={head_fusion!r}")
    if isinstance(discard_ratio, bool) or not isinstance(discard_ratio, numbers.Real) or not 0 <= discard_ratio < 1:
        raise ValueError("discard_ratio is the share of each layer's lowest attention weights set to zero, in [0, 1). "
                         f"Received: discard_ratio={discard_ratio!r}")


def plan_attention_rollout(model, target, layer=None, output=None, input=None, *, discard_ratio=0.0,
                           head_fusion="mean", grid=None, raw=False):
    """``(probe, compute)`` of attention rollout (every attention call: ``layer`` is not used)."""
    _check_rollout(discard_ratio, head_fusion)
    grid = check_grid(grid)
    probe = get_probe(model, output=output, input=input, target=target, attention=True)

    def compute(batch, classes):
        probe.net.check_self_attention(batch.inputs)
        post = Fn(rollout_post, grid=patch_grid(probe, batch.inputs, grid), discard_ratio=float(discard_ratio),
                  head_fusion=head_fusion, raw=raw)
        return probe.step(None, post, target=target)(batch.inputs, (), classes)

    return probe, compute


def plan_transformer_attribution(model, target, layer=None, output=None, input=None, *, grid=None, raw=False):
    """``(probe, compute)`` of transformer attribution (every attention call: ``layer`` is not used)."""
    grid = check_grid(grid)
    probe = get_probe(model, output=output, input=input, target=target, attention=True)

    def compute(batch, classes):
        probe.net.check_self_attention(batch.inputs)
        post = Fn(transformer_attribution_post, grid=patch_grid(probe, batch.inputs, grid), raw=raw)
        return probe.step("layers", post, target=target)(batch.inputs, (), classes)

    return probe, compute


# --------------------------------------------------------------------------- public API


def attention_rollout(model, images, target=None, *, discard_ratio=0.0, head_fusion="mean", grid=None, output=None,
                      input=None, batch_size=DEFAULT_BATCH_SIZE, progress=None, raw=False):
    """Attention rollout maps of a vision transformer: how much the class token draws on each patch.

    Every ``keras.layers.MultiHeadAttention`` call of the model is read, in the order the calls run
    (in nested models and in custom blocks, as keras-hub's ViT's, too): per call the heads are fused,
    half the identity is added for the residual connection (Â = ½·A + ½·I, rows renormalised), and the
    product ``R = Â_L ⋯ Â_1`` is taken; the map is the class token's row of ``R`` over the patch tokens
    (the mean over rows for a model that pools its tokens without a class token) on the patch grid,
    upsampled to the image. Class-agnostic: ``target`` only names the class in warnings. One forward
    pass per batch, compiled with the formula.

    Args:
        model: a Keras model with ``MultiHeadAttention`` layers over image patches.
        images, target, output, input, batch_size, progress: as in :func:`kerasxai.gradcam`.
        discard_ratio: the share of each layer's lowest fused attention weights set to zero before the
            product (the class token's weight on itself kept), as in jacobgil's vit-explain; 0 keeps all.
        head_fusion: ``"mean"`` (the paper), ``"max"`` or ``"min"`` over the heads.
        grid: ``(rows, columns, extra)``: the patch grid and the number of tokens before the patches,
            when kerasxai cannot read it from the model (its error says so); None reads it.
        raw: return the ``(N, rows, columns)`` map on the patch grid, not upsampled or normalised.

    Returns:
        float32 ``(N, H, W)`` (or without the batch axis for one example) in ``[0, 1]``.

    Examples:
        >>> import keras, numpy as np
        >>> import kerasxai
        >>> inp = keras.Input((32, 32, 3))
        >>> x = keras.layers.Reshape((16, 8))(keras.layers.Conv2D(8, 8, strides=8)(inp))
        >>> x = keras.layers.MultiHeadAttention(2, 4)(x, x)
        >>> model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(x)))
        >>> kerasxai.attention_rollout(model, np.random.rand(2, 32, 32, 3).astype("float32")).shape
        (2, 32, 32)

    Reference: Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020.
    https://arxiv.org/abs/2005.00928
    """
    planned = plan_attention_rollout(model, target, None, output, input, discard_ratio=discard_ratio,
                                     head_fusion=head_fusion, grid=grid, raw=raw)
    return engine.explain_with("attention_rollout", planned, images, target, batch_size=batch_size, progress=progress)


def transformer_attribution(model, images, target=None, *, grid=None, output=None, input=None,
                            batch_size=DEFAULT_BATCH_SIZE, progress=None, raw=False):
    """Transformer attribution maps of a vision transformer: class-specific relevance of each patch.

    Every ``keras.layers.MultiHeadAttention`` call's attention probabilities ``A`` and their gradients
    d(score)/dA are read in one forward and backward pass (the score is the target's logit, a final
    softmax or sigmoid left out); from ``R = I``, per call in order, ``Ā = mean over heads of
    ReLU(dS/dA ⊙ A)`` and ``R = R + Ā·R``. The map is the class token's row of ``R`` over the patch
    tokens (the mean over rows for a model that pools its tokens) on the patch grid, upsampled.

    Args:
        model, images, target, output, input, batch_size, progress: as in :func:`kerasxai.gradcam`.
        grid: ``(rows, columns, extra)`` when kerasxai cannot read the patch grid from the model.
        raw: return the ``(N, rows, columns)`` map on the patch grid, not upsampled or normalised.

    Returns:
        float32 ``(N, H, W)`` (or without the batch axis for one example) in ``[0, 1]``.

    Examples:
        >>> import keras, numpy as np
        >>> import kerasxai
        >>> inp = keras.Input((32, 32, 3))
        >>> x = keras.layers.Reshape((16, 8))(keras.layers.Conv2D(8, 8, strides=8)(inp))
        >>> x = keras.layers.MultiHeadAttention(2, 4)(x, x)
        >>> model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(x)))
        >>> kerasxai.transformer_attribution(model, np.random.rand(2, 32, 32, 3).astype("float32"), target=1).shape
        (2, 32, 32)

    Reference: Chefer, Gur & Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and
    Encoder-Decoder Transformers", ICCV 2021. https://arxiv.org/abs/2103.15679
    """
    planned = plan_transformer_attribution(model, target, None, output, input, grid=grid, raw=raw)
    return engine.explain_with("transformer_attribution", planned, images, target, batch_size=batch_size,
                               progress=progress)
