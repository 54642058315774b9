"""Process-wide settings of the compiled steps, read by every backend module (no imports of its own)."""

from __future__ import annotations

_JIT_COMPILE = [None]


def set_jit_compile(value) -> None:
    """Sets how TensorFlow steps compile: ``True`` (XLA), ``False`` (plain ``tf.function``) or
    ``None`` (default: chosen by the machine: plain on a CPU with oneDNN; on a CPU without it, XLA from the first
    call for a large batch of a model of dense convolutions (VGG16 at 224x224 from 4 images), plain otherwise,
    the other tried once the first's calls have repaid its trial (never before the eighth call); on a GPU or TPU
    each step times both on its first calls; the faster is kept. See :mod:`kerasxai.backend.tensorflow`).

    Examples:
        >>> set_jit_compile(False); jit_compile_setting()
        False
        >>> set_jit_compile(None)
    """
    if value not in (None, True, False):
        raise ValueError(f"jit_compile must be True, False or None. Received: {value!r}")
    _JIT_COMPILE[0] = value


def jit_compile_setting():
    """The value :func:`set_jit_compile` last set (None: chosen per step, by the machine)."""
    return _JIT_COMPILE[0]


_OVERLAP = {"in_flight": None, "place": None}


def set_overlap(in_flight=None, place=None) -> None:
    """Sets how a run over several batches overlaps them (every method with ``batch_size``, ``explain``,
    the folder job).

    Args:
        in_flight: how many batches' steps run at once (each on its own thread, collected in order):
            ``1`` one after another; ``2`` the next batch's step is started while the previous one's
            outputs come back from the device; ``None`` (default): 2 on a GPU or TPU under JAX or
            PyTorch, else 1 (on a CPU, the cores are busy with the current step already).
        place: whether the batches read ahead are copied to the device on the reading thread
            (``None``: on a GPU or TPU; on a CPU there is nothing to copy).

    The next batch is always read and checked on a background thread while the current one runs.

    Examples:
        >>> set_overlap(in_flight=2); overlap_setting()["in_flight"]
        2
        >>> set_overlap()
    """
    if in_flight is not None and (not isinstance(in_flight, int) or isinstance(in_flight, bool) or in_flight < 1):
        raise ValueError(f"in_flight must be None or an int of at least 1. Received: {in_flight!r}")
    if place not in (None, True, False):
        raise ValueError(f"place must be True, False or None. Received: {place!r}")
    _OVERLAP.update(in_flight=in_flight, place=place)


def overlap_setting() -> dict:
    """What :func:`set_overlap` last set (None: decided by the device)."""
    return dict(_OVERLAP)
