"""TensorFlow: ``tf.function`` (optionally XLA) and ``tf.GradientTape``."""

from __future__ import annotations

import tensorflow as tf


def compile_step(forward, variables, differentiate, post, specs, jit_compile):
    def step(*args):
        if not differentiate:
            _, aux = forward(*args)
            return post(aux, [])
        # Only the arguments are watched: nothing is recorded for the weights.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            for i in differentiate:
                tape.watch(args[i])
            score, aux = forward(*args)
        grads = tape.gradient(score, [args[i] for i in differentiate])
        return post(aux, [None if g is None else tf.cast(g, tf.float32) for g in grads])

    signature = None
    if specs is not None:
        signature = [tf.TensorSpec(shape, dtype) for shape, dtype in specs]
    # autograph=False: steps have no Python control flow on tensors to convert.
    return tf.function(step, input_signature=signature, autograph=False, jit_compile=jit_compile)
