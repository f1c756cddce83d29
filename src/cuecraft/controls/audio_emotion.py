"""Valence and arousal read from audio, on the scale of the note-level definition the model learned.

The emotion controls the model was trained with are defined on notes
(:func:`cuecraft.controls.from_midi.estimate_emotion`: mode, register, tempo, onset rate,
velocity). Audio has no notes, so here a handful of audio features per window are mapped
linearly onto that definition. The map is fitted, not set by hand: ``training/emotion_fit.py``
renders training-split corpus pieces (at random tempi and levels, each part on a random
instrument, half of them over the drum/bass arrangement), reads both definitions on each, and fits
the map by ridge least squares; the fit's held-out figures are in ``assets/audio-emotion/summary.json``.

Why a fitted map: the hand-set rule used before read the held-out pieces, played on the model's
own instruments, with an arousal 0.25 higher on average than their notes give (sign agreement
0.57), and a valence 0.14 lower. So a reference audio track handed the model emotion controls on
another scale than it was trained on, and ``cuecraft evaluate`` read calm music as aroused. The
fitted map on the same pieces: +0.09 and +0.00, arousal sign agreement 0.72. On other instruments
the rule is less far off (+0.11, 0.70) and the map still closer (0.00, 0.73). A map fitted on the
model's instruments alone read those best (+0.02, 0.78) but other instruments worse than the rule
(arousal r 0.55 against 0.62): it had learned one timbre's brightness and level.
:data:`HAND_SET` keeps the rule, expressed over the same features, for comparison. The register
feature is new with the fit (without it, held-out valence r 0.74 instead of 0.83); a second,
more sensitive onset rate and a tempogram tempo were tried as well and left out, as they did not
help on the held-out pieces (arousal r 0.706 with them, 0.713 without, in an earlier fit on the
model's instruments).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cuecraft.controls.from_midi import MODE_SCALE, mode_strength
from cuecraft.errors import MediaError

FEATURES = ("mode", "brightness", "register", "tempo", "level", "onset_rate", "voiced")
SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "audio-emotion" / "map.safetensors"
CQT_FMIN_MIDI = 24.0      # librosa's default CQT starts at C1
CQT_BINS_PER_OCTAVE = 36  # that of librosa.feature.chroma_cqt


@dataclass(frozen=True)
class AudioFrames:
    """The frame-level analysis of a piece of audio that the emotion features are read from."""

    times: np.ndarray    # [n] seconds
    power: np.ndarray    # [n] mean square
    chroma: np.ndarray   # [12, n] unnormalised chroma
    pitch: np.ndarray    # [n] power-weighted mean MIDI pitch of the constant-Q spectrum
    centroid: np.ndarray  # [n] Hz
    quiet: np.ndarray    # [n] bool: too quiet to carry pitch
    onsets: np.ndarray   # onset times, seconds
    beats: np.ndarray    # beat times, seconds
    tempo: float         # the piece's global tempo, BPM


def cqt_pitch(cqt: np.ndarray) -> np.ndarray:
    """Per frame, the power-weighted mean MIDI pitch of a constant-Q magnitude ``[bins, n]`` from C1
    at 36 bins per octave (60 where a frame is silent)."""
    midi = CQT_FMIN_MIDI + np.arange(cqt.shape[0]) * 12.0 / CQT_BINS_PER_OCTAVE
    power = cqt.astype(np.float64) ** 2
    total = power.sum(axis=0)
    return np.where(total > 0, (midi @ power) / np.maximum(total, 1e-30), 60.0)


def window_features(frames: AudioFrames, times: np.ndarray, *, window: float, duration: float) -> np.ndarray:
    """``[T, len(FEATURES)]``: the features of the window of ``window`` s centred on each of ``times``
    (cut at 0 and ``duration``), each squashed to about [-1, 1] around a neutral value:

    mode: ``voiced * tanh(mode_strength(chroma) / MODE_SCALE)``; brightness: ``tanh(log2(centroid / 2 kHz))``
    (power-weighted centroid); register: ``tanh((pitch - 60) / 12)`` (power-weighted over frames that
    are not quiet); tempo: ``tanh((bpm - 110) / 40)`` (median beat interval in the window, the global
    tempo with fewer than 3 beats); level: ``tanh((dBFS + 25) / 15)``; onset_rate:
    ``tanh((onsets_per_s - 3) / 3)``; voiced: the share of frames that are not quiet.
    """
    out = np.empty((len(times), len(FEATURES)))
    for k, t in enumerate(np.asarray(times, dtype=float)):
        lo, hi = max(0.0, t - window / 2), min(duration, t + window / 2)
        sel = (frames.times >= lo) & (frames.times < hi)
        if not sel.any():
            sel = np.abs(frames.times - t) == np.abs(frames.times - t).min()
        power, quiet = frames.power[sel], frames.quiet[sel]
        voiced = 1.0 - quiet.mean()
        mode = float(mode_strength(frames.chroma[:, sel].sum(axis=1)))
        bright = float(np.sum(frames.centroid[sel] * power) / (np.sum(power) + 1e-20))
        loud = power * ~quiet
        pitch = float(np.sum(frames.pitch[sel] * loud) / np.sum(loud)) if loud.sum() > 0 else 60.0
        in_window = frames.beats[(frames.beats >= lo) & (frames.beats < hi)]
        bpm = 60.0 / float(np.median(np.diff(in_window))) if len(in_window) >= 3 else frames.tempo
        level = 10 * math.log10(float(power.mean()) + 1e-20)
        rate = np.sum((frames.onsets >= lo) & (frames.onsets < hi)) / max(hi - lo, 1e-3)
        out[k] = (voiced * math.tanh(mode / MODE_SCALE), math.tanh(math.log2(max(bright, 1.0) / 2000)),
                  math.tanh((pitch - 60.0) / 12.0), math.tanh((bpm - 110) / 40), math.tanh((level + 25) / 15),
                  math.tanh((rate - 3) / 3), voiced)
    return out


@dataclass(frozen=True)
class EmotionMap:
    """A linear map from :data:`FEATURES` to (valence, arousal), clipped to [-1, 1]."""

    weights: np.ndarray  # [2, len(FEATURES)]
    bias: np.ndarray     # [2]

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(features, dtype=float) @ self.weights.T + self.bias, -1.0, 1.0)


def _hand_set() -> EmotionMap:
    weights = np.zeros((2, len(FEATURES)))
    for row, terms in enumerate(({"mode": 0.7, "brightness": 0.3},
                                 {"tempo": 0.3, "level": 0.35, "onset_rate": 0.35})):
        for name, weight in terms.items():
            weights[row, FEATURES.index(name)] = weight
    return EmotionMap(weights, np.zeros(2))


HAND_SET = _hand_set()  # the rule used before the fitted map, for comparison


def save_emotion_map(emotion_map: EmotionMap, path: str | os.PathLike, *, metadata: dict | None = None) -> None:
    """Write ``emotion_map`` as safetensors, naming its features (and anything in ``metadata``)."""
    from safetensors.numpy import save_file

    info = {"features": json.dumps(FEATURES), **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    save_file({"weights": emotion_map.weights.astype(np.float64), "bias": emotion_map.bias.astype(np.float64)},
              str(path), metadata=info)


def load_emotion_map(path: str | os.PathLike | None = None) -> EmotionMap:
    """The map in ``path`` (default: the shipped one, read once per process); a file of other features
    or shapes is refused."""
    global _SHIPPED_MAP
    if path is None:
        if _SHIPPED_MAP is None:
            _SHIPPED_MAP = _read_emotion_map(SHIPPED)
        return _SHIPPED_MAP
    return _read_emotion_map(Path(path))


def _read_emotion_map(path: Path) -> EmotionMap:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise MediaError(f"emotion map '{path}': no such file")
    try:
        with safe_open(str(path), framework="np") as f:
            names = json.loads((f.metadata() or {}).get("features", "null"))
            weights, bias = f.get_tensor("weights"), f.get_tensor("bias")
    except (SafetensorError, OSError, ValueError) as exc:
        raise MediaError(f"emotion map '{path}': not a readable safetensors file ({exc})") from None
    if names != list(FEATURES):
        raise MediaError(f"emotion map '{path}': features {names} are not {list(FEATURES)}")
    if weights.shape != (2, len(FEATURES)) or bias.shape != (2,) \
            or not (np.isfinite(weights).all() and np.isfinite(bias).all()):
        raise MediaError(f"emotion map '{path}': weights {weights.shape} / bias {bias.shape} are not "
                         f"(2, {len(FEATURES)}) / (2,) finite values")
    return EmotionMap(weights.astype(float), bias.astype(float))


_SHIPPED_MAP: EmotionMap | None = None
