"""GVMGen's evaluation model: global video–music relevance and local temporal alignment.

GVMGen (Zuo et al., AAAI 2025; ``evaluation_model/eval_clip.py``) projects per-second video and
music features to ``width`` and runs ``n_blocks`` blocks of *shared* cross-attention: each block
owns one attention module that both streams use, with separate norms and MLPs per stream. Scores:

- **global relevance**: pooled embeddings trained CLIP-style (symmetric InfoNCE), scored as the
  softmax over the batch's music read on the diagonal: the probability that a video picks its
  own music among ``B`` candidates. Chance is ``1 / B``, so ``B`` is in the metric's name
  (``relevance_global_b16``);
- **local temporal alignment**: the mean diagonal of the last block's ``[T, T]`` video→music
  attention map (mean over heads), trained towards the diagonal with an MSE.

Where this differs from GVMGen's code, on purpose:

- the shared attention's second use is music→video. GVMGen calls it with video queries, music
  keys and video *values* (``attn(v, m, v)``), which hands the music stream the video's own map;
  we read that as a slip for the symmetric form the paper describes;
- both streams get sinusoidal time positions (GVMGen defines an encoding but never applies it),
  so the attention can prefer the same second when content is ambiguous. Positions alone could
  reach the diagonal without looking at the content, blind to a time shift, so the trainer also
  cuts pairs with a known offset and targets the *true* correspondence (``relevance_train``);
- the global logits encode every (video, candidate music) combination jointly (``B x B``
  passes). GVMGen compares embeddings from each pair's own pass; after cross-attention each
  carries its partner's content, so the model learns "the pair I was encoded with" and scores
  mismatched pairs like true ones (we measured exactly that). All combinations remove that;
- embeddings are L2-normalised (GVMGen's comment says cosine, its code does not normalise) and
  mean-pooled over the real seconds instead of a ``Linear(30, 1)``, so shorter clips fit.

Music features need no download (:func:`music_features`: per-second log-mel and onset
statistics; GVMGen used EnCodec latents). Video features come from the visual encoders
(:func:`video_features`); the encoder call stays outside the model.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cuecraft.errors import MediaError, ParameterError
from cuecraft.evaluation.relevance_features import (FEATURE_SR, MUSIC_DIM, MUSIC_FEATURES,  # noqa: F401
                                                   music_features, video_features)

MODEL_KIND = "cuecraft-relevance-1"


def _sinusoids(length: int, width: int) -> torch.Tensor:
    position = torch.arange(length, dtype=torch.float32)[:, None]  # [T, 1]
    # Periods from 2 s up to ~60 s: seconds are the unit, and 30 s windows are the scale.
    rate = torch.exp(-math.log(30.0) * torch.arange(0, width, 2, dtype=torch.float32) / width) * math.pi
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate[: width // 2])
    return table  # [T, W]


class _SharedCrossBlock(nn.Module):
    """One attention module used in both directions; norms and MLPs are per stream."""

    def __init__(self, *, width: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.norm_video = nn.LayerNorm(width)
        self.norm_music = nn.LayerNorm(width)
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)
        self.mlp_video = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(),
                                       nn.Dropout(dropout), nn.Linear(2 * width, width))
        self.mlp_music = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(),
                                       nn.Dropout(dropout), nn.Linear(2 * width, width))

    def attend(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor):
        B, T, W = x.shape
        S, H = memory.shape[1], self.n_heads
        q = self.query(x).view(B, T, H, W // H).transpose(1, 2)  # [B, H, T, W/H]
        k = self.key(memory).view(B, S, H, W // H).transpose(1, 2)  # [B, H, S, W/H]
        v = self.value(memory).view(B, S, H, W // H).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(W // H)  # [B, H, T, S]
        scores = scores.masked_fill(~memory_mask[:, None, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)  # [B, H, T, S]
        mixed = (weights @ v).transpose(1, 2).reshape(B, T, W)  # [B, T, W]
        return self.out(mixed), weights.mean(dim=1)  # [B, T, W], [B, T, S]

    def forward(self, video, music, mask):
        v, m = self.norm_video(video), self.norm_music(music)
        video_update, attention = self.attend(v, m, mask)  # video queries, music keys/values
        music_update, _ = self.attend(m, v, mask)  # the same module, the other way round
        video = video + video_update
        music = music + music_update
        video = video + self.mlp_video(video)
        music = music + self.mlp_music(music)
        return video, music, attention


class RelevanceOutput(NamedTuple):
    video: torch.Tensor      # [B, E] unit-norm pooled video embedding
    music: torch.Tensor      # [B, E] unit-norm pooled music embedding
    attention: torch.Tensor  # [B, T, T] last block's video→music attention, mean over heads
    mask: torch.Tensor       # [B, T] True where a second is real (not padding)


class RelevanceModel(nn.Module):
    """GVMGen-style evaluation model (see the module docstring).

    Parameters
    ----------
    video_dim, music_dim : sizes of the per-second input features
    width : model width (GVMGen: 512)
    n_blocks : shared cross-attention blocks (GVMGen: 4)
    n_heads : attention heads (GVMGen: 4)
    max_seconds : longest window the model sees (GVMGen: 30); positions exist up to it
    dropout : dropout inside the MLPs (training only)
    """

    def __init__(self, *, video_dim: int, music_dim: int, width: int = 512, n_blocks: int = 4, n_heads: int = 4,
                 max_seconds: int = 30, dropout: float = 0.1):
        super().__init__()
        for name, value in (("video_dim", video_dim), ("music_dim", music_dim), ("width", width),
                            ("n_blocks", n_blocks), ("n_heads", n_heads), ("max_seconds", max_seconds)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name} = {value!r}: must be a positive integer")
        if width % n_heads or width % 2:
            raise ParameterError(f"width = {width}: must be even and divisible by n_heads = {n_heads}")
        if not 0.0 <= dropout < 1.0:
            raise ParameterError(f"dropout = {dropout!r}: must be in [0, 1)")
        self.config = {"video_dim": video_dim, "music_dim": music_dim, "width": width, "n_blocks": n_blocks,
                       "n_heads": n_heads, "max_seconds": max_seconds, "dropout": dropout}
        # Input standardisation, fitted on the training pairs and saved with the weights.
        self.register_buffer("video_mean", torch.zeros(video_dim))
        self.register_buffer("video_std", torch.ones(video_dim))
        self.register_buffer("music_mean", torch.zeros(music_dim))
        self.register_buffer("music_std", torch.ones(music_dim))
        self.register_buffer("positions", _sinusoids(max_seconds, width), persistent=False)
        self.video_in = nn.Linear(video_dim, width)
        self.music_in = nn.Linear(music_dim, width)
        self.blocks = nn.ModuleList(_SharedCrossBlock(width=width, n_heads=n_heads, dropout=dropout)
                                    for _ in range(n_blocks))
        self.video_head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width))
        self.music_head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def config_json(self) -> str:
        """Canonical JSON of the constructor arguments (stored in checkpoints, compared on load)."""
        return json.dumps(self.config, sort_keys=True)

    @torch.no_grad()
    def set_normalization(self, video: Sequence[torch.Tensor], music: Sequence[torch.Tensor]) -> None:
        """Fit the input standardisation to per-second features ``[T_i, D]`` of the training pairs."""
        for prefix, items in (("video", video), ("music", music)):
            stacked = torch.cat([torch.as_tensor(x, dtype=torch.float32) for x in items])  # [sum T, D]
            getattr(self, f"{prefix}_mean").copy_(stacked.mean(dim=0))
            # A feature constant over the training set must not blow up when it varies later.
            getattr(self, f"{prefix}_std").copy_(stacked.std(dim=0, unbiased=False).clamp_min(1e-2))

    def forward(self, video: torch.Tensor, music: torch.Tensor, *, lengths: torch.Tensor | None = None
                ) -> RelevanceOutput:
        """Embed a batch of pairs.

        Parameters
        ----------
        video : ``[B, T, video_dim]`` per-second video features
        music : ``[B, T, music_dim]`` per-second music features of the same seconds
        lengths : ``[B]`` real seconds per pair (the rest is padding); None = all ``T``
        """
        B, T = self._check(video, music)
        if lengths is None:
            lengths = torch.full((B,), T)
        mask = torch.arange(T)[None, :] < torch.as_tensor(lengths)[:, None]  # [B, T]
        v = self.video_in((video.float() - self.video_mean) / self.video_std) + self.positions[:T]  # [B, T, W]
        m = self.music_in((music.float() - self.music_mean) / self.music_std) + self.positions[:T]
        attention = None
        for block in self.blocks:
            v, m, attention = block(v, m, mask)
        weights = (mask.float() / mask.sum(dim=1, keepdim=True).clamp_min(1))[..., None]  # [B, T, 1]
        video_embedding = F.normalize(self.video_head((v * weights).sum(dim=1)), dim=-1)  # [B, W]
        music_embedding = F.normalize(self.music_head((m * weights).sum(dim=1)), dim=-1)
        return RelevanceOutput(video_embedding, music_embedding, attention, mask)

    def pair_logits(self, out: RelevanceOutput) -> torch.Tensor:
        """``[N]`` scaled cosine of each jointly encoded (video, music) combination."""
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()  # CLIP's cap keeps the softmax trainable
        return scale * (out.video * out.music).sum(dim=-1)

    def similarity(self, video: torch.Tensor, music: torch.Tensor, *, video_lengths=None, music_lengths=None,
                   chunk: int = 256) -> torch.Tensor:
        """``[Bv, Bm]`` logits of every video (rows) with every music (columns).

        Every combination is encoded jointly: the cross-attention lets each stream see the
        other, so embeddings from a pair's own forward pass would identify the pair (whatever
        its music) and the softmax over a batch would measure nothing. Costs ``Bv x Bm`` passes.
        """
        Bv, Bm = video.shape[0], music.shape[0]
        T = min(video.shape[1], music.shape[1])
        lv = torch.full((Bv,), T) if video_lengths is None else torch.as_tensor(video_lengths).clamp(max=T)
        lm = torch.full((Bm,), T) if music_lengths is None else torch.as_tensor(music_lengths).clamp(max=T)
        rows = torch.arange(Bv).repeat_interleave(Bm)  # [Bv * Bm] video of each combination
        cols = torch.arange(Bm).repeat(Bv)  # [Bv * Bm] music of each combination
        logits = []
        for start in range(0, len(rows), chunk):
            r, c = rows[start:start + chunk], cols[start:start + chunk]
            out = self(video[r, :T], music[c, :T], lengths=torch.minimum(lv[r], lm[c]))
            logits.append(self.pair_logits(out))
        return torch.cat(logits).view(Bv, Bm)

    def global_relevance(self, video: torch.Tensor, music: torch.Tensor, *, lengths=None) -> torch.Tensor:
        """``[B]``: the softmax over the batch's music, for each video, at its own music.

        The batch is the candidate set, so the value depends on ``B`` (chance is ``1 / B``);
        report it with the batch size (GVMGen: 16).
        """
        logits = self.similarity(video, music, video_lengths=lengths, music_lengths=lengths)  # [B, B]
        return logits.softmax(dim=-1).diagonal()

    def local_alignment(self, video: torch.Tensor, music: torch.Tensor, *, lengths=None) -> torch.Tensor:
        """``[B]``: mean over the real seconds of the attention-map diagonal (second t → second t)."""
        out = self(video, music, lengths=lengths)
        return attention_diagonal(out.attention, out.mask)

    def _check(self, video: torch.Tensor, music: torch.Tensor) -> tuple[int, int]:
        cfg = self.config
        if video.dim() != 3 or video.shape[-1] != cfg["video_dim"]:
            raise ParameterError(f"video features must be [B, T, {cfg['video_dim']}], got {tuple(video.shape)}")
        if music.dim() != 3 or music.shape[-1] != cfg["music_dim"]:
            raise ParameterError(f"music features must be [B, T, {cfg['music_dim']}], got {tuple(music.shape)}")
        if video.shape[:2] != music.shape[:2]:
            raise ParameterError(f"video {tuple(video.shape[:2])} and music {tuple(music.shape[:2])} features "
                                 "must cover the same [B, T]")
        if not 1 <= video.shape[1] <= cfg["max_seconds"]:
            raise ParameterError(f"T = {video.shape[1]} seconds: must be in [1, max_seconds = {cfg['max_seconds']}]")
        return int(video.shape[0]), int(video.shape[1])


def attention_diagonal(attention: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B]`` mean of ``attention[b, t, t]`` over the real seconds ``t`` of each pair."""
    diagonal = attention.diagonal(dim1=1, dim2=2)  # [B, T]
    return (diagonal * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)


@torch.no_grad()
def relevance_scores(model: RelevanceModel, video_feats: Sequence, music_feats: Sequence, *,
                     batch_size: int = 16) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-pair scores: global relevance ``[N]``, local alignment ``[N]`` and the batch size used.

    Pair ``i`` is ``video_feats[i]`` ``[T_i, Dv]`` with ``music_feats[i]`` ``[T'_i, Dm]``; both
    are cut to their common length and to the model's ``max_seconds`` (the first window, as
    GVMGen scores 30-s clips). Pairs are scored in batches of ``B = min(batch_size, N)``; a
    short last batch takes its missing candidates from the other pairs, so every video always
    chooses among exactly ``B`` pieces of music and chance stays ``1 / B``. Every (video,
    candidate music) combination is encoded jointly: ``N x B`` forward passes.
    """
    n = len(video_feats)
    if n == 0 or n != len(music_feats):
        raise ParameterError(f"relevance needs as many music as video features (and at least one pair); got "
                             f"{n} videos and {len(music_feats)} music")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise ParameterError(f"batch_size = {batch_size!r}: must be an integer >= 2")
    seconds = model.config["max_seconds"]
    pairs_v, pairs_m = [], []
    for i, (v, m) in enumerate(zip(video_feats, music_feats)):
        v, m = torch.as_tensor(v, dtype=torch.float32), torch.as_tensor(m, dtype=torch.float32)
        if v.dim() != 2 or m.dim() != 2 or min(len(v), len(m)) == 0:
            raise ParameterError(f"pair {i}: features must be non-empty [T, D], got video {tuple(v.shape)} and "
                                 f"music {tuple(m.shape)}")
        if not (torch.isfinite(v).all() and torch.isfinite(m).all()):
            raise ParameterError(f"pair {i}: features contain NaN or infinity")
        if (v.shape[1], m.shape[1]) != (model.config["video_dim"], model.config["music_dim"]):
            raise ParameterError(f"pair {i}: video/music features are {v.shape[1]}/{m.shape[1]}-d; the model "
                                 f"takes {model.config['video_dim']}/{model.config['music_dim']}-d")
        common = min(len(v), len(m), seconds)
        pairs_v.append(v[:common])
        pairs_m.append(m[:common])
    was_training = model.training
    model.eval()
    video = nn.utils.rnn.pad_sequence(pairs_v, batch_first=True)  # [N, T, Dv], zero-padded
    music = nn.utils.rnn.pad_sequence(pairs_m, batch_first=True)  # [N, T, Dm]
    lengths = torch.tensor([len(v) for v in pairs_v])  # [N]
    local = []
    for start in range(0, n, 64):
        out = model(video[start:start + 64], music[start:start + 64], lengths=lengths[start:start + 64])
        local.append(attention_diagonal(out.attention, out.mask))
    B = min(batch_size, n)
    relevance = torch.zeros(n)
    for start in range(0, n, B):
        own = list(range(start, min(start + B, n)))
        candidates = own + [j for j in range(n) if j not in own][: B - len(own)]
        logits = model.similarity(video[own], music[candidates], video_lengths=lengths[own],
                                  music_lengths=lengths[candidates])  # [b, B]
        relevance[own] = logits.softmax(dim=-1)[torch.arange(len(own)), torch.arange(len(own))]
    model.train(was_training)
    return relevance.numpy(), torch.cat(local).numpy(), B


def relevance_metrics(model: RelevanceModel, video_feats: Sequence, music_feats: Sequence, *,
                      batch_size: int = 16) -> dict[str, float]:
    """GVMGen's two scores over a set of (video, music) pairs, as ``cuecraft evaluate`` reports them.

    Returns
    -------
    dict with ``relevance_global_b{B}`` (mean probability that a video picks its own music among
    ``B`` candidates; chance ``1 / B``; absent for a single pair, where it means nothing) and
    ``relevance_local`` (mean attention-map diagonal, in [0, 1]).
    """
    relevance, local, B = relevance_scores(model, video_feats, music_feats, batch_size=batch_size)
    out = {"relevance_local": float(local.mean())}
    if len(relevance) >= 2:
        out = {f"relevance_global_b{B}": float(relevance.mean()), **out}
    return out


def load_relevance(path: str | os.PathLike, *, video_dim: int | None = None, music_dim: int | None = None,
                   video_kind: str | None = None) -> RelevanceModel:
    """Load a trained relevance model from a safetensors file, strictly.

    Parameters
    ----------
    video_dim, music_dim : the sizes of the features it will be given; a model trained on other
        features is refused rather than scoring nonsense
    video_kind : the visual encoder's name (``VisualFeatures.encoder``), checked the same way

    Raises
    ------
    MediaError
        Naming the file, for a missing or unreadable file, a file that is not a relevance
        model, feature sizes that differ, or weights that do not fit the stored config.
    """
    from cuecraft.training.checkpoints import load_weights, read_metadata

    path = Path(path)
    metadata = read_metadata(path)
    if metadata.get("model") != MODEL_KIND:
        raise MediaError(f"checkpoint '{path}': not a relevance model (model = {metadata.get('model')!r})")
    try:
        config = json.loads(metadata["model_config"])
        model = RelevanceModel(**config)
    except (KeyError, TypeError, ValueError) as exc:
        raise MediaError(f"checkpoint '{path}': unusable model_config ({exc})") from None
    for name, want in (("video_dim", video_dim), ("music_dim", music_dim)):
        if want is not None and config[name] != want:
            kind = metadata.get("video_features" if name == "video_dim" else "music_features", "?")
            raise MediaError(f"checkpoint '{path}': {name} = {config[name]} (features {kind!r}), but the features "
                             f"given have {want}")
    if video_kind is not None and metadata.get("video_features") != video_kind:
        raise MediaError(f"checkpoint '{path}': trained on video features {metadata.get('video_features')!r}, "
                         f"not {video_kind!r}")
    load_weights(path, model, expect={"model_config": metadata["model_config"]})
    model.eval()
    return model
