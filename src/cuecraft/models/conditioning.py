"""Visual conditioning for the token LM: batched per-second visual features -> memory, prefix, masks.

Two kinds share one interface (:class:`VideoConditioner`):

- ``"gvmgen"``: memory = the spatial Q-Former's one token per second
  (``models/hierarchical.py``); no prefix; every LM layer cross-attends to every token
  (no mask, unless padding must be hidden).
- ``"mtcv2m"``: prefix = VFA's global token, memory = FGFS's one token per second
  (``models/fgfs.py``), and PTAA masks per LM layer (``models/attention.py``).

The LM call is ``lm(tokens, memory=c.memory, prefix=c.prefix, memory_mask=masks)`` with
``masks = conditioner.masks(c, n_layers=..., n_steps=..., steps_per_second=...)``; when
decoding with a cache, pass the prefix on the first call only and the same memory and
masks on every call (their rows are absolute positions).

**Null condition** (classifier-free guidance, :meth:`VideoConditioner.null`): zeros for
the memory and the prefix. With the LM's bias-free key/value projections, attending to
zeros adds exactly nothing, so the unconditional branch is "no video"; the zero prefix
keeps the sequence the same length, so both branches batch together and share masks.
Unlike MTCV2M (which nulled only its global token for CFG), the whole visual condition
is nulled.

**Dropout, training mode only** (per sequence, :meth:`torch.nn.Module.train`):

- ``p_drop``: the whole condition becomes the null condition (GVMGen 0.3; MTCV2M's CFG
  dropout 0.1) - this is what CFG's unconditional branch is trained on;
- ``p_prefix``: the global token alone becomes zeros (MTCV2M stage 1: 0.5);
- ``p_time``: time dropout (MTCV2M 0.1) on the memory: with probability ``p_time / 2``
  a random span of seconds is nulled, with probability ``p_time / 2`` everything *but* a
  random span is nulled (MTCV2M meant this split but wrote ``p // 2``, which is 0, so
  only the second branch ever ran; it also ran at inference).

Defaults (``None``) are each paper's: gvmgen ``p_drop=0.3, p_prefix=0, p_time=0``;
mtcv2m ``p_drop=0.1, p_prefix=0.5, p_time=0.1``. In MTCV2M time dropout acts on the
controls (``models/guidance.py`` owns those); here it acts on the visual memory.

**Long videos.** For a window of music in a longer video, slice the features with
:func:`~cuecraft.models.attention.aligned_seconds` and pass its ``time_offset`` to
:meth:`VideoConditioner.masks`; the global token is then that window's, as in training
on fixed-length clips.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from cuecraft.errors import ParameterError
from cuecraft.models.attention import WINDOWS, check_int, check_windows, ptaa_masks
from cuecraft.models.fgfs import FineGrainedFeatureSelection, VideoFeatureAggregation, check_time_mask
from cuecraft.models.hierarchical import SpatialQFormer

if TYPE_CHECKING:
    from cuecraft.models.visual.base import VisualFeatures

KINDS = ("gvmgen", "mtcv2m")
PAPER_DEFAULTS = {
    "gvmgen": dict(n_layers=6, p_drop=0.3, p_prefix=0.0, p_time=0.0),
    "mtcv2m": dict(n_layers=4, p_drop=0.1, p_prefix=0.5, p_time=0.1),
}


@dataclass(frozen=True)
class Conditioning:
    """What the LM takes from the video.

    Attributes
    ----------
    memory : Tensor ``[B, S, D]``
        Cross-attention memory, one token per second (zeros on padded seconds).
    prefix : Tensor ``[B, 1, D]`` or None
        Embeddings placed before the music (mtcv2m's global token).
    time_mask : BoolTensor ``[B, S]`` or None
        True on valid seconds; None when every second is valid.
    """

    memory: torch.Tensor
    prefix: torch.Tensor | None = None
    time_mask: torch.Tensor | None = None

    @property
    def n_prefix(self) -> int:
        return 0 if self.prefix is None else int(self.prefix.shape[1])

    @property
    def n_seconds(self) -> int:
        return int(self.memory.shape[1])


def stack_features(features: Sequence["VisualFeatures"]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                  torch.Tensor | None]:
    """Batch per-video features, zero-padding the shorter videos at the end.

    Parameters
    ----------
    features : sequence of VisualFeatures
        One per video, all from the same encoder (same token sizes).

    Returns
    -------
    patch ``[B, T, P, Dp]``, frame ``[B, T, Df]``, context ``[B, T, Dc]``, time_mask ``[B, T]`` or None
        ``T`` is the longest video's seconds; the mask is None when all are that long.
    """
    if not features:
        raise ParameterError("features must hold at least one video's VisualFeatures, got none")
    dims = {(f.patch.shape[1:], f.frame.shape[1], f.context.shape[1]) for f in features}
    if len(dims) > 1:
        raise ParameterError(f"features come with different token sizes: {sorted(map(str, dims))}")
    lengths = [int(f.frame.shape[0]) for f in features]
    T = max(lengths)

    def pad(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x.new_zeros((T - x.shape[0],) + tuple(x.shape[1:]))], dim=0)

    patch = torch.stack([pad(f.patch) for f in features])  # [B, T, P, Dp]
    frame = torch.stack([pad(f.frame) for f in features])  # [B, T, Df]
    context = torch.stack([pad(f.context) for f in features])  # [B, T, Dc]
    if min(lengths) == T:
        return patch, frame, context, None
    time_mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]  # [B, T]
    return patch, frame, context, time_mask


def _probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ParameterError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


class VideoConditioner(nn.Module):
    """Turns batched visual features into the LM's memory, prefix and cross-attention masks.

    Parameters
    ----------
    kind : {"gvmgen", "mtcv2m"}
        Which paper's conditioning.
    patch_dim : int
        Size of a patch token.
    frame_dim, context_dim : int or None
        Sizes of the frame and context tokens (needed by "mtcv2m" only).
    d_model : int
        LM width.
    width : int
        Internal width of the Q-Former / FGFS.
    n_heads : int
        Their attention heads.
    n_layers : int or None
        Q-Former layers (default 6) or FGFS blocks (default 4).
    n_queries : int
        Q-Former queries ("gvmgen").
    windows : sequence of int
        PTAA windows in seconds, cycled over LM layers; 0 = full ("mtcv2m").
    p_drop, p_prefix, p_time : float or None
        Training-only dropout probabilities (see the module docstring); None = the paper's.
    dropout : float
        Dropout inside the Q-Former / FGFS (training only).
    """

    def __init__(self, *, kind: str, patch_dim: int, frame_dim: int | None = None, context_dim: int | None = None,
                 d_model: int, width: int = 256, n_heads: int = 4, n_layers: int | None = None, n_queries: int = 16,
                 windows: Sequence[int] = WINDOWS, p_drop: float | None = None, p_prefix: float | None = None,
                 p_time: float | None = None, dropout: float = 0.0):
        super().__init__()
        if kind not in KINDS:
            raise ParameterError(f"kind must be one of {KINDS}, got {kind!r}")
        defaults = PAPER_DEFAULTS[kind]
        self.kind, self.d_model = kind, check_int("d_model", d_model)
        self.windows = check_windows(windows)
        self.p_drop = _probability("p_drop", defaults["p_drop"] if p_drop is None else p_drop)
        self.p_prefix = _probability("p_prefix", defaults["p_prefix"] if p_prefix is None else p_prefix)
        self.p_time = _probability("p_time", defaults["p_time"] if p_time is None else p_time)
        n_layers = defaults["n_layers"] if n_layers is None else n_layers
        self.qformer = self.vfa = self.fgfs = None
        if kind == "gvmgen":
            self.qformer = SpatialQFormer(patch_dim=patch_dim, width=width, n_queries=n_queries, n_layers=n_layers,
                                          n_heads=n_heads, d_model=d_model, dropout=dropout)
        else:
            for name, value in (("frame_dim", frame_dim), ("context_dim", context_dim)):
                if value is None:
                    raise ParameterError(f"{name} is needed by kind 'mtcv2m', got None")
            self.vfa = VideoFeatureAggregation(frame_dim=frame_dim, d_model=d_model)
            self.fgfs = FineGrainedFeatureSelection(patch_dim=patch_dim, frame_dim=frame_dim, context_dim=context_dim,
                                                    width=width, n_blocks=n_layers, n_heads=n_heads, d_model=d_model,
                                                    dropout=dropout)

    def forward(self, patch: torch.Tensor, frame: torch.Tensor | None = None, context: torch.Tensor | None = None,
                *, time_mask: torch.Tensor | None = None) -> Conditioning:
        """Condition from batched features.

        Parameters
        ----------
        patch : Tensor ``[B, T, P, Dp]``
        frame : Tensor ``[B, T, Df]`` or None
        context : Tensor ``[B, T, Dc]`` or None
            Per-second visual tokens (``frame`` and ``context`` are used by "mtcv2m").
        time_mask : BoolTensor ``[B, T]`` or None
            True on each sequence's valid seconds (padding at the end).

        Returns
        -------
        Conditioning
            With training-only dropout applied in training mode.
        """
        if not isinstance(patch, torch.Tensor) or patch.dim() != 4:
            shape = tuple(patch.shape) if isinstance(patch, torch.Tensor) else type(patch).__name__
            raise ParameterError(f"patch must be a [B, T, P, Dp] tensor, got {shape}")
        B, T = patch.shape[:2]
        time_mask = check_time_mask(time_mask, batch=B, n_seconds=T)
        prefix = None
        if self.kind == "gvmgen":
            memory = self.qformer(patch)  # [B, T, D]
        else:
            for name, x in (("frame", frame), ("context", context)):
                if not isinstance(x, torch.Tensor):
                    raise ParameterError(f"{name} features are needed by kind 'mtcv2m', got {type(x).__name__}")
            prefix = self.vfa(frame, time_mask=time_mask)  # [B, 1, D]
            memory = self.fgfs(patch, frame, context)  # [B, T, D]
        keep = None if time_mask is None else time_mask[..., None]  # [B, T, 1]
        if self.training:
            memory, prefix, keep = self._dropout(memory, prefix, keep, time_mask)
        if keep is not None:
            memory = torch.where(keep, memory, torch.zeros_like(memory))
        return Conditioning(memory=memory, prefix=prefix, time_mask=time_mask)

    def _dropout(self, memory, prefix, keep, time_mask):
        B, T, _ = memory.shape
        device = memory.device
        if self.p_drop > 0:
            whole = (torch.rand(B, device=device) >= self.p_drop)[:, None, None]  # [B, 1, 1]
            memory = torch.where(whole, memory, torch.zeros_like(memory))
            if prefix is not None:
                prefix = torch.where(whole, prefix, torch.zeros_like(prefix))
        if prefix is not None and self.p_prefix > 0:
            kept = (torch.rand(B, device=device) >= self.p_prefix)[:, None, None]
            prefix = torch.where(kept, prefix, torch.zeros_like(prefix))
        if self.p_time > 0:
            lengths = torch.full((B,), T, device=device) if time_mask is None else time_mask.sum(dim=1)
            span = self.time_dropout_mask(lengths, n_seconds=T, p=self.p_time)[..., None]  # [B, T, 1]
            keep = span if keep is None else keep & span
        return memory, prefix, keep

    @staticmethod
    def time_dropout_mask(lengths: torch.Tensor, *, n_seconds: int, p: float) -> torch.Tensor:
        """``[B, n_seconds]`` bool, False on the seconds time dropout nulls.

        For each sequence (valid seconds ``[0, length)``), a random span ``[a, b)`` with
        ``0 <= a < b <= length`` is drawn; with probability ``p / 2`` the span is nulled,
        with probability ``p / 2`` every valid second but the span is, otherwise nothing.
        Padded seconds stay True: hiding them is the time mask's job.
        """
        B = lengths.shape[0]
        device = lengths.device
        lengths = lengths.long()
        a = (torch.rand(B, device=device) * lengths).long()  # [B], in [0, length)
        b = a + 1 + (torch.rand(B, device=device) * (lengths - a)).long()  # [B], in (a, length]
        cols = torch.arange(n_seconds, device=device)[None]  # [1, S]
        inside = (cols >= a[:, None]) & (cols < b[:, None])  # [B, S]
        u = torch.rand(B, device=device)[:, None]
        drop_span, keep_span = u < p / 2, (u >= p / 2) & (u < p)
        keep = torch.where(drop_span, ~inside, torch.where(keep_span, inside, torch.ones_like(inside)))
        return keep | (cols >= lengths[:, None])  # [B, S]

    def null(self, batch: int, n_seconds: int) -> Conditioning:
        """The unconditional condition for classifier-free guidance: zero memory (and zero prefix)."""
        check_int("batch", batch)
        check_int("n_seconds", n_seconds)
        ref = next(self.parameters())
        memory = ref.new_zeros(batch, n_seconds, self.d_model)
        prefix = ref.new_zeros(batch, 1, self.d_model) if self.kind == "mtcv2m" else None
        return Conditioning(memory=memory, prefix=prefix)

    def masks(self, cond: Conditioning, *, n_layers: int, n_steps: int, steps_per_second: float,
              time_offset: float = 0.0) -> torch.Tensor | list[torch.Tensor] | None:
        """Cross-attention masks for :class:`~cuecraft.models.lm.TokenLM` (``memory_mask``).

        Parameters
        ----------
        cond : Conditioning
            From :meth:`forward` or :meth:`null` (sets the seconds, prefix and padding).
        n_layers : int
            The LM's layers.
        n_steps : int
            Music steps after the prefix (the longest sequence these masks will serve).
        steps_per_second : float
            Music steps per second.
        time_offset : float
            Seconds from memory second 0 to music step 0 (windowed continuation).

        Returns
        -------
        None, Tensor or list of Tensor
            "gvmgen": None, or one ``[B, 1, L, S]`` padding mask when ``cond`` has a
            ``time_mask``. "mtcv2m": one PTAA mask per layer, ``[L, S]``, or ``[B, 1, L, S]``
            with a ``time_mask`` (each sequence's windows follow its own length). ``L`` is
            ``cond.n_prefix + n_steps``.
        """
        S, P, device = cond.n_seconds, cond.n_prefix, cond.memory.device
        check_int("n_steps", n_steps, minimum=0)
        L = P + n_steps
        if self.kind == "gvmgen":
            if cond.time_mask is None:
                return None
            return cond.time_mask[:, None, None, :].expand(-1, 1, L, S)  # [B, 1, L, S]
        kw = dict(n_layers=n_layers, n_steps=n_steps, steps_per_second=steps_per_second, windows=self.windows,
                  n_prefix=P, time_offset=time_offset, device=device)
        if cond.time_mask is None:
            return ptaa_masks(n_seconds=S, **kw)
        per_length = {}
        for length in sorted(set(cond.time_mask.sum(dim=1).tolist())):
            masks = ptaa_masks(n_seconds=int(length), **kw)  # [L, length] each
            per_length[length] = [torch.nn.functional.pad(m, (0, S - int(length))) for m in masks]  # [L, S]
        lengths = cond.time_mask.sum(dim=1).tolist()
        return [torch.stack([per_length[n][i] for n in lengths])[:, None] for i in range(n_layers)]  # [B, 1, L, S]
