"""Targets: what score a method explains.

A target turns a model's logits ``(N, C)`` into one score per image ``(N,)``.
The common shorthands are turned into a vector of class indices *before* the
compiled step, so one traced function serves every integer target:

- ``None``: the top-scoring class of each image;
- an ``int``: that class for every image;
- a sequence of ints: one class per image;
- a callable ``logits -> (N,) scores``: anything else (a sum of classes, a
  margin, a segmentation region).

For a one-unit sigmoid head, class 1 is the positive class (score = logit)
and class 0 the negative class (score = -logit); ``None`` picks whichever
the model predicts (logit > 0 means class 1).
"""

from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

PREDICTED = -1  # class index meaning "the model's top class for this image"


def class_indices(target, n_images: int, n_classes: int) -> np.ndarray:
    """Turns ``None``, an int or a sequence of ints into ``(n_images,)`` int32 indices.

    ``-1`` stands for "the predicted class". Raises ``ValueError`` for an index
    out of range or a sequence of the wrong length.

    Example:
        >>> class_indices([3, 1], n_images=2, n_classes=10).tolist()
        [3, 1]
        >>> class_indices(None, n_images=2, n_classes=10).tolist()
        [-1, -1]
    """
    valid = 2 if n_classes == 1 else n_classes
    if target is None:
        return np.full((n_images,), PREDICTED, np.int32)
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        values = np.full((n_images,), int(target), np.int64)
    else:
        values = np.asarray(target)
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise ValueError(
                "target must be None, an int, one int per image, or a callable "
                f"logits -> score per image. Received: {target!r}"
            )
        if len(values) != n_images:
            raise ValueError(
                f"target gives {len(values)} classes but there are {n_images} images: "
                "give one class per image, or a single int for all."
            )
    bad = values[(values < 0) | (values >= valid)]
    if bad.size:
        what = (
            "a one-unit sigmoid model: use 1 for the positive class, 0 for the negative"
            if n_classes == 1
            else f"the model has {n_classes} classes, so a target must be in 0..{n_classes - 1}"
        )
        raise ValueError(f"target class {int(bad[0])} is out of range: {what}.")
    return values.astype(np.int32)


def class_scores(logits, classes):
    """Score of the chosen class of each image, inside the compiled step.

    Args:
        logits: ``(N, C)`` float32 tensor.
        classes: ``(N,)`` int32 tensor, ``-1`` for the predicted class.

    Returns:
        ``(scores, classes)``: ``(N,)`` float32 scores and the ``(N,)`` class
        indices actually used (``-1`` resolved).
    """
    if logits.shape[-1] == 1:  # one sigmoid unit: class 1 = logit, class 0 = -logit
        logit = logits[:, 0]
        predicted = tf.cast(logit > 0, tf.int32)
        classes = tf.where(classes < 0, predicted, classes)
        scores = tf.where(classes == 1, logit, -logit)
        return scores, classes
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
    classes = tf.where(classes < 0, predicted, classes)
    return tf.gather(logits, classes, axis=1, batch_dims=1), classes
