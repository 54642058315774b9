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

from kerasxai.methods.cams import (  # noqa: E402
    cam,
    eigencam,
    gradcam,
    gradcam_plus_plus,
    hirescam,
    layercam,
    scorecam,
    xgradcam,
)
from kerasxai.methods.explain import explain  # noqa: E402
from kerasxai.methods.gradients import (  # noqa: E402
    guided_backprop,
    guided_gradcam,
    integrated_gradients,
    saliency,
    smoothgrad,
)
from kerasxai.images import load_images  # noqa: E402
from kerasxai.plot import overlay, plot_explanations, plot_feature_maps, plot_layer_views  # noqa: E402
from kerasxai.predictions import top_k  # noqa: E402
from kerasxai.probe import LayerInfo, Probe, explainable_layers, get_probe  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "saliency",
    "cam",
    "gradcam",
    "layercam",
    "gradcam_plus_plus",
    "xgradcam",
    "hirescam",
    "eigencam",
    "scorecam",
    "smoothgrad",
    "integrated_gradients",
    "guided_backprop",
    "guided_gradcam",
    "explain",
    "explainable_layers",
    "load_images",
    "top_k",
    "overlay",
    "plot_explanations",
    "plot_layer_views",
    "plot_feature_maps",
    "get_probe",
    "Probe",
    "LayerInfo",
]
