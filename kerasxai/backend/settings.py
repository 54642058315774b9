"""Process-wide settings of the compiled steps, read by every backend module (no imports of its own)."""

from __future__ import annotations

_JIT_COMPILE = [None]


def set_jit_compile(value) -> None:
    """Sets how TensorFlow steps compile: ``True`` (XLA), ``False`` (plain ``tf.function``) or
    ``None`` (default: plain on a CPU; on a GPU or TPU each step times both on its first batches and keeps
    the faster).

    Examples:
        >>> set_jit_compile(False); jit_compile_setting()
        False
        >>> set_jit_compile(None)
    """
    if value not in (None, True, False):
        raise ValueError(f"jit_compile must be True, False or None. Received: {value!r}")
    _JIT_COMPILE[0] = value


def jit_compile_setting():
    """The value :func:`set_jit_compile` last set (None: measured per step)."""
    return _JIT_COMPILE[0]
