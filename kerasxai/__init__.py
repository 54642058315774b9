"""kerasxai: why did my Keras image classifier decide that?

Saliency, CAM, Grad-CAM, LayerCAM and their relatives for Keras 3 /
TensorFlow models, nested pretrained bases included; overlays and figures.

Names are loaded on first use, so ``import kerasxai`` (and the ``kerasxai``
command's start-up) does not import TensorFlow until a function is used.

Examples:
    >>> import keras, numpy as np
    >>> import kerasxai
    >>> model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5)
    >>> x = np.random.rand(2, 64, 64, 3).astype("float32")
    >>> kerasxai.gradcam(model, x).shape, kerasxai.saliency(model, x).shape
    ((2, 64, 64), (2, 64, 64))
"""

import importlib

from kerasxai._version import __version__  # noqa: E402,F401

_EXPORTS = {
    "kerasxai.methods.gradients": (
        "saliency", "smoothgrad", "integrated_gradients", "guided_backprop", "guided_gradcam",
    ),
    "kerasxai.methods.cams": (
        "cam", "gradcam", "gradcam_plus_plus", "xgradcam", "hirescam", "layercam", "eigencam", "scorecam",
    ),
    "kerasxai.methods.perturbation": ("occlusion", "rise", "drise"),
    "kerasxai.methods.attention": ("attention_rollout", "transformer_attribution"),
    "kerasxai.methods.explain": ("explain",),
    "kerasxai.probe": ("explainable_layers", "get_probe", "Probe", "LayerInfo", "tokens"),
    "kerasxai.data.images": ("load_images",),
    "kerasxai.data.predictions": ("top_k",),
    "kerasxai.figures.overlay": ("overlay",),
    "kerasxai.figures.images": ("plot_explanations", "plot_layer_views", "plot_feature_maps"),
    "kerasxai.figures.nd": ("plot_signal", "plot_volume"),
    "kerasxai.folder.report": ("write_report",),
    "kerasxai.visualize.optimize": ("visualize_activation", "ActivationImages"),
    "kerasxai.visualize.plots": ("plot_filters", "plot_class_images", "plot_activation_images", "save_gif"),
    "kerasxai.visualize.embeddings": ("layer_embeddings", "nearest_neighbors"),
    "kerasxai.visualize.embedding_plots": ("plot_embeddings", "plot_layer_embeddings", "plot_neighbors"),
    "kerasxai.folder.runner": ("explain_folder", "explain_dataset"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = list(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'kerasxai' has no attribute '{name}'")


def __dir__():
    return sorted(list(globals()) + __all__)
