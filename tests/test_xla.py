"""TensorFlow steps: XLA or plain, chosen by timing, the same maps either way, a fallback when XLA cannot compile."""

import logging
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import kerasxai
from kerasxai import backend
from kerasxai.backend.tensorflow import AdaptiveStep

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="TensorFlow's own machinery; tests/test_backends.py runs the rest under JAX and PyTorch")


@pytest.fixture
def jit(request):
    yield backend.set_jit_compile
    backend.set_jit_compile(None)


def test_xla_and_plain_give_the_same_maps(gap_model, images, jit):
    jit(False)
    plain = kerasxai.explain(gap_model, images, methods=("gradcam", "layercam", "saliency", "eigencam"))
    smooth_plain = kerasxai.smoothgrad(gap_model, images, n=3)
    jit(True)
    xla = kerasxai.explain(gap_model, images, methods=("gradcam", "layercam", "saliency", "eigencam"))
    for name in plain:
        np.testing.assert_allclose(xla[name], plain[name], atol=1e-5, err_msg=name)
    np.testing.assert_allclose(kerasxai.smoothgrad(gap_model, images, n=3), smooth_plain, atol=1e-5)


@pytest.mark.parametrize("slower", ["plain", "xla"])
def test_automatic_choice_times_both_twice_then_keeps_the_faster(caplog, slower):
    calls = []

    def version(name):
        def run(x):
            calls.append(name)
            if name == slower:
                time.sleep(0.02)
            return tf.identity(x)
        return run

    step = AdaptiveStep(version("plain"), version("xla"), measure="now")  # as on a GPU
    with caplog.at_level(logging.INFO, logger="kerasxai"):
        for _ in range(9):
            step(tf.constant(1.0))
    # trace, time, compile, then XLA / plain / XLA timed; the faster from then on
    assert calls[:6] == ["plain", "plain", "xla", "xla", "plain", "xla"]
    faster = "xla" if slower == "plain" else "plain"
    assert calls[6:] == [faster] * 3
    assert len(step._times["plain"]) == len(step._times["xla"]) == 2
    assert "runs this step" in caplog.text


def test_automatic_choice_times_only_calls_of_the_first_shape():
    """A short last batch is not timed against full ones: calls of other shapes run plain, untimed."""
    calls = []
    step = AdaptiveStep(lambda x: calls.append(("plain", x.shape[0])) or x,
                        lambda x: calls.append(("xla", x.shape[0])) or x, measure="now")
    for n in (8, 3, 8, 3, 8, 8, 3, 8, 8):  # the sixth call of 8 images decides
        step(tf.zeros((n, 2)))
    assert all(mode == "plain" for mode, n in calls if n == 3)
    assert [c for c in calls if c[1] == 8][:6] == [("plain", 8), ("plain", 8), ("xla", 8), ("xla", 8), ("plain", 8),
                                                   ("xla", 8)]
    assert step.chosen is not None and len(step._times["plain"]) == len(step._times["xla"]) == 2


def test_a_model_xla_cannot_compile_falls_back_without_an_error(images, jit, caplog):
    """tf.py_function cannot be compiled by XLA: the plain step runs, the user sees maps, not an error."""
    inp = keras.Input((32, 32, 3))
    x = layers.Conv2D(3, 3, name="conv")(inp)
    x = layers.Lambda(lambda t: tf.ensure_shape(tf.py_function(lambda v: v * 1.0, [t], tf.float32), t.shape),
                      output_shape=(30, 30, 3))(x)
    model = keras.Model(inp, layers.Dense(2)(layers.Flatten()(x)))
    jit(True)
    with caplog.at_level(logging.INFO, logger="kerasxai"):
        maps = kerasxai.gradcam(model, images, layer="conv")
    assert maps.shape == (3, 32, 32) and np.isfinite(maps).all()
    assert "XLA cannot compile" in caplog.text
    jit(False)
    np.testing.assert_allclose(kerasxai.gradcam(model, images, layer="conv"), maps, atol=1e-6)


def test_xla_chosen_runs_for_the_batch_measured_a_smaller_one_plain_a_larger_one_is_measured_anew():
    """XLA compiles per shape: a folder's shorter last batch (or any smaller call) runs plain rather than compiling
    once more for one call, and a larger batch is measured as before the choice (each new size compiled XLA anew:
    1.5 s a call where plain took 5 ms)."""
    calls = []

    def plain(x):
        calls.append(("plain", x.shape[0]))
        time.sleep(0.02)
        return x

    step = AdaptiveStep(plain, lambda x: calls.append(("xla", x.shape[0])) or x, measure="now")
    for _ in range(6):
        step(tf.zeros((8, 2)))
    assert step.uses_xla
    calls.clear()
    for n in (8, 3, 16, 8):
        step(tf.zeros((n, 2)))
    assert calls == [("xla", 8), ("plain", 3), ("plain", 16), ("plain", 8)] and step.chosen is None
    for _ in range(5):
        step(tf.zeros((16, 2)))
    assert [c for c in calls if c[1] == 16] == [("plain", 16), ("plain", 16), ("xla", 16), ("xla", 16), ("plain", 16),
                                                ("xla", 16)]
    assert step.uses_xla and step._shapes == ((16, 2),)


def test_a_larger_batch_restarts_the_measurement():
    """A test call on one image does not decide for the batches of the run that follows: the largest batch seen is
    measured, from its own first call."""
    calls = []
    step = AdaptiveStep(lambda x: calls.append(("plain", x.shape[0])) or x,
                        lambda x: calls.append(("xla", x.shape[0])) or x, measure="now")
    for n in (1, 1, 1, 8, 8, 8, 8, 8, 8, 1, 8):
        step(tf.zeros((n, 2)))
    assert calls[:3] == [("plain", 1), ("plain", 1), ("xla", 1)]  # the one-image calls began a measurement
    assert calls[3:9] == [("plain", 8), ("plain", 8), ("xla", 8), ("xla", 8), ("plain", 8), ("xla", 8)]
    assert step.chosen is not None and len(step._times["plain"]) == len(step._times["xla"]) == 2


@pytest.mark.parametrize("slower", ["plain", "xla"])
def test_on_a_cpu_without_onednn_xla_is_tried_from_the_eighth_call(caplog, monkeypatch, slower):
    """XLA's steady step was 5-10 % faster there (VGG16) but seven calls did not repay its compile: calls 1-7 run
    plain (timed as they run); once the plain time so far repays the trial (here: twice the first call's trace) the
    next call compiles XLA and the three after time it; an XLA clearly slower than plain is not run again."""
    from kerasxai.backend import tensorflow as tf_backend

    monkeypatch.setattr(tf_backend, "_REPAY", 2)
    calls = []

    def version(name):
        def run(x):
            calls.append(name)
            time.sleep(0.05 if calls == ["plain"] else 0.03 if name == slower else 0.01)  # the first: a trace
            return tf.identity(x)
        return run

    step = AdaptiveStep(version("plain"), version("xla"), measure="late")
    with caplog.at_level(logging.INFO, logger="kerasxai"):
        for _ in range(13):
            step(tf.constant(1.0))
    assert calls[:9] == ["plain"] * 7 + ["xla", "xla"]  # the eighth call compiles XLA, the ninth times it
    if slower == "xla":  # decided on the ninth call: no second slower XLA call
        assert calls[9:] == ["plain"] * 4 and len(step._times["xla"]) == 1
    else:
        assert calls[9:] == ["xla"] * 4 and len(step._times["xla"]) == 3
    assert len(step._times["plain"]) == 6 and "runs this step" in caplog.text


@pytest.mark.parametrize("slower", ["plain", "xla"])
def test_a_large_batch_of_a_model_that_suits_xla_runs_xla_from_the_first_call(monkeypatch, slower):
    """VGG16 (224x224, 8 images: 124e9 multiply-adds) ran 4-9 % faster over calls 1-7 under XLA on a CPU without
    oneDNN: such a step runs XLA from its first call, timed as it runs, and tries plain once XLA's calls repaid the
    trial (the same rule the other way round), keeping plain only if at least 3 % faster. A smaller batch leads
    with plain, as a model without a count does."""
    from kerasxai.backend import tensorflow as tf_backend

    monkeypatch.setattr(tf_backend, "_REPAY", 2)
    calls = []

    def version(name):
        def run(x):
            calls.append(name)
            time.sleep(0.05 if len(calls) == 1 else 0.03 if name == slower else 0.01)  # the first: XLA's compile
            return tf.identity(x)
        return run

    big = tf.zeros((8, 2))  # 8 x 1e10 multiply-adds: over the 5e10 a batch
    step = AdaptiveStep(version("plain"), version("xla"), measure="late", macs=1e10)
    for _ in range(13):
        step(big)
    assert calls[:9] == ["xla"] * 7 + ["plain", "plain"]  # the eighth call traces plain, the ninth times it
    if slower == "plain":  # clearly slower on its first timed call: not run again
        assert calls[9:] == ["xla"] * 4 and step.uses_xla and len(step._times["plain"]) == 1
    else:
        assert calls[9:] == ["plain"] * 4 and not step.uses_xla and len(step._times["plain"]) == 3
    assert len(step._times["xla"]) == 6
    for macs, batch in ((1e10, 4), (None, 8)):  # 4e10 a batch, or no count: plain leads
        calls.clear()
        step = AdaptiveStep(version("plain"), version("xla"), measure="late", macs=macs)
        for _ in range(5):
            step(tf.zeros((batch, 2)))
        assert calls == ["plain"] * 5
    # batches that keep growing: XLA compiles per shape, so it leads two sizes at most
    step = AdaptiveStep(version("plain"), version("xla"), measure="late", macs=1e10)
    leads = []
    for batch in (8, 9, 10, 11):
        step(tf.zeros((batch, 2)))
        leads.append(step._lead)
    assert leads == ["xla", "xla", "plain", "plain"]


def test_a_vgg_like_step_led_by_xla_gives_plain_maps(images, monkeypatch):
    """End to end: a model of dense convolutions only, whose batch passes the threshold (lowered here), explained
    with XLA from the first call; its maps agree with plain's, also for a shorter batch (plain, not compiled again)."""
    from kerasxai.backend import tensorflow as tf_backend
    from kerasxai.probe import get_probe

    keras.utils.set_random_seed(8)
    model = keras.Sequential([keras.Input((32, 32, 3)), layers.Conv2D(6, 3, activation="relu", name="conv"),
                              layers.MaxPooling2D(), layers.Flatten(), layers.Dense(4, activation="softmax")])
    assert get_probe(model, "conv").macs == 30 * 30 * 27 * 6 + 15 * 15 * 6 * 4
    backend.set_jit_compile(False)
    try:
        plain = kerasxai.gradcam(model, images, layer="conv")
        plain_one = kerasxai.gradcam(model, images[:1], layer="conv")
    finally:
        backend.set_jit_compile(None)
    get_probe(model, "conv")._steps.clear()
    monkeypatch.setattr(tf_backend, "_MEASURING", ["late"])
    monkeypatch.setattr(tf_backend, "_XLA_FIRST_MACS", 1.0)
    np.testing.assert_allclose(kerasxai.gradcam(model, images, layer="conv"), plain, atol=1e-5)
    steps = [s for run in get_probe(model, "conv")._steps.values() for s in run.compiled.values()]
    assert steps and all(s._lead == "xla" and s.xla.experimental_get_tracing_count() == 1 for s in steps)
    np.testing.assert_allclose(kerasxai.gradcam(model, images[:1], layer="conv"), plain_one, atol=1e-5)


def test_the_trace_is_weighed_also_when_the_first_calls_ran_plain_by_setting():
    """The trial waits for 40x the plain function's first call (its trace), also when that call ran under
    set_jit_compile(False): MobileNetV2 stalled 4.4 s on its 13th call when the trace was missed."""
    calls = []

    def plain(x):
        calls.append("plain")
        time.sleep(0.06 if len(calls) == 1 else 0.002)
        return tf.identity(x)

    step = AdaptiveStep(plain, lambda x: calls.append("xla") or x, measure="late")
    backend.set_jit_compile(False)
    try:
        step(tf.constant(1.0))
    finally:
        backend.set_jit_compile(None)
    for _ in range(30):
        step(tf.constant(1.0))
    assert "xla" not in calls and step._first["took"] >= 0.06


def test_on_a_cpu_without_onednn_xla_waits_until_its_trial_is_repaid():
    """MobileNetV2's XLA step was 7x slower than plain there, and its compile cost 30 plain calls: a step whose calls
    are short against its first call's trace is not tried until its plain calls took 40x that trace (an XLA that
    loses then costs at most about a tenth of the time so far)."""
    calls = []

    def plain(x):
        calls.append("plain")
        time.sleep(0.06 if len(calls) == 1 else 0.002)  # a 60 ms trace, 2 ms calls: tried after about 1,200 calls
        return tf.identity(x)

    step = AdaptiveStep(plain, lambda x: calls.append("xla") or x, measure="late")
    for _ in range(40):
        step(tf.constant(1.0))
    assert calls == ["plain"] * 40 and step.chosen is None and "xla" not in step._times


def test_on_a_cpu_with_onednn_the_default_is_plain_and_nothing_is_timed():
    """Measuring ran XLA (slower on the oneDNN CPUs measured) on a user's calls 3, 4 and 6: up to 25 % of a session's
    first seven calls. There the default runs plain from the first call; set_jit_compile(True) still gives XLA."""
    calls = []
    step = AdaptiveStep(lambda x: calls.append("plain") or x, lambda x: calls.append("xla") or x, measure="never")
    backend.set_jit_compile(None)
    for _ in range(12):
        step(tf.constant(1.0))
    assert calls == ["plain"] * 12 and step._times == {}
    backend.set_jit_compile(True)
    try:
        step(tf.constant(1.0))
    finally:
        backend.set_jit_compile(None)
    assert calls[-1] == "xla"


def test_a_step_that_switches_to_xla_gives_the_same_maps(images, monkeypatch, caplog):
    """The rule of a CPU without oneDNN, end to end on a real model: calls 1-7 plain, 8-10 XLA (compiled and timed),
    then the faster; every call's maps agree with plain's, also over batches (a shorter last one runs plain)."""
    from kerasxai.backend import tensorflow as tf_backend
    from kerasxai.probe import get_probe

    keras.utils.set_random_seed(6)
    inp = keras.Input((32, 32, 3))
    x = layers.Conv2D(6, 3, activation="relu", name="conv")(inp)
    model = keras.Model(inp, layers.Dense(4, activation="softmax")(layers.GlobalAveragePooling2D()(x)))
    backend.set_jit_compile(False)
    try:
        plain = kerasxai.gradcam(model, images, layer="conv")
        plain_batches = kerasxai.gradcam(model, np.concatenate([images] * 3), layer="conv", batch_size=2)
    finally:
        backend.set_jit_compile(None)
    get_probe(model, "conv")._steps.clear()  # fresh steps, under the rule below (tried from the eighth call)
    monkeypatch.setattr(tf_backend, "_MEASURING", ["late"])
    monkeypatch.setattr(tf_backend, "_REPAY", 0)
    with caplog.at_level(logging.INFO, logger="kerasxai"):
        for _ in range(12):
            np.testing.assert_allclose(kerasxai.gradcam(model, images, layer="conv"), plain, atol=1e-5)
    steps = [s for run in get_probe(model, "conv")._steps.values() for s in run.compiled.values()]
    assert steps and all(s.chosen is not None and len(s._times["plain"]) == 6 and s._times["xla"] for s in steps)
    assert "runs this step (plain " in caplog.text and "; 6 and " in caplog.text
    np.testing.assert_allclose(kerasxai.gradcam(model, np.concatenate([images] * 3), layer="conv", batch_size=2),
                               plain_batches, atol=1e-5)


def test_a_sixteen_bit_model_is_not_switched_to_xla_mid_session(images, monkeypatch, caplog):
    """Plain and XLA round float16 math differently (saliency of a mixed_float16 network: 1.2e-3 relative RMS), so
    on a CPU without oneDNN a 16-bit step stays plain: its maps are the same on call 20 as on call 1."""
    from kerasxai.backend import tensorflow as tf_backend
    from kerasxai.probe import get_probe

    keras.utils.set_random_seed(7)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inp = keras.Input((32, 32, 3))
        x = layers.Conv2D(6, 3, activation="relu", name="conv")(inp)
        model = keras.Model(inp, layers.Dense(4, activation="softmax", dtype="float32")(
            layers.GlobalAveragePooling2D()(x)))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    monkeypatch.setattr(tf_backend, "_MEASURING", ["late"])
    monkeypatch.setattr(tf_backend, "_REPAY", 0)
    with caplog.at_level(logging.INFO, logger="kerasxai"):
        first = kerasxai.saliency(model, images)
        for _ in range(11):
            np.testing.assert_array_equal(kerasxai.saliency(model, images), first)
    steps = [s for run in get_probe(model, ())._steps.values() for s in run.compiled.values()]
    assert steps and all(s.chosen is not None and not s.uses_xla and "xla" not in s._times for s in steps)
    assert "16-bit compute: the other is not tried" in caplog.text


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_the_machines_rule_follows_whether_tensorflow_runs_onednn(onednn):
    """TF_ENABLE_ONEDNN_OPTS decides which kernels TensorFlow runs (its default: by the CPU): with oneDNN's, plain
    and nothing timed; with TensorFlow's own, XLA timed from the eighth call."""
    code = ("from kerasxai.backend import tensorflow as t; from tensorflow.python.util import _pywrap_util_port as p; "
            "print(t.accelerated(), p.IsMklEnabled(), t.measuring())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "KERAS_BACKEND": "tensorflow",
                              "CUDA_VISIBLE_DEVICES": ""}).stdout.split()
    assert out == ["False", str(onednn == "1"), "never" if onednn == "1" else "late"]


def _lacks_nchw(calls):
    def run(x):
        calls.append("plain")
        raise tf.errors.InvalidArgumentError(None, None, "Conv2DCustomBackpropInputOp only supports NHWC.")
    return run


@pytest.mark.parametrize("setting", [None, False])
def test_a_step_whose_cpu_kernels_lack_nchw_runs_xla(caplog, setting):
    """TensorFlow without oneDNN (CPUs without AVX-512) has no channels_first convolution gradient outside XLA:
    a channels_first model's saliency raised "Conv2DCustomBackpropInputOp only supports NHWC" on such a CPU.
    The step runs XLA from then on, also where plain was asked for; other errors of the plain step still raise."""
    calls = []
    step = AdaptiveStep(_lacks_nchw(calls), lambda x: calls.append("xla") or x * 2)
    backend.set_jit_compile(setting)
    try:
        with caplog.at_level(logging.INFO, logger="kerasxai"):
            outs = [float(step(tf.constant(1.0))) for _ in range(3)]
    finally:
        backend.set_jit_compile(None)
    assert outs == [2.0] * 3 and calls == ["plain", "xla", "xla", "xla"]
    assert "lack an op of this step (Conv2DCustomBackpropInputOp only supports NHWC); XLA runs it" in caplog.text

    def other(x):
        raise tf.errors.InvalidArgumentError(None, None, "indices[3] = 7 is not in [0, 5)")
    with pytest.raises(tf.errors.InvalidArgumentError, match="not in"):
        AdaptiveStep(other, lambda x: x)(tf.constant(1.0))


def test_a_step_neither_plain_nor_xla_can_run_says_what_to_do():
    def no_xla(x):
        raise tf.errors.UnimplementedError(None, None, "Could not find registered platform")
    step = AdaptiveStep(_lacks_nchw([]), no_xla)
    for _ in range(2):  # the second call says the same, without running either again
        with pytest.raises(RuntimeError, match="lack a channels_first op .*registered platform.*data_format=.channels_last."):
            step(tf.constant(1.0))


def test_channels_first_saliency_and_gradcam_match_channels_last():
    """The same network channels_first and channels_last: the same maps, on any CPU (with or without oneDNN)."""
    def net(fmt):
        keras.utils.set_random_seed(4)
        inp = keras.Input((3, 12, 12) if fmt == "channels_first" else (12, 12, 3))
        x = layers.Conv2D(4, 3, data_format=fmt, name="conv")(inp)
        x = layers.Activation("relu", name="act")(x)
        return keras.Model(inp, layers.Dense(3)(layers.GlobalAveragePooling2D(data_format=fmt)(x)))
    last, first = net("channels_last"), net("channels_first")
    first.set_weights(last.get_weights())
    x = np.random.default_rng(5).random((2, 12, 12, 3)).astype("float32")
    for method in ("saliency", "gradcam"):
        np.testing.assert_allclose(getattr(kerasxai, method)(first, np.moveaxis(x, -1, 1)),
                                   getattr(kerasxai, method)(last, x), atol=1e-5, err_msg=method)


def test_bad_setting_is_refused():
    with pytest.raises(ValueError, match="True, False or None"):
        backend.set_jit_compile("yes")


def test_the_automatic_choice_is_safe_from_several_threads():
    """The calls that time plain against XLA run one at a time: from 4 threads they used to read a
    timing not yet taken (KeyError 'xla')."""
    import threading

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype("float32")
    backend.set_jit_compile(None)
    results, errors = [], []

    def work():
        try:
            for _ in range(10):
                results.append(kerasxai.gradcam(model, x))
        except Exception as err:  # noqa: BLE001 - any failure in a thread fails the test
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 40
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], atol=1e-5)
