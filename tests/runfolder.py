"""Writes run folders in the layout ``kerasxai explain`` produces, for the report's tests.

Real photos (scikit-image's samples, cropped to many sizes and aspect ratios),
maps at a model's input resolution (float16 ``.npz``, one key per method),
overlays drawn with ``kerasxai.overlay``, ``predictions.jsonl`` and
``run.json`` — with known labels, mistakes and flat maps, so tests can count.
"""

from __future__ import annotations

import datetime
import json
import os

import numpy as np
from PIL import Image

CLASSES = ["tabby", "espresso", "astronaut", "rocket"]


def _photos():
    from skimage import data

    return [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]


def _long_side(image: np.ndarray, limit: int = 512) -> np.ndarray:
    h, w = image.shape[:2]
    if max(h, w) <= limit:
        return image
    scale = limit / max(h, w)
    return np.asarray(Image.fromarray(image).resize((round(w * scale), round(h * scale)), Image.BILINEAR))


def _blob(rng, size):
    yy, xx = np.mgrid[0:size, 0:size] / size
    cy, cx, s = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.25)
    m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return ((m - m.min()) / (m.max() - m.min())).astype(np.float32)


def make_run(run_dir, n: int = 24, *, methods=("gradcam", "saliency"), overlays: bool = True, labels: bool = True,
             flat_every: int = 5, wrong_every: int = 4, distinct_images: int | None = None, map_size: int = 32,
             seed: int = 0, finished: bool = True, run_extra: dict | None = None) -> list:
    """Writes a run folder of ``n`` images; returns the rows of its ``predictions.jsonl`` (in file order).

    Image ``i``'s true class is ``CLASSES[i % 4]``; every ``wrong_every``-th is
    predicted wrongly; every ``flat_every``-th has a flat (all-zero) first
    method. ``distinct_images`` < n makes rows share image and overlay files
    (cheap large runs). Rows are written in a shuffled order, as a parallel
    pipeline may.
    """
    from kerasxai.figures.overlay import overlay

    rng = np.random.default_rng(seed)
    photos = _photos()
    for sub in ("images", "maps", "overlays"):
        os.makedirs(os.path.join(run_dir, sub), exist_ok=True)
    distinct = n if distinct_images is None else distinct_images
    rows = []
    for i in range(n):
        true = i % len(CLASSES)
        photo_id = f"{i % distinct:05d}"
        ident = f"{i:05d}_{CLASSES[true]}"
        source = photos[true]
        h, w = source.shape[:2]
        if i < distinct:  # a crop of its own size and aspect ratio
            rs = np.random.default_rng(seed + i)
            ch, cw = int(h * rs.uniform(0.55, 1.0)), int(w * rs.uniform(0.45, 1.0))
            y, x = rs.integers(0, h - ch + 1), rs.integers(0, w - cw + 1)
            display = _long_side(source[y:y + ch, x:x + cw])
            Image.fromarray(display).save(os.path.join(run_dir, "images", f"{photo_id}.jpg"), quality=85)
        maps = {m: _blob(np.random.default_rng(seed + 1000 * i + j), map_size) for j, m in enumerate(methods)}
        if flat_every and i % flat_every == 0:
            maps[methods[0]] = np.zeros((map_size, map_size), np.float32)
        np.savez(os.path.join(run_dir, "maps", f"{ident}.npz"), **{m: v.astype(np.float16) for m, v in maps.items()})
        if overlays and i < distinct:
            with Image.open(os.path.join(run_dir, "images", f"{photo_id}.jpg")) as im:
                shown = np.asarray(im.convert("RGB"))
            for m, v in maps.items():
                Image.fromarray(overlay(shown, v)).save(os.path.join(run_dir, "overlays", f"{photo_id}_{m}.png"),
                                                        compress_level=1)
        predicted = (true + 1) % len(CLASSES) if wrong_every and i % wrong_every == 1 else true
        probs = rng.dirichlet(np.ones(len(CLASSES)) * 0.5)
        probs[predicted] += 1.0 + rng.uniform(0, 2)
        probs = probs / probs.sum()
        top = sorted(range(len(CLASSES)), key=lambda c: (-probs[c], c))
        row = {
            "id": ident,
            "file": f"photos/{CLASSES[true]}/{ident}.jpg",
            "size": [int(h), int(w)],
            "label": CLASSES[true] if labels else None,
            "top_k": [{"class": c, "name": CLASSES[c], "probability": round(float(probs[c]), 6)} for c in top],
            "target": int(top[0]),
            "target_name": CLASSES[top[0]],
            "layer": "conv2",
            "maps": f"maps/{ident}.npz",
            "image": f"images/{photo_id}.jpg",
            "methods": {m: {"flat": bool(v.max() <= 0), "max": float(v.max()), "mean": float(v.mean())}
                        for m, v in maps.items()},
        }
        if overlays:
            row["overlays"] = {m: f"overlays/{photo_id}_{m}.png" for m in methods}
        rows.append(row)
    now = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    info = {"model": "tiny_cnn", "weights": "none", "methods": list(methods), "layer": "conv2", "target": None,
            "class_names": CLASSES, "kerasxai_version": "0.1.0", "started": now.isoformat(),
            "finished": (now + datetime.timedelta(seconds=42)).isoformat() if finished else None, "images": n}
    info.update(run_extra or {})
    with open(os.path.join(run_dir, "run.json"), "w") as fh:
        json.dump(info, fh, indent=2)
    shuffled = [rows[k] for k in rng.permutation(n)]
    with open(os.path.join(run_dir, "predictions.jsonl"), "w") as fh:
        for row in shuffled:
            fh.write(json.dumps(row) + "\n")
    return shuffled
