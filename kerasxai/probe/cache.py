"""The probe cache: built once per model and request, forgotten when the model changes or goes.

Entries live in a ``WeakKeyDictionary`` keyed by the model object itself (never
by ``id``, which Python reuses), so the cache never keeps a model alive. Each
entry carries a *fingerprint* of the model's structure — every layer reachable
from it (custom layers' sublayers too), their activations, its variables, its
outputs — checked at every call: a model changed after a call
(``Sequential.pop()``/``add()``, a layer or its activation replaced, an output
rewired) gets a fresh probe instead of an explanation of the model it used to be.

Thread-safe: each model has a lock, held while its entry is checked and built,
so two threads explaining one model build its probes once, one after the other.
"""

from __future__ import annotations

import logging
import threading
import weakref

logger = logging.getLogger("kerasxai")

_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_LOCKS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> RLock (builds nest: probe -> trace)
_GUARD = threading.Lock()  # guards the two dictionaries themselves


def reachable_layers(layer) -> list:
    """``layer`` and every layer it tracks, recursively: nested models, custom layers' sublayers, once each.

    Keras 3 has no public way to reach a custom layer's sublayers (``Model.layers`` lists a
    model's own layers only), so this uses the private ``Layer._flatten_layers`` (as
    :func:`kerasxai.probe.subclassed.leaf_layers` does); ``tests/test_probe.py`` fails loudly if a
    Keras release changes it.
    """
    return layer._flatten_layers(include_self=True, recursive=True)


def fingerprint(model) -> tuple:
    """What a probe depends on: every reachable layer, its activation, the variables, the outputs.

    Examples:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(1)])
        >>> before = fingerprint(model)
        >>> _ = model.pop()
        >>> fingerprint(model) == before
        False
    """
    parts, weights = [], []
    try:  # one walk: each layer's own variables (model.weights would walk the layers again); read per call
        for layer in reachable_layers(model):
            parts.append((id(layer), id(getattr(layer, "activation", None))))
            weights += map(id, layer._trainable_variables)
            weights += map(id, layer._non_trainable_variables)
    except AttributeError:  # a layer without Keras 3's own-variable lists: the public list
        parts = [(id(layer), id(getattr(layer, "activation", None))) for layer in reachable_layers(model)]
        weights = list(map(id, model.weights))
    parts, weights = tuple(parts), tuple(weights)
    try:
        outputs = tuple(id(t) for t in (model.outputs or ()))
    except (AttributeError, ValueError):
        outputs = ()
    return parts, weights, outputs


def cached(model, key, build):
    """``build()`` once per (model as it is now, key); concurrent callers wait for the one building."""
    try:
        with _GUARD:
            lock = _LOCKS.get(model)
            if lock is None:
                lock = _LOCKS[model] = threading.RLock()
    except TypeError:  # cannot be weakly referenced: no caching
        return build()
    with lock:
        stamp = fingerprint(model)
        with _GUARD:
            entry = _CACHE.get(model)
        if entry is None or entry[0] != stamp:
            if entry is not None:
                logger.info("kerasxai: model '%s' changed since the last call; its probes are rebuilt", model.name)
            entry = (stamp, {})
            with _GUARD:
                _CACHE[model] = entry
        table = entry[1]
        if key not in table:
            table[key] = build()
        return table[key]
