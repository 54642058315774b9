"""What the network learned: activation maximization and its figures.

- :func:`visualize_activation`: images that maximise a class logit, a conv
  filter or a dense unit (:mod:`.optimize`), built from an image
  parameterisation (:mod:`.param`), random transforms (:mod:`.transforms`) and
  an objective (:mod:`.objectives`), fed through the model's own preprocessing
  (:mod:`.preprocessing`).
- Figures: :func:`plot_filters`, :func:`plot_class_images`, :func:`save_gif`
  (:mod:`.plots`); :func:`plot_embeddings`, :func:`plot_layer_embeddings`,
  :func:`plot_neighbors` (:mod:`.embedding_plots`) on features from
  :mod:`kerasxai.visualize.embeddings`.
- :mod:`.probing` is the one place that reaches into kerasxai's probe.
"""


import importlib

_WHERE = {
    "visualize_activation": "optimize", "ActivationImages": "optimize",
    "plot_activation_images": "plots", "plot_class_images": "plots", "plot_filters": "plots", "save_gif": "plots",
    "plot_embeddings": "embedding_plots", "plot_layer_embeddings": "embedding_plots",
    "plot_neighbors": "embedding_plots",
}
__all__ = list(_WHERE)


def __getattr__(name):  # loaded on first use, like the package's top level
    if name in _WHERE:
        value = getattr(importlib.import_module(f"kerasxai.visualize.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kerasxai.visualize' has no attribute '{name}'")
