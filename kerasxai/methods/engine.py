"""Running a method over images of any size: batches, progress bar, collecting, checking.

Every public method is a per-batch computation (usually one compiled step of
the probe) handed to :func:`run`, which reads the images batch by batch
(arrays, memmaps, datasets, generators: :mod:`kerasxai.probe.inputs`), collects
the outputs and checks them (:class:`kerasxai.methods.maps.Collector`): memory stays
bounded by ``batch_size`` whatever the number of images.

Arguments shared by the methods, documented once here:

- ``model``: a Keras model (Functional or Sequential, nested bases allowed; see the README's
  "Your model" for multi-input/output, 1-D, 3-D and subclassed models).
- ``images``: a batch ``(N, spatial..., C)`` preprocessed for the model, or one example without
  the batch axis; a list/dict of arrays for a multi-input model; a NumPy memmap, a
  ``tf.data.Dataset``, a ``keras.utils.PyDataset`` or an iterable of batches.
- ``target``: ``None`` (each image's top class), an int, one int per image, ``"label"`` (each
  image's own label, for inputs that carry labels), or a callable ``logits -> (N,) scores``.
- ``layer``: the explained layer (name, qualified name, Layer object) or None for the last one
  with spatial axes.
- ``output`` / ``input``: which output / input of a multi-output / multi-input model.
- ``batch_size``: images per pass (memory grows with it).
- ``progress``: show a progress bar; None shows one when there are more than 8 batches.
- ``raw``: the raw map at the layer's resolution instead of upsampled and normalised.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib

import keras
import numpy as np
from keras import ops

from kerasxai import _warn, backend
from kerasxai.methods import maps as maps_lib
from kerasxai.probe import Fn, inputs as inputs_lib
from kerasxai.probe.regions import TargetBatch

DEFAULT_BATCH_SIZE = 32


def check_count(name: str, value) -> None:
    """Raises a clear ``ValueError`` unless ``value`` is an int >= 1."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int of at least 1. Received: {name}={value!r}")


def is_layer_list(layer) -> bool:
    """Whether ``layer`` names several layers (a list, or a tuple that is not one ``(layer, call)`` pair)."""
    if isinstance(layer, list):
        return True
    if isinstance(layer, tuple):
        return not (len(layer) == 2 and isinstance(layer[1], int) and not isinstance(layer[1], bool))
    return False


def one_layer(method: str, layer):
    """``layer`` for a method that explains one layer: a list of one is that layer, a longer list an error.

    Examples:
        >>> one_layer("gradcam", ["conv"]), one_layer("gradcam", None)
        ('conv', None)
        >>> one_layer("gradcam", ["c0", "c1"])
        Traceback (most recent call last):
        ...
        ValueError: gradcam explains one layer; received 2: ['c0', 'c1']. LayerCAM fuses several (kerasxai.layercam(model, images, layer=[...])); for another method, call it once per layer.
    """
    if not is_layer_list(layer):
        return layer
    layers = list(layer)
    if len(layers) == 1:
        return layers[0]
    shown = [getattr(lay, "name", lay) for lay in layers]
    raise ValueError(f"{method} explains one layer; received {len(layers)}: {shown}. LayerCAM fuses several "
                     "(kerasxai.layercam(model, images, layer=[...])); for another method, call it once per layer.")


def spatial_size(tensor) -> tuple:
    """The static spatial axes of ``(N, spatial..., C)``."""
    return tuple(tensor.shape[1:-1])


def checks(p) -> dict:
    """What every step returns besides its maps: scores, classes, finiteness of the model's output."""
    out = {"scores": p.scores, "classes": p.classes, "finite": maps_lib.logits_finite(p.logits)}
    if p.activations:
        out["finite_layer"] = maps_lib.activations_finite(p.activations)
    return out


def _progress_bar(progress, length, batch_size):
    batches = None if length is None else -(-length // batch_size)
    show = progress if progress is not None else (batches is not None and batches > 8)
    return keras.utils.Progbar(length, unit_name="image") if show else None


def run(method: str, probe, images, target, compute, *, batch_size: int = DEFAULT_BATCH_SIZE,
        progress=None, warn: bool = True):
    """Runs ``compute(batch, classes) -> dict of NumPy arrays`` over the images in batches.

    Returns ``(outputs, single)``: the concatenated outputs and whether the caller gave
    one image without the batch axis. Non-finite model outputs raise at the batch where
    they appear; flat maps are reported once at the end.

    Batches overlap: the next one is read and checked (on a GPU, also copied to it) on a background
    thread while the current one runs (:class:`~kerasxai.probe.inputs.prefetched`), and on a GPU or TPU
    under JAX or PyTorch a batch's step starts while the previous one's outputs come back
    (``kerasxai.backend.set_overlap``): the outputs are collected in the batches' order either way.
    """
    check_count("batch_size", batch_size)
    source = probe.source(images)
    collector = maps_lib.Collector(method, source.length)
    bar = _progress_bar(progress, source.length, batch_size)

    def collect(batch, classes, out):
        if isinstance(classes, TargetBatch):  # a region or box per image: what was explained, and where nothing was
            out = {**out, **{f"target_data_{i}": d for i, d in enumerate(classes.data)}}
            if classes.empty is not None and classes.empty.any():  # warned about already; their maps are zeros
                out["nothing_to_explain"] = classes.empty
                out = _nothing_there(out, np.asarray(classes.empty, bool))
        collector.add(batch.start, out)
        if bar is not None:
            bar.update(batch.start + batch.size)

    place = backend.placer()
    with inputs_lib.prefetched(source.batches(batch_size), place=place, ahead=place is not None or not source.in_memory) as batches:
        with_classes = ((batch, probe.classes(target, batch, source.length)) for batch in batches)
        with contextlib.closing(in_order(lambda pair: compute(*pair), with_classes)) as results:
            for (batch, classes), out in results:  # an error here: the steps still running finish first
                collect(batch, classes, out)
    if collector._seen == 0:
        raise ValueError("No images given.")
    if isinstance(target, (list, tuple)) or (hasattr(target, "shape") and getattr(target, "ndim", 0) == 1):
        if len(target) != collector._seen:
            raise ValueError(
                f"target gives {len(target)} classes but there are {collector._seen} images: give one "
                "class per image, or a single int for all."
            )
    return collector.result(warn=warn), source.single


def in_order(work, items, in_flight=None):
    """``(item, work(item))`` for each of ``items``, in their order, with up to ``in_flight`` (default:
    ``kerasxai.backend.batches_in_flight()``) ``work`` calls running at once on threads of their own:
    while one batch waits for its outputs to come back from the device, the next one's step runs.

    With one in flight (the default on a CPU) ``work`` runs here, item after item. Otherwise the first
    item runs here, alone (its steps are compiled then, once; a single batch starts no thread), the
    others on worker threads; an item that cannot be read (``items`` raises) comes after the results
    of those before it (their errors come first); what is still running when the caller stops early is
    cancelled or awaited, never left behind. The workers warn where the caller's warnings go
    (:func:`kerasxai._warn.carry`).

    Examples:
        >>> [out for _, out in in_order(lambda x: x * x, iter(range(5)), in_flight=2)]
        [0, 1, 4, 9, 16]
    """
    items = iter(items)
    in_flight = backend.batches_in_flight() if in_flight is None else in_flight
    for item in items:
        yield item, work(item)
        if in_flight > 1:
            break
    if in_flight <= 1:
        return
    pending = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(in_flight, thread_name_prefix="kerasxai-step") as pool:
        try:
            while True:
                try:
                    item = next(items)
                except StopIteration:
                    break
                except BaseException:  # an item that cannot be read: the items before it first
                    while pending:
                        done, future = pending.popleft()
                        yield done, future.result()
                    raise
                pending.append((item, pool.submit(_warn.carry(work), item)))
                if len(pending) >= in_flight:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def _nothing_there(out: dict, empty) -> dict:
    """Maps of images whose region or box holds nothing to explain: zeros, flat (a class-agnostic map or
    Score-CAM's softmax over equal zero scores would otherwise still draw a picture)."""
    out = dict(out)
    for key, value in out.items():
        if isinstance(key, str) and key.split(":")[0] in ("map", "attributions") and value is not None:
            value = np.array(value)
            value[empty] = 0
            out[key] = value
        elif isinstance(key, str) and key.split(":")[0] == "flat" and value is not None:
            out[key] = np.asarray(value, bool) | empty
    return out


def explain_with(method: str, planned, images, target, *, batch_size: int = DEFAULT_BATCH_SIZE, progress=None,
                 warn: bool = True, key: str = "map"):
    """What every public method function does with its plan: :func:`run` the ``(probe, compute)`` over
    ``images`` and :func:`pick` the ``key`` output (without the batch axis for one image)."""
    probe, compute = planned
    out, single = run(method, probe, images, target, compute, batch_size=batch_size, progress=progress, warn=warn)
    return pick(out, single, key)


def pick(outputs: dict, single: bool, key: str = "map"):
    """One output array, without the batch axis when the caller gave one image."""
    array = outputs[key]
    return array[0] if single else array


def spatial_axes(tensor) -> tuple:
    """Axes between batch and channels: ``(1,)`` for signals, ``(1, 2)`` images, ``(1, 2, 3)`` volumes."""
    return tuple(range(1, len(tensor.shape) - 1))


def to_float32(x):
    """A backend tensor as float32."""
    return ops.cast(x, "float32")


def resolved_targets(probe, images, target, *, batch_size: int = DEFAULT_BATCH_SIZE) -> tuple:
    """A segmentation or detection target's per-image arrays (masks, boxes) as every method resolves them:
    a tuple of ``(N, ...)`` NumPy arrays over all the images."""
    check_count("batch_size", batch_size)
    source = probe.source(images)
    parts = []
    for batch in source.batches(batch_size):
        parts.append(probe.classes(target, batch, source.length).data)
    if not parts:
        raise ValueError("No images given.")
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(parts[0])))


def _predict_post(p):
    logits = p.logits
    if isinstance(logits, (dict, list, tuple)):  # every output of a detector: side by side, per image
        logits = ops.concatenate([ops.reshape(t, (ops.shape(t)[0], -1)) for t in keras.tree.flatten(logits)], axis=1)
    return {"logits": logits, "scores": p.scores, "classes": p.classes, "finite": maps_lib.logits_finite(p.logits)}


def predict(probe, images, target=None, *, batch_size: int = DEFAULT_BATCH_SIZE, progress=None) -> dict:
    """Logits, target scores and classes of every image, batched: a dict of NumPy arrays.

    Examples:
        >>> import keras, numpy as np
        >>> from kerasxai.probe import get_probe
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        >>> predict(get_probe(model, ()), np.zeros((5, 4)))["logits"].shape
        (5, 3)
    """
    step = probe.step(None, Fn(_predict_post), target=target)
    out, _ = run("predict", probe, images, target, lambda b, c: step(b.inputs, (), c),
                 batch_size=batch_size, progress=progress)
    return out
