"""TensorFlow only: references built with tf.GradientTape, traced-graph checks and tracing counts.

The rest of the suite runs under every backend (tests/test_backends.py); these tests read
TensorFlow's own machinery, so they run in the TensorFlow run alone.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import kerasxai
from kerasxai.probe import get_probe
from tests import reference as ref
from tests.conftest import conv_stack

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="TensorFlow's own machinery; tests/test_backends.py runs the rest under JAX and PyTorch")


def test_nested_sequential_sigmoid_targets(nested_sequential, images):
    """Layer inside the nested base; target 1 = +logit, 0 = -logit; reference by a hand-built tape."""
    base = nested_sequential.layers[0]
    conv = base.get_layer("conv1")
    acts = tf.constant(ref.activations(base.input, conv.output, images), tf.float32)
    rest = keras.Model(base.get_layer("pool1").input, base.output)  # conv1 output -> base output

    def logit(a):
        x = rest(a)
        for layer in nested_sequential.layers[1:-1]:
            x = layer(x)
        out = nested_sequential.layers[-1]
        return (x @ out.kernel + out.bias)[:, 0]

    with tf.GradientTape() as tape:
        tape.watch(acts)
        z = logit(acts)
    grads = tape.gradient(z, acts).numpy()
    a = acts.numpy()
    for target, sign in ((1, 1.0), (0, -1.0)):
        alpha = (sign * grads).mean(axis=(1, 2), keepdims=True)
        expected = np.maximum((alpha * a).sum(-1), 0)
        got = kerasxai.gradcam(nested_sequential, images, target=target, layer="conv1", raw=True)
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)
    # the other gradient CAMs on the same nested layer, against their formulas in NumPy
    g, total = grads, a.sum(axis=(1, 2), keepdims=True)
    denom = 2 * g**2 + total * g**3
    alpha_ij = np.where(g != 0, g**2 / np.where(denom != 0, denom, 1), 0)
    plus = np.maximum(((alpha_ij * np.maximum(g, 0)).sum(axis=(1, 2), keepdims=True) * a).sum(-1), 0)
    xgrad = np.maximum((((a / np.where(total != 0, total, 1)) * g).sum(axis=(1, 2), keepdims=True) * a).sum(-1), 0)
    hires = np.maximum((g * a).sum(-1), 0)
    for fn, expected in ((kerasxai.gradcam_plus_plus, plus), (kerasxai.xgradcam, xgrad), (kerasxai.hirescam, hires)):
        got = fn(nested_sequential, images, target=1, layer="conv1", raw=True)
        np.testing.assert_allclose(got, expected, rtol=2e-3, atol=1e-5, err_msg=fn.__name__)
    # None picks the predicted side of each image
    predicted = (z.numpy() > 0).astype(int)
    got = kerasxai.gradcam(nested_sequential, images, layer="base/conv1", raw=True)
    for i, p in enumerate(predicted):
        single = kerasxai.gradcam(nested_sequential, images[i], target=int(p), layer="conv1", raw=True)
        np.testing.assert_allclose(got[i], single, rtol=1e-5, atol=1e-7)


def test_probe_is_cached_and_not_retraced(images):
    from kerasxai import backend

    # A model of its own: the session's shared models already hold steps other tests compiled.
    keras.utils.set_random_seed(2)
    base = conv_stack()
    out = keras.layers.Dense(5, activation="softmax")(keras.layers.GlobalAveragePooling2D()(base.output))
    gap_model = keras.Model(base.input, out, name="own_gap_net")
    backend.set_jit_compile(False)  # the automatic choice compiles an XLA version too (tests/test_xla.py)
    try:
        _check_no_retrace(gap_model, images)
    finally:
        backend.set_jit_compile(None)


def _check_no_retrace(gap_model, images):
    probe = get_probe(gap_model, "conv2")
    assert get_probe(gap_model, "conv2") is probe
    assert get_probe(gap_model, gap_model.get_layer("conv2")) is not None
    kerasxai.gradcam(gap_model, images, layer="conv2")
    count = probe.tracing_count()
    kerasxai.gradcam(gap_model, images[:2], layer="conv2", target=[1, 2])
    kerasxai.gradcam(gap_model, images[:1], layer="conv2", target=0)
    assert probe.tracing_count() == count  # new batch sizes and targets: no retrace
    kerasxai.layercam(gap_model, images, layer="conv2")  # another method: its own compiled step, once
    kerasxai.layercam(gap_model, images[:1], layer="conv2", target=4)
    assert probe.tracing_count() == count + 1
    steps = [s.plain for run in probe._steps.values() for s in run.compiled.values()]
    assert steps and all(step.experimental_get_tracing_count() == 1 for step in steps)


def test_layer_gradients_do_not_back_propagate_below_the_layer(images):
    """What TensorFlow executes for a layer step holds no backprop below the layer; saliency's does.

    The traced graph of a GradientTape step contains gradient ops for every recorded op; TF prunes
    those the outputs do not need before running. The run metadata shows the graph that runs.
    (``context.enable_run_metadata`` is TensorFlow's internal API, used here in a test only.)
    """
    from tensorflow.python.eager import context

    keras.utils.set_random_seed(12)
    model = keras.Model(*(lambda i: (i, layers.Dense(4, activation="softmax")(layers.Flatten()(
        layers.Conv2D(8, 3, activation="relu", name="top")(layers.MaxPooling2D()(
            layers.Conv2D(6, 3, activation="relu", name="bottom")(i)))))))(keras.Input((32, 32, 3))))

    def executed_ops(run):
        context.enable_run_metadata()
        try:
            run()  # first call: the function is instantiated and its partition graphs exported
            metadata = context.export_run_metadata()
        finally:
            context.disable_run_metadata()
        return {node.op for graph in metadata.partition_graphs for node in graph.node}

    layer_step = executed_ops(lambda: get_probe(model, "top").gradients(images))
    input_step = executed_ops(lambda: get_probe(model, ()).input_gradients(images))
    assert layer_step and input_step
    backprop = lambda ops: {op for op in ops if "Backprop" in op or op.endswith(("ReluGrad", "MaxPoolGrad"))}  # noqa: E731
    assert backprop(layer_step) == set()  # Grad-CAM at "top": nothing below it is differentiated
    assert any("Conv2DBackpropInput" in op for op in backprop(input_step))


def test_many_methods_on_one_model_raise_no_retracing_warning(images, caplog):
    """Each method's first traces are expected: TensorFlow must not call them "excessive retracing"
    (it counts traces per Python code object, so steps built from one closure shared a count)."""
    keras.utils.set_random_seed(4)
    base = conv_stack()
    out = keras.layers.Dense(5, activation="softmax")(keras.layers.GlobalAveragePooling2D()(base.output))
    model = keras.Model(base.input, out, name="retrace_net")
    with caplog.at_level("WARNING", logger="tensorflow"):
        for method in (kerasxai.gradcam, kerasxai.saliency, kerasxai.layercam, kerasxai.gradcam_plus_plus,
                       kerasxai.eigencam, kerasxai.guided_backprop, kerasxai.integrated_gradients):
            for batch in (images, images[:2]):
                method(model, batch)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
