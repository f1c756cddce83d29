"""MTCV2M's visual conditioning: VFA (one global token) and FGFS (one memory token per second).

**VFA** (video feature aggregation, MTCV2M ``TemporalAggregatorWithConv``): Conv1d(k=3) +
GELU over the per-second frame tokens, mean over time, Linear to ``d_model``. The result
is one global token the LM places before the music (a prefix).

**FGFS** (fine-grained feature selection, MTCV2M ``fusionnet.py``), per second:

1. the frame's patch grid is pooled by Conv2d(2x2, stride 2) to ``P / 4`` tokens;
2. context and frame tokens are projected to ``width`` and form a 2-token sequence
   ``[context, frame]``, layer-normed;
3. each of ``n_blocks`` blocks runs self-attention over the two tokens, forms a query
   ``sigma(alpha) * h_context + (1 - sigma(alpha)) * h_frame`` (``alpha`` learned per
   channel), lets it cross-attend to the pooled patches, then an MLP (4x, GELU);
4. every block but the last also forms ``sigma(beta) * h_context + (1 - sigma(beta)) *
   h_frame`` from the same self-attended pair; the next block's 2-token input is
   ``[that carry, the selected token]``; the carry takes the context slot, the patch
   selection the frame slot (as MTCV2M concatenates them);
5. the last block's selected token goes through LayerNorm and Linear(width -> d_model).

Every second is processed independently, so output token ``t`` depends only on second
``t``'s inputs (the LM's PTAA masks rely on this to align music with video).

Deviations from MTCV2M, and why:

- **Pre-norm residual sub-layers.** MTCV2M's block has no residual path at all: each
  sub-layer's output (attention -> Linear -> LayerNorm) replaces its input, so every
  gradient must pass through every attention. Here each sub-layer is ``x + f(norm(x))``
  as in the LM, which trains stably from scratch at any depth. The gates, the query and
  the carry are exactly MTCV2M's.
- **LayerNorm on the pooled patches** before they serve as keys/values: patch tokens
  come from several encoders (CLIP's pre-``ln_post`` states, or the embedded encoder's
  statistics) with very different scales.
- The frame token is projected to ``width`` (MTCV2M's CLS token is already 768-d, the
  fusion width) and GELU replaces QuickGELU.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cuecraft.errors import ParameterError
from cuecraft.models.attention import check_int


def _masked_mean(x: torch.Tensor, time_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over dim 1 of ``x`` ``[B, T, D]``, over the seconds where ``time_mask`` ``[B, T]`` is True."""
    if time_mask is None:
        return x.mean(dim=1)
    w = time_mask.to(x.dtype)[..., None]  # [B, T, 1]
    return (x * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


def check_time_mask(time_mask: torch.Tensor | None, *, batch: int, n_seconds: int) -> torch.Tensor | None:
    """A ``[B, T]`` bool mask, True on the valid seconds, which must come first in each row."""
    if time_mask is None:
        return None
    if not isinstance(time_mask, torch.Tensor) or time_mask.shape != (batch, n_seconds):
        shape = tuple(time_mask.shape) if isinstance(time_mask, torch.Tensor) else type(time_mask).__name__
        raise ParameterError(f"time_mask must be a [{batch}, {n_seconds}] tensor, got {shape}")
    time_mask = time_mask.bool()
    lengths = time_mask.sum(dim=1)  # [B]
    if bool((lengths < 1).any()):
        raise ParameterError(f"time_mask has a sequence with no valid second: lengths {lengths.tolist()}")
    if not torch.equal(time_mask, torch.arange(n_seconds, device=time_mask.device)[None] < lengths[:, None]):
        raise ParameterError("time_mask must be True on each sequence's first seconds and False after "
                             "(padding at the end)")
    return time_mask


class VideoFeatureAggregation(nn.Module):
    """VFA: per-second frame tokens -> one global token ``[B, 1, d_model]``.

    Parameters
    ----------
    frame_dim : int
        Size of a frame token.
    d_model : int
        LM width.
    kernel : int
        Odd Conv1d kernel size (the output has as many seconds as the input).
    """

    def __init__(self, *, frame_dim: int, d_model: int, kernel: int = 3):
        super().__init__()
        check_int("frame_dim", frame_dim)
        check_int("d_model", d_model)
        if check_int("kernel", kernel) % 2 == 0:
            raise ParameterError(f"kernel must be odd, got {kernel!r}")
        self.conv = nn.Conv1d(frame_dim, frame_dim, kernel, padding=kernel // 2)
        self.proj = nn.Linear(frame_dim, d_model)

    def forward(self, frame: torch.Tensor, *, time_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``frame`` ``[B, T, Df]`` (and a ``[B, T]`` validity mask) -> ``[B, 1, d_model]``."""
        if frame.dim() != 3 or frame.shape[2] != self.conv.in_channels:
            raise ParameterError(f"frame must be [B, T, {self.conv.in_channels}], got {tuple(frame.shape)}")
        time_mask = check_time_mask(time_mask, batch=frame.shape[0], n_seconds=frame.shape[1])
        if time_mask is not None:  # padding then looks like the conv's own zero padding
            frame = frame * time_mask[..., None].to(frame.dtype)
        h = F.gelu(self.conv(frame.transpose(1, 2))).transpose(1, 2)  # [B, T, Df]
        return self.proj(_masked_mean(h, time_mask))[:, None]  # [B, 1, D]


class SelectionBlock(nn.Module):
    """One FGFS block on ``[N, 2, width]`` ``[context, frame]`` pairs (N = batch x seconds)."""

    def __init__(self, *, width: int, n_heads: int, dropout: float, carry: bool):
        super().__init__()
        scale = width ** -0.5
        self.norm_self = nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, n_heads, dropout=dropout, batch_first=True)
        self.alpha = nn.Parameter(scale * torch.randn(width))
        self.beta = nn.Parameter(scale * torch.randn(width)) if carry else None
        self.norm_query = nn.LayerNorm(width)
        self.cross_attn = nn.MultiheadAttention(width, n_heads, dropout=dropout, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, pair: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """``pair`` ``[N, 2, W]``, ``patches`` ``[N, P', W]`` -> next pair ``[N, 2, W]`` (last block: ``[N, 1, W]``)."""
        h = self.norm_self(pair)
        pair = pair + self.drop(self.self_attn(h, h, h, need_weights=False)[0])  # [N, 2, W]
        alpha = torch.sigmoid(self.alpha)  # [W]
        query = (alpha * pair[:, 0] + (1 - alpha) * pair[:, 1])[:, None]  # [N, 1, W]
        q = self.norm_query(query)
        selected = query + self.drop(self.cross_attn(q, patches, patches, need_weights=False)[0])  # [N, 1, W]
        selected = selected + self.drop(self.mlp(self.norm_mlp(selected)))
        if self.beta is None:
            return selected
        beta = torch.sigmoid(self.beta)
        carry = (beta * pair[:, 0] + (1 - beta) * pair[:, 1])[:, None]  # [N, 1, W]
        return torch.cat([carry, selected], dim=1)  # [N, 2, W]


class FineGrainedFeatureSelection(nn.Module):
    """FGFS: per-second patch, frame and context tokens -> memory ``[B, T, d_model]``.

    Parameters
    ----------
    patch_dim, frame_dim, context_dim : int
        Sizes of the patch, frame and context tokens.
    width : int
        Internal width (MTCV2M: 768).
    n_blocks : int
        Selection blocks L (MTCV2M: 4 in stage 1).
    n_heads : int
        Attention heads (``width % n_heads == 0``).
    d_model : int
        LM width.
    grid : int, (int, int) or None
        Patch grid (rows, columns), both even; None = a square grid inferred from P,
        which must then be a perfect square with an even side.
    dropout : float
        Dropout in the blocks (training only).
    """

    def __init__(self, *, patch_dim: int, frame_dim: int, context_dim: int, width: int, n_blocks: int,
                 n_heads: int, d_model: int, grid: int | tuple[int, int] | None = None, dropout: float = 0.0):
        super().__init__()
        for name, value in (("patch_dim", patch_dim), ("frame_dim", frame_dim), ("context_dim", context_dim),
                            ("width", width), ("n_blocks", n_blocks), ("n_heads", n_heads), ("d_model", d_model)):
            check_int(name, value)
        if width % n_heads:
            raise ParameterError(f"width = {width!r} must be divisible by n_heads = {n_heads!r}")
        if not 0.0 <= dropout < 1.0:
            raise ParameterError(f"dropout must be in [0, 1), got {dropout!r}")
        self.grid = None if grid is None else self._check_grid(grid)
        self.patch_dim, self.width = patch_dim, width
        self.pool = nn.Conv2d(patch_dim, width, kernel_size=2, stride=2)
        self.norm_patches = nn.LayerNorm(width)
        self.context_proj = nn.Linear(context_dim, width)
        self.frame_proj = nn.Linear(frame_dim, width)
        self.norm_in = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(SelectionBlock(width=width, n_heads=n_heads, dropout=dropout,
                                                   carry=i < n_blocks - 1) for i in range(n_blocks))
        self.norm_out = nn.LayerNorm(width)
        self.out = nn.Linear(width, d_model)

    @staticmethod
    def _check_grid(grid) -> tuple[int, int]:
        rows, cols = (grid, grid) if isinstance(grid, int) and not isinstance(grid, bool) else tuple(grid)
        for value in (rows, cols):
            if isinstance(value, bool) or not isinstance(value, int) or value < 2 or value % 2:
                raise ParameterError(f"grid must be even sizes >= 2 (rows, columns), got {grid!r}")
        return rows, cols

    def grid_of(self, n_patches: int) -> tuple[int, int]:
        """The (rows, columns) patch grid for ``n_patches`` patch tokens per second."""
        if self.grid is not None:
            if self.grid[0] * self.grid[1] != n_patches:
                raise ParameterError(f"P = {n_patches} patches do not fill the {self.grid[0]}x{self.grid[1]} grid")
            return self.grid
        side = math.isqrt(n_patches)
        if side * side != n_patches or side % 2:
            raise ParameterError(f"P = {n_patches} patches must be a square grid with an even side "
                                 f"(e.g. 576 = 24x24; drop a CLS token first)")
        return side, side

    def forward(self, patch: torch.Tensor, frame: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``patch`` ``[B, T, P, Dp]``, ``frame`` ``[B, T, Df]``, ``context`` ``[B, T, Dc]`` -> ``[B, T, d_model]``."""
        if patch.dim() != 4 or patch.shape[3] != self.patch_dim:
            raise ParameterError(f"patch must be [B, T, P, {self.patch_dim}], got {tuple(patch.shape)}")
        B, T, P, _ = patch.shape
        for name, x in (("frame", frame), ("context", context)):
            if x.dim() != 3 or x.shape[:2] != (B, T):
                raise ParameterError(f"{name} must be [{B}, {T}, D] like patch, got {tuple(x.shape)}")
        rows, cols = self.grid_of(P)
        # patch index = row * cols + col (row-major, as ViT flattens its grid)
        grid = patch.reshape(B * T, rows, cols, self.patch_dim).permute(0, 3, 1, 2)  # [BT, Dp, rows, cols]
        pooled = self.pool(grid).flatten(2).transpose(1, 2)  # [BT, P/4, W]
        pooled = self.norm_patches(pooled)
        pair = torch.stack([self.context_proj(context), self.frame_proj(frame)], dim=2)  # [B, T, 2, W]
        pair = self.drop(self.norm_in(pair)).reshape(B * T, 2, self.width)  # [BT, 2, W]
        for block in self.blocks:
            pair = block(pair, pooled)
        return self.out(self.norm_out(pair[:, 0])).reshape(B, T, -1)  # [B, T, D]
