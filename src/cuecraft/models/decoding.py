"""Faster token-by-token decoding on a CPU, for a model loaded to write music (weights unchanged).

Decoding multiplies one row of activations by every weight matrix at every step, so it is
bound by streaming the weights from memory. ``nn.Linear`` keeps its weight ``[out, in]``
and multiplies by its transpose; for a single row that took 1.2-1.3x as long as a product
with a contiguous ``[in, out]`` copy (the shipped model on a 60 s beat grid, one thread:
2.09-2.86 s against 1.81-2.10 s over four alternated runs, the same tokens).
:func:`use_transposed_weights` gives each linear layer such a copy, used only where no
gradient is wanted; training and anything that needs gradients go through ``nn.Linear``
as before, and a weight changed in place is copied again.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn


def _transposed_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if self.training or torch.is_grad_enabled():
        return F.linear(x, self.weight, self.bias)
    version = self.weight._version
    if self._transposed is None or self._transposed[0] != version:
        with torch.inference_mode(False), torch.no_grad():  # a plain tensor: it outlives this call
            self._transposed = (version, self.weight.detach().t().contiguous())
    out = x @ self._transposed[1]
    return out if self.bias is None else out + self.bias


def use_transposed_weights(model: nn.Module) -> nn.Module:
    """Make every ``nn.Linear`` of ``model`` multiply by a contiguous transposed copy of its weight
    when no gradient is wanted (eval mode, ``torch.no_grad`` or ``torch.inference_mode``).

    The results equal ``nn.Linear``'s up to float rounding; the copies double the linear weights'
    memory. Returns ``model``.
    """
    for module in model.modules():
        # Subclasses that only change the initialisation (guidance's ZeroLinear) compute the same.
        if isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward \
                and "forward" not in module.__dict__:
            module._transposed = None
            module.forward = types.MethodType(_transposed_forward, module)
    return model
