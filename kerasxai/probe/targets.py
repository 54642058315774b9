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

import functools
import numbers
import types
import weakref

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
    scores = ops.take_along_axis(logits, ops.expand_dims(used, -1), axis=1)[:, 0]
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


# --------------------------------------------------------------------------- what a callable reads besides its arguments

_SCALARS = (bool, int, float, complex, str, bytes, type(None), np.generic)


class _Same:
    """An object compared by identity. Held weakly where it can be (a stamp kept with a step must not keep
    alive what the step's table holds weakly); an object that went is unequal to everything."""

    __slots__ = ("ref", "obj")

    def __init__(self, obj):
        try:
            self.ref, self.obj = weakref.ref(obj), None
        except TypeError:  # held: its id cannot be reused while the stamp lives
            self.ref, self.obj = None, obj

    def get(self):
        return self.obj if self.ref is None else self.ref()

    def __eq__(self, other):
        if not isinstance(other, _Same):
            return False
        mine = self.get()
        return mine is not None and mine is other.get()


def _frozen(value, depth: int = 0):
    """``value`` as something equal to it as long as it is unchanged: scalars, small arrays and short
    lists, tuples and dicts of them by value (an item changed in place counts), anything else by identity."""
    if isinstance(value, _SCALARS):
        return (type(value).__name__, value)
    if isinstance(value, np.ndarray) and value.size <= 4096:
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if depth < 3 and isinstance(value, (list, tuple)) and len(value) <= 256:
        return (type(value).__name__, tuple(_frozen(v, depth + 1) for v in value))
    if depth < 3 and isinstance(value, dict) and len(value) <= 256:
        return ("dict", tuple((_frozen(k, depth + 1), _frozen(v, depth + 1)) for k, v in value.items()))
    return _Same(value)


def state_stamp(fn) -> tuple:
    """What a callable target reads besides the logits, frozen: its instance's attributes (a bound
    method, a callable object), its closure, default arguments and the globals it names, a partial's
    arguments.

    A compiled step (TensorFlow, JAX) bakes these in when it traces the callable. The probe keeps a
    callable's step while its stamp is unchanged and traces it again when the stamp changes, so
    ``scorer.index = 4`` between two calls, or a closure variable rebound, is explained as it now is,
    never with the old value. Rebinding is seen for anything, changes in place for scalars, lists,
    tuples, dicts and NumPy arrays of up to 4096 values (not inside other objects).

    Examples:
        >>> class Scorer:
        ...     def __init__(self, index):
        ...         self.index = index
        ...     def score(self, logits):
        ...         return logits[:, self.index]
        >>> scorer = Scorer(3)
        >>> before = state_stamp(scorer.score)
        >>> state_stamp(scorer.score) == before
        True
        >>> scorer.index = 4
        >>> state_stamp(scorer.score) == before
        False
    """
    if isinstance(fn, functools.partial):
        return ("partial", _frozen(fn.args), _frozen(fn.keywords), state_stamp(fn.func))
    instance, function = getattr(fn, "__self__", None), getattr(fn, "__func__", None)
    if function is None and not isinstance(fn, (types.FunctionType, types.BuiltinFunctionType)):
        instance, function = fn, getattr(type(fn), "__call__", None)  # a callable object
    function = fn if function is None else function
    parts = []
    if instance is not None and not isinstance(instance, (types.ModuleType, type)):
        attributes = getattr(instance, "__dict__", None)
        if attributes is not None:
            parts.append(tuple((name, _frozen(value)) for name, value in list(attributes.items())))
        for name in getattr(type(instance), "__slots__", ()):
            if isinstance(name, str) and hasattr(instance, name):
                parts.append((name, _frozen(getattr(instance, name))))
    elif isinstance(instance, type):  # a classmethod: the class's own attributes
        parts.append(tuple((name, _frozen(value)) for name, value in list(vars(instance).items())
                           if not name.startswith("__")))
    code = getattr(function, "__code__", None)
    if code is not None:
        cells = []
        for cell in getattr(function, "__closure__", None) or ():
            try:
                cells.append(_frozen(cell.cell_contents))
            except ValueError:  # an empty cell
                cells.append(None)
        names = getattr(function, "__globals__", {})
        parts += [tuple(cells), _frozen(getattr(function, "__defaults__", None)),
                  _frozen(getattr(function, "__kwdefaults__", None)),
                  tuple((name, _frozen(names[name])) for name in code.co_names if name in names)]
    return tuple(parts)
