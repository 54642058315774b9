"""PyTorch: eager autograd, gradients with respect to the arguments only."""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import torch
from keras.src.backend.torch.core import get_device


def compile_step(forward, variables, differentiate, post, specs, jit_compile, macs=None):
    def step(*args):
        args = [keras.ops.convert_to_tensor(a) for a in args]
        if not differentiate:
            with torch.no_grad():
                _, aux = forward(*args)
                return post(aux, [])
        for i in differentiate:
            args[i] = args[i].detach().requires_grad_(True)
        with torch.enable_grad(), _weights_not_recorded(variables):
            score, aux = forward(*args)
            if score.requires_grad:
                grads = torch.autograd.grad(score.sum(), [args[i] for i in differentiate], allow_unused=True)
            else:  # nothing connects the score to the arguments: a cut gradient, reported above
                grads = [None] * len(differentiate)
        aux = keras.tree.map_structure(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, aux)
        with torch.no_grad():
            return post(aux, [None if g is None else g.float() for g in grads])

    return step


@contextlib.contextmanager
def _weights_not_recorded(variables):
    """Autograd records only what depends on the differentiated arguments, as in a model split at
    the explained layer with the part below run under ``torch.no_grad``: the weights stop requiring
    gradients for the pass (nothing below a layer is recorded then) and are given back their flag."""
    params = [getattr(v, "value", None) for v in variables]
    flipped = [p for p in params if isinstance(p, torch.Tensor) and p.is_leaf and p.requires_grad]
    for p in flipped:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in flipped:
            p.requires_grad_(True)


def accelerated() -> bool:
    return _device().type != "cpu"


def _device():
    return torch.device(get_device())  # the device Keras puts new tensors on


def place(arrays) -> list:
    """NumPy arrays as tensors on Keras' device: on a GPU copied from page-locked memory without waiting."""
    device = _device()
    out = []
    for a in arrays:
        if not (hasattr(a, "dtype") and getattr(a.dtype, "kind", "") in "biuf"):
            out.append(None)
            continue
        tensor = torch.from_numpy(np.ascontiguousarray(a))  # a view with negative strides (BGR flips) copied
        if device.type != "cpu":
            tensor = tensor.pin_memory().to(device, non_blocking=True)
        out.append(tensor)
    return out


def tree_to_numpy(tree, copy=True):
    """Every tensor of a nest as NumPy: from a GPU, all copies started without waiting, then one wait."""
    leaves = [t for t in keras.tree.flatten(tree) if isinstance(t, torch.Tensor)]
    if any(t.device.type == "cuda" for t in leaves):
        tree = keras.tree.map_structure(
            lambda t: t.detach().to("cpu", non_blocking=True) if isinstance(t, torch.Tensor) else t, tree)
        done = torch.cuda.Event()
        done.record()  # after the copies, on this thread's stream: another batch's work in flight is not waited for
        done.synchronize()
    return keras.tree.map_structure(lambda t: None if t is None else to_numpy(t), tree)


def to_numpy(tensor):
    """A tensor as NumPy, detached and on the CPU."""
    if isinstance(tensor, torch.Tensor):
        return tensor.detach().cpu().numpy()
    return keras.ops.convert_to_numpy(tensor)
