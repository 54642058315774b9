"""explain_folder / explain_dataset: per-image equality, resuming, errors, the run folder, Ray."""

import json
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers
from PIL import Image

import kerasxai
from kerasxai.folder import job as job_lib
from kerasxai.folder import runfolder

CLASSES = ["circle", "cross", "stripe"]


@pytest.fixture(scope="module")
def model():
    """Named vgg16_*: its family's preprocess_input (caffe BGR mean) applies, as for a VGG16 fine-tune."""
    keras.utils.set_random_seed(7)
    inputs = keras.Input((32, 32, 3))
    x = layers.Rescaling(1 / 64.0)(inputs)
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax")(x), name="vgg16_tiny")


def _photo(seed, h, w):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / (3 + seed)) * 100 + 120, yy * 200 / h, (xx + yy) % 255], -1)
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Class sub-folders; PNGs of mixed sizes and modes (RGB, grey, RGBA), one wider than 512 px."""
    root = tmp_path_factory.mktemp("photos")
    specs = [("circle/a.png", 40, 60, "RGB"), ("circle/b.png", 90, 30, "L"), ("circle/c.png", 32, 32, "RGBA"),
             ("cross/a.png", 300, 600, "RGB"), ("cross/b b.png", 50, 50, "RGB"), ("stripe/x.png", 70, 45, "RGB"),
             ("stripe/y.png", 33, 77, "L")]
    for seed, (name, h, w, mode) in enumerate(specs):
        os.makedirs(root / os.path.dirname(name), exist_ok=True)
        Image.fromarray(_photo(seed, h, w)).convert(mode).save(root / name)
    return root


def rows_by_id(run):
    rows = runfolder.read_predictions(run)
    assert len(rows) == len({r["id"] for r in rows}), "an image has two rows"
    return {r["id"]: r for r in rows}


def reference_x(path):
    """Decoded by PIL, resized with the op image_dataset_from_directory uses, preprocessed: a batch of one."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    x = tf.image.resize(pixels.astype("float32"), (32, 32), method="bilinear", antialias=False).numpy()
    return keras.applications.vgg16.preprocess_input(x[None].copy())


def reference(model, path, methods):
    """The image explained alone, each method by its own function."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    x = reference_x(path)
    maps = {m: getattr(kerasxai, m)(model, x)[0] for m in methods}
    return pixels.shape[:2], kerasxai.top_k(model, x, k=3, class_names=CLASSES)[0], maps


def test_folder_outputs_equal_per_image_calls(model, folder, tmp_path):
    out = tmp_path / "run"
    meta = kerasxai.explain_folder(model, folder, out, methods=("gradcam", "saliency"), batch_size=3,
                                   class_names=CLASSES, top=3, weights="none", progress=False)
    assert meta["images"] == 7 and meta["errors"] == 0 and meta["finished"]
    saved = json.load(open(out / "run.json"))
    assert saved == meta and saved["layer"] == "conv2" and saved["weights"] == "none"
    assert saved["methods"] == ["gradcam", "saliency"] and saved["class_names"] == CLASSES
    rows = rows_by_id(out)
    assert sorted(rows) == ["circle__a", "circle__b", "circle__c", "cross__a", "cross__b_b", "stripe__x", "stripe__y"]
    page = (out / "report.html").read_text()  # the page to browse the run comes with it
    assert all(f'"{image_id}"' in page for image_id in rows)
    for image_id, row in rows.items():
        size, top, maps = reference(model, row["file"], ("gradcam", "saliency"))
        assert row["size"] == list(size) and row["label"] == os.path.basename(os.path.dirname(row["file"]))
        assert [t["class"] for t in row["top_k"]] == [c for c, _, _ in top]
        assert [t["name"] for t in row["top_k"]] == [n for _, n, _ in top]
        np.testing.assert_allclose([t["probability"] for t in row["top_k"]], [p for _, _, p in top], atol=2e-6)
        assert row["target"] == top[0][0] and row["target_name"] == top[0][1] and row["layer"] == "conv2"
        saved_maps = np.load(out / row["maps"])
        assert sorted(saved_maps) == ["gradcam", "saliency"]
        for m in maps:
            assert saved_maps[m].dtype == np.float16 and saved_maps[m].shape == (32, 32)
            np.testing.assert_allclose(saved_maps[m].astype(np.float32), maps[m], atol=2e-3)
            assert row["methods"][m] == {"flat": False, "max": pytest.approx(float(maps[m].max()), abs=2e-3),
                                         "mean": pytest.approx(float(maps[m].mean()), abs=2e-3)}
        photo = Image.open(out / row["image"])
        h, w = size
        scale = min(1.0, 512 / max(h, w))
        assert photo.size == (round(w * scale), round(h * scale))  # its own aspect ratio, long side <= 512
        assert "overlays" not in row and row["error"] is None
    assert rows["cross__a"]["size"] == [300, 600] and Image.open(out / "images/cross__a.jpg").size == (512, 256)
    csv_lines = open(out / "predictions.csv").read().splitlines()
    assert len(csv_lines) == 8 and csv_lines[0].startswith("id,file,label,top_class")


def test_explain_dataset_matches_the_folder_run(model, folder, tmp_path):
    ds = keras.utils.image_dataset_from_directory(folder, image_size=(32, 32), batch_size=4, shuffle=False)
    assert ds.class_names == CLASSES
    meta = kerasxai.explain_dataset(model, ds, tmp_path / "ds", methods=("gradcam",), target="label",
                                    class_names=CLASSES, batch_size=3, images=False, progress=False)
    kerasxai.explain_folder(model, folder, tmp_path / "dir", methods=("gradcam",), target="label",
                            class_names=CLASSES, batch_size=5, images=False, progress=False)
    assert meta["images"] == 7 and meta["target"] == "label"
    by_dataset = rows_by_id(tmp_path / "ds")
    by_folder = rows_by_id(tmp_path / "dir")
    assert sorted(by_dataset) == [f"{i:06d}" for i in range(7)]
    for i, image_id in enumerate(sorted(by_folder)):  # the data set lists files in the same order
        a, b = by_dataset[f"{i:06d}"], by_folder[image_id]
        assert a["file"] == f"dataset[{i}]" and a["image"] is None and b["image"] is None
        assert a["label"] == b["label"] and a["target"] == CLASSES.index(a["label"]) == b["target"]
        assert a["target_name"] == a["label"]
        np.testing.assert_allclose(np.load(tmp_path / "ds" / a["maps"])["gradcam"].astype(np.float32),
                                   np.load(tmp_path / "dir" / b["maps"])["gradcam"].astype(np.float32), atol=1e-3)


def test_resume_after_an_interruption_writes_each_image_once(model, folder, tmp_path, monkeypatch):
    out, full = tmp_path / "run", tmp_path / "full"
    kerasxai.explain_folder(model, folder, full, batch_size=2, overlays=True, progress=False)
    real, calls, interrupt = job_lib.BatchExplainer.explain, [], [True]

    def interrupted(self, x, *args):
        calls.append(len(x))
        if len(calls) == 3 and interrupt and interrupt.pop():
            raise KeyboardInterrupt  # as Ctrl-C would, while the third batch is being explained
        return real(self, x, *args)

    monkeypatch.setattr(job_lib.BatchExplainer, "explain", interrupted)
    with pytest.raises(KeyboardInterrupt):
        kerasxai.explain_folder(model, folder, out, batch_size=2, overlays=True, progress=False)
    first = rows_by_id(out)
    assert len(first) == 4  # the two batches computed before the interruption were written
    assert json.load(open(out / "run.json"))["finished"] is None and json.load(open(out / "run.json"))["images"] == 4
    assert len(open(out / "predictions.csv").read().splitlines()) == 5
    # a crash can also cut the last line, or leave a row whose files are gone
    victim = sorted(first)[0]
    os.remove(out / first[victim]["overlays"]["gradcam"])
    with open(out / "predictions.jsonl", "a") as fh:
        fh.write('{"id": "half a row", "file": ')

    with pytest.raises(ValueError, match="already holds a kerasxai run.*resume"):
        kerasxai.explain_folder(model, folder, out, batch_size=2, overlays=True, progress=False)
    with pytest.raises(ValueError, match="other settings.*methods"):
        kerasxai.explain_folder(model, folder, out, methods=("layercam",), overlays=True, resume=True, progress=False)
    calls.clear()
    meta = kerasxai.explain_folder(model, folder, out, batch_size=2, overlays=True, resume=True, progress=False)
    assert sum(calls) == 7 - 4 + 1  # only the unfinished images (and the one with a missing file) again
    assert meta["images"] == 7 and meta["finished"]
    lines = open(out / "predictions.jsonl").read().splitlines()
    assert len(lines) == 7 and all(json.loads(line) for line in lines)
    resumed, reference_rows = rows_by_id(out), rows_by_id(full)
    assert sorted(resumed) == sorted(reference_rows)
    for image_id, row in resumed.items():
        assert all(os.path.exists(out / f) for f in [row["maps"], row["image"], *row["overlays"].values()])
        assert row["top_k"] == reference_rows[image_id]["top_k"]
        np.testing.assert_allclose(np.load(out / row["maps"])["gradcam"].astype(np.float32),
                                   np.load(full / row["maps"])["gradcam"].astype(np.float32), atol=1e-3)
    calls.clear()
    kerasxai.explain_folder(model, folder, out, batch_size=2, overlays=True, resume=True, progress=False)
    assert calls == [] and len(runfolder.read_predictions(out)) == 7  # nothing left to do, nothing added


def test_unreadable_files_are_reported_and_retried_on_resume(model, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(_photo(1, 40, 40)).save(src / "good.png")
    Image.fromarray(_photo(2, 50, 30)).save(src / "anim.gif")
    (src / "notes.jpg").write_text("not an image")
    (src / "empty.png").write_bytes(b"")
    with pytest.warns(RuntimeWarning, match="2 of 4 files could not be read"):
        meta = kerasxai.explain_folder(model, src, tmp_path / "run", batch_size=3, progress=False)
    assert meta["images"] == 2 and meta["errors"] == 2
    rows = rows_by_id(tmp_path / "run")
    assert rows["notes"]["error"].startswith("not an image file that can be read (Unknown image file format")
    assert rows["empty"]["error"] and rows["empty"]["maps"] is None and rows["empty"]["top_k"] == []
    assert rows["anim"]["error"] is None and rows["anim"]["size"] == [50, 30]
    errors = open(tmp_path / "run" / "errors.txt").read().splitlines()
    assert sorted(line.split("\t")[0] for line in errors) == sorted([str(src / "notes.jpg"), str(src / "empty.png")])
    Image.fromarray(_photo(3, 20, 20)).save(src / "empty.png", format="PNG")  # the user fixes a file
    meta = kerasxai.explain_folder(model, src, tmp_path / "run", resume=True, progress=False)
    rows = rows_by_id(tmp_path / "run")
    assert meta["images"] == 3 and meta["errors"] == 1 and len(rows) == 4
    assert rows["empty"]["size"] == [20, 20] and rows["notes"]["error"]


def test_refuses_a_folder_that_is_not_a_run(model, folder, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="not empty and holds no kerasxai run.*force"):
        kerasxai.explain_folder(model, folder, out, progress=False)
    assert os.listdir(out) == ["thesis.tex"]
    kerasxai.explain_folder(model, folder, out, force=True, images=False, progress=False)
    assert (out / "thesis.tex").read_text() == "precious" and len(runfolder.read_predictions(out)) == 7
    with pytest.raises(ValueError, match="target='label'.*class sub-folders"):
        kerasxai.explain_folder(model, folder, tmp_path / "x", target="label", progress=False)
    with pytest.raises(ValueError, match="unknown method 'gradkam'"):
        kerasxai.explain_folder(model, folder, tmp_path / "x", methods=("gradkam",), progress=False)
    with pytest.raises(ValueError, match="conv9"):
        kerasxai.explain_folder(model, folder, tmp_path / "x", layer="conv9", progress=False)
    with pytest.raises(ValueError, match="4 class names given but the model has 3 classes"):
        kerasxai.explain_folder(model, folder, tmp_path / "x", class_names=CLASSES + ["extra"], progress=False)
    assert not (tmp_path / "x").exists()


def test_flat_and_non_finite_maps_are_flagged_not_drawn_as_heatmaps(folder, tmp_path):
    keras.utils.set_random_seed(0)
    dead = keras.Sequential([keras.Input((32, 32, 3)), layers.Conv2D(4, 3, activation="relu", name="conv"),
                             layers.GlobalAveragePooling2D(), layers.Dense(2, activation="softmax")], name="dead")
    conv = dead.get_layer("conv")
    conv.set_weights([np.zeros_like(w) for w in conv.get_weights()])  # no activation anywhere: Grad-CAM is flat
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kerasxai.explain_folder(dead, folder, tmp_path / "flat", overlays=True, progress=False)
    flat_warnings = [str(w.message) for w in caught if "map is flat" in str(w.message)]
    assert len(flat_warnings) == 1 and "for 7 of 7 images: circle__a, circle__b" in flat_warnings[0]
    row = rows_by_id(tmp_path / "flat")["cross__a"]
    assert row["methods"]["gradcam"] == {"flat": True, "max": 0.0, "mean": 0.0}
    drawn = np.asarray(Image.open(tmp_path / "flat" / row["overlays"]["gradcam"]).convert("RGB")).astype(int)
    assert drawn.shape == (256 + 18, 512, 3)  # the photo, then the strip naming the method and layer
    below_label = drawn[20:]
    assert np.abs(below_label[..., 0] - below_label[..., 2]).max() <= 1  # grey, no colour scale applied
    assert drawn[:14, :, 0].mean() < 60  # the dark band with "flat: no positive evidence"

    broken = keras.models.clone_model(dead)
    broken.layers[-1].set_weights([np.full_like(w, np.nan) for w in broken.layers[-1].get_weights()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            kerasxai.explain_folder(broken, folder, tmp_path / "nan", progress=False)
        except ValueError as err:  # a core that refuses non-finite outputs: every image is refused, the run stops
            assert "NaN or infinite" in str(err) or "not finite" in str(err)
            assert runfolder.read_predictions(tmp_path / "nan") == []
            return
    assert any("outputs are not finite" in str(w.message) for w in caught)  # a core that returns them: flagged
    text = open(tmp_path / "nan" / "predictions.jsonl").read()
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the JSON")) for line in text.splitlines()]
    assert all(t["probability"] is None for r in rows for t in r["top_k"])
    assert all(r["methods"]["gradcam"]["flat"] for r in rows)


def test_a_writing_error_stops_the_run_with_its_cause(model, folder, tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runfolder.np, "savez", full_disk)
    with pytest.raises(RuntimeError, match="writing the run folder failed.*No space left"):
        kerasxai.explain_folder(model, folder, tmp_path / "run", batch_size=2, progress=False)
    assert runfolder.read_predictions(tmp_path / "run") == []


def test_ray_workers_write_the_same_run_as_the_local_pipeline(model, folder, tmp_path):
    ray = pytest.importorskip("ray")  # the test extra installs ray[data]
    assert not ray.is_initialized()
    broken = tmp_path / "src"
    broken.mkdir()
    (broken / "broken.png").write_bytes(b"\x89PNG but cut")
    sources = [folder, broken / "broken.png"]
    kwargs = dict(methods=("gradcam", "layercam"), batch_size=2, overlays=True, class_names=CLASSES,
                  progress=False)
    local = kerasxai.explain_folder(model, sources, tmp_path / "local", **kwargs)
    on_ray = kerasxai.explain_folder(model, sources, tmp_path / "ray", ray=True, workers=2, **kwargs)
    assert not ray.is_initialized()  # the local Ray it started in-process is shut down again
    assert {k: v for k, v in on_ray.items() if k not in ("started", "finished")} == \
        {k: v for k, v in local.items() if k not in ("started", "finished")}
    a, b = rows_by_id(tmp_path / "local"), rows_by_id(tmp_path / "ray")
    assert sorted(a) == sorted(b) and len(a) == 8
    for image_id in a:
        ra, rb = a[image_id], b[image_id]
        assert {k: v for k, v in ra.items() if k not in ("top_k", "methods")} == \
            {k: v for k, v in rb.items() if k not in ("top_k", "methods")}
        assert [t["class"] for t in ra["top_k"]] == [t["class"] for t in rb["top_k"]]
        np.testing.assert_allclose([t["probability"] for t in ra["top_k"]],
                                   [t["probability"] for t in rb["top_k"]], atol=1e-5)
        if ra["error"]:
            assert image_id == "broken" and ra["error"] == rb["error"]
            continue
        ma, mb = np.load(tmp_path / "local" / ra["maps"]), np.load(tmp_path / "ray" / rb["maps"])
        for m in ("gradcam", "layercam"):
            np.testing.assert_allclose(ma[m].astype(np.float32), mb[m].astype(np.float32), atol=1e-3)
            assert ra["methods"][m]["flat"] == rb["methods"][m]["flat"]
        assert Image.open(tmp_path / "ray" / rb["image"]).size == Image.open(tmp_path / "local" / ra["image"]).size


def test_overlay_files_are_kerasxai_overlay_with_method_layer_and_colour_scale():
    import matplotlib

    from kerasxai.figures.overlay import overlay_panel

    photo = _photo(3, 61, 97)
    heat = tf.image.resize(np.random.default_rng(0).random((7, 7, 1)).astype("float32"), (32, 32)).numpy()[..., 0]
    panel = overlay_panel(photo, heat, method="gradcam", layer="conv")
    assert panel.shape == (61 + 18, 97, 3)
    np.testing.assert_array_equal(panel[:61], kerasxai.overlay(photo, heat))  # the one overlay
    # ... which is the colormap evaluated per pixel on the bilinear-resized map, blended 0.6 / 0.4
    up = tf.image.resize(heat[..., None], (61, 97), method="bilinear").numpy()[..., 0]
    expected = 0.6 * photo + 0.4 * 255 * matplotlib.colormaps["jet"](up)[..., :3]
    assert np.abs(panel[:61].astype(int) - np.round(expected)).max() <= 3
    # the strip under it: a colour bar from jet's 0 (dark blue) on the left to 1 (dark red) on the right
    bar = panel[61 + 8, 97 - 40: 97 - 6].astype(int)
    blue = np.flatnonzero((bar[:, 2] > 100) & (bar[:, 0] < 60))
    red = np.flatnonzero((bar[:, 0] > 100) & (bar[:, 2] < 60))
    assert len(blue) and len(red) and blue.min() < red.max()
    # a flat map: a grey photo under a "flat" marker, no colour scale
    flat = overlay_panel(photo, heat, method="gradcam", layer="conv", flat=True)
    assert flat.shape == panel.shape
    grey = flat[16:61]
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert (flat[61:, :, 0] == flat[61:, :, 2]).all()  # black text on white only


def test_an_image_the_core_refuses_becomes_an_error_row_not_a_stopped_run(model, folder, tmp_path, monkeypatch):
    real = job_lib.BatchExplainer.explain
    black = keras.applications.vgg16.preprocess_input(np.zeros((1, 1, 3), "float32"))[0, 0]

    def refuse_black(self, x, *args):  # as the core refuses an image whose outputs are not finite
        bad = [i for i in range(len(x)) if np.allclose(x[i, 0, 0], black)]
        if bad:
            raise ValueError(f"the model's output is not finite for image {bad[0]}")
        return real(self, x, *args)

    monkeypatch.setattr(job_lib.BatchExplainer, "explain", refuse_black)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(_photo(ord(name), 40, 40)).save(src / f"{name}.png")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(src / "black.png")
    with pytest.warns(RuntimeWarning, match="1 of 4 images were read but could not be explained"):
        meta = kerasxai.explain_folder(model, src, tmp_path / "run", batch_size=4, progress=False)
    rows = rows_by_id(tmp_path / "run")
    assert meta["images"] == 3 and meta["errors"] == 1
    assert rows["black"]["error"] == "not explained: the model's output is not finite for image 0"
    for name in ("a", "b", "c"):  # the others, explained one by one, equal a run without the black image
        explainer = job_lib.BatchExplainer(model, job_lib.prepare_job(model, ("gradcam",), None, None, None, 5, None,
                                                                      True, False))
        alone = real(explainer, reference_x(src / f"{name}.png"), None)
        np.testing.assert_allclose(np.load(tmp_path / "run" / rows[name]["maps"])["gradcam"].astype(np.float32),
                                   alone["maps"]["gradcam"][0], atol=2e-3)
        assert rows[name]["target"] == alone["targets"][0]
    monkeypatch.setattr(job_lib.BatchExplainer, "explain", lambda *a: (_ for _ in ()).throw(ValueError("bad layer")))
    with pytest.raises(ValueError, match="bad layer"):  # every image refused: a setting is wrong, the run stops
        kerasxai.explain_folder(model, src, tmp_path / "run2", batch_size=4, progress=False)


def test_explain_dataset_resumes_by_position(model, tmp_path, monkeypatch):
    pixels = np.stack([_photo(i, 32, 32) for i in range(7)])
    ds = tf.data.Dataset.from_tensor_slices((pixels, np.arange(7) % 3))  # unbatched, int labels
    real, calls, interrupt = job_lib.BatchExplainer.explain, [], [True]

    def interrupted(self, x, *args):
        calls.append(len(x))
        if len(calls) == 2 and interrupt and interrupt.pop():
            raise KeyboardInterrupt
        return real(self, x, *args)

    monkeypatch.setattr(job_lib.BatchExplainer, "explain", interrupted)
    with pytest.raises(KeyboardInterrupt):
        kerasxai.explain_dataset(model, ds, tmp_path / "run", batch_size=3, progress=False)
    assert sorted(rows_by_id(tmp_path / "run")) == ["000000", "000001", "000002"]
    calls.clear()
    meta = kerasxai.explain_dataset(model, ds, tmp_path / "run", batch_size=3, resume=True, progress=False)
    rows = rows_by_id(tmp_path / "run")
    assert calls == [3, 1] and meta["images"] == 7 and sorted(rows) == [f"{i:06d}" for i in range(7)]
    assert [rows[f"{i:06d}"]["label"] for i in range(7)] == ["0", "1", "2", "0", "1", "2", "0"]
    for i in (0, 6):
        x = keras.applications.vgg16.preprocess_input(pixels[i : i + 1].astype("float32"))
        np.testing.assert_allclose(np.load(tmp_path / "run" / rows[f"{i:06d}"]["maps"])["gradcam"].astype(np.float32),
                                   kerasxai.gradcam(model, x)[0], atol=2e-3)


def test_a_layer_list_is_refused_before_the_run_folder_exists(model, folder, tmp_path):
    with pytest.raises(ValueError, match="a folder run explains one layer"):
        kerasxai.explain_folder(model, folder, tmp_path / "run", layer=["conv1", "conv2"], progress=False)
    assert not (tmp_path / "run").exists()


def _bright_is_nan():
    """A tiny classifier whose output is NaN for bright images (mean above 0.9 after preprocessing).

    Built-in layers only, so that Ray workers can load it: a bright image's mean, past 0.9, is scaled
    to infinity; one logit gets +inf and another -inf, and the softmax of those is NaN."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 3))
    pooled = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3, activation="relu", name="conv")(inp))
    mean = layers.Dense(1, trainable=False, kernel_initializer=keras.initializers.Constant(1 / 3),
                        bias_initializer=keras.initializers.Constant(-0.9))(layers.GlobalAveragePooling2D()(inp))
    huge = keras.initializers.Constant(1e30)
    blown = layers.Dense(1, activation="relu", kernel_initializer=huge)(mean)  # 0 for other images
    blown = layers.Dense(1, kernel_initializer=huge)(blown)  # float32 overflows: +inf
    spread = layers.Dense(3, use_bias=False, kernel_initializer=keras.initializers.Constant([[1.0, -1.0, 0.0]]))(blown)
    logits = layers.Add()([layers.Dense(3)(pooled), spread])
    return keras.Model(inp, layers.Activation("softmax")(logits))


def test_a_batch_of_refused_images_alone_becomes_error_rows_also_when_resumed(tmp_path):
    """A bright image alone in the last batch, then a resumed run whose only images left are refused
    ones: rows with errors, not a stopped run. A model that refuses the first images it sees stops."""
    model, preprocess = _bright_is_nan(), (lambda p: p / 127.5 - 1.0)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(src / f"im{i}.png")
    Image.fromarray(np.full((12, 12, 3), 250, np.uint8)).save(src / "im2.png")
    run = lambda **kw: kerasxai.explain_folder(model, src, tmp_path / "run", batch_size=2, progress=False,  # noqa: E731
                                               preprocess=preprocess, **kw)
    with pytest.warns(RuntimeWarning, match="1 of 3 images were read but could not be explained"):
        meta = run()
    rows = rows_by_id(tmp_path / "run")
    assert meta["images"] == 2 and meta["errors"] == 1
    assert rows["im2"]["error"].startswith("not explained: kerasxai.explain: the model's output is NaN or infinite "
                                           "for this image")
    Image.fromarray(np.full((12, 12, 3), 252, np.uint8)).save(src / "im3.png")
    with pytest.warns(RuntimeWarning, match="2 of 4 images were read but could not be explained"):
        meta = run(resume=True)  # im2 tried again with im3: both refused
    assert meta["images"] == 2 and meta["errors"] == 2
    assert sorted(rows_by_id(tmp_path / "run")) == ["im0", "im1", "im2", "im3"]

    bright = tmp_path / "bright"
    bright.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.full((12, 12, 3), 250, np.uint8)).save(bright / f"{name}.png")
    with pytest.raises(ValueError, match="NaN or infinite"):
        kerasxai.explain_folder(model, bright, tmp_path / "bright_run", batch_size=2, progress=False,
                                preprocess=preprocess)


def test_on_ray_a_worker_whose_first_batch_is_refused_writes_error_rows(tmp_path):
    """Each Ray worker's explainer started as if nothing was explained: a worker whose first batch held only
    refused images stopped the whole run. The driver decides, as the local pipeline does: error rows once an
    image was explained, a stopped run when the first batch back is refused whole."""
    pytest.importorskip("ray")
    model, preprocess = _bright_is_nan(), (lambda p: p / 127.5 - 1.0)
    src, bright = tmp_path / "src", tmp_path / "bright"
    src.mkdir()
    bright.mkdir()
    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(src / f"im{i}.png")
    for name in ("x", "y"):  # sorted after the others: the last batch, alone on a worker of its own
        Image.fromarray(np.full((12, 12, 3), 250, np.uint8)).save(src / f"{name}.png")
        Image.fromarray(np.full((12, 12, 3), 250, np.uint8)).save(bright / f"{name}.png")
    # the first batch Ray makes: a file that cannot be read and a refused image (the local pipeline batches the
    # decoded images only, so its first batch holds a normal image too, and goes on)
    (src / "a0.png").write_bytes(b"not a png")
    Image.fromarray(np.full((12, 12, 3), 250, np.uint8)).save(src / "a1.png")
    kwargs = dict(batch_size=2, progress=False, preprocess=preprocess, ray=True, workers=3)
    with pytest.warns(RuntimeWarning, match="3 of 8 images were read but could not be explained"):
        meta = kerasxai.explain_folder(model, src, tmp_path / "run", **kwargs)
    rows = rows_by_id(tmp_path / "run")
    assert meta["images"] == 4 and meta["errors"] == 4 and len(rows) == 8
    assert all(rows[n]["error"].startswith("not explained: kerasxai.explain: the model's output is NaN")
               for n in ("a1", "x", "y"))
    with pytest.raises(ValueError, match="refused the first 2 images.*png.*NaN or infinite"):
        kerasxai.explain_folder(model, bright, tmp_path / "bright_run", **kwargs)


def test_damaged_rows_are_redone_by_a_resumed_run(tmp_path):
    """Lines of predictions.jsonl edited by hand or damaged (not an object, no id, methods not a dict)
    are redone by --resume, never crash it, and the report still renders."""
    model = _bright_is_nan()
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(src / f"im{i}.png")
    run = lambda **kw: kerasxai.explain_folder(model, src, tmp_path / "run", batch_size=2, progress=False,  # noqa: E731
                                               preprocess=lambda p: p / 127.5 - 1.0, **kw)
    run()
    path = tmp_path / "run" / "predictions.jsonl"
    lines = path.read_text().splitlines()
    first, second = json.loads(lines[0]), json.loads(lines[1])
    damaged = ["[1, 2]", "null", json.dumps({**first, "methods": [1]}), json.dumps({k: v for k, v in second.items() if k != "id"})]
    path.write_text("\n".join(damaged + lines[2:]) + "\n")  # im0 and im1's rows damaged, im2's whole
    meta = run(resume=True)
    rows = rows_by_id(tmp_path / "run")
    assert meta["images"] == 3 and sorted(rows) == ["im0", "im1", "im2"]
    assert all(isinstance(r["methods"]["gradcam"], dict) for r in rows.values())
    from kerasxai.folder import report

    path.write_text(path.read_text() + json.dumps({**first, "id": "x", "methods": [1]}) + "\n")
    report.write_report(str(tmp_path / "run"))  # a row whose methods are a list: shown, without its stats
    assert "x" in {c["id"] for c in report.report_data(str(tmp_path / "run"))["cards"]}
