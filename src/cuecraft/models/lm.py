"""The token LM shared by both backbones: a decoder-only pre-norm transformer with a KV cache.

One class serves the symbolic backbone (one stream of MIDI event tokens) and the codec
backbone (``n_codebooks`` parallel EnCodec streams, summed at the input, one head each).
Backbone-specific parts (tokenizer, delay pattern, visual encoders, weight loaders) live
elsewhere; this file only knows tokens, an optional cross-attention memory, an optional
prefix of embeddings and an optional control-guidance module (``models/guidance.py``).

Positions are rotary by default (a window continued from a carried prompt only shifts
positions), or MusicGen-style sinusoidal / learned absolute embeddings. The cache, the
attention layers and the block are in ``models/blocks.py``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from cuecraft.errors import ParameterError
from cuecraft.models.blocks import (
    Block,
    CrossAttention,
    FirstTokenConditioning,
    KVCache,
    SelfAttention,
    rope_halves,
    sinusoidal_table,
)

__all__ = ["POSITIONS", "KVCache", "TokenLM", "sinusoidal_table"]

POSITIONS = ("rotary", "sinusoidal", "learned")


class TokenLM(nn.Module):
    """Decoder-only transformer over ``n_codebooks`` parallel token streams.

    Parameters
    ----------
    vocab_size : int
        Output classes per codebook.
    n_codebooks : int
        Parallel streams: 1 (symbolic) or 4 (codec). Input embeddings are summed, one head each.
    d_model, n_layers, n_heads : int
        Width, depth and attention heads (``d_model % n_heads == 0``, even head size).
    mlp_ratio : float
        MLP hidden width over ``d_model``.
    dropout : float
        Residual and attention dropout (training only).
    positions : {"rotary", "sinusoidal", "learned"}
        Position encoding. Sinusoidal matches MusicGen (for loading its weights).
    max_positions : int
        Longest sequence for "sinusoidal" / "learned" positions.
    bias : bool
        Biases in the attention and MLP projections.
    cross_attention : bool
        Give every layer cross-attention to a ``memory`` (off: no modules, no cost).
    input_vocab_size : int or None
        Input embedding rows if not ``vocab_size`` (MusicGen embeds an extra start token).
    guidance : ControlGuidance or None
        Control guidance (``models/guidance.py``); it is attached to this model.
    first_conditioned : bool
        Heads after the first read the hidden state mixed with the step's codebook-0 token
        (given as ``first``; :class:`~cuecraft.models.blocks.FirstTokenConditioning`), as the
        Compound Word Transformer's heads read the sampled token type: with one step per note,
        the pitch head then knows whether the step is a melody note, a harmony note or no
        note. Needs ``n_codebooks > 1``.
    """

    def __init__(self, *, vocab_size: int, d_model: int, n_layers: int, n_heads: int, n_codebooks: int = 1,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, positions: str = "rotary",
                 max_positions: int = 4096, bias: bool = False, cross_attention: bool = False,
                 input_vocab_size: int | None = None, guidance: nn.Module | None = None,
                 first_conditioned: bool = False):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("n_layers", n_layers),
                            ("n_heads", n_heads), ("n_codebooks", n_codebooks), ("max_positions", max_positions)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name} must be a positive integer, got {value!r}")
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise ParameterError(f"d_model = {d_model!r} must split into n_heads = {n_heads!r} heads of even size")
        if positions not in POSITIONS:
            raise ParameterError(f"positions must be one of {POSITIONS}, got {positions!r}")
        if not 0.0 <= dropout < 1.0:
            raise ParameterError(f"dropout must be in [0, 1), got {dropout!r}")
        if not mlp_ratio > 0:
            raise ParameterError(f"mlp_ratio must be > 0, got {mlp_ratio!r}")
        if first_conditioned and n_codebooks < 2:
            raise ParameterError("first_conditioned needs n_codebooks > 1")
        self.vocab_size, self.n_codebooks, self.d_model = vocab_size, n_codebooks, d_model
        self.n_layers, self.n_heads, self.positions = n_layers, n_heads, positions
        self.max_positions, self.cross_attention = max_positions, cross_attention
        # The longest sequence the weights were trained on; a loader that knows it narrows this.
        # Decoders restart their window there: rotary positions let the model run longer, but
        # past its training length it meets distances it never saw and degrades.
        self.trained_length = max_positions
        self.input_vocab_size = vocab_size if input_vocab_size is None else input_vocab_size
        if self.input_vocab_size < vocab_size:
            raise ParameterError(f"input_vocab_size = {input_vocab_size!r} is below vocab_size = {vocab_size!r}")
        self.block_kwargs = dict(d_model=d_model, n_heads=n_heads, mlp_ratio=mlp_ratio, bias=bias, dropout=dropout,
                                 cross_attention=cross_attention)
        self.embed = nn.ModuleList(nn.Embedding(self.input_vocab_size, d_model) for _ in range(n_codebooks))
        self.pos_embed = nn.Embedding(max_positions, d_model) if positions == "learned" else None
        hd = d_model // n_heads
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd),
                             persistent=False)
        self._rope_table: tuple[torch.Tensor, torch.Tensor] | None = None
        if positions == "sinusoidal":
            self.register_buffer("sin_table", sinusoidal_table(max_positions, d_model), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(**self.block_kwargs) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.heads = nn.ModuleList(nn.Linear(d_model, vocab_size, bias=False) for _ in range(n_codebooks))
        self.first = FirstTokenConditioning(vocab_size=vocab_size, d_model=d_model, mlp_ratio=mlp_ratio,
                                            bias=bias) if first_conditioned else None
        self.apply(self.init_weights)
        self.guidance = guidance
        if guidance is not None:
            guidance.attach(self)

    def init_weights(self, module: nn.Module) -> None:
        """GPT-2 style init: N(0, 0.02); residual output projections scaled by 1/sqrt(2 n_layers)."""
        if getattr(module, "zero_init", False):
            return
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        if isinstance(module, (SelfAttention, CrossAttention)):
            nn.init.normal_(module.out.weight, std=0.02 / math.sqrt(2 * self.n_layers))
        if isinstance(module, Block):
            nn.init.normal_(module.mlp[2].weight, std=0.02 / math.sqrt(2 * self.n_layers))

    def make_block(self) -> Block:
        """A freshly initialised block with this model's settings (used by guidance layers)."""
        block = Block(**self.block_kwargs)
        block.apply(self.init_weights)
        return block

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty :class:`KVCache` for ``batch`` sequences of at most ``max_len`` steps (prefix included)."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ParameterError(f"batch must be a positive integer, got {batch!r}")
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise ParameterError(f"max_len must be a positive integer, got {max_len!r}")
        if self.positions != "rotary" and max_len > self.max_positions:
            raise ParameterError(f"max_len = {max_len} exceeds max_positions = {self.max_positions}")
        return KVCache(batch=batch, max_len=max_len)

    def _check(self, tokens, controls, memory, prefix, cache) -> None:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3 or tokens.shape[1] != self.n_codebooks:
            shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ParameterError(f"tokens must be a [B, {self.n_codebooks}, T] tensor, got {shape}")
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise ParameterError(f"tokens must be integer, got {tokens.dtype}")
        if tokens.numel():
            low, high = (int(v) for v in tokens.aminmax())
            if low < 0 or high >= self.input_vocab_size:
                raise ParameterError(f"token {low if low < 0 else high} is outside [0, {self.input_vocab_size})")
        if controls is not None and self.guidance is None:
            raise ParameterError("controls given to a TokenLM built without guidance")
        if memory is not None:
            if not self.cross_attention:
                raise ParameterError("memory given to a TokenLM built with cross_attention=False")
            if memory.dim() != 3 or memory.shape[0] != tokens.shape[0] or memory.shape[2] != self.d_model:
                raise ParameterError(f"memory must be [{tokens.shape[0]}, S, {self.d_model}], got {tuple(memory.shape)}")
        if prefix is not None:
            if cache is not None and cache.pos > 0:
                raise ParameterError(f"prefix is only allowed on the first call, cache is at step {cache.pos}")
            if prefix.dim() != 3 or prefix.shape[0] != tokens.shape[0] or prefix.shape[2] != self.d_model:
                raise ParameterError(f"prefix must be [{tokens.shape[0]}, P, {self.d_model}], got {tuple(prefix.shape)}")
        if cache is not None:
            if cache.batch != tokens.shape[0]:
                raise ParameterError(f"cache is for batch {cache.batch}, got tokens of batch {tokens.shape[0]}")
            n_new = tokens.shape[2] + (0 if prefix is None else prefix.shape[1])
            if cache.pos + n_new > cache.max_len:
                raise ParameterError(f"cache holds {cache.max_len} steps; {cache.pos} used, {n_new} more given")

    def forward(self, tokens: torch.Tensor, *, controls: torch.Tensor | None = None,
                presence: torch.Tensor | None = None, memory: torch.Tensor | None = None,
                memory_mask: torch.Tensor | Sequence[torch.Tensor | None] | None = None,
                prefix: torch.Tensor | None = None, cache: KVCache | None = None,
                first: torch.Tensor | None = None):
        """Next-token logits for every step.

        Parameters
        ----------
        tokens : LongTensor ``[B, K, T]``
            Token ids per codebook (with a cache: only the new steps).
        controls : Tensor ``[B, T, C]`` or None
            Per-step control features aligned with ``tokens`` (needs ``guidance``).
        presence : Tensor ``[B, n_controls]`` or None
            1 where a control is given; None with controls means all present.
        memory : Tensor ``[B, S, D]`` or None
            Cross-attention memory (needs ``cross_attention=True``); fixed for a cache's life.
        memory_mask : Tensor, or a sequence of one Tensor/None per layer, or None
            Boolean (True = attend) or additive float mask, ``[L, S]`` or ``[B, 1 or H, L, S]``,
            whose rows are absolute positions (prefix included): the rows of this call's steps
            are used, so one mask serves training and incremental decoding.
        prefix : Tensor ``[B, P, D]`` or None
            Embeddings placed before the tokens (first call only); no logits are returned for them.
        cache : KVCache or None
            From :meth:`new_cache`; filled in place.
        first : LongTensor ``[B, T]`` or None
            With ``first_conditioned``: the codebook-0 token of each *next* step (the target
            in training), read by the other heads; None reads them unconditioned.

        Returns
        -------
        logits : Tensor ``[B, K, T, V]``, or ``(logits, cache)`` when a cache is given.
        """
        x = self.hidden(tokens, controls=controls, presence=presence, memory=memory, memory_mask=memory_mask,
                        prefix=prefix, cache=cache)
        logits = self.read_heads(x, first=first)
        return logits if cache is None else (logits, cache)

    def hidden(self, tokens: torch.Tensor, *, controls: torch.Tensor | None = None,
               presence: torch.Tensor | None = None, memory: torch.Tensor | None = None,
               memory_mask: torch.Tensor | Sequence[torch.Tensor | None] | None = None,
               prefix: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        """The final normed hidden states ``[B, T, D]`` the heads read (arguments as :meth:`forward`);
        a cache is filled and advanced."""
        self._check(tokens, controls, memory, prefix, cache)
        B, K, T = tokens.shape
        start = cache.pos if cache is not None else 0
        n_prefix = 0 if prefix is None else prefix.shape[1]
        if start + n_prefix + T > self.max_positions and self.positions != "rotary":
            raise ParameterError(f"sequence of {start + n_prefix + T} steps exceeds max_positions = {self.max_positions}")
        if cache is not None and memory is not None and cache.memory_ref is not memory:
            cache.memory_kv.clear()
            cache.memory_ref = memory
        x = self.embed[0](tokens[:, 0])  # [B, T, D]
        for k in range(1, K):
            x = x + self.embed[k](tokens[:, k])
        fused = None
        if self.guidance is not None:
            token_start = start - (cache.prefix_len if cache is not None else 0)
            fused = self.guidance.fuse(controls, presence, batch=B, length=T, start=token_start, cache=cache,
                                       like=x)  # [B, T, D]
            if n_prefix:
                fused = torch.cat([fused.new_zeros(B, n_prefix, self.d_model), fused], dim=1)
        if prefix is not None:
            x = torch.cat([prefix.to(x.dtype), x], dim=1)  # [B, P + T, D]
        L = x.shape[1]
        rope = None
        if self.positions == "rotary":
            rope = self._rotary(start, L, x)
        elif self.positions == "sinusoidal":
            x = x + self.sin_table[start:start + L].to(x.dtype)
        else:
            x = x + self.pos_embed.weight[start:start + L]
        if fused is not None:
            x = self.guidance.embed(x, fused)  # adds the controls in "concat" mode
        x = self.drop(x) if self.training else x
        masks = self._layer_masks(memory_mask)
        for i, block in enumerate(self.blocks):
            kw = dict(rope=rope, memory=memory, memory_mask=masks[i], cache=cache)
            h = block(x, name=str(i), **kw)
            if fused is not None:
                h = self.guidance.residual(i, x, h, fused, **kw)  # CGD layer attached at i (if any)
            x = h
        x = self.norm(x[:, n_prefix:])  # [B, T, D]
        if cache is not None:
            cache.pos += L
            cache.prefix_len += n_prefix
        return x

    def read_heads(self, x: torch.Tensor, *, first: torch.Tensor | None = None,
                   heads: Sequence[int] | None = None) -> torch.Tensor:
        """Logits ``[B, len(heads), T, V]`` of ``heads`` (default all) from hidden states ``x`` ``[B, T, D]``.

        Heads after the first read ``x`` mixed with ``first`` ``[B, T]`` when the model is
        ``first_conditioned`` and it is given.
        """
        heads = range(self.n_codebooks) if heads is None else heads
        conditioned = x
        if first is not None and self.first is not None:
            if first.shape != x.shape[:2]:
                raise ParameterError(f"first must be [{x.shape[0]}, {x.shape[1]}], got {tuple(first.shape)}")
            conditioned = self.first(x, first)
        return torch.stack([self.heads[k](x if k == 0 else conditioned) for k in heads], dim=1)

    def _rotary(self, start: int, length: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary ``cos, sin`` ``[length, hd]`` (:func:`~cuecraft.models.blocks.rope_halves`) of positions
        ``start ..``, from a table grown on demand.

        The table holds exactly what computing the angles per call gives (the same float ops per
        position); decoding one token then costs a slice instead of five small ops.
        """
        end = start + length
        table = self._rope_table
        if table is None or table[0].shape[0] < end or table[0].device != like.device or table[0].dtype != like.dtype:
            size = max(end, 2 * (0 if table is None else table[0].shape[0]), 1024)
            # Kept between calls, so never an inference tensor: a table grown while decoding under
            # torch.inference_mode must still serve a later training step.
            with torch.inference_mode(False):
                steps = torch.arange(size, dtype=torch.float32, device=like.device)
                angles = steps[:, None] * self.inv_freq[None]  # [size, hd/2]
                table = self._rope_table = tuple(t.to(like.dtype) for t in rope_halves(angles))
        return table[0][start:end], table[1][start:end]

    def _layer_masks(self, memory_mask) -> list:
        if memory_mask is None or isinstance(memory_mask, torch.Tensor):
            return [memory_mask] * self.n_layers
        masks = list(memory_mask)
        if len(masks) != self.n_layers:
            raise ParameterError(f"memory_mask has {len(masks)} entries, need one per layer ({self.n_layers})")
        return masks

    def step(self, tokens_new: torch.Tensor, controls_new: torch.Tensor | None = None,
             presence: torch.Tensor | None = None, cache: KVCache | None = None, **kwargs) -> torch.Tensor:
        """Feed new step(s) ``[B, K, T_new]`` through the cache and return their logits ``[B, K, T_new, V]``.

        ``kwargs`` are passed to :meth:`forward` (``memory``, ``memory_mask``, ``prefix``).
        """
        if cache is None:
            raise ParameterError("step() needs a cache from new_cache()")
        logits, _ = self(tokens_new, controls=controls_new, presence=presence, cache=cache, **kwargs)
        return logits

    def num_parameters(self) -> int:
        """Number of parameters (guidance included)."""
        return sum(p.numel() for p in self.parameters())
