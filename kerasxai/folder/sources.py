"""What goes into a folder run: the images listed, with ids and true labels.

:func:`list_images`: files and folders -> :class:`ImageItem` (stable, file-name-safe
ids from relative paths; class sub-folders as true labels). Nothing here imports
TensorFlow, so the command's first checks (are there images?) answer at once;
decoding and resizing are :mod:`kerasxai.data.images`'s, the one image stack.
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

    Examples:
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
