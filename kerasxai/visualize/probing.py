"""The one place where feature visualization and embeddings reach into the core.

:func:`layer_probe` returns something with the probe's stable interface,
``call(x) -> (activations, logits)`` in ``keras.ops`` and ``variables``, plus
the layer's qualified name and output shape. Everything else in
:mod:`kerasxai.visualize` and :mod:`kerasxai.visualize.embeddings` runs on that.

- Spatial layers (nested bases included) and the logits come from
  :func:`kerasxai.get_probe`, so layers inside a pretrained base work and the
  logits leave a final softmax/sigmoid out as everywhere else in kerasxai.
- Layers the probe does not take (a ``Dense`` or pooled, non-spatial output)
  are reached with a plain ``keras.Model(model.inputs, layer.output)`` when the
  layer belongs to the outer model's own graph.
- Compiled steps are cached with the probes (:func:`kerasxai.probe.cache.cached`),
  so a model changed after a call gets fresh ones.

Examples:
    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, name="conv"),
    ...                           keras.layers.Flatten(), keras.layers.Dense(4, name="dense")])
    >>> probe = layer_probe(model, "dense")
    >>> probe.layer_name, probe.output_shape
    ('dense', (None, 4))
    >>> acts, _ = probe.call(np.zeros((1, 8, 8, 3), "float32"))
    >>> tuple(acts[0].shape)
    (1, 4)
"""

from __future__ import annotations

import dataclasses

import keras

from kerasxai.probe import cache, explainable_layers, get_probe


@dataclasses.dataclass(eq=False)
class LayerProbe:
    """``call(x) -> (activations, logits)`` and ``variables``, with what was probed.

    Attributes:
        call: ``x -> ([activation], logits)`` in ``keras.ops``: ``[]`` and the
            logits when ``layer`` is ``None``; for a layer, only the activation is
            meant to be read (the second item may be ``None``).
        variables: the Keras variables ``call`` reads.
        layer_name: qualified name of the layer (``"vgg16/block1_conv1"``), or
            ``None`` for the logits.
        output_shape: the layer's (or the logits') output shape, batch as ``None``.
        input_shape: the model's input shape, batch as ``None``.
        removed_activation: ``"softmax"``/``"sigmoid"`` left out of the logits, or ``None``.
    """

    call: object
    variables: list
    layer_name: str | None
    output_shape: tuple
    input_shape: tuple
    removed_activation: str | None = None


def _core_probe(model, layer):
    """The core probe of ``layer`` (``None``: the logits)."""
    return get_probe(model, () if layer is None else layer, logits=layer is None)


def layer_probe(model, layer=None) -> LayerProbe:
    """A :class:`LayerProbe` for ``layer`` of ``model`` (``None``: the logits).

    Args:
        model: a Keras model with one input and one output.
        layer: a layer name (nested models searched too, ``"base/name"`` also
            works), a Layer, or ``None`` for the logits.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model. Received: {type(model).__name__}")
    error = None
    try:
        probe = _core_probe(model, layer)
    except ValueError as err:  # a layer the probe does not take (not spatial): try the plain route
        probe, error = None, err
    if probe is not None:
        if layer is None:
            shape = tuple(probe.submodel.outputs[-1].shape)
            return LayerProbe(probe.call, probe.variables, None, shape, probe.input_shape, probe.removed_activation)
        shape = tuple(probe.submodel.outputs[0].shape)
        return LayerProbe(probe.call, probe.variables, probe.layer_names[0], shape, probe.input_shape)
    return _plain_probe(model, layer, error)


def _top_level_layer(model, layer):
    name = layer if isinstance(layer, str) else getattr(layer, "name", None)
    for candidate in model.layers:
        if candidate is layer or candidate.name == name:
            return candidate
    return None


def _plain_probe(model, layer, error):
    inputs = list(model.inputs or [])
    if len(inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"Expected a model with one input and one output; '{model.name}' has "
                         f"{len(inputs)} inputs and {len(model.outputs)} outputs.")
    found = _top_level_layer(model, layer)
    if found is None:
        if error is not None and "No layer named" in str(error):
            raise error
        shown = layer if isinstance(layer, str) else getattr(layer, "name", layer)
        raise ValueError(
            f"Layer '{shown}' of model '{model.name}' cannot be probed: "
            + ("it is not spatial and lives inside a nested model; non-spatial layers are reached in the "
               "outer model's own graph only. Choose a conv layer, or a layer of the outer model."
               if error is not None else "no such layer in the outer model.")
        )
    try:
        submodel = keras.Model(inputs[0], found.output)
    except (ValueError, AttributeError) as err:
        raise ValueError(f"Layer '{found.name}' of model '{model.name}' cannot be reached from the "
                         f"model's input: {str(err).splitlines()[0]}") from None
    return LayerProbe(lambda x: ([submodel(x, training=False)], None), list(submodel.variables), found.name,
                      tuple(found.output.shape), tuple(inputs[0].shape))


def cached_step(model, key, build):
    """``build()`` once per (model as it is now, key), kept with the model's probes.

    ``build`` must not hold the model itself (the probe's layers are fine), or
    the entry would keep the model alive.
    """
    return cache.cached(model, ("visualize",) + tuple(key), build)


def spatial_layers(model) -> list:
    """Qualified names of the layers with a spatial output (nested bases included), in order.

    Examples:
        >>> import keras
        >>> spatial_layers(keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=2))[:2]
        ['block1_conv1', 'block1_conv2']
    """
    return [info.path for info in explainable_layers(model)]
