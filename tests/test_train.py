"""The training script, offline, on a generated PetImages-like folder holding the real data set's traps."""

import csv
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kerasxai
from kerasxai.train import Config, TrainError, chance_check, find_files, scan_data, train, write_demo_folder
from kerasxai.train import cli as train_cli
from kerasxai.train import data as data_module
from kerasxai.train import figures
from kerasxai.train.config import resolve
from kerasxai.train.demo_data import draw
from kerasxai.train.model import build_model
from kerasxai.train.pipeline import image_dataset

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.getcwd()}
FAST = dict(weights="none", image_size=40, batch_size=16, verbose=0)


def _digests(root):
    """Every file under ``root`` (names and contents): nothing may be changed, added or removed."""
    return {os.path.relpath(os.path.join(d, f), root): hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
            for d, _, fs in os.walk(root) for f in fs}


def _rows(out):
    return list(csv.DictReader(open(os.path.join(out, "log.csv"))))


def _tensorboard_steps(folder, tag):
    """Every step logged under ``tag`` in the event files below ``folder`` (repeats kept)."""
    steps = []
    for d, _, files in os.walk(folder):
        for f in files:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(d, f)):
                steps += [event.step for v in event.summary.value if v.tag == tag]
    return sorted(steps)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return write_demo_folder(tmp_path_factory.mktemp("pets"), per_class=40, seed=0)


@pytest.fixture(scope="module")
def learned(demo, tmp_path_factory):
    """One offline run on the trap folder: small CNN from scratch (the default for --weights none)."""
    before = _digests(demo.data_dir)
    out = str(tmp_path_factory.mktemp("runs") / "learned")
    summary = train(Config(data_dir=demo.data_dir, out=out, epochs=10, patience=10, **FAST))
    return summary, out, before


def test_offline_run_learns_the_shapes_and_says_its_base_is_random(learned, demo):
    summary, out, _ = learned
    assert summary["base"] == "small" and summary["base_weights"] == "random"
    assert summary["base_trained"] == "all layers"
    assert summary["validation_accuracy"] >= 0.85 and summary["above_chance"] and summary["warning"] is None
    assert summary["p_value_adjusted_for_epoch_choice"] < 0.01
    assert summary["validation_images"] + summary["train_images"] == len(demo.images)

    # Grad-CAM of the saved model points at the shapes of the held-out images
    model = keras.models.load_model(os.path.join(out, "best.keras"), safe_mode=True)
    scan = scan_data(demo.data_dir)
    good, _, _ = data_module.check_files(scan.paths)
    paths = [p for p, ok in zip(scan.paths, good) if ok]
    _, val_idx = data_module.split(scan.labels[good], 0.24, 0, scan.class_names)
    val = [paths[i] for i in val_idx]
    _, x = kerasxai.load_images(val, model)
    maps = kerasxai.gradcam(model, x)
    masks = [tf.image.resize(demo.masks[p][..., None].astype("float32"), (40, 40), "nearest").numpy()[..., 0] > 0
             for p in val]
    hits = [m.reshape(-1)[cam.argmax()] for cam, m in zip(maps, masks)]
    assert np.mean(hits) >= 0.7, np.mean(hits)


def test_the_traps_are_skipped_listed_or_ignored_and_no_file_changes(learned, demo):
    summary, out, before = learned
    lines = open(os.path.join(out, "bad_files.txt")).read().splitlines()
    listed = dict(line.split("\t") for line in lines[1:])
    assert set(listed) == set(demo.bad)
    for path, reason in listed.items():
        assert "Op:" not in reason and "function_node" not in reason and "name:" not in reason
        expected = {"empty file": "empty file (0 bytes)", "truncated JPEG": "damaged JPEG (",
                    "not an image": "not an image: its bytes are not JPEG, PNG, GIF, BMP or WebP"}[demo.bad[path]]
        assert reason.startswith(expected), (path, reason)
    assert summary["unreadable_files"] == len(demo.bad)
    assert summary["image_files"] == len(demo.images) + len(demo.bad)
    assert summary["nested_folders_used"] == {os.path.join("Dog", "extra"): 2}
    assert summary["decoded_despite_name"] == {"PNG named .jpg": 1, "GIF named .jpg": 1, "BMP named .jpg": 1}
    scan = scan_data(demo.data_dir)
    ignored = {p for paths in scan.ignored.values() for p in paths}
    assert ignored == set(demo.ignored)
    assert sum(summary["ignored"].values()) == len(demo.ignored)
    assert _digests(demo.data_dir) == before


def test_run_products_logs_and_figures(learned):
    summary, out, _ = learned
    assert sorted(os.listdir(out)) == ["bad_files.txt", "best.keras", "confusion.png", "curves.png",
                                       "explanations.png", "log.csv", "misclassified.png", "run.json",
                                       "summary.json", "tensorboard"]
    rows = _rows(out)
    assert [int(r["epoch"]) for r in rows] == list(range(1, summary["epochs_run"] + 1))
    best = max(rows, key=lambda r: (float(r["val_accuracy"]), -float(r["val_loss"])))
    assert int(best["epoch"]) == summary["best_epoch"]
    assert _tensorboard_steps(os.path.join(out, "tensorboard", "gradcam"), "gradcam_overlays") == list(
        range(summary["epochs_run"]))
    for name in ("curves.png", "confusion.png", "explanations.png", "misclassified.png"):
        assert Image.open(os.path.join(out, name)).size[0] > 300
    assert json.load(open(os.path.join(out, "summary.json")))["validation_accuracy"] == summary["validation_accuracy"]


def test_a_used_run_folder_is_refused_and_left_as_it_was(learned, demo, tmp_path):
    _, out, _ = learned
    before = _digests(out)
    with pytest.raises(TrainError, match="already holds files.*--resume.*--overwrite"):
        train(Config(data_dir=demo.data_dir, out=out, **FAST))
    with pytest.raises(TrainError, match="has finished"):
        train(Config(data_dir=demo.data_dir, out=out, resume=True, **FAST))
    # --overwrite with a data mistake: the old run is still all there
    with pytest.raises(TrainError, match="does not exist"):
        train(Config(data_dir=str(tmp_path / "missing"), out=out, overwrite=True, **FAST))
    assert _digests(out) == before
    # --overwrite never empties a folder that is not a run
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(TrainError, match="not a kerasxai run folder"):
        train(Config(data_dir=demo.data_dir, out=str(tmp_path / "mine"), overwrite=True, **FAST))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


def test_one_preprocessing_path_same_pixels_and_logits(demo):
    """Files of every kind give the same model input through load_images as through the training pipeline."""
    paths = [p for p in demo.traps if p in demo.images] + list(demo.images)[:3]
    labels = np.zeros(len(paths), np.int32)
    for weights_base in ("small", "vgg16"):
        settings = resolve(Config("d", "o", weights="none", base=weights_base))
        model, _ = build_model(settings, 32, "sigmoid", 2, None)
        preprocess = kerasxai.data.images.preprocess_function("auto", model)
        ds = image_dataset(paths, labels, 32, preprocess, batch_size=64)
        x_train = np.concatenate([x.numpy() for x, _ in ds])
        display, x_explain = kerasxai.load_images(paths, model, display_side=None)  # display: the model's pixels
        np.testing.assert_allclose(x_explain, x_train, atol=1e-4)
        np.testing.assert_allclose(model.predict(x_explain, verbose=0), model.predict(ds, verbose=0), atol=1e-6)
        unprocessed = x_train if preprocess is None else None
        if unprocessed is not None:  # the display image is the same pixels, rounded
            np.testing.assert_array_equal(display, np.clip(np.round(unprocessed), 0, 255).astype(np.uint8))


def test_interrupt_before_the_first_epoch_leaves_no_folder(demo, tmp_path, capsys):
    class CtrlC(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(Config(data_dir=demo.data_dir, out=str(tmp_path / "run"), **FAST), callbacks=[CtrlC()])
    assert "nothing was saved" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_fast_frozen_phase_matches_the_slow_path_and_a_chance_model_says_so(tmp_path):
    """A frozen base (random weights), features cached vs recomputed every epoch: the same training.

    The two classes hold the same kind of picture, so no model can beat chance: the run must say so.
    """
    rng = np.random.default_rng(3)
    for folder in ("Cat", "Dog"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        for i in range(14):
            image, _ = draw(rng, 0, 36, 36)  # discs in both classes
            Image.fromarray(image).save(tmp_path / "data" / folder / f"{i}.jpg")
    options = dict(data_dir=str(tmp_path / "data"), epochs=2, freeze_base=True, head="flatten", image_size=32,
                   batch_size=8, val_fraction=0.3, weights="none", verbose=0, fine_tune_epochs=1)
    fast = train(Config(out=str(tmp_path / "fast"), **options))
    slow = train(Config(out=str(tmp_path / "slow"), feature_cache=False, **options))
    assert fast["feature_caching_seconds"] and not slow["feature_caching_seconds"]
    assert [(r["epoch"], r["phase"]) for r in _rows(tmp_path / "fast")] == [("1", "head"), ("2", "head"),
                                                                              ("3", "fine-tune")]
    for a, b in zip(_rows(tmp_path / "fast"), _rows(tmp_path / "slow")):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(float(a[key]), float(b[key]), rtol=1e-4, err_msg=key)
    m_fast = keras.models.load_model(tmp_path / "fast" / "best.keras")
    m_slow = keras.models.load_model(tmp_path / "slow" / "best.keras")
    for w_fast, w_slow in zip(m_fast.get_weights(), m_slow.get_weights()):
        np.testing.assert_allclose(w_fast, w_slow, atol=1e-5)

    assert not fast["above_chance"] and fast["warning"].startswith("AT CHANCE LEVEL")
    assert fast["p_value_adjusted_for_epoch_choice"] >= 0.05


def test_augmentation_flips_training_images_and_needs_them_each_epoch(demo):
    from kerasxai.train.pipeline import EpochOrder
    from kerasxai.train.run import uses_feature_cache

    paths = list(demo.images)[:6]
    order = EpochOrder(len(paths), seed=1, augment=True)
    flips = [f for _, f in order()]
    assert any(flips) and not all(flips)
    plain = np.concatenate([x.numpy() for x, _ in image_dataset(paths, np.zeros(6), 24, None, 6)])
    augmented = np.concatenate([x.numpy() for x, _ in image_dataset(paths, np.zeros(6), 24, None, 6, order)])
    for (index, flip), image in zip(order(), augmented):
        np.testing.assert_array_equal(image, plain[index][:, ::-1] if flip else plain[index])
    order.on_epoch_begin(1)
    assert [i for i, _ in order()] != [i for i, _ in EpochOrder(6, seed=1)()]  # another order next epoch
    assert not uses_feature_cache(Config("d", "o", augment=True), "head")
    assert not uses_feature_cache(Config("d", "o", feature_cache=False), "head")
    assert uses_feature_cache(Config("d", "o"), "head") and not uses_feature_cache(Config("d", "o"), "fine-tune")


def test_auto_options_follow_the_weights(tmp_path):
    """ImageNet (or a weights file): the original experiment. Random: a small CNN trained whole, said so."""
    online = resolve(Config("d", "o"))
    assert (online.base, online.pretrained, online.freeze_base, online.head, online.learning_rate,
            online.patience) == ("vgg16", True, True, "flatten", 1e-4, 3)
    offline = resolve(Config("d", "o", weights="none"))
    assert (offline.base, offline.pretrained, offline.freeze_base, offline.head, offline.learning_rate,
            offline.patience) == ("small", False, False, "gap", 1e-3, 5)
    (tmp_path / "vgg.weights.h5").write_bytes(b"")
    from_file = resolve(Config("d", "o", weights=str(tmp_path / "vgg.weights.h5"), head="gap"))
    assert from_file.base == "vgg16" and from_file.pretrained and from_file.freeze_base and from_file.head == "gap"
    with pytest.raises(TrainError, match="--weights must be 'imagenet', 'none' or a weights file"):
        resolve(Config("d", "o", weights="imagenet21k"))


def test_chance_check_against_scipy():
    from scipy.stats import binomtest

    rng = np.random.default_rng(0)
    for n, accuracy in ((20, 0.5), (20, 0.75), (200, 0.58), (6000, 0.51), (30, 1.0)):
        true = np.arange(n) % 2
        predicted = np.where(rng.random(n) < accuracy, true, 1 - true)
        check = chance_check(true, predicted, ["cat", "dog"])
        expected = binomtest(int((true == predicted).sum()), n, 0.5, alternative="greater").pvalue
        assert check["p_value"] == pytest.approx(expected, rel=1e-6)
        assert check["above_chance"] == (expected < 0.05)
    # imbalanced: always answering the commonest class is the chance level
    check = chance_check(np.array([0] * 18 + [1] * 2), np.zeros(20, int), ["cat", "dog"])
    assert check["chance_level"] == 0.9 and "answers 'cat' for every image" in check["warning"]
    # the best of 10 epochs picked on the same images: 15 of 20 is no longer enough
    true = np.arange(20) % 2
    lucky = np.where(np.arange(20) < 15, true, 1 - true)
    assert chance_check(true, lucky, ["cat", "dog"])["above_chance"]
    assert not chance_check(true, lucky, ["cat", "dog"], choices=10)["above_chance"]


def test_at_chance_the_figures_show_no_heatmaps_and_say_why():
    display = np.zeros((2, 32, 32, 3), np.uint8)
    warning = chance_check(np.array([0, 1] * 5), np.zeros(10, int), ["cat", "dog"])["warning"]
    fig = figures.explained_figure(None, display, None, ["a", "b"], warning)  # no model call at chance
    assert "AT CHANCE LEVEL" in fig._suptitle.get_text() and not any(ax.images[1:] for ax in fig.axes)
    rows = [{"epoch": e, "loss": 1.0, "val_loss": 1.0, "accuracy": 0.5, "val_accuracy": v}
            for e, v in ((1, 0.5), (2, 0.6), (3, 0.55))]
    fig = figures.curves_figure(rows, best_epoch=2, chance=0.5, fine_tune_start=3, warning=warning)
    acc = fig.axes[1]
    vertical = sorted(line.get_xdata()[0] for line in acc.lines if len(set(line.get_xdata())) == 1
                      and line.get_linestyle() != "None")
    assert vertical == [2, 2.5]  # best epoch; fine-tuning starts before epoch 3
    assert "chance level (50%)" in [t.get_text() for t in acc.get_legend().get_texts()]
    fig = figures.confusion_figure(np.array([[5, 0], [5, 0]]), ["cat", "dog"], warning)
    assert "50.0%" in fig.axes[0].get_title() and "AT CHANCE" in fig._suptitle.get_text()


def test_explained_images_name_the_layer_and_the_class_explained():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1, activation="sigmoid")])
    x = np.random.default_rng(0).random((3, 16, 16, 3)).astype("float32")
    fig = figures.explained_figure(model, (x * 255).astype(np.uint8), x, ["a", "b", "c"], class_names=["cat", "dog"])
    classes = [row[0][0] for row in kerasxai.top_k(model, x, k=1)]
    names = [["cat", "dog"][c] for c in classes]
    titles = [ax.get_title() for ax in fig.axes[:9]]
    assert titles[1::3] == [f"saliency @ input\nfor {n} ({c})" for n, c in zip(names, classes)]
    assert titles[2::3] == [f"gradcam @ conv\nfor {n} ({c})" for n, c in zip(names, classes)]


# --------------------------------------------------------------------------- finding the data


def _files(root, names, content=None):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None and name.lower().endswith((".jpg", ".png")):
            Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(path, format="PNG")
        else:
            path.write_bytes(content or b"x")
    return root


def test_flat_layout_ignores_thumbs_db_and_unlabelled_files(tmp_path):
    _files(tmp_path, ["cat.0.jpg", "cat.1.jpg", "dog.0.jpg", "dog.1.JPG", "Thumbs.db", "desktop.ini",
                      ".DS_Store", "IMG_7.txt", "1.jpg", "sampleSubmission.csv"])
    scan = scan_data(str(tmp_path))
    assert scan.layout == "flat" and scan.class_names == ["cat", "dog"] and scan.labels.tolist() == [0, 0, 1, 1]
    assert {k: len(v) for k, v in scan.ignored.items()} == {
        data_module.THUMBS: 2, data_module.HIDDEN: 1, data_module.NOT_IMAGE: 2, data_module.NO_PREFIX: 1}
    assert find_files(str(tmp_path))[2] == ["cat", "dog"]


@pytest.mark.parametrize("names, classes, message", [
    (["PetImages/Cat/1.jpg", "PetImages/Dog/Thumbs.db"], 2,
     r"expected 2 classes with images in '.*PetImages', found 1: Cat/ \(1 images\), Dog/ \(0 images\); each class "),
    (["Cat/1.jpg", "Cat/2.jpg"], 2, r"found 1: Cat/ \(2 images\)"),
    (["Cat/1.jpg", "Dog/1.jpg", "Fox/1.jpg"], 2, r"found 3: .*use --classes 3"),
    (["train/cat.0.jpg", "test1/1.jpg", "sampleSubmission.csv"], 2, r"look like a data split.*train"),
    (["readme.txt", "__MACOSX/._x.jpg"], 2, r"no image files .* it holds: .*readme.txt"),
])
def test_data_mistakes_are_explained(tmp_path, names, classes, message):
    _files(tmp_path, names)
    with pytest.raises(TrainError, match=message):
        scan_data(str(tmp_path), classes)


def test_three_classes_and_a_class_of_broken_files(tmp_path):
    _files(tmp_path, ["Cat/1.jpg", "Dog/1.jpg", "Fox/1.jpg"])
    assert scan_data(str(tmp_path), classes=3).class_names == ["cat", "dog", "fox"]
    _files(tmp_path / "d2", ["Cat/1.jpg", "Cat/2.jpg", "Dog/1.jpg"])
    _files(tmp_path / "d2", ["Dog/2.jpg"], content=b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(TrainError, match="class dog has 1 usable image"):
        train(Config(data_dir=str(tmp_path / "d2"), out=str(tmp_path / "run"), **FAST))
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- the command


@pytest.mark.parametrize("args, message", [
    (["--data-dir", "MISSING"], "--data-dir 'MISSING' does not exist"),
    (["--image-size", "16", "--weights", "none", "--base", "vgg16"], "--image-size 16 is too small: VGG16"),
    (["--epochs", "0"], "--epochs must be a positive whole number"),
    (["--val-fraction", "1.5"], "--val-fraction must be between 0 and 1"),
    (["--resume"], "nothing to resume"),
    (["--resume", "--overwrite"], "choose one"),
    (["--fine-tune-epochs", "2", "--weights", "none"], "--fine-tune-epochs unfreezes"),
    (["--base", "small"], "--base small has no pretrained weights"),
    (["--head", "wide"], "argument --head: invalid choice"),
    (["--epochs", "two"], "argument --epochs: invalid int value"),
    (["--output", "sigmoid", "--classes", "3"], "use --output softmax for 3"),
    (["--out", "DATA/run"], "is inside --data-dir"),
])
@pytest.mark.parametrize("entry", ["kerasxai train", "python -m kerasxai.train"])
def test_option_and_data_mistakes_are_one_line(demo, tmp_path, capsys, args, message, entry):
    out = str(tmp_path / "run")
    argv = ["--data-dir", demo.data_dir, "--out", out] + [a.replace("DATA", demo.data_dir) for a in args]
    if entry == "kerasxai train":
        from kerasxai.cli import main

        call = lambda: main(["train", *argv])  # noqa: E731
    else:
        call = lambda: train_cli.main(argv)  # noqa: E731
    try:
        status = call()
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith("kerasxai: error: ") and message in err[0], err[0]
    assert not os.path.exists(out) and not os.path.exists(os.path.join(demo.data_dir, "run"))


def test_offline_imagenet_download_says_use_weights_none(demo, tmp_path):
    """The real download path, with the network cut (a proxy on a closed port), through the module entry point."""
    env = {**ENV, "KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9"}
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "kerasxai.train", "--data-dir", demo.data_dir, "--out", str(out),
                             "--image-size", "32", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert last.startswith("kerasxai: error: could not download VGG16's ImageNet weights") and "--weights none" in last
    assert not out.exists()


def test_ctrl_c_then_the_printed_command_resumes_exactly(learned, demo, tmp_path, capsys):
    """SIGINT in a terminal run: exit 130 and one line naming what was saved and the exact command to resume;
    that command then finishes the run as if it had never stopped (same order, optimizer and dropout state)."""
    reference, reference_out, _ = learned
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "kerasxai", "train", "--data-dir", demo.data_dir, "--out", str(out),
           "--weights", "none", "--image-size", "40", "--batch-size", "16", "--epochs", "10", "--patience", "10",
           "--quiet"]
    process = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if (out / "log.csv").exists() and len(_rows(out)) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    last = err.strip().splitlines()[-1]
    assert process.returncode == 130 and "Traceback" not in err, err[-2000:]
    saved = len(_rows(out))
    assert 2 <= saved < 10
    assert last.startswith(f"kerasxai: interrupted during training: epochs 1-{saved} are saved in '{out}' "
                           "(best.keras: epoch "), last
    argv = shlex.split(last.split("; resume with: ")[1])
    assert argv[:3] == ["python", "-m", "kerasxai.train"] and argv[-1] == "--resume"

    assert train_cli.main(argv[3:]) == 0
    rows, straight = _rows(out), _rows(reference_out)
    assert [int(r["epoch"]) for r in rows] == list(range(1, 11))  # continuous, no repeated row
    for a, b in zip(rows, straight):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(float(a[key]), float(b[key]), rtol=1e-5, err_msg=f"epoch {a['epoch']} {key}")
    summary = json.load(open(out / "summary.json"))
    assert summary["validation_accuracy"] == reference["validation_accuracy"]
    assert _tensorboard_steps(out / "tensorboard" / "train", "epoch_loss") == list(range(10))
    assert _tensorboard_steps(out / "tensorboard" / "gradcam", "gradcam_overlays") == list(range(10))
    assert not (out / "resume").exists()
