"""GVMGen's spatial attention: a Q-Former that turns each second's patches into one token.

GVMGen (Zuo et al., AAAI 2025) has two attention levels:

- **spatial** (this module): ``n_queries`` (16) learnable queries go through ``n_layers``
  (6) layers of self-attention, cross-attention to one frame's patch tokens on every
  ``cross_every``-th layer (layers 0, 2, 4) and an MLP; the queries are then mean-pooled,
  normed and projected to ``d_model``: **one visual token per second**, ``[B, T, D]``;
- **temporal**: every LM layer cross-attends to all those tokens
  (:class:`~cuecraft.models.lm.TokenLM` with ``cross_attention=True``, no mask).

**No positional embedding** is added to the visual tokens, in time or within a frame.
GVMGen leaves them out on purpose: the music attends to visual *content*, so the same
picture is scored alike wherever it occurs in a video, and videos of any length use the
same weights; the order of the music comes from the LM's own positions. Within a frame,
the queries treat the patches as a set; spatial layout is whatever the visual encoder
put into each patch token (CLIP adds its own positions before its transformer). Hence
permuting a frame's patches leaves its token unchanged, and permuting the seconds
permutes the tokens.

Facts from GVMGen's code (``module/encoder/model.py``), and what is kept:

- the queries are N(0, 0.02) and layer-normed before the first layer (kept);
- post-norm sub-layers in the BERT/BLIP-2 order self-attention -> cross-attention -> MLP
  (kept); the MLP is 2x wide with GELU (kept: ``mlp_ratio=2``);
- mean over queries, CLIP's ``ln_post``, CLIP's projection, then the conditioner's
  Linear (kept as mean -> LayerNorm -> one Linear: two projections in a row are one);
- GVMGen's attention sub-layers have *no residual* (Linear -> LayerNorm replaces the
  queries; only the MLP adds its input back). Here every sub-layer is
  ``norm(x + f(x))`` as in BLIP-2's Q-Former, so the learned queries survive layer 0;
- the patch tokens are layer-normed before serving as keys/values (GVMGen feeds CLIP's
  pre-``ln_post`` states raw; patch tokens here come from encoders of various scales),
  and the key/value projections map ``patch_dim`` to ``width`` directly.
"""
from __future__ import annotations

import torch
from torch import nn

from cuecraft.errors import ParameterError
from cuecraft.models.attention import check_int


class QFormerLayer(nn.Module):
    """Self-attention over the queries, optional cross-attention to patches, MLP (post-norm)."""

    def __init__(self, *, width: int, patch_dim: int, n_heads: int, cross: bool, mlp_ratio: float, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(width, n_heads, dropout=dropout, batch_first=True)
        self.norm_self = nn.LayerNorm(width)
        self.cross = nn.MultiheadAttention(width, n_heads, dropout=dropout, batch_first=True, kdim=patch_dim,
                                           vdim=patch_dim) if cross else None
        self.norm_cross = nn.LayerNorm(width) if cross else None
        hidden = int(mlp_ratio * width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
        self.norm_mlp = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """``q`` ``[N, Q, W]``, ``patches`` ``[N, P, Dp]`` -> ``[N, Q, W]`` (N = batch x seconds)."""
        q = self.norm_self(q + self.drop(self.self_attn(q, q, q, need_weights=False)[0]))
        if self.cross is not None:
            q = self.norm_cross(q + self.drop(self.cross(q, patches, patches, need_weights=False)[0]))
        return self.norm_mlp(q + self.drop(self.mlp(q)))


class SpatialQFormer(nn.Module):
    """GVMGen's spatial Q-Former: patches ``[B, T, P, Dp]`` -> one token per second ``[B, T, d_model]``.

    Parameters
    ----------
    patch_dim : int
        Size of a patch token.
    width : int
        Query width (GVMGen: CLIP ViT-L's 1024).
    n_queries : int
        Learnable queries (GVMGen: 16).
    n_layers : int
        Q-Former layers (GVMGen: 6).
    cross_every : int
        Layer ``i`` cross-attends to the patches when ``i % cross_every == 0`` (GVMGen: 2,
        i.e. layers 0, 2, 4).
    n_heads : int
        Attention heads (``width % n_heads == 0``).
    d_model : int
        LM width.
    mlp_ratio : float
        MLP hidden width over ``width`` (GVMGen: 2).
    dropout : float
        Dropout in the layers (training only; GVMGen: 0.1).
    """

    def __init__(self, *, patch_dim: int, width: int, n_queries: int = 16, n_layers: int = 6, cross_every: int = 2,
                 n_heads: int, d_model: int, mlp_ratio: float = 2.0, dropout: float = 0.0):
        super().__init__()
        for name, value in (("patch_dim", patch_dim), ("width", width), ("n_queries", n_queries),
                            ("n_layers", n_layers), ("cross_every", cross_every), ("n_heads", n_heads),
                            ("d_model", d_model)):
            check_int(name, value)
        if width % n_heads:
            raise ParameterError(f"width = {width!r} must be divisible by n_heads = {n_heads!r}")
        if not mlp_ratio > 0:
            raise ParameterError(f"mlp_ratio must be > 0, got {mlp_ratio!r}")
        if not 0.0 <= dropout < 1.0:
            raise ParameterError(f"dropout must be in [0, 1), got {dropout!r}")
        self.patch_dim = patch_dim
        self.queries = nn.Parameter(torch.randn(n_queries, width) * 0.02)  # [Q, W]
        self.norm_queries = nn.LayerNorm(width)
        self.norm_patches = nn.LayerNorm(patch_dim)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            QFormerLayer(width=width, patch_dim=patch_dim, n_heads=n_heads, cross=i % cross_every == 0,
                         mlp_ratio=mlp_ratio, dropout=dropout) for i in range(n_layers))
        self.norm_out = nn.LayerNorm(width)
        self.out = nn.Linear(width, d_model)

    @property
    def cross_layers(self) -> list[int]:
        """Indices of the layers that cross-attend to the patches."""
        return [i for i, layer in enumerate(self.layers) if layer.cross is not None]

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        """``patch`` ``[B, T, P, Dp]`` -> ``[B, T, d_model]``; token ``t`` sees only second ``t``'s patches."""
        if patch.dim() != 4 or patch.shape[3] != self.patch_dim:
            raise ParameterError(f"patch must be [B, T, P, {self.patch_dim}], got {tuple(patch.shape)}")
        B, T, P, _ = patch.shape
        patches = self.norm_patches(patch.reshape(B * T, P, self.patch_dim))  # [BT, P, Dp]
        q = self.drop(self.norm_queries(self.queries).expand(B * T, -1, -1))  # [BT, Q, W]
        for layer in self.layers:
            q = layer(q, patches)
        return self.out(self.norm_out(q.mean(dim=1))).reshape(B, T, -1)  # [B, T, D]
