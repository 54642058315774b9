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
