"""kerasxai: why did my Keras image classifier decide that?

Saliency, CAM, Grad-CAM and LayerCAM for Keras 3 / TensorFlow models, nested
pretrained bases included.

Example:
    >>> import keras, numpy as np
    >>> import kerasxai
    >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5)
    >>> x = np.random.rand(2, 64, 64, 3).astype("float32")
    >>> kerasxai.gradcam(model, x).shape, kerasxai.saliency(model, x).shape
    ((2, 64, 64), (2, 64, 64))
"""

import keras as _keras

if _keras.backend.backend() != "tensorflow":
    raise ImportError(
        "kerasxai needs the TensorFlow backend of Keras; "
        f"KERAS_BACKEND is '{_keras.backend.backend()}'. Set KERAS_BACKEND=tensorflow."
    )

from kerasxai.methods.cams import cam, gradcam, layercam  # noqa: E402
from kerasxai.methods.gradients import saliency  # noqa: E402
from kerasxai.probe import LayerInfo, Probe, explainable_layers, get_probe  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "saliency",
    "cam",
    "gradcam",
    "layercam",
    "explainable_layers",
    "get_probe",
    "Probe",
    "LayerInfo",
]
