"""Inputs: which input is explained, and the images of any size of data set, in batches.

``images`` may be:

- an array ``(N, spatial..., C)`` — NumPy, a NumPy memmap (read batch by batch),
  or a backend tensor — or one image without the batch axis;
- for a model with several inputs, a list/tuple in ``model.inputs`` order or a
  dict keyed by input name, one entry per input, each with one row per image;
- a ``tf.data.Dataset`` (batched or not) whose elements are the inputs or
  ``(inputs, labels)`` (``target="label"`` explains each image's own label);
- a ``keras.utils.PyDataset`` or any iterable/generator of batches, shaped like
  the dataset's elements.

Every batch is checked before any pass: every input must match the model's
input shape and be finite (NaN or inf values raise a ``ValueError`` naming the
images and the input), and the explained input keeps one size over a call.
Finiteness is checked where it is cheapest: an input converted here (float64
to float32) on the host, during the conversion's pass; an input fed as it is
given, inside the compiled step, on the device (the step refuses the batch
before anything of it is returned, with the same message:
:func:`refuse_nonfinite`).

:func:`prefetched` reads and checks the next batches on a background thread
(and, on a GPU, starts their copy to the device) while the current one runs. The
explained input is fed to the model as float32, so an integer input (``uint8``
with a ``Rescaling`` layer inside) is differentiated through the float value
the model computes with.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import sys
import threading
from typing import Iterator

import numpy as np

from kerasxai import _warn


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One model input: name, shape (batch as None) and dtype."""

    name: str
    shape: tuple
    dtype: str

    @property
    def spatial(self) -> bool:
        """True for inputs with spatial axes: ``(batch, spatial..., channels)``."""
        return len(self.shape) >= 3


class Inputs(list):
    """The checked arrays of one batch (one per model input, ``model.inputs`` order), a list that also
    knows the batch's first image (``start``, for messages) and, once :func:`prefetched` placed them,
    ``placed``: the same arrays on the device (None where not placed)."""

    def __init__(self, arrays, start: int = 0):
        super().__init__(arrays)
        self.start = start
        self.placed = None


@dataclasses.dataclass
class Batch:
    """Images ``start .. start + size - 1`` of the whole input.

    ``total``: the number of images of the whole input when known: from the start for arrays and
    sized datasets, on the last batch for generators and datasets of unknown length.
    """

    start: int
    inputs: list  # one array per model input, model.inputs order; the explained one float32
    labels: object = None
    total: int | None = None

    @property
    def size(self) -> int:
        return len(self.inputs[0])


def input_specs(model) -> list | None:
    """:class:`InputSpec` of each model input, or None for a model that has no input yet (subclassed)."""
    try:
        tensors = list(model.inputs or [])
    except (AttributeError, ValueError):
        tensors = []
    if not tensors:
        return None
    return [InputSpec(getattr(t, "name", f"input_{i}"), tuple(t.shape), str(t.dtype)) for i, t in enumerate(tensors)]


def select_input(specs, input, model_name: str) -> int:
    """Position of the explained input: ``input`` (a name or index), or the only spatial input."""
    listed = ", ".join(f"{i}: '{s.name}' {s.shape}" for i, s in enumerate(specs))
    if input is None:
        spatial = [i for i, s in enumerate(specs) if s.spatial]
        if len(specs) == 1:
            return 0
        if len(spatial) == 1:
            return spatial[0]
        raise ValueError(
            f"Model '{model_name}' has {len(specs)} inputs ({listed}) and "
            f"{'none' if not spatial else len(spatial)} of them with spatial axes; say which one to "
            "explain with input= (a name or an index)."
        )
    if isinstance(input, str):
        names = [s.name for s in specs]
        if input not in names:
            raise ValueError(f"Model '{model_name}' has no input named '{input}'. Its inputs: {listed}.")
        return names.index(input)
    if isinstance(input, int) and not isinstance(input, bool):
        if not -len(specs) <= input < len(specs):
            raise ValueError(f"input={input} is out of range: model '{model_name}' has inputs {listed}.")
        return input % len(specs)
    raise TypeError(f"input must be an input name or index. Received: {input!r}")


# --------------------------------------------------------------------------- checks


def check_per_image(name: str, given: int, start: int, size: int, total: int | None, unit: str, units: str, single: str):
    """Refuses an argument meant to have one entry per image (a target list, baselines) whose number of
    entries is not the number of images: exactly when that is known (``total``), else at least the
    images seen so far (``start + size``).

    Example:
        >>> check_per_image("target", 7, 0, 5, 5, "class", "classes", "a single int")
        Traceback (most recent call last):
        ValueError: target gives 7 classes but there are 5 images: give one class per image, or a single int for all.
    """
    if given == total or (total is None and given >= start + size):
        return
    there = total if total is not None else f"at least {start + size}"
    raise ValueError(f"{name} gives {given} {units} but there are {there} images: give one {unit} per image, or {single} "
                     "for all.")



def _shape_text(shape) -> str:
    return "(N, " + ", ".join("any" if e is None else str(e) for e in shape[1:]) + ")"


def nonfinite_rows(array) -> np.ndarray:
    """Indices of the examples of ``array`` holding a NaN or an infinity.

    One summing pass finds the candidates (a NaN or an infinity makes the sum non-finite), and
    only those are checked value by value (a sum can also overflow on huge finite values): three
    times faster than ``np.isfinite`` over the batch, with the same answer.

    Examples:
        >>> x = np.ones((3, 4), np.float32); x[1, 2] = np.nan; x[2] = 3e38
        >>> nonfinite_rows(x).tolist()
        [1]
    """
    rows = array.reshape(len(array), -1)
    if rows.dtype.kind != "f":
        return np.empty(0, np.int64)
    suspect = np.flatnonzero(~np.isfinite(np.einsum("ij->i", rows)))
    if not len(suspect):
        return suspect
    return suspect[~np.isfinite(rows[suspect]).all(axis=1)]


def _listed(rows, start: int) -> str:
    idx = (np.asarray(rows) + start).tolist()
    return ", ".join(map(str, idx[:10])) + (f" and {len(idx) - 10} more" if len(idx) > 10 else "")


def nonfinite_message(what: str, bad, start: int) -> str:
    """The refusal of images holding NaN or infinite values: the host's check and the step's say the same.

    Example:
        >>> nonfinite_message("images", [1, 3], 8)[:56]
        'images hold NaN or infinite values at image(s) 9, 11: no'
    """
    hold = "hold" if what == "images" else "holds"
    return (f"{what} {hold} NaN or infinite values at image(s) {_listed(bad, start)}: no explanation of them "
            "would mean anything. Fix or drop those images (np.isfinite(x).all(axis=...)).")


def input_description(specs, index: int) -> str:
    """How messages name input ``index``: "images" for a one-input model, else "input 'name'"."""
    return f"input '{specs[index].name}'" if len(specs) > 1 else "images"


def refuse_nonfinite(specs, inputs, flags: dict | None = None) -> None:
    """Refuses the images of ``inputs`` (a batch's arrays, :class:`Inputs` for its ``start``) holding NaN or
    infinite values, naming the first input with one, as :func:`check_batch` does.

    ``flags``: ``{input index: (N,) bool}`` a compiled step computed on the device (False: the image's sum is
    not finite); only the flagged images are checked value by value here (a sum of huge finite values can
    overflow), and an input that is not a NumPy array is taken at its flags. Without ``flags``, every float
    input is checked here.
    """
    if flags is not None and all(np.all(f) for f in flags.values()):
        return
    for i, array in enumerate(inputs):
        if flags is None:
            bad = nonfinite_rows(array) if isinstance(array, np.ndarray) else ()
        elif i not in flags:
            continue
        else:
            bad = np.flatnonzero(~np.asarray(flags[i], bool))
            if isinstance(array, np.ndarray) and len(bad):
                bad = bad[~np.isfinite(array[bad].reshape(len(bad), -1)).all(axis=1)]
        if len(bad):
            start = getattr(inputs, "start", 0)
            raise _warn.ImagesRefused(nonfinite_message(input_description(specs, i), bad, start),
                                      np.asarray(bad) + start)


def _check_finite(array, original, what: str, start: int):
    """Refuses NaN or infinite values in a float input (``array`` as fed, ``original`` as given), naming the
    images; finite values that became infinite as float32 are said to overflow, not to be NaN."""
    bad = nonfinite_rows(array)
    if not len(bad):
        return
    hold = "hold" if what == "images" else "holds"
    if original is not array and original.dtype.kind == "f":
        overflow = [r for r in bad if np.isfinite(original[r]).all()]
        if len(overflow) == len(bad):
            raise _warn.ImagesRefused(
                f"{what} {hold} values beyond float32's range (about ±3.4e38) at image(s) {_listed(overflow, start)}: the "
                "model computes in float32, where they overflow to infinity; rescale them (check the preprocessing).",
                np.asarray(overflow) + start)
        bad = [r for r in bad if r not in overflow]
    raise _warn.ImagesRefused(nonfinite_message(what, bad, start), np.asarray(bad) + start)


def check_batch(arrays, specs, explained: int, start: int, single: bool = False, *, finite_on_host: bool = False) -> Inputs:
    """Validates and converts one batch; returns the arrays to feed (explained input float32).

    ``single``: the batch axis was added to one example given without it (errors show its own shape).
    Finiteness is checked here for the inputs converted here (float64, float16: the conversion reads
    every value anyway, and only here can an overflow to infinity be told from a NaN); the others are
    checked by the compiled step on the device (:func:`refuse_nonfinite`), or here too with
    ``finite_on_host``.
    """
    out = []
    n = None
    for i, (array, spec) in enumerate(zip(arrays, specs)):
        array = np.asarray(array)
        what = input_description(specs, i)
        if array.ndim != len(spec.shape) or any(
            e is not None and e != g for e, g in zip(spec.shape[1:], array.shape[1:])
        ):
            shown = array.shape[1:] if single else array.shape
            raise ValueError(
                f"{what} have shape {shown}, but the model expects a batch {_shape_text(spec.shape)} "
                "(or one example without the batch axis). Resize the images to the model's input size "
                "and give them the same number of channels."
            )
        if n is None:
            n = len(array)
        elif len(array) != n:
            raise ValueError(
                f"The inputs have different numbers of examples ({n} and {len(array)} for '{spec.name}'): "
                "give one entry per image for every input."
            )
        if array.dtype.byteorder not in "=|" and array.dtype.kind in "biuf":  # big-endian data: native order,
            array = array.astype(array.dtype.newbyteorder("="))  # which every backend's compiled step reads
        original = array
        if i == explained:
            if array.dtype.kind not in "biuf":
                raise ValueError(f"{what} must be numbers; received dtype {array.dtype}.")
            with np.errstate(over="ignore"):  # an overflow is reported below, in words
                array = array.astype(np.float32, copy=False)
        elif array.dtype == np.float64:
            with np.errstate(over="ignore"):
                array = array.astype(np.float32)
        if finite_on_host or (array is not original and original.dtype.kind == "f"):
            _check_finite(array, original, what, start)
        out.append(array)
    return Inputs(out, start)


# --------------------------------------------------------------------------- sources


def _is_dataset(obj) -> bool:
    tf = sys.modules.get("tensorflow")  # a Dataset exists only once TensorFlow is imported: never import it here
    return tf is not None and isinstance(obj, tf.data.Dataset)


def _is_pydataset(obj) -> bool:
    import keras

    return isinstance(obj, keras.utils.PyDataset)


def _array_like(obj) -> bool:
    return hasattr(obj, "shape") and hasattr(obj, "__getitem__") and hasattr(obj, "dtype")


def _is_path(obj) -> bool:
    return isinstance(obj, (str, bytes, os.PathLike))


def _stacked(value, what: str):
    """An array from an array or a list of examples; a list of differently shaped examples is refused."""
    if _array_like(value) or not isinstance(value, (list, tuple)):
        return value if _array_like(value) else np.asarray(value)
    shapes = [np.shape(v) for v in value]
    odd = [i for i, shape in enumerate(shapes) if shape != shapes[0]]
    if odd:
        raise ValueError(
            f"{what} is a list of {len(shapes)} examples of different shapes ({shapes[0]} for image 0, {shapes[odd[0]]} "
            f"for image(s) {_listed(odd, 0)}): a call stacks them into one batch, so resize them to one size first "
            "(kerasxai.load_images(paths, model) loads and resizes image files)."
        )
    return np.asarray(value)


class Source:
    """The images of one call, as batches: arrays, memmaps, datasets or generators.

    Attributes:
        length: number of images, or None when unknown until the end (datasets, generators).
        single: the caller gave one image without the batch axis.
        specs: the input specs used (inferred from the first batch for models without inputs).
    """

    def __init__(self, images, specs, explained: int, model_name: str = "model"):
        self.specs, self.explained, self.single, self.length = specs, explained, False, None
        self._model_name = model_name
        self._arrays = None
        self._iterable = None
        self._unbatched = None
        self._size = None  # the explained input's example shape, the same for every batch of a call
        self._copy = False  # the user's own generator or PyDataset: its arrays are copied as they are read
        if _is_path(images) or (isinstance(images, (list, tuple)) and images and all(map(_is_path, images))):
            shown = repr(images) if _is_path(images) else f"[{images[0]!r}, ...]"
            raise TypeError(
                f"images must be arrays (preprocessed for the model), not file paths. Received: {shown}. Load them "
                f"with display, x = kerasxai.load_images({shown}, model) and pass x."
            )
        if _is_dataset(images):
            self._iterable = self._from_dataset(images)
        elif _is_pydataset(images):
            self._iterable = (images[i] for i in range(len(images)))
            self.length = None
            self._copy = True
        elif self._is_structure(images):
            self._arrays = [_stacked(a, f"input '{spec.name}'") for a, spec in zip(self._structure(images), self.specs)]
        elif _array_like(images) or isinstance(images, (list, tuple)):
            self._arrays = [_stacked(images, "images")]
        elif hasattr(images, "__iter__") or hasattr(images, "__next__"):
            self._iterable = iter(images)
            self._copy = True
        else:
            raise TypeError(
                "images must be an array, a list/dict of arrays (one per model input), a tf.data.Dataset, "
                f"a keras.utils.PyDataset or an iterable of batches. Received: {type(images).__name__}"
            )
        if self._arrays is not None:
            self._infer_specs(self._arrays)
            rank = len(self.specs[self.explained].shape)
            first = self._arrays[self.explained]
            if len(first.shape) == rank - 1:
                self.single = True
                self._arrays = [np.asarray(a)[None] for a in self._arrays]
            self.length = len(self._arrays[0])

    @property
    def in_memory(self) -> bool:
        """The images are arrays in memory (not memmaps, datasets or generators): a batch is a slice."""
        return self._arrays is not None and not any(isinstance(a, np.memmap) or not isinstance(a, np.ndarray)
                                                    for a in self._arrays)

    # ----------------------------------------------------------------- structures

    def _is_structure(self, images) -> bool:
        n = 1 if self.specs is None else len(self.specs)
        if isinstance(images, dict):
            return True
        if n > 1 and isinstance(images, (list, tuple)) and len(images) != n:  # too few or too many inputs,
            return all(len(getattr(a, "shape", ())) >= 2 for a in images)  # when each is a batch of its own
        return n > 1 and isinstance(images, (list, tuple)) and len(images) == n

    def _structure(self, images) -> list:
        specs = self.specs
        if specs is None:
            raise TypeError(
                f"Model '{self._model_name}' is subclassed (it has no keras.Input to name its inputs), so kerasxai "
                "cannot tell which entry of a list or dict is the image to explain: give it one array, or rebuild "
                "the model as a Functional one with named keras.Input()s, which kerasxai explains input by input.")
        names = [s.name for s in specs]
        if isinstance(images, dict):
            missing = [n for n in names if n not in images]
            extra = [k for k in images if k not in names]
            if missing or extra:
                raise ValueError(
                    f"images is a dict with keys {sorted(images)}, but model '{self._model_name}' takes inputs "
                    f"{names}: give one entry per input name."
                )
            return [images[n] for n in names]
        if len(images) != len(specs):
            raise ValueError(
                f"Model '{self._model_name}' has {len(specs)} inputs ({names}); images gives {len(images)}: "
                "give one entry per input, in model.inputs order (or a dict by name)."
            )
        return list(images)

    def _parts(self, element):
        """``(inputs list, labels)`` of one element, of arrays or of a dataset's specs: the inputs alone,
        ``(inputs, labels[, sample weights])`` as ``model.fit`` takes them (the inputs a tuple or dict for
        several inputs), or ``(input 1, ..., input n, labels)``."""
        n = 1 if self.specs is None else len(self.specs)
        labels = None
        if isinstance(element, tuple) and element:
            structured = isinstance(element[0], dict) or (n > 1 and isinstance(element[0], (tuple, list)))
            if len(element) in (2, 3) and (structured or n == 1):
                element, labels = element[0], element[1]
            elif n > 1 and len(element) == n + 1:
                element, labels = list(element[:n]), element[n]
        if isinstance(element, dict) or (n > 1 and isinstance(element, (list, tuple))):
            return self._structure(element), labels
        return [element], labels

    def _split(self, element):
        """``(inputs list, labels)`` from one dataset/generator element, as arrays: copies of a user's
        generator's arrays (one that fills the same buffer for every batch would otherwise change a batch
        read ahead before it is explained)."""
        arrays, labels = self._parts(element)
        as_array = np.array if self._copy else np.asarray
        return [as_array(a) for a in arrays], (None if labels is None else as_array(labels))

    def _from_dataset(self, dataset):
        """Batched datasets are read as they are; unbatched ones are batched by ``batches()``."""
        specs, _ = self._parts(dataset.element_spec)
        if self.specs is not None and len(specs[min(self.explained, len(specs) - 1)].shape) == len(
            self.specs[self.explained].shape
        ) - 1:
            self._unbatched = dataset
            if int(dataset.cardinality()) >= 0:
                self.length = int(dataset.cardinality())
            return None
        return dataset.as_numpy_iterator()

    def _infer_specs(self, arrays):
        if self.specs is None:  # a model without inputs (subclassed): take the shape of the images
            array = arrays[0]
            self.specs = [InputSpec("input", (None,) + tuple(array.shape[1:]), "float32")]

    # ----------------------------------------------------------------- batches

    def _same_size(self, arrays, start: int) -> list:
        """Refuses a batch whose explained examples differ in shape from the call's first ones (a model that
        takes any size): the maps of one call are stacked into one array."""
        size = tuple(arrays[self.explained].shape[1:])
        if self._size is None:
            self._size = size
        elif size != self._size:
            what = f"input '{self.specs[self.explained].name}'" if len(self.specs) > 1 else "images"
            raise ValueError(
                f"{what} {start}..{start + len(arrays[0]) - 1} have shape {size}, but the call's first ones have "
                f"{self._size}: the maps of one call share one size, so resize them to one size, or explain each "
                "size in its own call."
            )
        return arrays

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Checked batches of at most ``batch_size`` images."""
        if self._arrays is not None:
            for start in range(0, self.length, batch_size):
                stop = min(start + batch_size, self.length)
                arrays = [a[start:stop] for a in self._arrays]
                yield Batch(start, check_batch(arrays, self.specs, self.explained, start, self.single), None, self.length)
            return
        if self._unbatched is not None:
            iterable = self._unbatched.batch(batch_size).as_numpy_iterator()
        else:
            iterable = self._iterable
        start, end = 0, object()
        iterator = iter(iterable)
        element = next(iterator, end)
        while element is not end:
            arrays, labels = self._split(element)
            following = next(iterator, end)  # read one element ahead: the last batch knows the total
            self._infer_specs(arrays)
            total = len(arrays[0])
            for lo in range(0, total, batch_size):
                hi = min(lo + batch_size, total)
                part = [a[lo:hi] for a in arrays]
                last = following is end and hi == total
                yield Batch(
                    start,
                    self._same_size(check_batch(part, self.specs, self.explained, start), start),
                    None if labels is None else labels[lo:hi],
                    start + hi - lo if last else self.length,
                )
                start += hi - lo
            element = following
        self.length = start


class prefetched:
    """The batches of ``batches`` (an iterator of :class:`Batch`), read ahead on a background thread.

    While the caller runs batch ``i``, the thread reads, converts and checks batch ``i + 1`` (and at most
    ``depth`` more): from memmaps, datasets or generators alike (``ahead=False``: no thread, the batches
    read in turn, for arrays in memory with nothing to place, where a batch is a slice). A reader blocked
    in a user's generator when the caller stops ends when the generator next returns. ``place(arrays) -> list`` (the
    backend's :func:`kerasxai.backend.placer`) also starts their copy to the device there, kept on the
    batch's ``inputs.placed``. The batches come in their order; an error reading or checking one is
    raised where that batch would have come, after the batches before it. Use as a context manager (or
    call :meth:`close`): leaving stops the thread, also on an error.

    Examples:
        >>> source = Source(np.zeros((5, 2), np.float32), [InputSpec("x", (None, 2), "float32")], 0)
        >>> with prefetched(source.batches(2)) as batches:
        ...     [b.start for b in batches]
        [0, 2, 4]
    """

    _END = object()

    def __init__(self, batches: Iterator[Batch], depth: int = 1, place=None, ahead: bool = True):
        self._done = False
        self._batches = None if ahead else iter(batches)  # nothing to overlap (arrays in memory): read in turn
        self._queue = self._stop = None
        if ahead:
            self._queue, self._stop = queue.Queue(maxsize=depth), threading.Event()
            self._thread = threading.Thread(target=self._read, args=(batches, place), daemon=True, name="kerasxai-batches")
            self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _read(self, batches, place):
        try:
            for batch in batches:
                if place is not None and isinstance(batch.inputs, Inputs):
                    batch.inputs.placed = place(batch.inputs)
                if not self._put(batch):
                    return
            self._put(self._END)
        except BaseException as error:  # raised in the caller's thread, at this batch's place
            self._put(error)

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        if self._done:
            raise StopIteration
        if self._batches is not None:
            return next(self._batches)
        item = self._queue.get()
        if item is self._END:
            self._done = True
            raise StopIteration
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item

    def close(self):
        """Stops the reading thread (the batches read ahead are dropped)."""
        self._done = True
        if self._stop is None:  # read in turn: no thread
            return
        self._stop.set()
        while True:  # a reader waiting to put one more batch sees the stop and returns
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def batch_size(tensor):
    """The batch size of an array or tensor: static when known (``.shape`` — ``ops.shape`` would first
    copy a NumPy batch into a TensorFlow tensor), else the dynamic size inside a compiled function."""
    n = tuple(tensor.shape)[0]
    if n is None:
        from keras import ops

        n = ops.shape(tensor)[0]
    return n
