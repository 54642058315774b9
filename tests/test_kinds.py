"""Run folders know their kind: a command pointed at the other kind refuses, and nothing in the folder changes."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

import kerasxai
from kerasxai.folder import kinds
from kerasxai.train import Config, TrainError, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def snapshot(folder):
    """Every file below ``folder``: its bytes and modification time."""
    out = {}
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = (fh.read(), os.stat(path).st_mtime_ns)
    return out


def command(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "kerasxai", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def explanation_run(tmp_path_factory):
    photos = tmp_path_factory.mktemp("photos")
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40, 3), np.uint8)).save(photos / f"{i}.png")
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")])
    out = tmp_path_factory.mktemp("runs") / "explained"
    kerasxai.explain_folder(model, photos, out, progress=False)
    return out


@pytest.fixture(params=["current", "legacy"])
def training_run(request, tmp_path):
    """A training run folder as kerasxai train leaves it (run.json with or without its "kind")."""
    out = tmp_path / "trained"
    (out / "resume").mkdir(parents=True)
    meta = {"config": {"data_dir": "PetImages", "out": str(out), "epochs": 3}, "started": "2026-12-01 10:00:00"}
    if request.param == "current":
        meta = {"kind": "training", **meta}
    (out / "run.json").write_text(json.dumps(meta, indent=2))
    (out / "log.csv").write_text("epoch,phase,loss,accuracy,val_loss,val_accuracy\n0,head,0.7,0.5,0.69,0.52\n")
    (out / "best.keras").write_bytes(b"weights stand-in")
    (out / "resume" / "state.json").write_text(json.dumps({"rows": [{"epoch": 0}]}))
    return out


def test_each_run_json_says_its_kind(explanation_run):
    assert json.loads((explanation_run / "run.json").read_text())["kind"] == "explanation"
    assert kinds.read_kind(explanation_run) == "explanation"


@pytest.mark.parametrize("resume", [False, True])
def test_training_refuses_an_explanation_run_and_changes_nothing(explanation_run, tmp_path, resume):
    before = snapshot(explanation_run)
    cfg = Config(data_dir=str(tmp_path / "no-data-needed"), out=str(explanation_run), overwrite=not resume,
                 resume=resume, verbose=0)
    with pytest.raises(TrainError, match="holds an explanation run .*not a training run: cannot"):
        train(cfg)
    assert snapshot(explanation_run) == before


def test_kerasxai_train_overwrite_refuses_an_explanation_run_in_one_line(explanation_run, tmp_path):
    before = snapshot(explanation_run)
    result = command("train", "--data-dir", str(tmp_path), "--out", str(explanation_run), "--overwrite")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("kerasxai: error:")]
    assert len(errors) == 1 and "holds an explanation run" in errors[0] and "nothing in it was changed" in errors[0]
    assert snapshot(explanation_run) == before


@pytest.mark.parametrize("resume", [False, True])
def test_explaining_refuses_a_training_run_and_changes_nothing(training_run, tmp_path, resume):
    before = snapshot(training_run)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(photos / "a.png")
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(2, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="holds a training run .*not an explanation run: cannot"):
        kerasxai.explain_folder(model, photos, training_run, resume=resume, force=True, progress=False)
    with pytest.raises(ValueError, match="holds a training run"):
        kerasxai.write_report(training_run)
    assert snapshot(training_run) == before


def test_kerasxai_explain_resume_force_and_report_refuse_a_training_run_in_one_line(training_run, tmp_path):
    before = snapshot(training_run)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(photos / "a.png")
    for args in (["explain", str(photos), "--out", str(training_run), "--weights", "none", "--resume"],
                 ["explain", str(photos), "--out", str(training_run), "--weights", "none", "--force"],
                 ["report", str(training_run)]):
        result = command(*args)
        errors = [line for line in result.stderr.splitlines() if line.startswith("kerasxai: error:")]
        assert result.returncode == 2 and len(errors) == 1, (args, result.stderr[-500:])
        assert "holds a training run" in errors[0]
    assert snapshot(training_run) == before
