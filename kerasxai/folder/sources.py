"""What goes into a folder run: the images listed, decoded and resized.

- :func:`list_images`: files and folders -> :class:`ImageItem` (stable, file-name-safe
  ids from relative paths; class sub-folders as true labels);
- :func:`image_tensors`: one decoded image -> the model-size pixels (resized with the op
  ``keras.utils.image_dataset_from_directory`` uses), the display JPEG, the original size;
  the one function the local ``tf.data`` pipeline and the Ray workers share;
- :func:`file_batches`: the ``tf.data`` pipeline over files (parallel decode, prefetch),
  unreadable files left out for the run to report (:func:`read_error` says why).

TensorFlow is imported inside the functions, so listing files (the command's first
checks) does not start it.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import re

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
DISPLAY_SIDE = 512  # long side of the photo kept for display
# methods that explain pixels, not a layer (everything else is explained at a layer)


@dataclasses.dataclass(frozen=True)
class ImageItem:
    """One image of a run: ``id`` (unique, safe in file names), ``file`` and true ``label`` (or None)."""

    id: str
    file: str
    label: str | None = None


# ------------------------------------------------------------------ listing


def _safe_id(relative: str) -> str:
    stem = os.path.splitext(relative)[0]
    parts = re.split(r"[\\/]+", stem)
    parts = [re.sub(r"[^A-Za-z0-9_.-]+", "_", p).strip(".") or "_" for p in parts if p]
    image_id = "__".join(parts) or "_"
    if len(image_id) > 120:
        image_id = image_id[:100] + "-" + hashlib.sha1(image_id.encode()).hexdigest()[:8]
    return image_id


def list_images(sources) -> list:
    """The images under ``sources`` (files and folders, searched recursively), as :class:`ImageItem`.

    Ids come from each file's path relative to the folder given (``cats/001.jpg``
    -> ``cats__001``), so they are stable across runs; where two would clash
    (also when they differ only in case), a short hash of the path is added.
    When a folder keeps all its images in sub-folders (``DIR/cat/...``,
    ``DIR/dog/...``, as ``image_dataset_from_directory`` reads), the sub-folder
    is each image's ``label``. A file named directly is taken whatever its
    extension (unreadable ones are reported by the run, not skipped).

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> for name in ("cat/a.jpg", "cat/b.png", "dog/a.jpg", "dog/notes.txt"):
        ...     os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
        ...     _ = open(os.path.join(root, name), "w").write("x")
        >>> [(item.id, item.label) for item in list_images(root)]
        [('cat__a', 'cat'), ('cat__b', 'cat'), ('dog__a', 'dog')]
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    found = []  # (relative path, file, label)
    for source in sources:
        source = os.fspath(source)
        if os.path.isdir(source):
            files = sorted(
                os.path.relpath(os.path.join(d, f), source)
                for d, _, fs in os.walk(source) for f in fs if f.lower().endswith(IMAGE_EXTENSIONS)
            )
            if not files:
                raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in folder {source}")
            by_class = all(os.sep in rel for rel in files)
            found += [(rel, os.path.join(source, rel), rel.split(os.sep)[0] if by_class else None) for rel in files]
        elif os.path.isfile(source):
            found.append((os.path.basename(source), source, None))
        else:
            raise FileNotFoundError(f"no such file or folder: {source}")
    seen, unique = set(), []
    for rel, file, label in found:  # the same file named twice (a folder and a file in it) runs once
        key = os.path.normcase(os.path.abspath(file))
        if key not in seen:
            seen.add(key)
            unique.append((rel, file, label))
    ids = [_safe_id(rel) for rel, _, _ in unique]
    counts = collections.Counter(i.lower() for i in ids)
    return [
        ImageItem(i if counts[i.lower()] == 1 else f"{i}-{hashlib.sha1(file.encode()).hexdigest()[:8]}", file, label)
        for i, (_, file, label) in zip(ids, unique)
    ]


# ------------------------------------------------------------------ tf.data


def resize_for_model(pixels, size):
    """``(H, W, 3)`` pixels -> float32 ``(h, w, 3)`` pixels 0..255 at ``size``, as ``image_dataset_from_directory`` resizes.

    Example:
        >>> x = resize_for_model(np.full((30, 50, 3), 200, np.uint8), (32, 32))
        >>> x.shape, x.dtype.name, float(x[0, 0, 0])
        (TensorShape([32, 32, 3]), 'float32', 200.0)
    """
    import tensorflow as tf

    return tf.image.resize(tf.cast(pixels, tf.float32), size, method="bilinear", antialias=False)


def _display_jpeg(pixels, side):
    """The photo, long side shrunk to at most ``side`` (antialiased), as JPEG bytes."""
    import tensorflow as tf

    hw = tf.shape(pixels)[:2]
    scale = tf.minimum(1.0, side / tf.cast(tf.reduce_max(hw), tf.float32))
    new = tf.maximum(1, tf.cast(tf.round(tf.cast(hw, tf.float32) * scale), tf.int32))
    small = tf.cond(
        scale < 1.0,
        lambda: tf.cast(tf.clip_by_value(tf.round(tf.image.resize(tf.cast(pixels, tf.float32), new,
                                                                  antialias=True)), 0, 255), tf.uint8),
        lambda: tf.cast(tf.clip_by_value(tf.round(tf.cast(pixels, tf.float32)), 0, 255), tf.uint8),
    )
    return tf.io.encode_jpeg(small, quality=90)


def image_tensors(pixels, size, display_side=DISPLAY_SIDE):
    """One decoded image -> ``(x, jpeg, size)``: model-size float pixels, the display JPEG (or b""), original ``(H, W)``.

    The one function both the local pipeline (inside ``tf.data``) and the Ray
    workers (eagerly) use, so both feed the model the same numbers.

    Example:
        >>> import tensorflow as tf
        >>> x, jpeg, size = image_tensors(np.zeros((600, 300, 3), np.uint8), (32, 32))
        >>> x.shape, size.numpy().tolist(), tf.io.decode_jpeg(jpeg).shape  # photo: long side 512
        (TensorShape([32, 32, 3]), [600, 300], TensorShape([512, 256, 3]))
    """
    import tensorflow as tf

    pixels = tf.ensure_shape(pixels, [None, None, 3])
    jpeg = _display_jpeg(pixels, display_side) if display_side else tf.constant(b"")
    return resize_for_model(pixels, size), jpeg, tf.shape(pixels)[:2]


def decode_file(path):
    """Reads and decodes one image file to uint8 RGB ``(H, W, 3)`` (first frame of a GIF)."""
    import tensorflow as tf

    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False, dtype=tf.uint8)


def read_error(path) -> str:
    """Why ``path`` cannot be read, in one line (from trying to decode it again).

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "notes.jpg")
        >>> _ = open(path, "w").write("not a photo")
        >>> read_error(path)
        'not an image file that can be read (Unknown image file format. One of JPEG, ...)'
    """
    try:
        decode_file(path)
    except Exception as err:  # a TF error: strip its op decorations
        message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", str(err).splitlines()[0])
        message = re.sub(r"\s*\[Op:\w+\].*$|\s*name:\s*$", "", message).strip()
        return f"not an image file that can be read ({message})"
    return "could not be read"


def file_batches(items, size, batch_size, display_side):
    """Batches of ``{index, x, jpeg, size}`` for ``items`` (numpy), decoded in parallel; unreadable files left out."""
    import tensorflow as tf

    @tf.autograph.experimental.do_not_convert  # plain TF ops: nothing for AutoGraph to rewrite
    def load(index, path):
        x, jpeg, hw = image_tensors(decode_file(path), size, display_side)
        return {"index": index, "x": x, "jpeg": jpeg, "size": hw}

    if not items:
        return iter(())
    files = tf.constant([it.file for it in items], tf.string)
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(items), dtype=np.int64), files))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.ignore_errors()  # unreadable files drop out here; the run finds and reports them afterwards
    return ds.batch(batch_size).prefetch(2).as_numpy_iterator()
