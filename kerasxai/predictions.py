"""What the model saw: top-k classes with names and probabilities."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from kerasxai.probe import get_probe


def _imagenet_names(order):
    """ImageNet names of the class indices in ``order`` (one row per image).

    Read from the index shipped with kerasxai (:mod:`kerasxai.imagenet`): no
    download is attempted, online or off.
    """
    from kerasxai.imagenet import class_names

    names = class_names()
    return [[names[int(c)] for c in idx] for idx in order]


def top_k(model, images, k: int = 5, class_names: Sequence[str] | None = None):
    """The ``k`` most probable classes of each image: a list (per image) of ``(index, name, probability)``.

    Probabilities are the softmax (or, for one sigmoid unit, the sigmoid) of
    the logits. Names come from ``class_names`` if given, from ImageNet's
    class index for 1000-class models (shipped with kerasxai, so no download
    is ever attempted: see :mod:`kerasxai.imagenet`), else ``None``. A
    one-unit sigmoid head gives both classes.

    Example:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(1, activation="sigmoid")])
        >>> row = top_k(model, np.zeros((1, 8, 8, 3)), class_names=["cat", "dog"])[0]
        >>> sorted(name for _, name, _ in row), round(sum(p for _, _, p in row), 6)
        (['cat', 'dog'], 1.0)
    """
    probe = get_probe(model, ())
    x, single = probe.prepare(images)
    logits = probe.forward(x).logits.numpy().astype(np.float64)
    if logits.shape[-1] == 1:
        p1 = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        probs = np.stack([1.0 - p1, p1], axis=1)
    else:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = shifted / shifted.sum(axis=1, keepdims=True)
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
    return out[0] if single else out
