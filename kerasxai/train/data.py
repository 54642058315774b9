"""Finding a run's images as a user means them, checking that they decode, and splitting them.

Layouts (found automatically): class folders (``DIR/Cat``, ``DIR/Dog``, also
under one wrapper folder such as ``DIR/PetImages``; images in nested folders
count for their class), or one flat folder labelled by file-name prefix
(``DIR/cat.0.jpg``, ``DIR/dog.0.jpg``: Kaggle's ``train/``).

Ignored, and counted: hidden files and folders (``.DS_Store``, ``._x.jpg``),
``__MACOSX`` (what macOS zips add), ``Thumbs.db``/``desktop.ini``, files whose
extension is not an image's. A file is an image by its extension; its format
is read from its bytes (a PNG named ``.jpg`` is fine). No file is changed.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import os
import re

import numpy as np
import tensorflow as tf

from kerasxai.data.images import decode_image_bytes, tf_error_text
from kerasxai.train.config import TrainError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
JUNK_DIRS = {"__macosx", "@eadir", "$recycle.bin", "system volume information"}
JUNK_FILES = {"thumbs.db", "ehthumbs.db", "desktop.ini"}
SPLIT_NAMES = {"train", "test", "test1", "val", "valid", "validation"}
FLAT_NAME = re.compile(r"^([A-Za-z]+)[._-]")
MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG", b"GIF8": "GIF", b"BM": "BMP", b"RIFF": "WebP"}

HIDDEN = "hidden files (.DS_Store, ._*, and in hidden folders)"
MACOSX = "files in __MACOSX and other system folders"
THUMBS = "Thumbs.db and desktop.ini"
NOT_IMAGE = "files that are not images (by extension)"
OUTSIDE = "images outside the class folders"
NO_PREFIX = "images without a class prefix (cat.0.jpg)"
EMPTY = "class folders without images"


@dataclasses.dataclass
class DataScan:
    """What ``scan_data`` found: the images with labels, and what it ignored or took from nested folders."""

    root: str
    layout: str  # "folders" or "flat"
    class_names: list
    paths: list
    labels: np.ndarray
    counts: dict  # class name -> images
    ignored: dict  # reason -> paths
    nested: dict  # "Dog/extra" -> images used for that class

    def describe(self) -> list:
        """Lines for the console: classes, nested folders used, what was ignored."""
        kind = "class folders" if self.layout == "folders" else "file-name prefixes"
        lines = [f"Data: {self.root} ({kind}): " + ", ".join(f"{c} {n}" for c, n in self.counts.items())
                 + " image files"]
        for folder, n in self.nested.items():
            lines.append(f"  nested folder {folder}: its {n} images are used for class "
                         f"{folder.split('/')[0].lower()}")
        if self.ignored:
            parts = []
            for reason, paths in self.ignored.items():
                examples = ", ".join(os.path.basename(p.rstrip("/")) for p in paths[:3])
                parts.append(f"{len(paths)} {reason} ({examples}{', ...' if len(paths) > 3 else ''})")
            lines.append("  ignored: " + "; ".join(parts))
        return lines


def _junk_reason(name: str, is_dir: bool):
    if name.startswith("."):
        return HIDDEN
    if is_dir:
        return MACOSX if name.lower() in JUNK_DIRS else None
    if name.lower() in JUNK_FILES:
        return THUMBS
    if not name.lower().endswith(IMAGE_EXTENSIONS):
        return NOT_IMAGE
    return None


def _entries(folder):
    """``(sub-folders, image files, [(path, reason)])`` directly in ``folder``, sorted."""
    dirs, images, junk = [], [], []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        is_dir = os.path.isdir(path)
        reason = _junk_reason(name, is_dir)
        if reason and is_dir:  # count what the folder holds, not the folder
            inside = [os.path.join(d, f) for d, _, files in os.walk(path) for f in files]
            junk += [(f, reason) for f in inside] or [(path + "/", reason)]
        elif reason:
            junk.append((path, reason))
        elif is_dir:
            dirs.append(path)
        elif os.path.isfile(path):
            images.append(path)
    return dirs, images, junk


def _walk(folder, ignored):
    """All images under ``folder``, nested folders included, recording what is ignored."""
    dirs, images, junk = _entries(folder)
    for path, reason in junk:
        ignored[reason].append(path)
    for sub in dirs:
        images = images + _walk(sub, ignored)
    return images


def _class_images(folder, ignored, nested, root):
    """A class folder's images; its sub-folders' images count too, and are recorded in ``nested``."""
    dirs, images, junk = _entries(folder)
    for path, reason in junk:
        ignored[reason].append(path)
    for sub in dirs:
        below = _walk(sub, ignored)
        if below:
            nested[os.path.relpath(sub, root)] = len(below)
        images = images + below
    return images


def scan_data(data_dir: str, classes: int = 2) -> DataScan:
    """Finds the images and classes of ``data_dir``; raises ``TrainError`` saying what was found otherwise.

    Examples:
        >>> scan_data("/no/such/dir")
        Traceback (most recent call last):
        ...
        kerasxai.train.config.TrainError: --data-dir '/no/such/dir' does not exist
    """
    if not os.path.isdir(data_dir):
        raise TrainError(f"--data-dir '{data_dir}' does not exist" if not os.path.exists(data_dir)
                         else f"--data-dir '{data_dir}' is a file, not a folder of images")
    ignored = collections.defaultdict(list)
    root = data_dir
    while True:  # step into a lone wrapper folder (DIR/PetImages beside __MACOSX and a readme)
        dirs, images, junk = _entries(root)
        for path, reason in junk:
            ignored[reason].append(path)
        if len(dirs) == 1 and not images and _entries(dirs[0])[0]:
            root = dirs[0]
            continue
        break

    nested = {}
    if dirs:
        layout = "folders"
        split_like = sorted((os.path.basename(d) for d in dirs if os.path.basename(d).lower() in SPLIT_NAMES),
                            key=lambda name: (not name.lower().startswith("train"), name))
        if len(split_like) >= 2 or (split_like and len(dirs) == 1):
            raise TrainError(f"'{root}' holds {', '.join(s + '/' for s in split_like)}: these look like a data "
                             f"split, not classes; point --data-dir at the labelled part, e.g. "
                             f"{os.path.join(root, split_like[0])}")
        ignored[OUTSIDE] += images
        per_class = {os.path.basename(d): _class_images(d, ignored, nested, root) for d in dirs}
    else:
        layout = "flat"
        per_class = collections.defaultdict(list)
        for path in images:
            match = FLAT_NAME.match(os.path.basename(path))
            if match:
                per_class[match.group(1).lower()].append(path)
            else:
                ignored[NO_PREFIX].append(path)
    counts = {name: len(paths) for name, paths in sorted(per_class.items(), key=lambda kv: kv[0].lower())}
    found = {name: n for name, n in counts.items() if n}
    ignored[EMPTY] += [os.path.join(root, n) + "/" for n, c in counts.items() if not c and layout == "folders"]
    ignored = {reason: paths for reason, paths in ignored.items() if paths}

    if len(found) != classes:
        if not counts:
            listing = ", ".join(os.path.basename(p.rstrip("/")) for ps in ignored.values() for p in ps[:5])
            raise TrainError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in '{root}'"
                             + (f"; it holds: {listing}" if listing else ", it is empty"))
        what = ", ".join(f"{name}{'/' if layout == 'folders' else ''} ({n} images)" for name, n in counts.items())
        hint = ("each class needs its own folder of images, e.g. PetImages/Cat and PetImages/Dog"
                if len(found) < classes else f"use --classes {len(found)} to train on all of them, or move the "
                "extra ones out")
        raise TrainError(f"expected {classes} classes with images in '{root}', found {len(found)}: {what}; {hint}")

    class_names = [name.lower() for name in found]
    paths, labels = [], []
    for label, name in enumerate(found):
        paths += per_class[name]
        labels += [label] * found[name]
    return DataScan(root=root, layout=layout, class_names=class_names, paths=paths,
                    labels=np.array(labels, np.int32), counts={n.lower(): c for n, c in found.items()},
                    ignored=ignored, nested=nested)


def find_files(data_dir: str, classes: int = 2):
    """``(paths, labels, class_names)`` of ``data_dir`` in either layout (see ``scan_data``).

    Examples:
        >>> find_files("/no/such/dir")
        Traceback (most recent call last):
        ...
        kerasxai.train.config.TrainError: --data-dir '/no/such/dir' does not exist
    """
    scan = scan_data(data_dir, classes)
    return scan.paths, scan.labels, scan.class_names


# --------------------------------------------------------------------------- decoding


def _format_of(head: bytes):
    for magic, name in MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def _check_one(path):
    """``(format or None, reason or None)`` for one file: reason says why it cannot be used."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as err:
        return None, f"cannot be read ({err.strerror})"
    if not head:
        return None, "empty file (0 bytes)"
    kind = _format_of(head)
    try:
        image = decode_image_bytes(tf.io.read_file(path))
    except tf.errors.OpError as err:
        if kind is None:
            return None, "not an image: its bytes are not JPEG, PNG, GIF, BMP or WebP"
        return kind, f"damaged {kind} ({tf_error_text(err)})"
    if image.shape[0] == 0 or image.shape[1] == 0:
        return kind, "image without pixels"
    return kind, None


def check_files(paths, progress=None):
    """Decodes every file as training will; returns ``(good_mask, [(path, reason)], {path: format})``.

    ``format`` is what the bytes hold (JPEG, PNG, GIF, BMP, WebP), whatever the
    file's name says. Reasons are short sentences (no TensorFlow op text).

    Examples:
        >>> good, bad, _ = check_files([])
        >>> good.shape, bad
        ((0,), [])
    """
    good = np.zeros(len(paths), bool)
    bad, formats = [], {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for i, (kind, reason) in enumerate(pool.map(_check_one, paths)):
            formats[paths[i]] = kind
            if reason:
                bad.append((paths[i], reason))
            else:
                good[i] = True
            if progress is not None:
                progress(i + 1)
    return good, bad, formats


def renamed_formats(paths, formats) -> dict:
    """``{"PNG named .jpg": 2, ...}`` for decodable files whose bytes are not what their extension says."""
    expected = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".bmp": "BMP", ".webp": "WebP"}
    found = collections.Counter()
    for path in paths:
        ext = os.path.splitext(path)[1]
        kind = formats.get(path)
        if kind and expected.get(ext.lower()) != kind:
            found[f"{kind} named {ext}"] += 1
    return dict(found)


# --------------------------------------------------------------------------- split


def split(labels, val_fraction: float, seed: int, class_names):
    """Stratified ``(train_idx, val_idx)``, each sorted: ``val_fraction`` of every class held out.

    Examples:
        >>> split(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 0.25, 0, ["cat", "dog"])[1].size
        2
    """
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for label, name in enumerate(class_names):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            raise TrainError(f"class {name} has {len(members)} usable image(s) (after skipping unreadable "
                             "files): at least 2 are needed, one to train on and one to validate on")
        members = rng.permutation(members)
        n_val = min(len(members) - 1, max(1, int(round(len(members) * val_fraction))))
        val_idx += members[:n_val].tolist()
        train_idx += members[n_val:].tolist()
    return np.sort(np.array(train_idx, np.int64)), np.sort(np.array(val_idx, np.int64))


def files_digest(root, paths, labels) -> str:
    """A hash of the usable files and their labels: a resumed run must see the same data."""
    text = "\n".join(f"{label}\t{os.path.relpath(p, root)}" for p, label in zip(paths, labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
