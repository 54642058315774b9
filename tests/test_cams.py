"""CAM, Grad-CAM and LayerCAM against NumPy references on independent activations and gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasxai
from kerasxai.methods import cams
from tests import reference as ref


def _logits(model, images):
    """Logits of a model ending in Dense(softmax), computed by hand from the penultimate layer."""
    dense = model.get_layer("predictions")
    features = keras.ops.convert_to_numpy(keras.Model(model.input, dense.input)(images))
    return features @ dense.kernel.numpy() + dense.bias.numpy()


def test_gradcam_matches_numpy_reference(flatten_model, images):
    conv2 = flatten_model.get_layer("conv2")
    acts = ref.activations(flatten_model.input, conv2.output, images)
    classes = _logits(flatten_model, images).argmax(axis=1)
    grads = ref.flatten_dense_gradient(flatten_model.get_layer("predictions"), acts.shape[1:], classes)
    alpha = grads.mean(axis=(1, 2), keepdims=True)
    expected = np.maximum((alpha * acts).sum(-1), 0)

    raw = kerasxai.gradcam(flatten_model, images, layer="conv2", raw=True)
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-6)
    full = kerasxai.gradcam(flatten_model, images, layer="conv2")
    np.testing.assert_allclose(full, ref.bilinear_minmax(expected, (32, 32)), atol=1e-4)
    assert full.dtype == np.float32 and full.min() >= 0 and full.max() <= 1


def test_layercam_matches_numpy_reference_with_explicit_targets(flatten_model, images):
    conv2 = flatten_model.get_layer("conv2")
    acts = ref.activations(flatten_model.input, conv2.output, images)
    classes = [3, 0, 2]
    grads = ref.flatten_dense_gradient(flatten_model.get_layer("predictions"), acts.shape[1:], classes)
    expected = np.maximum((np.maximum(grads, 0) * acts).sum(-1), 0)
    raw = kerasxai.layercam(flatten_model, images, target=classes, layer=conv2, raw=True)
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-6)


def test_cam_matches_numpy_reference(gap_model, images):
    conv2 = gap_model.get_layer("conv2")
    acts = ref.activations(gap_model.input, conv2.output, images)
    kernel = gap_model.get_layer("predictions").kernel.numpy()
    expected = np.einsum("nhwk,k->nhw", acts, kernel[:, 4])
    raw = kerasxai.cam(gap_model, images, target=4, raw=True)
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        kerasxai.cam(gap_model, images, target=4), ref.bilinear_minmax(expected, (32, 32)), atol=1e-4
    )


def test_gradcam_equals_relu_cam_up_to_scale_on_gap_dense(gap_model, images):
    c = kerasxai.cam(gap_model, images, target=1, raw=True)
    g = kerasxai.gradcam(gap_model, images, target=1, raw=True)
    h, w = c.shape[1:]
    # GAP -> Dense: dS/dA_k = w_k / (h w) everywhere, so Grad-CAM = ReLU(CAM) / (h w).
    np.testing.assert_allclose(g * h * w, np.maximum(c, 0), rtol=1e-4, atol=1e-5)


def test_gradient_cams_on_gap_model_use_analytic_gradients(gap_model, images):
    acts = ref.activations(gap_model.input, gap_model.get_layer("conv2").output, images)
    grads = ref.gap_dense_gradient(gap_model.get_layer("predictions"), acts.shape[1:], [2, 2, 2])
    expected = np.maximum((np.maximum(grads, 0) * acts).sum(-1), 0)
    np.testing.assert_allclose(
        kerasxai.layercam(gap_model, images, target=2, raw=True), expected, rtol=1e-4, atol=1e-6
    )




def test_cam_on_nested_functional_with_softmax_layer(nested_functional, images):
    base = nested_functional.get_layer("base")
    acts = ref.activations(base.input, base.output, images)
    kernel = nested_functional.get_layer("logits").kernel.numpy()
    expected = np.einsum("nhwk,k->nhw", acts, kernel[:, 0])
    got = kerasxai.cam(nested_functional, images, target=0, raw=True)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert kerasxai.get_probe(nested_functional).layer_names == ["base/conv2"]
    assert kerasxai.get_probe(nested_functional).removed_activation == "softmax"


def test_layercam_fuses_layers_as_in_the_paper(flatten_model, images):
    raws = kerasxai.layercam(flatten_model, images, target=1, layer=["conv1", "conv2"], raw=True)
    assert [r.shape for r in raws] == [(3, 32, 32), (3, 16, 16)]
    singles = [kerasxai.layercam(flatten_model, images, target=1, layer=n, raw=True) for n in ("conv1", "conv2")]
    for r, s in zip(raws, singles):
        np.testing.assert_allclose(r, s, rtol=1e-5, atol=1e-7)
    scaled = [np.tanh(2 * r / r.max(axis=(1, 2), keepdims=True)) for r in raws]
    up = [tf.image.resize(s[..., None], (32, 32)).numpy()[..., 0] for s in scaled]
    fused = np.maximum(up[0], up[1])
    low, high = fused.min(axis=(1, 2), keepdims=True), fused.max(axis=(1, 2), keepdims=True)
    got = kerasxai.layercam(flatten_model, images, target=1, layer=["conv1", "conv2"])
    np.testing.assert_allclose(got, (fused - low) / (high - low), atol=1e-4)


def test_callable_target(gap_model, images):
    """A callable score: the sum of two logits, equal to summing the two single-class maps' raw inputs."""
    both = kerasxai.gradcam(gap_model, images, target=lambda z: z[:, 0] + z[:, 3], raw=True)
    acts = ref.activations(gap_model.input, gap_model.get_layer("conv2").output, images)
    kernel = gap_model.get_layer("predictions").kernel.numpy()
    w = (kernel[:, 0] + kernel[:, 3]) / (acts.shape[1] * acts.shape[2])
    np.testing.assert_allclose(both, np.maximum(acts @ w, 0), rtol=1e-4, atol=1e-6)


def test_cam_refuses_models_without_gap_dense_head(flatten_model, images):
    with pytest.raises(ValueError, match="global average pooling.*feeds Flatten.*gradcam"):
        kerasxai.cam(flatten_model, images)
    with pytest.raises(ValueError, match="class target"):
        kerasxai.cam(flatten_model, images, target=lambda z: z[:, 0])


def test_formulas_on_hand_computed_arrays():
    """Arrays small enough to check by hand."""
    a = keras.ops.convert_to_tensor([[[[1.0, 2.0], [0.0, 1.0]]]])  # (1, 1, 2, 2): two positions, two channels
    g = keras.ops.convert_to_tensor([[[[1.0, -1.0], [3.0, -1.0]]]])
    npy = keras.ops.convert_to_numpy
    # alpha = mean over positions = [2, -1]; map = [1*2 - 2*1, 0*2 - 1*1] = [0, -1] -> ReLU [0, 0]
    np.testing.assert_allclose(npy(cams.gradcam_formula(a, g)), [[[0.0, 0.0]]])
    # LayerCAM: ReLU(g) * A summed = [1*1 + 0, 3*0 + 0] = [1, 0]
    np.testing.assert_allclose(npy(cams.layercam_formula(a, g)), [[[1.0, 0.0]]])
    np.testing.assert_allclose(npy(cams.cam_formula(a, keras.ops.convert_to_tensor([[1.0, -1.0]]))), [[[-1.0, -1.0]]])
