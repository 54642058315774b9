"""PyTorch: eager autograd, gradients with respect to the arguments only."""

from __future__ import annotations

import keras
import torch


def compile_step(forward, variables, differentiate, post, specs, jit_compile):
    def step(*args):
        args = [keras.ops.convert_to_tensor(a) for a in args]
        if not differentiate:
            with torch.no_grad():
                _, aux = forward(*args)
                return post(aux, [])
        for i in differentiate:
            args[i] = args[i].detach().requires_grad_(True)
        with torch.enable_grad():
            score, aux = forward(*args)
            grads = torch.autograd.grad(
                score.sum(), [args[i] for i in differentiate], allow_unused=True
            )
        aux = keras.tree.map_structure(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, aux)
        with torch.no_grad():
            return post(aux, [None if g is None else g.float() for g in grads])

    return step


def to_numpy(tensor):
    """A tensor as NumPy, detached and on the CPU."""
    if isinstance(tensor, torch.Tensor):
        return tensor.detach().cpu().numpy()
    return keras.ops.convert_to_numpy(tensor)
