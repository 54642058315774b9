"""The transfer-learning script on a generated two-class folder, offline (weights=none, 32x32)."""

import csv
import hashlib
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kerasxai
from kerasxai import synthetic
from kerasxai.train import Config, find_files, train

CORRUPT = ("empty", "truncated", "text")


def _write_dataset(root, layout):
    """40 images per class (discs = cat, crosses = dog) and three corrupt files among the cats."""
    images, labels, _ = synthetic.shapes_dataset(80, size=40, seed=9)
    names = ["cat", "dog"]
    written = []
    for i, (img, lab) in enumerate(zip(images, labels)):
        if layout == "folders":
            folder = root / "PetImages" / names[lab].capitalize()
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{i}.jpg"
        else:
            root.mkdir(parents=True, exist_ok=True)
            path = root / f"{names[lab]}.{i}.jpg"
        Image.fromarray((img * 255).astype(np.uint8)).save(path, quality=95)
        written.append(path)
    folder = written[0].parent
    prefix = "" if layout == "folders" else "cat."
    bad = {kind: folder / f"{prefix}{900 + k}.jpg" for k, kind in enumerate(CORRUPT)}
    bad["empty"].write_bytes(b"")
    bad["truncated"].write_bytes(written[0].read_bytes()[:150])
    bad["text"].write_text("not an image at all")
    return bad


def _digests(root):
    return {p: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in sorted(map(str, root.rglob("*.jpg")))}


@pytest.mark.parametrize(
    "layout, head, output, fine_tune",
    [("folders", "flatten", "sigmoid", 0), ("flat", "gap", "softmax", 1)],
)
def test_training_run_end_to_end(tmp_path, layout, head, output, fine_tune):
    data = tmp_path / "data"
    bad = _write_dataset(data, layout)
    before = _digests(data)
    out = tmp_path / "run"
    size = 64 if head == "gap" else 32  # a GAP head reads block5_pool: 2x2 at 64, 1x1 at 32
    cfg = Config(data_dir=str(data), out=str(out), image_size=size, epochs=2, batch_size=16, weights="none",
                 head=head, output=output, fine_tune_epochs=fine_tune, verbose=0)
    summary = train(cfg)

    # corrupt files: skipped, listed exactly, nothing modified or deleted
    listed = [line.split("\t")[0] for line in (out / "bad_files.txt").read_text().splitlines()[1:]]
    assert sorted(listed) == sorted(str(p) for p in bad.values())
    assert summary["unreadable_files"] == 3 and summary["files"] == 83
    assert _digests(data) == before
    assert summary["train_images"] + summary["validation_images"] == 80
    assert summary["classes"] == ["cat", "dog"]

    # the run's products
    for name in ("best.keras", "log.csv", "curves.png", "confusion.png", "explanations.png", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert len(rows) == 2 + fine_tune and "val_accuracy" in rows[0]
    assert np.array(summary["confusion_matrix"]).sum() == summary["validation_images"]
    assert json.load(open(out / "summary.json"))["validation_accuracy"] == summary["validation_accuracy"]

    # Grad-CAM overlays reached TensorBoard, one image summary per epoch
    events = [os.path.join(d, f) for d, _, fs in os.walk(out / "tensorboard" / "gradcam") for f in fs]
    steps = {e.step for f in events for e in tf.compat.v1.train.summary_iterator(f)
             for v in e.summary.value if v.tag.startswith("gradcam_overlays")}
    assert steps == set(range(2 + fine_tune))

    # the saved model reloads in safe mode and explains right away
    model = keras.models.load_model(out / "best.keras", safe_mode=True)
    display, x = kerasxai.load_images([p for p in data.rglob("*.jpg") if p not in bad.values()][:2], model)
    maps = kerasxai.gradcam(model, x)
    assert maps.shape == (2, size, size) and np.isfinite(maps).all()
    assert kerasxai.get_probe(model).layer_names == ["vgg16/block5_conv3"]
    if head == "gap":
        assert np.isfinite(kerasxai.cam(model, x)).all()


def test_find_files_errors(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="neither class folders"):
        find_files(str(tmp_path))
