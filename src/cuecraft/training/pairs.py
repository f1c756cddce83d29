"""(video, music) training pairs for the codec backbone: shards on disk and random crops.

A shard is one ``NAME.pair.safetensors`` file per clip holding

- ``patch`` ``[S, P, Dp]``, ``frame`` ``[S, Df]``, ``context`` ``[S, Dc]``: the visual
  tokens, one per second (``models/visual``);
- ``codes`` ``[K, S * frame_rate]``: the music's codec tokens (EnCodec at ``frame_rate`` Hz);
- ``controls`` ``[S * frame_rate, 49]`` and ``presence`` ``[4]``: the controls extracted
  from that music (``controls/from_audio.py``), as features at every codec frame
  (``controls/features.features_at``), the MTCV2M stage-2 recipe;

and string metadata (``frame_rate``, ``encoder``, the source name). Clips are cut to whole
seconds so that video second ``s`` lines up with codec frames ``s * frame_rate ..``.

:func:`build_pairs` makes shards from a folder of videos whose audio track is the music
(``cuecraft dataset build``); anything else that writes this layout (a cluster job, another
extractor) feeds the same training code.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cuecraft.errors import MediaError, ParameterError
from cuecraft.io.files import atomic_path

SUFFIX = ".pair.safetensors"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
KEYS = ("patch", "frame", "context", "codes", "controls", "presence")


@dataclass(frozen=True)
class Pair:
    """One clip's tensors (see the module docstring for shapes)."""

    name: str
    patch: torch.Tensor
    frame: torch.Tensor
    context: torch.Tensor
    codes: torch.Tensor
    controls: torch.Tensor
    presence: torch.Tensor
    frame_rate: int

    @property
    def seconds(self) -> int:
        return int(self.frame.shape[0])


def write_pair(path: str | os.PathLike, pair: Pair, *, encoder: str) -> Path:
    """Write one shard atomically."""
    from safetensors.torch import save_file

    n = pair.seconds * pair.frame_rate
    if pair.codes.shape[1] != n or pair.controls.shape[0] != n:
        raise ParameterError(f"pair '{pair.name}': {pair.seconds} s at {pair.frame_rate} Hz needs {n} frames, got "
                             f"codes {tuple(pair.codes.shape)} and controls {tuple(pair.controls.shape)}")
    path = Path(path)
    tensors = {k: getattr(pair, k).contiguous() for k in KEYS}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"name": pair.name, "frame_rate": str(pair.frame_rate),
                                                "encoder": encoder, "format": "cuecraft-pair-1"})
    return path


def read_pair(path: str | os.PathLike) -> Pair:
    """Load one shard, checking that it holds every tensor with consistent lengths."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            missing = [k for k in KEYS if k not in f.keys()]
            if missing:
                raise MediaError(f"pair shard '{path}': missing tensors {', '.join(missing)}")
            tensors = {k: f.get_tensor(k) for k in KEYS}
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"pair shard '{path}': not a readable safetensors file ({exc})") from None
    try:
        rate = int(meta["frame_rate"])
    except (KeyError, ValueError):
        raise MediaError(f"pair shard '{path}': no frame_rate metadata") from None
    pair = Pair(name=meta.get("name", path.stem), frame_rate=rate, **tensors)
    n = pair.seconds * rate
    if pair.codes.dim() != 2 or pair.codes.shape[1] != n or pair.controls.shape[0] != n:
        raise MediaError(f"pair shard '{path}': {pair.seconds} s of video but codes {tuple(pair.codes.shape)} "
                         f"and controls {tuple(pair.controls.shape)} at {rate} Hz")
    return pair


class PairShards:
    """All shards of a folder, held in memory, with seeded random crops of whole seconds.

    Parameters
    ----------
    folder : a folder of ``*.pair.safetensors`` files
    seconds : crop length in seconds (clips shorter than this are used whole, padded)
    split : "train" or "validation"; every ``validation_every``-th clip (sorted by name)
        is validation, so the split is deterministic and by clip. With fewer clips than
        ``validation_every`` the last clip is the validation set and stays in training too
        (a toy run's validation loss then measures fit, not generalisation)
    """

    def __init__(self, folder: str | os.PathLike, *, seconds: int, split: str = "train", validation_every: int = 10):
        folder = Path(folder)
        if not folder.is_dir():
            raise MediaError(f"pairs folder '{folder}': no such folder")
        files = sorted(folder.glob(f"*{SUFFIX}"))
        if not files:
            raise MediaError(f"pairs folder '{folder}': no *{SUFFIX} files; build them with 'cuecraft dataset build'")
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
            raise ParameterError(f"seconds = {seconds!r}: must be a positive integer")
        if split not in ("train", "validation"):
            raise ParameterError(f"split = {split!r}: must be 'train' or 'validation'")
        if len(files) == 1:
            chosen = files  # one clip serves both splits (tests, tiny runs)
        else:
            chosen = [f for i, f in enumerate(files) if (i % validation_every == validation_every - 1) == (
                split == "validation")] or files[-1:]
        self.pairs = [read_pair(f) for f in chosen]
        rates = {p.frame_rate for p in self.pairs}
        dims = {(tuple(p.patch.shape[1:]), p.frame.shape[1], p.context.shape[1], p.codes.shape[0]) for p in self.pairs}
        if len(rates) > 1 or len(dims) > 1:
            raise MediaError(f"pairs folder '{folder}': shards disagree on frame rate or feature sizes "
                             f"({sorted(rates)}, {sorted(dims)}); rebuild them with one encoder and codec")
        self.seconds, self.frame_rate = seconds, rates.pop()

    def __len__(self) -> int:
        return len(self.pairs)

    def sample(self, rng: np.random.Generator, *, batch_size: int) -> dict[str, torch.Tensor]:
        """A batch of crops: visual ``[B, S, ...]``, codes ``[B, K, S*rate]``, controls, presence, and
        ``valid`` ``[B, S*rate]`` (False on padding past a short clip's end)."""
        S, rate = self.seconds, self.frame_rate
        out: dict[str, list] = {k: [] for k in (*KEYS, "valid")}
        for _ in range(batch_size):
            pair = self.pairs[int(rng.integers(len(self.pairs)))]
            start = int(rng.integers(0, max(0, pair.seconds - S) + 1))
            stop = min(pair.seconds, start + S)
            pad = S - (stop - start)
            for key in ("patch", "frame", "context"):
                out[key].append(_pad(getattr(pair, key)[start:stop], pad, dim=0))
            out["codes"].append(_pad(pair.codes[:, start * rate:stop * rate], pad * rate, dim=1))
            out["controls"].append(_pad(pair.controls[start * rate:stop * rate], pad * rate, dim=0))
            out["presence"].append(pair.presence)
            valid = torch.zeros(S * rate, dtype=torch.bool)
            valid[:(stop - start) * rate] = True
            out["valid"].append(valid)
        return {k: torch.stack(v) for k, v in out.items()}


def _pad(x: torch.Tensor, n: int, *, dim: int) -> torch.Tensor:
    if n == 0:
        return x
    shape = list(x.shape)
    shape[dim] = n
    return torch.cat([x, x.new_zeros(shape)], dim=dim)


def find_videos(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise MediaError(f"'{folder}': no such folder of videos")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def build_pairs(videos: str | os.PathLike, out: str | os.PathLike, *, encoder, codec, progress: bool = True,
                log: Callable[[str], None] = print) -> dict[str, int]:
    """Make one shard per video of ``videos`` (its audio track is the music) in ``out``.

    ``encoder`` is a :class:`~cuecraft.models.visual.base.VisualEncoder`; ``codec`` has
    ``encode(audio, *, sr) -> [K, T]`` codes, ``frame_rate`` and ``sampling_rate``. Existing
    shards are kept (the build resumes); a video that fails is skipped and counted.

    Returns
    -------
    counts: ``written``, ``kept`` (already built), ``skipped``.
    """
    from tqdm.auto import tqdm

    from cuecraft.controls.features import features_at
    from cuecraft.controls.from_audio import controls_from_audio
    from cuecraft.errors import CuecraftError
    from cuecraft.io.audio import load_audio

    files = find_videos(videos)
    if not files:
        raise MediaError(f"'{videos}': no video files ({', '.join(VIDEO_SUFFIXES)})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"written": 0, "kept": 0, "skipped": 0}
    rate = int(codec.frame_rate)
    for path in tqdm(files, desc="pairs", unit="video", disable=not progress):
        target = out / f"{path.stem}{SUFFIX}"
        if target.exists():
            counts["kept"] += 1
            continue
        try:
            features = encoder.encode(path)
            S = int(features.duration)  # whole seconds only, so video and music frames line up
            if S < 1:
                raise MediaError(f"'{path}': shorter than one second")
            music = load_audio(path, sr=int(codec.sampling_rate), max_duration=float(S))
            if len(music) < S * codec.sampling_rate * 0.99:
                raise MediaError(f"'{path}': its audio is shorter than its video")
            codes = codec.encode(music, sr=int(codec.sampling_rate))[:, :S * rate]
            if codes.shape[1] < S * rate:
                codes = _pad(codes, S * rate - codes.shape[1], dim=1)
            controls = controls_from_audio(load_audio(path, sr=22050, max_duration=float(S)), sr=22050)
            feats, presence = features_at(controls, np.arange(S * rate) / rate)
        except CuecraftError as exc:
            counts["skipped"] += 1
            log(f"skipped {path.name}: {exc}")
            continue
        write_pair(target, Pair(name=path.stem, patch=features.patch[:S], frame=features.frame[:S],
                                context=features.context[:S], codes=codes.long(), controls=torch.as_tensor(feats),
                                presence=torch.as_tensor(presence), frame_rate=rate), encoder=features.encoder)
        counts["written"] += 1
    return counts
