"""The transformer parts of :class:`~cuecraft.models.lm.TokenLM`: the KV cache, positions,
self- and cross-attention and the pre-norm block."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cuecraft.errors import ParameterError


class KVCache:
    """Keys and values of every attention layer, filled as decoding goes.

    Create it with :meth:`TokenLM.new_cache`; pass it to every call, which fills it in place.

    Attributes
    ----------
    pos : int
        Steps already consumed (prefix included); the next step's absolute position.
    prefix_len : int
        Length of the prefix of embeddings fed on the first call (0 if none).
    """

    def __init__(self, *, batch: int, max_len: int):
        self.batch, self.max_len = batch, max_len
        self.pos = 0
        self.prefix_len = 0
        self.kv: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.memory_kv: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.memory_ref: torch.Tensor | None = None
        self.state: dict[str, object] = {}  # running state of other modules (e.g. causal DCF sums)

    def append(self, name: str, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k, v`` ``[B, H, T, hd]`` at the current position; return all keys/values so far."""
        if name not in self.kv:
            shape = (self.batch, k.shape[1], self.max_len, k.shape[3])
            self.kv[name] = (k.new_zeros(shape), v.new_zeros(shape))
        k_buf, v_buf = self.kv[name]
        end = self.pos + k.shape[2]
        k_buf[:, :, self.pos:end] = k
        v_buf[:, :, self.pos:end] = v
        return k_buf[:, :, :end], v_buf[:, :, :end]  # [B, H, pos + T, hd]


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of ``x`` ``[..., T, hd]`` (rotate-half form) with ``cos = [cos, cos]`` and
    ``sin = [-sin, sin]`` ``[T, hd]`` (:func:`rope_halves`).

    With ``x = [x1, x2]`` this is ``[x1 cos - x2 sin, x2 cos + x1 sin]``, the same floats as
    computing each half apart (negation is exact, addition commutes) in 4 operations instead of 8,
    which a decoded token pays in every layer.
    """
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin


def rope_halves(angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos, sin`` ``[T, hd]`` for :func:`rotate` from rotary ``angles`` ``[T, hd/2]``."""
    cos, sin = angles.cos(), angles.sin()
    return torch.cat([cos, cos], dim=-1), torch.cat([-sin, sin], dim=-1)


def sinusoidal_table(n_positions: int, dim: int) -> torch.Tensor:
    """``[n_positions, dim]`` MusicGen-style sinusoidal embeddings (cos half, then sin half)."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / max(half - 1, 1)))
    angles = torch.arange(n_positions, dtype=torch.float32)[:, None] * freq[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class SelfAttention(nn.Module):
    """Causal multi-head self-attention with optional rotary positions and KV cache."""

    def __init__(self, *, d_model: int, n_heads: int, bias: bool, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x, *, rope, cache: KVCache | None, name: str) -> torch.Tensor:
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_heads, D // self.n_heads)
        if rope is not None:  # q and k in one rotation: fewer ops per decoded token
            qk = rotate(qkv[:, :, :2].transpose(1, 3), *rope)  # [B, H, 2, T, hd]
            q, k = qk.unbind(dim=2)  # [B, H, T, hd]
            v = qkv[:, :, 2].transpose(1, 2)
        else:
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # [B, H, T, hd]
        p = self.dropout if self.training else 0.0
        if cache is None or cache.pos == 0:
            if cache is not None:
                cache.append(name, k, v)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=T > 1)
        else:
            start = cache.pos
            k, v = cache.append(name, k, v)  # [B, H, start + T, hd]
            mask = None
            if T > 1:  # new step i sees keys up to absolute position start + i
                steps = torch.arange(start + T, device=x.device)
                mask = steps[None, :] <= steps[start:, None]  # [T, start + T]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(B, T, D))  # [B, T, D]


class CrossAttention(nn.Module):
    """Multi-head attention from the sequence to a memory ``[B, S, D]``, with an optional mask."""

    def __init__(self, *, d_model: int, n_heads: int, bias: bool, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.q = nn.Linear(d_model, d_model, bias=bias)
        self.kv = nn.Linear(d_model, 2 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x, memory, *, mask, cache: KVCache | None, name: str) -> torch.Tensor:
        B, T, D = x.shape
        hd = D // self.n_heads
        q = self.q(x).view(B, T, self.n_heads, hd).transpose(1, 2)  # [B, H, T, hd]
        if cache is not None and name in cache.memory_kv:
            k, v = cache.memory_kv[name]
        else:
            S = memory.shape[1]
            k, v = self.kv(memory).view(B, S, 2, self.n_heads, hd).permute(2, 0, 3, 1, 4)  # [B, H, S, hd]
            if cache is not None:
                cache.memory_kv[name] = (k, v)
        if mask is not None:  # rows are absolute query positions; keep this call's rows
            start = cache.pos if cache is not None else 0
            if mask.shape[-2] < start + T:
                raise ParameterError(f"memory_mask has {mask.shape[-2]} query rows, need at least {start + T}")
            mask = mask[..., start:start + T, :]  # [..., T, S]
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(B, T, D))  # [B, T, D]


class Block(nn.Module):
    """Pre-norm block: causal self-attention, optional cross-attention to a memory, MLP."""

    def __init__(self, *, d_model: int, n_heads: int, mlp_ratio: float = 4.0, bias: bool = False,
                 dropout: float = 0.0, cross_attention: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model=d_model, n_heads=n_heads, bias=bias, dropout=dropout)
        self.norm_x = nn.LayerNorm(d_model) if cross_attention else None
        self.cross = CrossAttention(d_model=d_model, n_heads=n_heads, bias=bias, dropout=dropout) if cross_attention else None
        self.norm2 = nn.LayerNorm(d_model)
        hidden = int(mlp_ratio * d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, hidden, bias=bias), nn.GELU(), nn.Linear(hidden, d_model, bias=bias))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, *, rope=None, memory=None, memory_mask=None, cache: KVCache | None = None,
                name: str = "") -> torch.Tensor:
        # Dropout and the MLP's container are skipped as modules when decoding: module calls are
        # a large share of the cost of one token on a CPU, and the sums are the same.
        x = self._add(x, self.attn(self.norm1(x), rope=rope, cache=cache, name=name))  # [B, T, D]
        if self.cross is not None and memory is not None:
            x = self._add(x, self.cross(self.norm_x(x), memory, mask=memory_mask, cache=cache, name=name))
        if self.training:
            return self._add(x, self.mlp(self.norm2(x)))
        up, act, down = self.mlp
        return x + down(F.gelu(up(self.norm2(x)), approximate=act.approximate))

    def _add(self, x: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
        return x + (self.drop(update) if self.training else update)


class FirstTokenConditioning(nn.Module):
    """The hidden state that heads after the first read, given the step's first token:
    ``x + MLP(LayerNorm(x + embed(first)))``.

    An MLP, not the embedding alone: added in front of linear heads, an embedding only shifts
    each head's logits by a constant per first token, so a melody note and a harmony note at
    the same point would get one pitch distribution up to that shift. (A compound model trained
    that way lost 0.21 of melody accuracy.)
    """

    def __init__(self, *, vocab_size: int, d_model: int, mlp_ratio: float = 4.0, bias: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.norm = nn.LayerNorm(d_model)
        hidden = int(mlp_ratio * d_model)
        self.up = nn.Linear(d_model, hidden, bias=bias)
        self.down = nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        return x + self.down(F.gelu(self.up(self.norm(x + self.embed(first)))))  # [B, T, D]
