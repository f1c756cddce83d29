"""Faster token-by-token decoding on a CPU, for a model loaded to write music.

Decoding multiplies one row of activations by every weight matrix at every step, so it is
bound by streaming the weights from memory (the shipped model reads about 18 MB of fp32
weights a step). :func:`use_decoding_weights` gives each linear layer a copy of its weight
made for that, used only where no gradient is wanted; training and anything that needs
gradients go through ``nn.Linear`` as before, and a weight changed in place is copied again.

Two kinds of copy:

- ``"int8"``: the weight rounded to 8-bit integers with one scale per output row, multiplied
  with bfloat16 activations (``torch._weight_int8pack_mm``); a quarter
  of the bytes. The 20 large linear layers of a decoding step, one row: 0.30-0.52 ms against
  0.88-1.10 ms for fp32 (AVX-512 and AVX2 kernels). A layer's output moves by 0.7-1.0% of
  its norm (the shipped model's 32 large layers, random inputs), and the shipped model's
  validation loss does not change (0.17024 against 0.17029 in fp32, 24 batches; the
  difference per batch −0.00005 ± 0.00007). Only on x86 CPUs with AVX2 or AVX-512:
  PyTorch's generic kernel is 3x slower than fp32. The kernel crashed here (AVX-512) on
  input widths that are not a multiple of 16 (3, 8, 24, 43), so such layers keep fp32.
- ``"fp32"``: a contiguous ``[in, out]`` copy of the ``[out, in]`` weight; for a single row
  that took 0.8x the time of ``nn.Linear``'s product with the transpose. The same numbers as
  ``nn.Linear`` up to float rounding.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

PRECISIONS = ("int8", "fp32")
INT8_CAPABILITIES = ("AVX2", "AVX512")  # torch.backends.cpu.get_cpu_capability() where int8 was measured faster
INT8_WIDTH_MULTIPLE = 16


def default_precision() -> str:
    """``"int8"`` where this CPU has the fast kernel, else ``"fp32"``."""
    return "int8" if torch.backends.cpu.get_cpu_capability() in INT8_CAPABILITIES \
        and hasattr(torch, "_weight_int8pack_mm") else "fp32"


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, scales)``: ``weight [out, in]`` as int8 with one bfloat16 scale per row, so that
    ``q * scales[:, None]`` approximates ``weight`` (the scale is rounded first, and ``q`` is taken
    against the rounded scale)."""
    peak = weight.detach().abs().amax(dim=1).float()
    scales = torch.where(peak > 0, peak / 127.0, torch.ones_like(peak)).to(torch.bfloat16)
    q = torch.round(weight.detach().float() / scales.float()[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.contiguous(), scales


def _int8_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if self.training or torch.is_grad_enabled():
        return F.linear(x, self.weight, self.bias)
    if self._decoding is None or self._decoding[0] != self.weight._version:
        with torch.inference_mode(False), torch.no_grad():  # plain tensors: they outlive this call
            self._decoding = (self.weight._version, *quantize_rows(self.weight))
    _, q, scales = self._decoding
    rows = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
    out = torch._weight_int8pack_mm(rows, q, scales).to(x.dtype).reshape(*x.shape[:-1], q.shape[0])
    return out if self.bias is None else out + self.bias


def _fp32_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if self.training or torch.is_grad_enabled():
        return F.linear(x, self.weight, self.bias)
    if self._decoding is None or self._decoding[0] != self.weight._version:
        with torch.inference_mode(False), torch.no_grad():
            self._decoding = (self.weight._version, self.weight.detach().t().contiguous())
    out = x @ self._decoding[1]
    return out if self.bias is None else out + self.bias


def use_decoding_weights(model: nn.Module, precision: str | None = None) -> nn.Module:
    """Make every ``nn.Linear`` of ``model`` multiply by a decoding copy of its weight (``"int8"``
    or ``"fp32"``; None = :func:`default_precision`) when no gradient is wanted (eval mode,
    ``torch.no_grad`` or ``torch.inference_mode``). Applying it again changes the precision.
    Returns ``model``.
    """
    precision = precision or default_precision()
    if precision not in PRECISIONS:
        raise ValueError(f"precision = {precision!r}: must be one of {', '.join(PRECISIONS)}")
    for module in model.modules():
        # Subclasses that only change the initialisation (guidance's ZeroLinear) compute the same.
        if isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward \
                and ("forward" not in module.__dict__ or hasattr(module, "_decoding")):
            module._decoding = None
            module._int8 = precision == "int8" and module.in_features % INT8_WIDTH_MULTIPLE == 0
            module.forward = types.MethodType(_int8_forward if module._int8 else _fp32_forward, module)
    model.decoding_precision = precision
    return model
