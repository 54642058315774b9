"""What the network learned: activation maximization and its figures.

- :func:`visualize_activation`: images that maximise a class logit, a conv
  filter or a dense unit (:mod:`.optimize`), built from an image
  parameterisation (:mod:`.param`), random transforms (:mod:`.transforms`) and
  an objective (:mod:`.objectives`), fed through the model's own preprocessing
  (:mod:`.preprocessing`).
- Figures: :func:`plot_filters`, :func:`plot_class_images`, :func:`save_gif`
  and the embedding plots (:mod:`.plots`); features for them come from
  :mod:`kerasxai.embeddings`.
- :mod:`.probing` is the one place that reaches into kerasxai's probe.
"""

from kerasxai.visualize.optimize import ActivationImages, visualize_activation  # noqa: F401
