"""What the model saw: top-k classes with names and probabilities."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from kerasxai.data.imagenet import class_names as imagenet_class_names
from kerasxai.methods import engine
from kerasxai.probe import get_probe
from kerasxai.probe.heads import probabilities


def _imagenet_names(order):
    """ImageNet names of the class indices in ``order`` (one row per image).

    Read from the index shipped with kerasxai (:mod:`kerasxai.data.imagenet`): no
    download is attempted, online or off.
    """
    names = imagenet_class_names()
    return [[names[int(c)] for c in idx] for idx in order]


def top_k(model, images, k: int = 5, class_names: Sequence[str] | None = None, *, output=None, input=None,
          batch_size: int = 32):
    """The ``k`` most probable classes of each image: a list (per image) of ``(index, name, probability)``.

    Probabilities follow the explained output's head (see :mod:`kerasxai.probe.heads`):
    softmax of the logits for a softmax (or linear multi-class) output; both classes for
    a one-unit sigmoid; an independent sigmoid per class for a multi-label sigmoid output
    (they need not sum to 1). Names come from ``class_names`` if given, from ImageNet's
    class index for 1000-class models (shipped with kerasxai, so no download is ever
    attempted: see :mod:`kerasxai.data.imagenet`), else ``None``. Images of any kind the
    methods take (arrays, datasets, generators), ``batch_size`` at a time. A model whose
    output is not finite for an image raises a ``ValueError`` naming it.

    Examples:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(1, activation="sigmoid")])
        >>> row = top_k(model, np.zeros((1, 8, 8, 3)), class_names=["cat", "dog"])[0]
        >>> sorted(name for _, name, _ in row), round(sum(p for _, _, p in row), 6)
        (['cat', 'dog'], 1.0)
    """
    probe = get_probe(model, (), output=output, input=input)
    logits = engine.predict(probe, images, batch_size=batch_size)["logits"]
    # the head is read after the pass: a subclassed model's probe, or one whose output's values were
    # looked at (a squashing its structure hides), knows it only once it has seen a batch
    rows = rows_from_logits(probe.head, logits, k, class_names)
    return rows[0] if _is_single(probe, images) else rows


def pixel_share_rows(head, logits, k: int = 5, class_names: Sequence[str] | None = None) -> list:
    """For a per-pixel output ``(N, spatial..., K)``: per image the ``k`` classes covering most pixels,
    ``[(index, "<name> (share of pixels)", share), ...]`` — what a segmenter predicts, where a
    classifier has top-k probabilities. A pixel's class is its argmax (its logit > 0 for a sigmoid
    output; one-channel: class 1 where the logit is positive).

    Examples:
        >>> from kerasxai.probe.heads import Head
        >>> logits = np.zeros((1, 2, 2, 3)); logits[0, 0, :, 2] = 1.0
        >>> pixel_share_rows(Head("mask", 0, "dense", None, "softmax"), logits, k=2, class_names="abc")
        [[(0, 'a (share of pixels)', 0.5), (2, 'c (share of pixels)', 0.5)]]
    """
    logits = np.asarray(logits, np.float64)
    n, k_out = len(logits), logits.shape[-1]
    flat = logits.reshape(n, -1, k_out)
    if k_out == 1:
        positive = (flat[..., 0] > 0).mean(axis=1)
        shares = np.stack([1 - positive, positive], axis=1)
    elif head.removed_activation == "sigmoid":
        shares = (flat > 0).mean(axis=1)
    else:
        shares = np.stack([(flat.argmax(-1) == c).mean(axis=1) for c in range(k_out)], axis=1)
    if class_names is not None and len(class_names) != shares.shape[1]:
        raise ValueError(f"class_names has {len(class_names)} names but the model has {shares.shape[1]} classes.")
    rows = []
    for row in shares:
        order = np.argsort(-row, kind="stable")[: min(k, len(row))]
        rows.append([(int(c), f"{class_names[c] if class_names is not None else f'class {c}'} (share of pixels)",
                      float(row[c])) for c in order])
    return rows


def rows_from_logits(head, logits, k: int = 5, class_names: Sequence[str] | None = None) -> list:
    """Top-k rows ``[(index, name, probability), ...]`` per image from logits already computed.

    What :func:`top_k` returns, for logits that came with the maps of the same pass
    (``kerasxai.methods.explain.plan_explain``): no second forward pass.

    Examples:
        >>> from kerasxai.probe.heads import Head
        >>> rows = rows_from_logits(Head("out", 0, "softmax", 3, "softmax"), np.array([[0.0, 2.0, 1.0]]), k=2,
        ...                         class_names="abc")
        >>> [(c, name, round(p, 3)) for c, name, p in rows[0]]
        [(1, 'b', 0.665), (2, 'c', 0.245)]
    """
    probs = probabilities(head, logits)
    k = min(k, probs.shape[1])
    if class_names is not None and len(class_names) != probs.shape[1]:
        raise ValueError(f"class_names has {len(class_names)} names but the model has {probs.shape[1]} classes.")
    order = [np.argsort(-row, kind="stable")[:k] for row in probs]  # ties: lower index first
    names = None
    if class_names is None and probs.shape[1] == 1000:
        names = _imagenet_names(order)
    out = []
    for i, idx in enumerate(order):
        row = []
        for j, c in enumerate(idx):
            name = class_names[c] if class_names is not None else (names[i][j] if names else None)
            row.append((int(c), name, float(probs[i, c])))
        out.append(row)
    return out


def _is_single(probe, images) -> bool:
    """Whether ``images`` is one example without the batch axis (arrays only)."""
    if not hasattr(images, "shape") or len(probe.input_specs) != 1:
        return False
    return len(images.shape) == len(probe.input_shape) - 1
