"""TensorFlow steps: XLA or plain, chosen by timing, the same maps either way, a fallback when XLA cannot compile."""

import logging

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


def test_automatic_choice_times_both_then_keeps_the_faster(caplog):
    calls = []
    slow = lambda x: calls.append("plain") or tf.identity(x)  # noqa: E731
    fast = lambda x: calls.append("xla") or tf.identity(x)  # noqa: E731
    step = AdaptiveStep(slow, fast)
    step._times = {}
    with caplog.at_level(logging.INFO, logger="kerasxai"):
        for _ in range(6):
            step(tf.constant(1.0))
    assert calls[:4] == ["plain", "plain", "xla", "xla"]  # trace, time, compile, time
    assert step.chosen in (step.plain, step.xla) and len(set(calls[4:])) == 1
    assert "runs this step" in caplog.text


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


def test_bad_setting_is_refused():
    with pytest.raises(ValueError, match="True, False or None"):
        backend.set_jit_compile("yes")
