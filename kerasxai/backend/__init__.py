"""The one place that knows which Keras backend runs: compiled passes and their gradients.

Everything above this package is written in ``keras.ops`` and NumPy. What
differs between TensorFlow, JAX and PyTorch is how a function is compiled and
how gradients are taken, so that is all this seam offers:

- :func:`compile_step` compiles ``forward(*args) -> (score, aux)`` together with
  the gradient of ``sum(score)`` with respect to some of its arguments and a
  ``post`` function of ``(aux, gradients)``, as one call: ``tf.function``
  (optionally XLA) on TensorFlow, ``jax.jit`` on JAX, eager autograd on PyTorch.
- Gradients are only ever taken with respect to *arguments*: the probe feeds a
  zero "perturbation" added to each explained layer's output, so a gradient at
  a layer is a gradient at an argument on every backend.
- A gradient the backend knows to be disconnected (TensorFlow, PyTorch) comes
  back as ``None``; JAX cannot tell and gives zeros (the flat-map checks in
  :mod:`kerasxai.methods.maps` report those).

Examples:
    >>> import numpy as np
    >>> from keras import ops
    >>> from kerasxai import backend
    >>> step = backend.compile_step(lambda x: (ops.sum(x * x, axis=1), ()),
    ...                             variables=[], differentiate=(0,),
    ...                             post=lambda aux, grads: grads[0])
    >>> backend.to_numpy(step(np.array([[1.0, 2.0]], "float32"))).tolist()
    [[2.0, 4.0]]
"""

from __future__ import annotations

import importlib

import keras

from kerasxai.backend.settings import jit_compile_setting, set_jit_compile  # noqa: F401  (public here)
from kerasxai.backend.settings import overlap_setting, set_overlap  # noqa: F401  (public here)

NAME = keras.backend.backend()
SUPPORTED = ("tensorflow", "jax", "torch")
if NAME not in SUPPORTED:
    raise ImportError(
        f"kerasxai runs on the TensorFlow, JAX and PyTorch backends of Keras; KERAS_BACKEND is "
        f"'{NAME}'. Set KERAS_BACKEND to one of {', '.join(SUPPORTED)} before importing keras."
    )

_impl = importlib.import_module(f"kerasxai.backend.{NAME}")


def compile_step(forward, variables, *, differentiate=(), post=None, specs=None, jit_compile=None, macs=None):
    """Compiles ``forward`` (and the gradients of its score) into one step.

    Args:
        forward: ``forward(*args) -> (score, aux)``; ``score`` is ``(N,)``, one
            score per example, and ``aux`` any nest of tensors. Written in ``keras.ops``.
        variables: the Keras variables ``forward`` reads. JAX hands their current
            values to the compiled function at every call, so a step never runs on
            stale weights (TensorFlow and PyTorch read variables live).
        differentiate: positions of the arguments to differentiate ``sum(score)``
            with respect to. Empty: a forward step (no gradient bookkeeping at all).
        post: ``post(aux, gradients) -> outputs``, run inside the compiled step
            (``gradients`` is a list aligned with ``differentiate``, float32).
            Default: return ``(aux, gradients)``.
        specs: ``[(shape, dtype), ...]`` of the arguments, ``None`` for the batch
            axis; TensorFlow traces once with them instead of once per batch size.
        jit_compile: TensorFlow only: XLA (``True``), plain ``tf.function``
            (``False``), or ``None``: :func:`set_jit_compile`'s setting (by default,
            chosen by the machine and measured per step, see
            :mod:`kerasxai.backend.tensorflow`). JAX always compiles with XLA.
        macs: TensorFlow only: the multiply-adds per example where every layer of the
            model suits XLA's CPU code (dense convolutions, no BatchNormalization or
            depthwise convolution; the probe counts them), else ``None``. On a CPU
            without oneDNN, a batch of at least 5e10 runs XLA from its first call.

    Returns:
        ``step(*args) -> outputs``, backend tensors.
    """
    post = post if post is not None else (lambda aux, grads: (aux, grads))
    return _impl.compile_step(forward, list(_unique(variables)), tuple(differentiate), post, specs, jit_compile, macs)


def to_numpy(tree, *, copy: bool = True):
    """Backend tensors (any nest) as NumPy arrays; ``None`` stays ``None``.

    On JAX, every leaf's copy to the host starts at once: on a GPU, a step's outputs come back in
    one wait rather than one wait per output; the arrays are fresh writable copies, or with
    ``copy=False`` read-only views of the host buffers, for a caller that only reads them or copies
    them anyway (one copy fewer). TensorFlow and PyTorch ignore ``copy`` (PyTorch's arrays of CPU
    tensors share the tensors' memory).
    """
    if hasattr(_impl, "tree_to_numpy"):
        return _impl.tree_to_numpy(tree, copy)
    convert = getattr(_impl, "to_numpy", keras.ops.convert_to_numpy)
    return keras.tree.map_structure(lambda t: None if t is None else convert(t), tree)


def runs_compiled_only(error) -> bool:
    """Whether ``error`` says this machine runs the failed op only in a compiled step: TensorFlow without
    oneDNN has no eager (or plain ``tf.function``) channels_first convolution; a step from
    :func:`compile_step` runs it with XLA.

    Example:
        >>> runs_compiled_only(ValueError("shapes differ"))
        False
    """
    return bool(getattr(_impl, "runs_compiled_only", lambda error: False)(error))


def accelerated() -> bool:
    """Whether the backend computes on a GPU or TPU here (not the CPU)."""
    return _impl.accelerated()


def batches_in_flight() -> int:
    """How many batches' steps a run keeps going at once (:func:`set_overlap`; by default 2 on a GPU or
    TPU under JAX or PyTorch, else 1)."""
    chosen = overlap_setting()["in_flight"]
    if chosen is not None:
        return chosen
    return 2 if NAME in ("jax", "torch") and accelerated() else 1


def placer():
    """``place(arrays) -> list`` copying a batch's NumPy arrays to the device without waiting (one entry per
    array, None for one left to the step to convert), or None where nothing is placed (:func:`set_overlap`;
    by default on a GPU or TPU)."""
    chosen = overlap_setting()["place"]
    if chosen is False or (chosen is None and not accelerated()):
        return None
    return _impl.place


def _unique(variables):
    seen = set()
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            yield v
