"""The kerasxai command, run through subprocess as a user would."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "kerasxai", *args], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.chelsea()).save(folder / "chelsea.png")
    Image.fromarray(data.coffee()).save(folder / "coffee.jpg")
    return folder


def test_explain_two_photos_offline(photos, tmp_path):
    out = tmp_path / "out"
    result = run("explain", str(photos / "chelsea.png"), str(photos / "coffee.jpg"), "--weights", "none",
                 "--methods", "gradcam,saliency,layercam", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("chelsea_explained.png", "coffee_explained.png"):
        png = Image.open(out / name)
        assert png.size[0] > 3 * png.size[1]  # one row: input + three methods
    report = json.load(open(out / "predictions.json"))
    assert [os.path.basename(r["image"]) for r in report] == ["chelsea.png", "coffee.jpg"]
    for r in report:
        assert len(r["top5"]) == 5 and r["target"] == r["top5"][0]["class"]
        probs = [t["probability"] for t in r["top5"]]
        assert probs == sorted(probs, reverse=True) and 0 < probs[0] < 1
        assert r["methods"] == ["gradcam", "saliency", "layercam"]


def test_explain_a_folder_with_a_saved_model_and_target(photos, tmp_path):
    model = keras.Sequential([keras.Input((48, 48, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="c"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")])
    path = tmp_path / "m.keras"
    model.save(path)
    result = run("explain", str(photos), "--model", str(path), "--methods", "cam,gradcam", "--target", "1",
                 "--class-names", "cat,coffee", "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.load(open(tmp_path / "o" / "predictions.json"))
    assert len(report) == 2 and all(r["target"] == 1 for r in report)
    assert {t["name"] for t in report[0]["top5"]} == {"cat", "coffee"}


def test_layers_on_a_nested_model_file(tmp_path):
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    model = keras.Sequential([base, keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")])
    model(np.zeros((1, 32, 32, 3)))
    model.save(tmp_path / "nested.keras")
    result = run("layers", str(tmp_path / "nested.keras"))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[1].startswith("vgg16/block1_conv1") and "(None, 32, 32, 64)" in lines[1]
    assert lines[-1].startswith("vgg16/block5_conv3") and lines[-1].endswith("(default)")


def test_demo(tmp_path):
    result = run("demo", "--out", str(tmp_path), "--epochs", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "demo.png").exists() and "peak falls on the object" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (("explain", "missing.png", "--weights", "none"), "no such file or folder: missing.png"),
        (("explain", "PHOTO", "--model", "vgg17"), "unknown model 'vgg17'"),
        (("explain", "PHOTO", "--methods", "gradkam", "--weights", "none"), "unknown method 'gradkam'"),
        (("layers", "missing.keras"), "model file not found: missing.keras"),
        (("explain", "TEXT", "--weights", "none"), "is not an image file"),
    ],
)
def test_errors_exit_non_zero_with_one_line(photos, tmp_path, args, message):
    (tmp_path / "notes.jpg").write_text("not an image")
    args = [str(photos / "chelsea.png") if a == "PHOTO" else str(tmp_path / "notes.jpg") if a == "TEXT" else a for a in args]
    result = run(*args, "--out", str(tmp_path / "o")) if args[0] == "explain" else run(*args)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("kerasxai: error:") and message in last
    assert "Traceback" not in result.stderr
