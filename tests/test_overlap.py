"""Overlapped batches and the finiteness check inside the compiled step.

A run reads and checks the next batch on a background thread (on a GPU also copying it there) and, on a
GPU, starts a batch's step while the previous one's outputs come back: the maps must be those of one
batch after the other, in the images' order. The images' NaN/inf check runs inside the step, on the
device: it must refuse exactly the images the host's check refuses, with the same words.
"""

import threading

import keras
import numpy as np
import pytest
from keras import layers

import kerasxai
from kerasxai import _warn, backend
from kerasxai.methods import engine
from kerasxai.probe import inputs as inputs_lib


@pytest.fixture
def model():
    keras.utils.set_random_seed(5)
    inp = keras.Input((12, 12, 3))
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inp)
    x = layers.Conv2D(5, 3, padding="same", activation="relu", name="last_conv")(x)
    out = layers.Dense(4, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


@pytest.fixture
def two_inputs():
    keras.utils.set_random_seed(6)
    image, meta = keras.Input((10, 10, 3), name="image"), keras.Input((4,), name="meta")
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3, name="conv")(image))
    return keras.Model([image, meta], layers.Dense(3)(layers.Concatenate()([x, layers.Dense(4)(meta)])))


@pytest.fixture
def overlap():
    """``overlap(in_flight, place)`` for one test; the default restored after it."""
    yield backend.set_overlap
    backend.set_overlap()


def _images(n, seed=0):
    return np.random.default_rng(seed).normal(0, 1, (n, 12, 12, 3)).astype("float32")


def _host_refusal(x, specs, batch_size):
    """What the host's check says of ``x`` read in batches of ``batch_size`` (None: nothing refused)."""
    source = inputs_lib.Source(x, specs, 0)
    try:
        for batch in source.batches(batch_size):
            inputs_lib.check_batch(list(batch.inputs), specs, 0, batch.start, finite_on_host=True)
    except ValueError as error:
        return str(error)
    return None


def test_the_step_refuses_exactly_the_images_the_host_check_refuses(model):
    specs = inputs_lib.input_specs(model)
    rng = np.random.default_rng(3)
    refused = 0
    for trial in range(12):
        x = _images(10, trial)
        for _ in range(int(rng.integers(0, 4))):  # NaN, +inf, -inf at random images and places
            i, r, c, ch = rng.integers(0, 10), rng.integers(0, 12), rng.integers(0, 12), rng.integers(0, 3)
            x[i, r, c, ch] = rng.choice([np.nan, np.inf, -np.inf])
        x[int(rng.integers(0, 10)), 0, 0, 0] = 3e38  # huge but finite: refused by neither (its sum overflows)
        batch_size = int(rng.choice([3, 4, 32]))
        expected = _host_refusal(x, specs, batch_size)
        for method in (kerasxai.saliency, kerasxai.gradcam, kerasxai.top_k):
            kwargs = {"k": 2} if method is kerasxai.top_k else {}
            if expected is None:
                method(model, x, batch_size=batch_size, **kwargs)
                continue
            with pytest.raises(ValueError) as error:
                method(model, x, batch_size=batch_size, **kwargs)
            assert str(error.value) == expected
        refused += expected is not None
    assert refused >= 4  # the trials refused some and passed others


def test_the_step_names_the_input_that_holds_the_nan(two_inputs):
    rng = np.random.default_rng(4)
    images, meta = rng.normal(0, 1, (6, 10, 10, 3)).astype("float32"), rng.normal(0, 1, (6, 4)).astype("float32")
    meta[4, 2] = -np.inf
    with pytest.raises(ValueError, match=r"^input 'meta' holds NaN or infinite values at image\(s\) 4: no explanation"):
        kerasxai.saliency(two_inputs, [images, meta], batch_size=4)
    images[1, 0, 0, 0] = np.nan  # the first input with a bad image is named, as the host names it
    with pytest.raises(ValueError, match=r"^input 'image' holds NaN or infinite values at image\(s\) 1: "):
        kerasxai.saliency(two_inputs, [images, meta], batch_size=4)


@pytest.mark.parametrize("in_flight, place", [(1, True), (2, False), (3, True)])
def test_overlapped_batches_give_the_same_maps_in_the_same_order(model, overlap, in_flight, place):
    x = _images(11, 1)
    target = [i % 4 for i in range(11)]  # a different class per image: an image out of place would show
    overlap(1, False)
    expected = {name: fn(model, x, target=target, batch_size=3)
                for name, fn in (("gradcam", kerasxai.gradcam), ("saliency", kerasxai.saliency))}
    expected_all = kerasxai.explain(model, x, methods=("gradcam", "saliency", "layercam"), target=target, batch_size=3)
    one_by_one = np.stack([kerasxai.gradcam(model, x[i], target=target[i]) for i in range(11)])
    np.testing.assert_allclose(expected["gradcam"], one_by_one, atol=1e-5)

    overlap(in_flight, place)

    def uneven():  # a generator's batches of 4, 4 and 3, read again in batches of 3
        yield x[:4]
        yield x[4:8]
        yield x[8:]

    for images in (x, uneven()):
        np.testing.assert_allclose(kerasxai.gradcam(model, images, target=target, batch_size=3), expected["gradcam"],
                                   atol=1e-6)
    np.testing.assert_allclose(kerasxai.saliency(model, x, target=target, batch_size=3), expected["saliency"], atol=1e-6)
    got = kerasxai.explain(model, x, methods=("gradcam", "saliency", "layercam"), target=target, batch_size=3)
    for name in expected_all:
        np.testing.assert_allclose(got[name], expected_all[name], atol=1e-6)


def test_a_batch_s_outputs_come_back_from_the_step_as_one_array(model, monkeypatch):
    """Maps, logits, scores and flags packed in the step: one device-to-host copy per batch."""
    x = _images(5, 8)
    methods = ("gradcam", "gradcam_plus_plus", "layercam", "saliency")
    expected = {name: getattr(kerasxai, name)(model, x, batch_size=2) for name in methods}
    returned = []
    real = backend.to_numpy

    def spy(tree, *, copy=True):
        if isinstance(tree, dict):
            returned.append(sorted(tree))
        return real(tree, copy=copy)

    monkeypatch.setattr(backend, "to_numpy", spy)
    got = kerasxai.explain(model, x, methods=methods, batch_size=2)
    assert len(returned) == 3 and all(len(keys) == 1 and keys[0].startswith("_per_image|") for keys in returned)
    for name in methods:  # unpacked into the same maps as each method's own call
        np.testing.assert_allclose(got[name], expected[name], atol=1e-6)
        assert got[name].shape == (5, 12, 12) and got[name].dtype == np.float32


def test_a_custom_post_s_outputs_come_back_whatever_their_first_axis(model):
    """Packing takes only per-image outputs: a post's (N*K, 1) output (TensorFlow: first axis of unknown
    length, like the batch's) and a per-batch scalar come back as they were made, next to the packed ones."""
    from keras import ops

    from kerasxai import get_probe
    from kerasxai.probe import Fn

    def post(p):
        return {"scores": p.scores, "logits": p.logits, "rows": ops.reshape(p.logits, (-1, 1)),
                "total": ops.sum(p.scores)}

    probe = get_probe(model, "conv")
    x = _images(3, 9)
    batch = next(probe.source(x).batches(3))
    out = probe.step(None, Fn(post))(batch.inputs, (), probe.classes(None, batch, 3))
    logits = np.log(keras.ops.convert_to_numpy(model(x)))  # the softmax's logits, up to a per-image constant
    np.testing.assert_allclose(out["logits"] - out["logits"][:, :1], logits - logits[:, :1], atol=1e-4)
    np.testing.assert_allclose(out["rows"], out["logits"].reshape(-1, 1))
    np.testing.assert_allclose(out["total"], out["scores"].sum(), rtol=1e-6)


def _reader_threads():
    return [t for t in threading.enumerate() if t.name == "kerasxai-batches" and t.is_alive()]


def test_a_later_batch_is_refused_at_its_place_and_the_reader_stops(model, overlap):
    overlap(2, True)
    x = _images(12, 2)
    x[9, 2, 2, 1] = np.nan
    read = []

    def batches():
        for start in range(0, 12, 3):
            read.append(start)
            yield x[start:start + 3]

    with pytest.raises(ValueError, match=r"^images hold NaN or infinite values at image\(s\) 9: "):
        kerasxai.gradcam(model, batches(), batch_size=3)

    def failing():
        yield x[:3]
        raise RuntimeError("the data loader broke")

    with pytest.raises(RuntimeError, match="the data loader broke"):  # the user's own error, unchanged
        kerasxai.saliency(model, failing(), batch_size=3)
    for thread in _reader_threads():
        thread.join(timeout=5)
    assert not _reader_threads()


def test_a_generator_that_refills_one_buffer_gives_each_batch_its_own_maps(model, overlap):
    overlap(2, True)
    x = _images(9, 3)
    buffer = np.empty((3, 12, 12, 3), np.float32)

    def refilled():  # a loader that reuses its buffer: batches read ahead must not see the next one's pixels
        for start in range(0, 9, 3):
            buffer[:] = x[start:start + 3]
            yield buffer

    np.testing.assert_allclose(kerasxai.gradcam(model, refilled(), target=1, batch_size=3),
                               kerasxai.gradcam(model, x, target=1, batch_size=3), atol=1e-6)


def test_overlap_settings_are_checked():
    with pytest.raises(ValueError, match="in_flight must be None or an int of at least 1"):
        backend.set_overlap(in_flight=0)
    with pytest.raises(ValueError, match="place must be True, False or None"):
        backend.set_overlap(place="yes")
    assert backend.batches_in_flight() == (2 if backend.NAME in ("jax", "torch") and backend.accelerated() else 1)


def test_an_earlier_batch_s_refusal_comes_before_a_later_batch_s_reading_error(model, overlap):
    x = _images(9, 4)
    x[4, 0, 0, 0] = np.nan

    def batches():  # batch 1 holds a NaN, batch 2 cannot be read
        yield x[:3]
        yield x[3:6]
        yield np.zeros((3, 5, 5, 3), np.float32)

    for in_flight in (1, 2, 3):
        overlap(in_flight, True)
        with pytest.raises(ValueError, match=r"^images hold NaN or infinite values at image\(s\) 4: "):
            kerasxai.gradcam(model, batches(), batch_size=3)


def test_a_nan_image_in_the_first_call_does_not_decide_a_hidden_softmax(overlap):
    """The first batch tells whether a squashing the graph hides (a Lambda softmax) is there; an image the
    step refuses says nothing of it, and the other images still do (the decision is kept per model)."""

    def build():
        keras.utils.set_random_seed(8)
        inp = keras.Input((12, 12, 3))
        z = layers.Dense(4)(layers.GlobalAveragePooling2D()(layers.Conv2D(6, 3, activation="relu", name="conv")(inp)))
        return keras.Model(inp, layers.Lambda(lambda t: keras.ops.softmax(t))(z))

    x = _images(6, 5)
    fresh, refused_first = build(), build()
    expected = kerasxai.saliency(fresh, x, target=2, raw=True)
    for nan_rows in ([2], list(range(6))):  # some images, then every image, non-finite
        bad = x.copy()
        bad[nan_rows, 0, 0, 0] = np.nan
        with pytest.raises(ValueError, match="NaN or infinite values"):
            kerasxai.saliency(refused_first, bad, target=2)
    np.testing.assert_allclose(kerasxai.saliency(refused_first, x, target=2, raw=True), expected, rtol=1e-5, atol=1e-7)
    assert kerasxai.get_probe(refused_first, ()).head.recovered == kerasxai.get_probe(fresh, ()).head.recovered == "log"


def test_eigencam_of_a_nan_image_is_refused_for_the_image_not_for_the_svd(model):
    x = _images(5, 6)
    x[3, 1, 1, 1] = np.inf
    with pytest.raises(ValueError, match=r"^images hold NaN or infinite values at image\(s\) 3: "):
        kerasxai.eigencam(model, x)


def test_big_endian_and_flipped_inputs_are_read_as_their_values(two_inputs, overlap):
    rng = np.random.default_rng(9)
    images, meta = rng.normal(0, 1, (5, 10, 10, 3)).astype("float32"), rng.normal(0, 1, (5, 4)).astype("float32")
    expected = kerasxai.saliency(two_inputs, [images, meta], target=1)
    overlap(2, True)
    np.testing.assert_allclose(kerasxai.saliency(two_inputs, [images.astype(">f4"), meta.astype(">f4")], target=1),
                               expected, atol=1e-6)
    flipped = np.ascontiguousarray(images[..., ::-1])[..., ::-1]  # a view with a negative stride (RGB <-> BGR)
    np.testing.assert_allclose(kerasxai.saliency(two_inputs, [flipped, meta], target=1), expected, atol=1e-6)
    bad = meta.astype(">f4")
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"^input 'meta' holds NaN or infinite values at image\(s\) 2: "):
        kerasxai.saliency(two_inputs, [images, bad])


# --------------------------------------------------------------------------- warnings per thread, the folder job


def test_in_order_keeps_the_order_and_carries_the_caller_s_warnings_to_its_workers():
    threads = {}

    def work(i):
        threads[i] = threading.current_thread().name
        _warn.warn(f"item {i}")
        return i * i

    with _warn.collecting() as caught:
        got = [(item, out) for item, out in engine.in_order(work, iter(range(6)), in_flight=2)]
    assert got == [(i, i * i) for i in range(6)]
    assert sorted(message for _, message in caught) == [f"item {i}" for i in range(6)]  # none shown, none lost
    assert threads[0] == threading.current_thread().name  # the first alone, here: its steps compile once
    assert all(threads[i].startswith("kerasxai-step") for i in range(1, 6))
    with _warn.collecting() as caught:  # one in flight: the caller's own thread, item after item
        assert [out for _, out in engine.in_order(work, iter(range(3)), in_flight=1)] == [0, 1, 4]
    assert threads[0] == threading.current_thread().name and len(caught) == 3


def test_a_thread_collecting_its_warnings_never_takes_another_thread_s(model):
    """A folder run collects its batches' warnings on its thread; a call another thread makes meanwhile
    still shows its own warning (a process-wide ``catch_warnings`` would have swallowed it)."""
    dead = keras.models.clone_model(model)
    dead.get_layer("last_conv").set_weights([np.zeros_like(w) for w in dead.get_layer("last_conv").get_weights()])
    opened, release, kept = threading.Event(), threading.Event(), {}

    def collecting_thread():
        with _warn.collecting() as caught:
            _warn.warn("the run's own warning")
            opened.set()
            release.wait(60)
        kept["caught"] = [message for _, message in caught]

    thread = threading.Thread(target=collecting_thread)
    thread.start()
    try:
        assert opened.wait(60)
        with pytest.warns(RuntimeWarning, match="the map is flat"):  # all-zero activations: flat Grad-CAM
            kerasxai.gradcam(dead, _images(2), layer="last_conv")
    finally:
        release.set()
        thread.join(60)
    assert kept["caught"] == ["the run's own warning"]


def _squashed_model():
    """Logits, then a softmax in a Lambda the probe cannot see as a layer: a hidden softmax, warned about once."""
    keras.utils.set_random_seed(7)
    inp = keras.Input((12, 12, 3))
    x = layers.Conv2D(5, 3, padding="same", activation="relu", name="conv")(inp)
    logits = layers.Dense(4, name="logits")(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, layers.Lambda(lambda t: keras.ops.softmax(t * 0.5), name="squash")(logits), name="squashed")


@pytest.mark.parametrize("in_flight", [2, 3])
def test_the_folder_job_with_batches_in_flight_writes_the_same_run(tmp_path, overlap, in_flight):
    import warnings

    import tensorflow as tf

    from kerasxai.folder import runfolder

    pixels = np.random.default_rng(4).uniform(0, 255, (11, 12, 12, 3)).astype("float32")
    labels = [i % 4 for i in range(11)]

    def run(where):
        dataset = tf.data.Dataset.from_tensor_slices((pixels, labels)).batch(3)
        model = _squashed_model()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kerasxai.explain_dataset(model, dataset, tmp_path / where, methods=("gradcam", "saliency"),
                                     target="label", batch_size=2, preprocess=None, images=False, progress=False)
        rows = {row["id"]: row for row in runfolder.read_predictions(tmp_path / where)}
        maps = {i: dict(np.load(tmp_path / where / row["maps"])) for i, row in rows.items()}
        ours = [w for w in caught if "kerasxai" in str(w.message)]
        assert ours and all(w.filename == __file__ for w in ours)  # at the user's line, not inside kerasxai
        return rows, maps, [str(w.message) for w in ours if "log(p)" in str(w.message)]

    overlap(1, False)
    rows, maps, hidden = run("one")
    assert len(rows) == 11 and len(hidden) == 1  # the run's hidden-softmax warning, once
    overlap(in_flight, False)
    rows_in_flight, maps_in_flight, hidden_in_flight = run("in_flight")
    assert hidden_in_flight == hidden
    assert sorted(rows_in_flight) == sorted(rows)
    for i, row in rows.items():
        assert rows_in_flight[i]["target"] == row["target"] == labels[int(i)]
        assert rows_in_flight[i]["top_k"] == row["top_k"]
        for method in ("gradcam", "saliency"):
            np.testing.assert_allclose(maps_in_flight[i][method].astype(np.float32),
                                       maps[i][method].astype(np.float32), atol=2e-3)
