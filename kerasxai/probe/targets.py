"""Targets: what score a method explains.

A target turns the explained output's logits ``(N, K)`` into one score per
image ``(N,)``. The shorthands become a vector of class indices *before* the
compiled step, so one traced function serves every class target:

- ``None``: the top-scoring class of each image;
- an ``int``: that class for every image;
- a sequence of ints: one class per image;
- ``"label"``: each image's own label, for inputs that carry labels (a
  ``tf.data.Dataset`` or generator of ``(images, labels)``; int or one-hot labels);
- a callable ``logits -> (N,) scores`` (in ``keras.ops``): anything else (a sum
  of classes, a margin, a region of a segmentation output).

What a class means depends on the head (see :mod:`kerasxai.probe.heads`): for a
one-unit sigmoid, 1 is the positive class (score = logit) and 0 the negative
class (score = -logit); for a one-unit output without a squashing activation
(regression) the score is the value itself, and the only class is 0.
"""

from __future__ import annotations

import numbers

import numpy as np
from keras import ops

from kerasxai.probe.inputs import check_per_image
from kerasxai.probe.regions import is_structured

PREDICTED = -1  # class index meaning "the model's top class for this image"
LABEL = "label"


def _valid_range(head) -> int:
    if head.kind == "dense":
        raise ValueError(
            f"Output '{head.name}' is not (batch, classes), so a class index cannot name a score: give "
            "target as a callable outputs -> one score per image, e.g. lambda y: ops.mean(y[..., 1], axis=(1, 2))."
        )
    return head.n_classes


def _out_of_range_message(value: int, head) -> str:
    if head.kind == "binary":
        what = "a one-unit sigmoid output: use 1 for the positive class, 0 for the negative"
    elif head.kind == "regression":
        what = "a one-unit output without squashing activation (regression): its score is the value, target 0 or None"
    else:
        what = f"output '{head.name}' has {head.units} classes, so a target must be in 0..{head.units - 1}"
    return f"target class {value} is out of range: {what}."


def class_indices(target, n_images: int, head, *, start: int = 0, labels=None, total: int | None = None) -> np.ndarray:
    """``(n_images,)`` int32 class indices for a batch; ``-1`` means "the predicted class".

    Args:
        target: ``None``, an int, a sequence of ints (one per image of the *whole* input),
            or ``"label"``.
        n_images: images in this batch.
        head: the probe's :class:`~kerasxai.probe.heads.Head`.
        start: index of the batch's first image in the whole input (sequences are sliced there).
        labels: the batch's labels, for ``target="label"``.
        total: number of images in the whole input, when known (checks a sequence's length).

    Examples:
        >>> from kerasxai.probe.heads import Head
        >>> head = Head("out", 0, "softmax", 10, "softmax")
        >>> class_indices([3, 1], 2, head).tolist(), class_indices(None, 2, head).tolist()
        ([3, 1], [-1, -1])
    """
    if isinstance(target, (list, tuple)) and any(is_structured(t) for t in target):
        raise ValueError("target is one Segmentation or Detection target per call, not a list of them: each holds "
                         "one class, with a mask or box per image (mask=(N, H, W), box=(N, 4)); call once per class.")
    valid = _valid_range(head)
    if target is None:
        values = np.full((n_images,), PREDICTED if head.kind != "regression" else 0, np.int64)
        return values.astype(np.int32)
    if isinstance(target, str):
        if target != LABEL:
            raise ValueError(f"target must be None, an int, one int per image, 'label' or a callable. Received: {target!r}")
        if labels is None:
            raise ValueError(
                "target='label' explains each image's own label, but these images carry none: give a "
                "tf.data.Dataset (or generator) of (images, labels), or the classes themselves."
            )
        values = np.asarray(labels)
        if values.ndim == 2 and values.shape[1] > 1:  # one-hot
            values = values.argmax(axis=1)
        values = values.reshape(-1)
        if not (np.issubdtype(values.dtype, np.integer) or np.all(values == np.round(values))):
            raise ValueError(f"target='label' needs integer (or one-hot) labels. Received labels like {values[:3]!r}.")
        values = values.astype(np.int64)
    elif isinstance(target, numbers.Integral) and not isinstance(target, bool):
        values = np.full((n_images,), int(target), np.int64)
    else:
        values = np.asarray(target)
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise ValueError(
                "target must be None, an int, one int per image, 'label', or a callable "
                f"logits -> score per image. Received: {target!r}"
            )
        check_per_image("target", len(values), start, n_images, total, "class", "classes", "a single int")
        values = values[start : start + n_images]
    bad = values[(values < 0) | (values >= valid)]
    if bad.size:
        raise ValueError(_out_of_range_message(int(bad[0]), head))
    return values.astype(np.int32)


def class_scores(head, logits, classes):
    """Score of the chosen class of each image, in ``keras.ops`` (inside the compiled step).

    Args:
        head: the explained output's :class:`~kerasxai.probe.heads.Head`.
        logits: ``(N, K)`` float32.
        classes: ``(N,)`` int32, ``-1`` for the predicted class.

    Returns:
        ``(scores, classes)``: ``(N,)`` float32 scores and the ``(N,)`` classes used (``-1`` resolved).
    """
    if head.kind == "regression":
        return logits[:, 0], ops.zeros_like(classes)
    if head.kind == "binary":
        value = logits[:, 0]
        if head.removed_activation:  # a logit: class 1 = logit, class 0 = -logit
            predicted, negative = ops.cast(value > 0, "int32"), -value
        else:  # the sigmoid kept (logits=False): class 0 = 1 - p
            predicted, negative = ops.cast(value > 0.5, "int32"), 1.0 - value
        used = ops.where(classes < 0, predicted, classes)
        return ops.where(used == 1, value, negative), used
    predicted = ops.cast(ops.argmax(logits, axis=-1), "int32")
    used = ops.where(classes < 0, predicted, classes)
    # the chosen logit, exactly (x + 0 = x): a one-hot sum is a third of take_along_axis's ops on TensorFlow,
    # traced at every method's first call; a non-finite logit elsewhere makes it NaN, but such images are refused
    scores = ops.sum(ops.multiply(logits, ops.one_hot(used, ops.shape(logits)[-1], dtype=logits.dtype)), axis=-1)
    return scores, used


def callable_scores(fn, logits, classes):
    """Scores of a callable target: ``fn(logits)`` as ``(N,)`` float32; classes stay ``-1``."""
    try:
        raw = fn(logits)
    except (NotImplementedError, TypeError, RuntimeError) as err:  # NumPy on a symbolic/traced tensor, mostly
        first = (str(err).splitlines() or [""])[0][:200]
        raise ValueError(
            f"The callable target failed on the logits inside the compiled step ({type(err).__name__}: {first}). "
            "It receives backend tensors: write it with keras.ops, not NumPy, e.g. target=lambda logits: "
            "logits[:, 3] or keras.ops.mean(logits[:, 1:3], axis=1)."
        ) from err
    shape, n = tuple(getattr(raw, "shape", ())), tuple(logits.shape)[0]
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or (
        shape[0] is not None and n is not None and shape[0] != n
    ):
        raise ValueError(
            f"A callable target must return one score per image, shape (N,); it returned shape {shape} for "
            f"logits of shape {tuple(logits.shape)}. Pick one value per image, e.g. target=lambda logits: logits[:, 3]."
        )
    _check_per_image(fn, logits)
    scores = ops.reshape(ops.cast(raw, "float32"), (-1,))
    return scores, ops.full_like(classes, PREDICTED)


def _check_per_image(fn, logits):
    """Refuses a callable target whose scores do not follow the images: traced on one image's logits and
    on two, it must give 1 and 2 scores (``lambda y: keras.ops.sum(y, axis=0)`` gives one per class,
    which a batch as large as the number of classes would take for one per image). Traced only: the
    extra calls' results are unused, so compiled steps drop them."""
    per_image = tuple(logits.shape)[1:]
    if not per_image or None in per_image:
        return
    for n in (1, 2):
        rows = ops.reshape(logits[:1] if n == 1 else ops.concatenate([logits[:1], logits[:1]], axis=0), (n,) + per_image)
        shape = tuple(getattr(fn(rows), "shape", ()))
        if not shape or shape[0] != n:
            raise ValueError(
                f"A callable target must score each image from its own logits: on {n} image(s)' logits of shape "
                f"{(n,) + per_image} it returned shape {shape}, not ({n},). Reduce over the classes (axis=1 or -1), "
                "never over the images (axis=0), e.g. target=lambda logits: logits[:, 3]."
            )

