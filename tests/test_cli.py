"""The kerasxai command, run through subprocess as a user would."""

import json
import os
import subprocess
import sys
import time

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


def rows_of(run):
    lines = open(os.path.join(run, "predictions.jsonl")).read().splitlines()
    return [json.loads(line) for line in lines]


def test_explain_two_photos_offline(photos, tmp_path):
    out = tmp_path / "out"
    result = run("explain", str(photos / "chelsea.png"), str(photos / "coffee.jpg"), "--weights", "none",
                 "--methods", "gradcam,saliency,layercam", "--overlays", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "weights are random" in result.stderr and "2 image(s) explained" in result.stdout
    meta = json.load(open(out / "run.json"))
    assert meta["model"] == "vgg16" and meta["weights"] == "none" and meta["layer"] == "block5_conv3"
    assert meta["methods"] == ["gradcam", "saliency", "layercam"] and meta["images"] == 2 and meta["finished"]
    rows = {r["id"]: r for r in rows_of(out)}
    assert sorted(rows) == ["chelsea", "coffee"]
    assert rows["chelsea"]["size"] == [300, 451] and rows["coffee"]["size"] == [400, 600]
    assert Image.open(out / rows["coffee"]["image"]).size == (512, 341)  # its own aspect ratio
    for r in rows.values():
        assert len(r["top_k"]) == 5 and r["target"] == r["top_k"][0]["class"] and r["layer"] == "block5_conv3"
        probs = [t["probability"] for t in r["top_k"]]
        assert probs == sorted(probs, reverse=True) and 0 < probs[0] < 1
        assert sorted(np.load(out / r["maps"])) == ["gradcam", "layercam", "saliency"]
        w, h = Image.open(out / r["image"]).size
        assert Image.open(out / r["overlays"]["layercam"]).size == (w, h + 18)  # the photo, then method @ layer

    again = run("explain", str(photos / "chelsea.png"), "--weights", "none", "--out", str(out))
    assert again.returncode == 2 and "already holds a kerasxai run" in again.stderr and "--resume" in again.stderr


@pytest.fixture(scope="module")
def small_model_file(tmp_path_factory):
    model = keras.Sequential([keras.Input((48, 48, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="c"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")])
    path = tmp_path_factory.mktemp("model") / "m.keras"
    model.save(path)
    return path


def test_explain_a_folder_with_a_saved_model_and_target(photos, tmp_path, small_model_file):
    path = small_model_file
    result = run("explain", str(photos), "--model", str(path), "--methods", "cam,gradcam", "--target", "1",
                 "--class-names", "cat,coffee", "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = rows_of(tmp_path / "o")
    assert len(rows) == 2 and all(r["target"] == 1 and r["target_name"] == "coffee" for r in rows)
    assert {t["name"] for t in rows[0]["top_k"]} == {"cat", "coffee"}
    meta = json.load(open(tmp_path / "o" / "run.json"))
    assert meta["weights"] == str(path) and meta["target"] == 1 and meta["class_names"] == ["cat", "coffee"]


def test_a_killed_run_resumes_with_each_image_once(photos, tmp_path, small_model_file):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        Image.open(photos / "chelsea.png").resize((40 + i, 30 + i)).save(src / f"{i:02d}.png")
    out = tmp_path / "run"
    args = [sys.executable, "-m", "kerasxai", "explain", str(src), "--model", str(small_model_file),
            "--batch-size", "1", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    jsonl = out / "predictions.jsonl"
    try:
        while proc.poll() is None and not (jsonl.exists() and jsonl.read_bytes().count(b"\n") >= 2):
            time.sleep(0.02)
    finally:
        proc.kill()  # SIGKILL: no clean-up of any kind
        proc.wait()
    killed_with = len(rows_of(out))
    assert 2 <= killed_with < 40, "the run ended before it could be interrupted"
    assert json.load(open(out / "run.json"))["finished"] is None
    result = run(*args[3:], "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = rows_of(out)
    assert sorted(r["id"] for r in rows) == [f"{i:02d}" for i in range(40)]
    assert all(os.path.exists(out / r["maps"]) and os.path.exists(out / r["image"]) for r in rows)
    assert json.load(open(out / "run.json"))["images"] == 40


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
        (("explain", "TEXT", "--model", "SMALL"), "notes.jpg is not an image file that can be read"),
        (("explain", "PHOTO", "--target", "dog"), "--target must be a class index, 'label', or region:C"),
        (("explain", "PHOTO", "--out", "FULL"), "is not empty and holds no kerasxai run"),
        (("explain", "PHOTO", "--top", "0", "--weights", "none"), "top is the number of classes kept per image, at least 1"),
        (("evaluate", "--methods", "gradcam,nope"), "unknown method 'nope'"),
    ],
)
def test_errors_exit_non_zero_with_one_line(photos, tmp_path, small_model_file, args, message):
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    swap = {"PHOTO": str(photos / "chelsea.png"), "TEXT": str(tmp_path / "notes.jpg"), "FULL": str(tmp_path / "full"),
            "SMALL": str(small_model_file)}
    args = [swap.get(a, a) for a in args]
    if args[0] == "explain" and "--out" not in args:
        args += ["--out", str(tmp_path / "o")]
    result = run(*args)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("kerasxai: error:" if args[0] != "evaluate" else "kerasxai evaluate: error:")
    assert message in last
    assert "Traceback" not in result.stderr
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine" and os.listdir(tmp_path / "full") == ["keep.txt"]


# --------------------------------------------------------------------------- start-up: quiet and side-effect free

NOISE = ("cuInit", "E0000", "oneDNN", "cpu_feature_guard", "absl::InitializeLog")


def test_help_needs_no_tensorflow_and_prints_none_of_its_start_up_lines():
    """`kerasxai train --help` took 6 s and printed TensorFlow's start-up lines, a false CUDA error among them."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    for args in (["train", "--help"], ["explain", "--help"], ["--help"]):
        result = subprocess.run([sys.executable, "-m", "kerasxai", *args], capture_output=True, text=True, env=env,
                                timeout=120)
        assert result.returncode == 0 and "usage:" in result.stdout
        assert not any(word in result.stdout + result.stderr for word in NOISE), result.stderr
    probe = ("import sys, kerasxai.cli, kerasxai.train, kerasxai.train.cli; "
             "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                          timeout=120).stdout.split() == ["False", "False"]


def test_a_real_command_shows_its_output_without_tensorflow_start_up_lines(tmp_path):
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(2, 3, name="conv"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    model.save(tmp_path / "m.keras")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "kerasxai", "layers", str(tmp_path / "m.keras")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and "conv" in result.stdout
    assert not any(word in result.stderr for word in NOISE), result.stderr


def test_importing_kerasxai_changes_no_environment_variable():
    # TensorFlow's own import sets TF_CPP_MIN_LOG_LEVEL: what kerasxai changes is measured after it
    code = ("import os, json, keras, tensorflow; os.environ.pop('TF_CPP_MIN_LOG_LEVEL', None); "
            "before = dict(os.environ); "
            "import kerasxai, kerasxai.cli, kerasxai.demo, kerasxai.train, kerasxai.evaluation.evaluate; "
            "kerasxai.gradcam; kerasxai.train.Config; "
            "print(json.dumps({k: v for k, v in os.environ.items() if before.get(k) != v}))")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-1000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {}


def test_the_start_up_filter_keeps_real_errors_and_the_cuda_line_where_there_is_a_gpu():
    from kerasxai._startup import is_noise

    cuda = "E0000 00:00:1796472942.473754   17225 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error"
    assert is_noise(cuda, gpu=False) and not is_noise(cuda, gpu=True)
    assert not is_noise("E0000 00:00:1.0  1 op_kernel.cc:1] OOM when allocating tensor")
    assert not is_noise("kerasxai: error: model file not found: m.keras")
    assert is_noise("I0000 00:00:1796472932.717634   17225 port.cc:153] oneDNN custom operations are on.")


def test_a_run_in_which_every_file_failed_leaves_no_run_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "notes.jpg").write_text("not a photo")
    out = tmp_path / "run"
    result = run("explain", str(folder), "--weights", "none", "--out", str(out))
    errors = [line for line in result.stderr.splitlines() if line.startswith("kerasxai: error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-800:]
    assert "none of the 1 file(s) could be read" in errors[0] and "notes.jpg" in errors[0]
    assert "no run folder was written" in errors[0] and not out.exists()
    # a folder the user had already, empty or not, is not removed
    out.mkdir()
    result = run("explain", str(folder), "--weights", "none", "--out", str(out))
    assert result.returncode == 2 and out.is_dir()
    (out / "mine.txt").write_text("keep")
    result = run("explain", str(folder), "--weights", "none", "--out", str(out), "--force")
    assert result.returncode == 2 and (out / "mine.txt").read_text() == "keep"


def test_a_saved_vit_from_the_command_line(photos, tmp_path):
    """kerasxai's own small ViT saved to a file: its token layers listed with their grid, and the attention
    methods in a folder run, maps equal to the functions' on the same preprocessed images."""
    from kerasxai.evaluation.synthetic import small_vit

    model = small_vit((48, 48, 3), 2, patch=8, dim=16, depth=2, heads=2, seed=7)
    model.save(tmp_path / "vit.keras")
    listed = run("layers", str(tmp_path / "vit.keras"))
    assert listed.returncode == 0, listed.stderr[-2000:]
    default = next(line for line in listed.stdout.splitlines() if line.endswith("(default)"))
    assert default.startswith("block1_norm1") and "tokens on a 6x6 grid, 1 extra" in default
    out = tmp_path / "run"
    result = run("explain", str(photos), "--model", str(tmp_path / "vit.keras"), "--methods",
                 "gradcam,attention_rollout,transformer_attribution", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = rows_of(out)
    assert len(rows) == 2 and json.load(open(out / "run.json"))["layer"] == "block1_norm1"
    assert sorted(np.load(out / rows[0]["maps"])) == ["attention_rollout", "gradcam", "transformer_attribution"]
