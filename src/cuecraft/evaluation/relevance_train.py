"""Training the relevance model (``cuecraft evaluate --train-relevance PAIRS``).

Pairs are per-second features held in memory: a folder of (video, music) files is decoded and
encoded once, up front (:func:`load_pairs`), and every step cuts random windows from those
tensors. :func:`synthetic_pairs` makes pairs whose music events follow the video events, for
tests and for checking that a training recipe can learn timing at all.

The optimisation is the shared loop (``training/fit.py``: AdamW, warm-up + cosine, clipping,
safetensors checkpoints in ``OUT/checkpoints/``, resumed when the command is run again).

Loss (GVMGen): symmetric InfoNCE over the batch (each video and each music against ``negatives``
wrong partners, every combination encoded jointly), plus the MSE between the video→music
attention map and 1 at the corresponding seconds. Half of the windows are cut with
the music offset by a few seconds from the video (``max_shift``) and the MSE then targets the
offset diagonal, the true correspondence. Without that the sinusoidal positions alone could
reach the plain diagonal and the local score could not tell aligned music from shifted music.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cuecraft.errors import MediaError, ParameterError
from cuecraft.evaluation.relevance import (FEATURE_SR, MODEL_KIND, MUSIC_FEATURES, RelevanceModel,
                                           music_features, relevance_metrics, video_features)

@dataclass(frozen=True)
class FeaturePair:
    """Per-second features of one (video, music) pair, cut to their common length."""

    name: str
    video: torch.Tensor  # [T, Dv]
    music: torch.Tensor  # [T, Dm]
    video_kind: str = "unknown"       # the visual encoder, e.g. "embedded"
    music_kind: str = MUSIC_FEATURES  # how the music features were made

    def __post_init__(self):
        video = torch.as_tensor(self.video, dtype=torch.float32)
        music = torch.as_tensor(self.music, dtype=torch.float32)
        if video.dim() != 2 or music.dim() != 2 or min(len(video), len(music)) == 0:
            raise ParameterError(f"pair '{self.name}': features must be non-empty [T, D], got video "
                                 f"{tuple(video.shape)} and music {tuple(music.shape)}")
        if not (torch.isfinite(video).all() and torch.isfinite(music).all()):
            raise ParameterError(f"pair '{self.name}': features contain NaN or infinity")
        common = min(len(video), len(music))  # a video and its music may differ by a partial second
        object.__setattr__(self, "video", video[:common])
        object.__setattr__(self, "music", music[:common])

    @property
    def seconds(self) -> int:
        return int(self.video.shape[0])


def find_pairs(path: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(video, music) files of a folder (or one self-contained file), by ``cuecraft evaluate``'s
    pairing rule (``evaluation/evaluate.collect``): ``X.scored.mp4`` is its own music, ``X.mp4``
    + ``X.wav`` (or another audio file) is a pair, anything else is skipped."""
    from cuecraft.evaluation.evaluate import collect

    path = Path(path)
    if not path.exists():
        raise MediaError(f"pairs '{path}': no such file or folder")
    found = collect([path])
    if not found.clips:
        raise MediaError(f"pairs '{path}': no (video, music) pairs ({len(found.skipped)} files skipped as unpaired "
                         "or ambiguous; name them X.scored.mp4, or X.mp4 + X.wav)")
    return [(clip.video, clip.music) for clip in found.clips]


def load_pairs(folder: str | os.PathLike, *, encoder: Callable, progress: bool = False) -> list[FeaturePair]:
    """Decode and encode every pair of ``folder`` once (see :func:`find_pairs`), in memory.

    Parameters
    ----------
    encoder : ``path -> VisualFeatures`` (e.g. ``EmbeddedEncoder().encode``); it is called
        here, outside the model, so any encoder with that interface fits
    """
    from tqdm.auto import tqdm

    from cuecraft.io.audio import load_audio

    out = []
    for video, music in tqdm(find_pairs(folder), desc="relevance features", disable=not progress):
        visual = encoder(video)
        audio = load_audio(music, sr=FEATURE_SR)
        out.append(FeaturePair(name=video.name, video=video_features(visual),
                               music=torch.from_numpy(music_features(audio, sr=FEATURE_SR)),
                               video_kind=str(visual.encoder)))
    return out


def _render_music(rng: np.random.Generator, events: list[tuple[float, int]], *, seconds: int, mood: float,
                  sr: int) -> np.ndarray:
    """A quiet drone whose pitch follows the mood, with a low thump (kind 0) or a bright click
    (kind 1) at each event time."""
    t = np.arange(seconds * sr) / sr
    pitch = 110.0 * 2.0 ** (3.0 * mood)  # three octaves of mood
    audio = 0.08 * np.sin(2 * np.pi * pitch * t) + 0.004 * rng.standard_normal(t.size)
    for time, kind in events:
        start = int(time * sr)
        n = min(int(0.25 * sr), audio.size - start)
        tail = np.arange(n) / sr
        if kind == 0:
            hit = 0.7 * np.sin(2 * np.pi * 70.0 * tail) * np.exp(-tail / 0.06)
        else:
            hit = 0.5 * rng.standard_normal(n) * np.exp(-tail / 0.01)
            hit = np.diff(hit, prepend=0.0)  # a first difference tilts the noise towards the highs
        audio[start:start + n] += hit
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def synthetic_pairs(n: int, seconds: int, *, seed: int, video_dim: int = 16) -> list[FeaturePair]:
    """Pairs whose music events follow the video events, with music rendered as real audio.

    Each pair has a mood in [0, 1] and events (about one per 2.5 s, at least 1 s apart) of two
    kinds at random times. The music side is audio rendered with numpy (a drone pitched by the
    mood, a thump or a click at each event) passed through :func:`music_features`, so the test
    exercises the real music features. The video side is synthetic per-second feature vectors,
    not frames through a visual encoder: a mood direction, an event direction per kind in the
    second holding the event, and noise (fixed random directions shared by all pairs, the
    "encoder"). Aligned pairs therefore share the event seconds and the mood, nothing else.
    """
    for name, value, low in (("n", n, 1), ("seconds", seconds, 2), ("video_dim", video_dim, 4)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ParameterError(f"{name} = {value!r}: must be an integer >= {low}")
    directions = np.random.default_rng(1234).standard_normal((3, video_dim))  # mood, kind 0, kind 1
    pairs = []
    for i in range(n):
        rng = np.random.default_rng((seed, i))
        mood = float(rng.random())
        times, time = [], float(rng.uniform(0.2, 2.0))
        while time < seconds - 0.3:
            times.append(time)
            time += 1.0 + float(rng.exponential(1.5))
        events = [(t, int(rng.integers(2))) for t in times]
        video = 0.4 * rng.standard_normal((seconds, video_dim)) + (mood - 0.5) * 2.0 * directions[0]
        for t, kind in events:
            video[int(t)] += 2.0 * directions[1 + kind]
        audio = _render_music(rng, events, seconds=seconds, mood=mood, sr=FEATURE_SR)
        pairs.append(FeaturePair(name=f"synthetic-{seed}-{i}", video=torch.from_numpy(video).float(),
                                 music=torch.from_numpy(music_features(audio, sr=FEATURE_SR)),
                                 video_kind="synthetic"))
    return pairs


def sample_windows(pairs: Sequence[FeaturePair], rng: np.random.Generator, *, batch_size: int, max_seconds: int,
                   max_shift: int, negatives: int) -> dict[str, torch.Tensor]:
    """A batch of distinct pairs cut to one window length; half of them with the music offset.

    Returns ``video`` ``[B, L, Dv]``, ``music`` ``[B, L, Dm]``, ``shift`` ``[B]`` (video second
    ``t`` of item ``b`` corresponds to music second ``t - shift[b]``) and ``offsets``
    ``[1 + K]``: 0, then ``K = min(negatives, B - 1)`` distinct offsets; video ``i`` is scored
    against music ``(i + offset) mod B`` for each, so every video and every music has ``K``
    wrong partners.
    """
    B = min(batch_size, len(pairs))
    chosen = [pairs[i] for i in rng.choice(len(pairs), size=B, replace=False)]
    shortest = min(p.seconds for p in chosen)
    length = min(max_seconds, max(shortest - max_shift, (shortest + 1) // 2))
    video = torch.empty(B, length, chosen[0].video.shape[1])
    music = torch.empty(B, length, chosen[0].music.shape[1])
    shift = torch.zeros(B, dtype=torch.long)
    for b, pair in enumerate(chosen):
        room = pair.seconds - length
        limit = min(max_shift, room)
        d = 0
        if limit > 0 and rng.random() < 0.5:
            d = int(rng.integers(1, limit + 1)) * (1 if rng.random() < 0.5 else -1)
        start = int(rng.integers(max(0, -d), room - max(0, d) + 1))
        video[b] = pair.video[start:start + length]
        music[b] = pair.music[start + d:start + d + length]
        shift[b] = d
    wrong = rng.choice(np.arange(1, B), size=min(negatives, B - 1), replace=False)
    offsets = torch.from_numpy(np.concatenate([[0], np.sort(wrong)])).long()
    return {"video": video, "music": music, "shift": shift, "offsets": offsets}


def relevance_loss(model: RelevanceModel, batch: dict[str, torch.Tensor], *,
                   alignment_weight: float = 1.0) -> torch.Tensor:
    """Symmetric InfoNCE + ``alignment_weight`` x MSE of the attention at the corresponding
    seconds towards 1 (GVMGen's two objectives, trained together).

    Each (video, music) combination is encoded jointly (see ``RelevanceModel.similarity``), so
    the contrastive term uses the ``K`` wrong partners of ``batch["offsets"]`` per item; with
    ``K = B - 1`` it is the full ``B x B`` InfoNCE.
    """
    video, music, offsets = batch["video"], batch["music"], batch["offsets"]
    B, T = video.shape[:2]
    K1 = len(offsets)
    rows = torch.arange(B).repeat(K1)  # [K1 * B] video i, for offset 0 first
    cols = (rows + offsets.repeat_interleave(B)) % B  # [K1 * B] its partner music
    out = model(video[rows], music[cols])
    logits = model.pair_logits(out).view(K1, B)  # [K1, B]: [k, i] = video i with music i + offset_k
    # Music j meets video j - offset_k in row k: gather those to score the music -> video direction.
    back = logits.gather(1, (torch.arange(B)[None, :] - offsets[:, None]) % B)  # [K1, B]
    zeros = torch.zeros(B, dtype=torch.long)
    contrastive = (F.cross_entropy(logits.T, zeros) + F.cross_entropy(back.T, zeros)) / 2
    attention = out.attention[:B]  # [B, T, T] the true pairs (offset 0)
    partner = torch.arange(T)[None, :] - batch["shift"][:, None]  # [B, T] music second of video second t
    valid = (partner >= 0) & (partner < T)
    picked = attention.gather(2, partner.clamp(0, T - 1)[..., None])[..., 0]  # [B, T]
    alignment = ((picked - 1.0) ** 2 * valid).sum() / valid.sum().clamp_min(1)
    return contrastive + alignment_weight * alignment


def train_relevance(pairs: Sequence[FeaturePair], *, steps: int, out_dir: str | os.PathLike, batch_size: int = 16,
                    lr: float = 3e-4, seed: int = 0, progress: bool = False, val_pairs: Sequence[FeaturePair] = (),
                    width: int = 512, n_blocks: int = 4, max_seconds: int = 30, max_shift: int = 8,
                    negatives: int = 15, alignment_weight: float = 1.0) -> RelevanceModel:
    """Train (or resume) a relevance model; the weights end in ``out_dir/model.safetensors``.

    Parameters
    ----------
    pairs : training pairs (all with the same feature sizes and kinds)
    steps : total optimisation steps (a resumed run continues up to this)
    out_dir : run folder: ``model.safetensors``, ``log.jsonl``, ``checkpoints/`` (resumed if present)
    batch_size : pairs per step (the contrastive candidates), at most ``len(pairs)``
    val_pairs : pairs for the validation loss in ``log.jsonl`` (default: the training pairs)
    width, n_blocks, max_seconds : the model (GVMGen: 512, 4, 30; 4 heads)
    max_shift : largest offset (s) of the shifted windows; 0 trains on aligned windows only
    negatives : wrong partners per item in the contrastive loss (``B - 1`` = all); each costs
        one more joint forward pass per item
    alignment_weight : weight of the attention MSE against the contrastive loss

    Returns
    -------
    RelevanceModel: the trained model, in eval mode (``load_relevance`` of the weights file
    gives the same model).
    """
    from cuecraft.config import TrainConfig
    from cuecraft.training.fit import fit

    pairs = list(pairs)
    if len(pairs) < 2:
        raise ParameterError(f"relevance training needs at least 2 pairs (the contrastive loss compares them), "
                             f"got {len(pairs)}")
    for name, value, low in (("steps", steps, 1), ("batch_size", batch_size, 2), ("seed", seed, 0),
                             ("max_shift", max_shift, 0), ("negatives", negatives, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ParameterError(f"{name} = {value!r}: must be an integer >= {low}")
    first = pairs[0]
    for pair in list(pairs) + list(val_pairs):
        if (pair.video.shape[1], pair.music.shape[1], pair.video_kind, pair.music_kind) != (
                first.video.shape[1], first.music.shape[1], first.video_kind, first.music_kind):
            raise ParameterError(f"pair '{pair.name}': features {pair.video_kind} {pair.video.shape[1]}-d / "
                                 f"{pair.music_kind} {pair.music.shape[1]}-d differ from pair '{first.name}'")
    torch.manual_seed(seed)
    model = RelevanceModel(video_dim=int(first.video.shape[1]), music_dim=int(first.music.shape[1]), width=width,
                           n_blocks=n_blocks, n_heads=4, max_seconds=max_seconds)
    model.set_normalization([p.video for p in pairs], [p.music for p in pairs])
    val_pairs = list(val_pairs) if len(val_pairs) >= 2 else pairs
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup=max(1, min(200, steps // 10)),
                         weight_decay=0.01, eval_every=max(1, min(250, steps)), eval_batches=4,
                         ckpt_every=max(1, min(500, steps)), seed=seed, threads=torch.get_num_threads(),
                         out_dir=str(out_dir))
    metadata = {"model": MODEL_KIND, "model_config": model.config_json(), "video_features": first.video_kind,
                "music_features": first.music_kind,
                "train": json.dumps({"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
                                     "max_shift": max_shift, "negatives": negatives,
                                     "alignment_weight": alignment_weight,
                                     "pairs": len(pairs)}, sort_keys=True)}

    def sample(rng: np.random.Generator, split: str) -> dict[str, torch.Tensor]:
        return sample_windows(pairs if split == "train" else val_pairs, rng, batch_size=batch_size,
                              max_seconds=max_seconds, max_shift=max_shift, negatives=negatives)

    result = fit(model, loss_fn=lambda m, b: relevance_loss(m, b, alignment_weight=alignment_weight),
                 sample_batch=sample, config=config, out=out_dir, metadata=metadata, progress=progress,
                 log=print if progress else (lambda message: None), desc="relevance")
    if not result.weights.is_file():
        raise MediaError(f"relevance training wrote no weights to '{result.weights}'")
    return model.eval()


def _default_encoder() -> Callable:
    try:
        from cuecraft.models.visual.embedded import EmbeddedEncoder
    except ImportError:
        raise ParameterError("no visual encoder is available (cuecraft.models.visual.embedded); "
                             "pass encoder=") from None
    return EmbeddedEncoder().encode


def train_relevance_command(pairs_path: str | os.PathLike, *, out: str | os.PathLike, steps: int = 3000,
                            batch_size: int = 16, lr: float = 3e-4, seed: int = 0, encoder: Callable | None = None,
                            width: int = 512, max_seconds: int = 30, progress: bool = True) -> dict:
    """``cuecraft evaluate --train-relevance PAIRS``: features, training, held-out scores.

    Every 10th pair (by name) is held out when there are at least 20; the trained model's
    :func:`relevance_metrics` on those pairs, and on the same videos with each other's music (the
    mismatched baseline), go to ``OUT/summary.json`` with the run's facts.
    Running the command again on the same ``OUT`` resumes the run.

    Returns
    -------
    dict: the summary written to ``OUT/summary.json``.
    """
    from cuecraft.io.files import atomic_path

    pairs = load_pairs(pairs_path, encoder=encoder or _default_encoder(), progress=progress)
    held = [p for i, p in enumerate(pairs) if len(pairs) >= 20 and i % 10 == 9]
    train = [p for p in pairs if not any(p is h for h in held)]
    out = Path(out)
    model = train_relevance(train, steps=steps, out_dir=out, batch_size=batch_size, lr=lr, seed=seed,
                            progress=progress, val_pairs=held, width=width, max_seconds=max_seconds)
    summary = {"weights": str(out / "model.safetensors"), "steps": steps, "train_pairs": len(train),
               "held_out_pairs": len(held), "video_features": pairs[0].video_kind,
               "music_features": pairs[0].music_kind}
    if len(held) >= 2:
        video = [p.video for p in held]
        summary["held_out"] = relevance_metrics(model, video, [p.music for p in held], batch_size=batch_size)
        # The same videos with each other's music: what the scores look like when nothing matches.
        summary["held_out_mismatched"] = relevance_metrics(model, video, [p.music for p in held[1:] + held[:1]],
                                                           batch_size=batch_size)
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary
