"""The probe cache: built once per model and request, forgotten when the model changes or goes.

Entries live in a ``WeakKeyDictionary`` keyed by the model object itself (never
by ``id``, which Python reuses), so the cache never keeps a model alive. Each
entry carries a *fingerprint* of the model's structure — its layers, their
activations and variables, its outputs — checked at every call: a model changed
after a call (``Sequential.pop()``/``add()``, a layer or its activation
replaced, an output rewired) gets a fresh probe instead of an explanation of the
model it used to be.
"""

from __future__ import annotations

import logging
import weakref

import keras

logger = logging.getLogger("kerasxai")

_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _sublayers(layer):
    return layer.layers if isinstance(layer, keras.Model) and hasattr(layer, "layers") else ()


def fingerprint(model) -> tuple:
    """What a probe depends on: every layer (nested too), its activation and variables, the outputs.

    Examples:
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(1)])
        >>> before = fingerprint(model)
        >>> _ = model.pop()
        >>> fingerprint(model) == before
        False
    """
    parts = []
    stack = [model]
    while stack:
        layer = stack.pop()
        sub = _sublayers(layer)
        weights = () if sub else tuple(id(v) for v in layer.weights)
        parts.append((id(layer), id(getattr(layer, "activation", None)), weights))
        stack.extend(reversed(sub))
    try:
        outputs = tuple(id(t) for t in (model.outputs or ()))
    except (AttributeError, ValueError):
        outputs = ()
    return tuple(parts), outputs


def cached(model, key, build):
    """``build()`` once per (model as it is now, key)."""
    try:
        entry = _CACHE.get(model)
    except TypeError:  # cannot be weakly referenced: no caching
        return build()
    stamp = fingerprint(model)
    if entry is None or entry[0] != stamp:
        if entry is not None:
            logger.info("kerasxai: model '%s' changed since the last call; its probes are rebuilt", model.name)
        entry = (stamp, {})
        _CACHE[model] = entry
    table = entry[1]
    if key not in table:
        table[key] = build()
    return table[key]
