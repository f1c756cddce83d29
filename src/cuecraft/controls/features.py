"""Control values at each model step, as the feature vectors a model reads.

One definition for training (controls extracted from a corpus piece at each token's time)
and inference (controls from a video, a file or a reference at each token's time), so the
model sees the same numbers in both.

Layout (``CONTROL_DIMS``):
  - beat [3]: sin and cos of the bar phase (position in the bar / beats per bar), and a
    downbeat flag (1 on the first beat of the bar);
  - melody [13]: one-hot pitch class 0-11, or index 12 for a rest;
  - intensity [1]: dB / 40 + 1 (0 dB -> 1, -40 dB -> 0, -80 dB -> -1);
  - emotion [2]: valence, arousal in [-1, 1].
A control that is not given is all zeros with its presence flag 0 (see ``presence``).
"""
from __future__ import annotations

import numpy as np

from cuecraft.checks import finite_1d
from cuecraft.errors import ParameterError

CONTROL_DIMS = {"beat": 3, "melody": 13, "intensity": 1, "emotion": 2}
CONTROL_ORDER = tuple(CONTROL_DIMS)


def beat_features(position_in_bar: np.ndarray, *, beats_per_bar: int) -> np.ndarray:
    """``[T, 3]`` from the continuous position in the bar, in beats (0 <= p < beats_per_bar)."""
    pos = finite_1d("position_in_bar", position_in_bar)
    if not 1 <= beats_per_bar <= 16:
        raise ParameterError(f"beats_per_bar = {beats_per_bar!r}: must be in [1, 16]")
    phase = 2 * np.pi * np.mod(pos, beats_per_bar) / beats_per_bar
    downbeat = (np.floor(np.mod(pos, beats_per_bar) + 1e-6) == 0).astype(float)
    return np.stack([np.sin(phase), np.cos(phase), downbeat], axis=1)


def melody_features(pitch_class: np.ndarray) -> np.ndarray:
    """``[T, 13]`` one-hot pitch class, index 12 for a rest (NaN)."""
    pc = np.asarray(pitch_class, dtype=float)
    if pc.ndim != 1:
        raise ParameterError(f"pitch_class must be 1-D, got shape {pc.shape}")
    idx = np.where(np.isfinite(pc), np.nan_to_num(pc, nan=12.0), 12.0).astype(int)
    if np.any((idx < 0) | (idx > 12)):
        raise ParameterError(f"pitch classes must be 0-11 or NaN, got {pc[(idx < 0) | (idx > 12)][0]!r}")
    out = np.zeros((len(pc), 13))
    out[np.arange(len(pc)), idx] = 1.0
    return out


def intensity_features(db: np.ndarray) -> np.ndarray:
    """``[T, 1]`` scaled loudness."""
    return (finite_1d("intensity", db) / 40.0 + 1.0)[:, None]


def emotion_features(valence_arousal: np.ndarray) -> np.ndarray:
    """``[T, 2]`` valence and arousal, clipped to [-1, 1]."""
    va = np.asarray(valence_arousal, dtype=float)
    if va.ndim != 2 or va.shape[1] != 2 or not np.all(np.isfinite(va)):
        raise ParameterError(f"emotion must be a finite [T, 2] array, got shape {va.shape}")
    return np.clip(va, -1.0, 1.0)


def stack_features(features: dict[str, np.ndarray], *, length: int) -> tuple[np.ndarray, np.ndarray]:
    """All controls as one ``[T, sum(CONTROL_DIMS)]`` float32 array plus a ``[4]`` presence vector.

    Missing controls are zeros with presence 0, in ``CONTROL_ORDER``.
    """
    blocks, presence = [], []
    for name in CONTROL_ORDER:
        value = features.get(name)
        if value is None:
            blocks.append(np.zeros((length, CONTROL_DIMS[name])))
            presence.append(0.0)
            continue
        value = np.asarray(value, dtype=float)
        if value.shape != (length, CONTROL_DIMS[name]):
            raise ParameterError(f"{name} features must have shape {(length, CONTROL_DIMS[name])}, got {value.shape}")
        blocks.append(value)
        presence.append(1.0)
    return np.concatenate(blocks, axis=1).astype(np.float32), np.asarray(presence, dtype=np.float32)


def features_at(controls, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The controls sampled at ``times`` (seconds) as ``[T, 19]`` features plus the ``[4]`` presence.

    The frame-rate counterpart of the symbolic model's per-token features (the codec
    backbone reads its controls at 50 Hz): the bar phase comes from the beat grid, linear
    between beats and extrapolated past its ends; the other controls are resampled by
    ``controls/resample.py``.
    """
    from cuecraft.controls.resample import beat_count

    times = finite_1d("times", times)
    feats = {}
    if controls.beat is not None:
        beat = controls.beat
        count = beat_count(beat, times)
        index = np.clip(np.floor(count), 0, len(beat) - 1).astype(int)
        position = beat[index, 1] + (count - index)
        feats["beat"] = beat_features(np.mod(position, controls.beats_per_bar), beats_per_bar=controls.beats_per_bar)
    feats.update(sampled_features(controls, times))
    return stack_features(feats, length=len(times))


def sampled_features(controls, times: np.ndarray) -> dict[str, np.ndarray]:
    """Melody, intensity and emotion features of the given controls at ``times`` (seconds); the
    beat's features depend on the backbone's time base (bar position or musical time)."""
    from cuecraft.controls.resample import sample_hold, sample_linear

    feats = {}
    if controls.melody is not None:
        feats["melody"] = melody_features(sample_hold(controls.melody, times))
    if controls.intensity is not None:
        feats["intensity"] = intensity_features(sample_linear(controls.intensity, times)[:, 0])
    if controls.emotion is not None:
        feats["emotion"] = emotion_features(sample_linear(controls.emotion, times))
    return feats
