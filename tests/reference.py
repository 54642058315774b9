"""Independent references: activations from a separately built model, gradients by hand."""

import keras
import numpy as np


def activations(layer_model_input, layer_output, images):
    """Activations of a layer through a plain keras.Model (no kerasxai code)."""
    return keras.ops.convert_to_numpy(keras.Model(layer_model_input, layer_output)(images)).astype("float64")


def flatten_dense_gradient(dense, act_shape, classes):
    """d logit_c / dA for Flatten -> Dense: the class column of the kernel, reshaped."""
    kernel = dense.kernel.numpy()
    return np.stack([kernel[:, c].reshape(act_shape) for c in classes]).astype("float64")


def gap_dense_gradient(dense, act_shape, classes):
    """d logit_c / dA for GAP -> Dense: w_kc / (h w) at every position."""
    kernel = dense.kernel.numpy()
    h, w, _ = act_shape
    return np.stack([np.broadcast_to(kernel[:, c] / (h * w), act_shape) for c in classes])


def bilinear_minmax(raw, size):
    """Upsample with TF's bilinear resize and min-max normalise per image, in NumPy."""
    import tensorflow as tf

    up = tf.image.resize(raw[..., None].astype("float32"), size, method="bilinear").numpy()[..., 0]
    low = up.min(axis=(1, 2), keepdims=True)
    high = up.max(axis=(1, 2), keepdims=True)
    return (up - low) / np.where(high > low, high - low, 1.0)


def conv_valid(x, kernel, bias):
    """'valid' 2-D convolution (Keras's cross-correlation) of one (H, W, C) image, in NumPy float64."""
    kh, kw, _, k_out = kernel.shape
    h, w = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    out = np.zeros((h, w, k_out))
    for i in range(h):
        for j in range(w):
            out[i, j] = np.tensordot(x[i : i + kh, j : j + kw], kernel, axes=3) + bias
    return out


def conv_tanh_dense_input_gradient(x, kernel, bias, dense_column):
    """d logit / d x for x -> Conv2D(valid, tanh) -> Flatten -> Dense column, by the chain rule in NumPy."""
    x = np.asarray(x, np.float64)
    pre = conv_valid(x, kernel, bias)
    d_pre = np.asarray(dense_column, np.float64).reshape(pre.shape) * (1 - np.tanh(pre) ** 2)
    kh, kw = kernel.shape[:2]
    d_x = np.zeros_like(x)
    for i in range(pre.shape[0]):
        for j in range(pre.shape[1]):
            d_x[i : i + kh, j : j + kw] += np.tensordot(kernel, d_pre[i, j], axes=([3], [0]))
    return d_x


def runnable(fn):
    """``fn`` (a model, or a function of tensors) as it can run channels_first here: on TensorFlow compiled
    with XLA, since TensorFlow without oneDNN (CPUs without AVX-512) has no other NCHW convolution kernels."""
    if keras.backend.backend() != "tensorflow":
        return fn
    import tensorflow as tf

    return tf.function(fn, jit_compile=True)
