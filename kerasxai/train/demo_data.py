"""A generated stand-in for Kaggle's PetImages, with the real data set's traps, for offline runs.

    python -m kerasxai.train.demo_data pets-demo [--per-class 40] [--seed 0]

Cats are discs, dogs are squares (same area), of random colour, size and
place on noisy backgrounds, in images of varied sizes. Beside them, what the
real download holds and what macOS zips add: 0-byte files (``Cat/666.jpg``,
``Dog/11702.jpg``), ``Thumbs.db``, a truncated JPEG, a text file named
``.jpg``, PNG/GIF/BMP files named ``.jpg``, a CMYK and a grayscale JPEG, an
RGBA PNG, an upper-case ``.JPG``, a nested folder, ``.DS_Store``,
``__MACOSX/`` with AppleDouble ``._*.jpg`` files, and a readme and a PDF next
to ``PetImages/``. The shape's mask of every image is known, so one can check
that an explanation points at it.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os

import numpy as np
from PIL import Image

CLASS_FOLDERS = ("Cat", "Dog")  # disc, square


@dataclasses.dataclass
class DemoFolder:
    """What ``write_demo_folder`` wrote: pass ``data_dir`` as ``--data-dir``."""

    data_dir: str
    images: dict  # path -> class name ("cat" / "dog"): every file that decodes
    masks: dict  # path -> bool (H, W) mask of the shape, at the file's own size
    bad: dict  # path -> what is wrong with it (empty, truncated, not an image)
    ignored: list  # paths a run must ignore (junk, hidden, not images)
    traps: dict  # path -> which trap the file is (CMYK JPEG, PNG named .jpg, ...)


def draw(rng, label: int, height: int, width: int):
    """One picture: ``(uint8 (H, W, 3), bool mask (H, W))``; label 0 a disc, 1 a square of the same area.

    Examples:
        >>> image, mask = draw(np.random.default_rng(0), 1, 40, 50)
        >>> image.shape, image.dtype.name, bool(0.02 < mask.mean() < 0.2)
        ((40, 50, 3), 'uint8', True)
    """
    yy, xx = np.mgrid[0:height, 0:width]
    image = rng.uniform(0, 0.45, (height, width, 3))
    r = rng.uniform(0.16, 0.24) * min(height, width)
    cy = rng.uniform(r + 1, height - r - 1)
    cx = rng.uniform(r + 1, width - r - 1)
    if label == 0:
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    else:
        half = r * np.sqrt(np.pi) / 2  # same area as the disc
        mask = (np.abs(yy - cy) <= half) & (np.abs(xx - cx) <= half)
    image[mask] = rng.uniform(0.55, 1.0, 3)
    return np.round(image * 255).astype(np.uint8), mask


def _jpeg_bytes(image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=92, **kwargs)
    return buffer.getvalue()


def write_demo_folder(root, per_class: int = 40, seed: int = 0) -> DemoFolder:
    """Writes ``root/PetImages/{Cat,Dog}`` (``per_class`` plain JPEGs each, plus the traps) and the junk.

    Examples:
        >>> import tempfile
        >>> demo = write_demo_folder(tempfile.mkdtemp(), per_class=4)
        >>> len(demo.images), len(demo.bad)
        (17, 4)
    """
    rng = np.random.default_rng(seed)
    root = os.fspath(root)
    pets = os.path.join(root, "PetImages")
    demo = DemoFolder(data_dir=root, images={}, masks={}, bad={}, ignored=[], traps={})

    def picture(label):
        return draw(rng, label, int(rng.integers(44, 65)), int(rng.integers(44, 65)))

    def write(path, data: bytes, label=None, mask=None, trap=None, bad=None, ignored=False):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
        if label is not None:
            demo.images[path], demo.masks[path] = ("cat", "dog")[label], mask
        if trap:
            demo.traps[path] = trap
        if bad:
            demo.bad[path] = bad
        if ignored:
            demo.ignored.append(path)

    def encoded(image, fmt, mode=None):
        buffer = io.BytesIO()
        pil = Image.fromarray(image)
        if mode == "RGBA":
            pil.putalpha(255)
        elif mode:
            pil = pil.convert(mode)
        pil.save(buffer, format=fmt)
        return buffer.getvalue()

    for label, folder in enumerate(CLASS_FOLDERS):
        for i in range(per_class):
            image, mask = picture(label)
            write(os.path.join(pets, folder, f"{i}.jpg"), _jpeg_bytes(image), label, mask)
        write(os.path.join(pets, folder, "Thumbs.db"), b"\xd0\xcf\x11\xe0" + bytes(60), ignored=True)
        write(os.path.join(pets, folder, ".DS_Store"), b"\x00\x00\x00\x01Bud1" + bytes(24), ignored=True)
        write(os.path.join(pets, folder, "._0.jpg"), b"\x00\x05\x16\x07" + bytes(80), ignored=True)
        write(os.path.join(root, "__MACOSX", "PetImages", folder, "._1.jpg"), b"\x00\x05\x16\x07" + bytes(80),
              ignored=True)

    n = per_class
    cat, dog = (os.path.join(pets, f) for f in CLASS_FOLDERS)
    write(os.path.join(cat, "666.jpg"), b"", bad="empty file", trap="0-byte file")
    write(os.path.join(dog, "11702.jpg"), b"", bad="empty file", trap="0-byte file")
    whole = _jpeg_bytes(picture(0)[0])
    write(os.path.join(cat, f"{n}.jpg"), whole[: len(whole) * 2 // 3], bad="truncated JPEG", trap="truncated JPEG")
    write(os.path.join(dog, f"{n}.jpg"), b"<html>404 Not Found</html>", bad="not an image", trap="text named .jpg")
    traps = [  # (class, name, trap, encode)
        (0, f"{n + 1}.jpg", "CMYK JPEG", lambda im: encoded(im, "JPEG", "CMYK")),
        (0, f"{n + 2}.jpg", "PNG named .jpg", lambda im: encoded(im, "PNG")),
        (0, f"{n + 3}.jpg", "GIF named .jpg", lambda im: encoded(im, "GIF")),
        (0, f"{n + 4}.JPG", "upper-case .JPG", _jpeg_bytes),
        (1, f"{n + 1}.jpg", "grayscale JPEG", lambda im: encoded(im, "JPEG", "L")),
        (1, f"{n + 2}.jpg", "BMP named .jpg", lambda im: encoded(im, "BMP")),
        (1, f"{n + 3}.png", "RGBA PNG", lambda im: encoded(im, "PNG", "RGBA")),
        (1, os.path.join("extra", f"{n + 4}.jpg"), "nested folder", _jpeg_bytes),
        (1, os.path.join("extra", f"{n + 5}.jpg"), "nested folder", _jpeg_bytes),
    ]
    for label, name, trap, encode in traps:
        image, mask = picture(label)
        write(os.path.join((cat, dog)[label], name), encode(image), label, mask, trap=trap)
    write(os.path.join(dog, "notes.txt"), b"dogs to photograph\n", ignored=True)
    write(os.path.join(pets, ".DS_Store"), b"\x00\x00\x00\x01Bud1" + bytes(24), ignored=True)
    write(os.path.join(root, "readme[1].txt"), b"Cats and dogs images\n", ignored=True)
    write(os.path.join(root, "CDLA-Permissive-2.0.pdf"), b"%PDF-1.4\n%%EOF\n", ignored=True)
    return demo


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kerasxai.train.demo_data",
                                     description="Write a generated PetImages-like folder with the real traps.")
    parser.add_argument("folder")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    demo = write_demo_folder(args.folder, args.per_class, args.seed)
    print(f"{len(demo.images)} images (cats: discs, dogs: squares), {len(demo.bad)} broken files and "
          f"{len(demo.ignored)} junk files written to {args.folder}")


if __name__ == "__main__":
    main()
