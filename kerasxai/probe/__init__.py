"""The probe: a cached sub-model from a model's inputs to the explained layers and the logits.

One module per concern:

- :mod:`~kerasxai.probe.graph`: re-running a model's graph with nested models stepped into;
- :mod:`~kerasxai.probe.layers`: which layers can be explained, finding one, CAM's head;
- :mod:`~kerasxai.probe.heads`: which output, its logits, what kind of head it is;
- :mod:`~kerasxai.probe.inputs`: which input, and images of any kind in checked batches;
- :mod:`~kerasxai.probe.attention`: the attention probabilities of ``MultiHeadAttention`` calls;
- :mod:`~kerasxai.probe.guided`: the guided ReLU of guided backpropagation;
- :mod:`~kerasxai.probe.cache`: built once per model as it is, forgotten when it changes;
- :mod:`~kerasxai.probe.cost`: what a model's forward pass costs, where that decides how it is compiled;
- :mod:`~kerasxai.probe.probe`: the :class:`Probe` and its compiled steps.

The backend-specific part (compiling, taking gradients) is :mod:`kerasxai.backend`.
"""

from kerasxai.probe.heads import Head
from kerasxai.probe.layers import LayerInfo, tokens
from kerasxai.probe.probe import Fn, Pass, Probe, cam_layer, explainable_layers, get_probe

__all__ = ["Fn", "Head", "LayerInfo", "Pass", "Probe", "cam_layer", "explainable_layers", "get_probe", "tokens"]
