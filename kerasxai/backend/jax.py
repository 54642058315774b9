"""JAX: ``jax.jit`` of a pure function of the variables' values, ``jax.grad`` on arguments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import keras
import numpy as np

try:  # what Variable.value looks up on every read; read once per step call instead (current_values)
    from keras.src.backend.common.stateless_scope import in_stateless_scope
    from keras.src.backend.common.variables import get_autocast_scope
except ImportError:  # another Keras layout: every value read through Variable.value
    in_stateless_scope = get_autocast_scope = None


def current_values(variables) -> list:
    """The variables' current values, as ``[v.value for v in variables]`` gives them.

    Outside a ``StatelessScope`` and an autocast scope (a call from user code), ``Variable.value``
    is the stored array; looking both scopes up once, rather than twice per variable, takes 1 us
    instead of 60 us for a ResNet's 77 variables: per call, that counts on a GPU, where a step
    takes milliseconds.

    Examples:
        >>> v = keras.Variable(np.ones(2, "float32"))
        >>> [float(a) for a in current_values([v])[0]]
        [1.0, 1.0]
    """
    if in_stateless_scope is None or in_stateless_scope() or get_autocast_scope() is not None:
        return [v.value for v in variables]
    values = [getattr(v, "_value", None) for v in variables]
    if any(value is None for value in values):  # not yet initialised: Variable.value's placeholder
        return [v.value for v in variables]
    return values


def compile_step(forward, variables, differentiate, post, specs, jit_compile, macs=None):
    def pure_forward(values, args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return forward(*args)

    def step(values, *args):
        if not differentiate:
            _, aux = pure_forward(values, args)
            return post(aux, [])

        def summed(diff):
            full = list(args)
            for i, d in zip(differentiate, diff):
                full[i] = d
            score, aux = pure_forward(values, full)
            return jnp.sum(score), aux

        grads, aux = jax.grad(summed, has_aux=True)([args[i] for i in differentiate])
        return post(aux, [g.astype(jnp.float32) for g in grads])

    jitted = jax.jit(step)

    def call(*args):
        return jitted(current_values(variables), *args)

    call.jitted = jitted
    return call


def tree_to_numpy(tree, copy=True):
    """Every array of a nest as NumPy, the device-to-host copies started together.

    ``copy``: writable copies; else read-only views of the arrays' host buffers.
    """
    for leaf in jax.tree_util.tree_leaves(tree):
        if isinstance(leaf, jax.Array):
            leaf.copy_to_host_async()
    return jax.tree_util.tree_map(np.array if copy else np.asarray, tree)


def accelerated() -> bool:
    return jax.default_backend() != "cpu"


def place(arrays) -> list:
    """NumPy arrays on the default device; the copies run while the caller goes on."""
    return [jax.device_put(a) if isinstance(a, np.ndarray) and a.dtype.kind in "biuf" else None for a in arrays]
