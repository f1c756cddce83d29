"""Resampling controls to any time base. This is the one place where that happens.

Rules: intensity and emotion interpolate linearly and hold their end values outside their
range; melody holds each value until the next point (step function); beat becomes a
continuous beat count (linear between beats, extrapolated at the edges with the nearest
interval), from which phases, bar positions and smoothed impulses derive.
"""
from __future__ import annotations

import numpy as np

from cuecraft.controls.schema import Controls
from cuecraft.checks import finite_1d
from cuecraft.errors import ParameterError


def time_base(*, duration: float, rate: float) -> np.ndarray:
    """Frame times ``k / rate`` for ``0 <= t < duration`` (exact, no ``int(fps)`` rounding)."""
    if not np.isfinite(rate) or rate <= 0:
        raise ParameterError(f"rate = {rate!r}: must be a finite number of frames per second > 0")
    if not np.isfinite(duration) or duration < 0:
        raise ParameterError(f"duration = {duration!r}: must be finite seconds >= 0")
    n = int(np.ceil(duration * rate - 1e-9))
    return np.arange(n) / rate


def sample_linear(series: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Linear interpolation of each value column at ``times``; ``[T, width]``."""
    times = finite_1d("times", times)
    return np.stack([np.interp(times, series[:, 0], series[:, j]) for j in range(1, series.shape[1])], axis=1)


def sample_hold(series: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The value of the last point at or before each time (NaN before the first point); ``[T]``."""
    times = finite_1d("times", times)
    idx = np.searchsorted(series[:, 0], times, side="right") - 1
    out = np.full(times.shape, np.nan)
    ok = idx >= 0
    out[ok] = series[idx[ok], 1]
    return out


def beat_count(beat: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Continuous number of beats elapsed since the first beat, at ``times``; ``[T]``.

    Beat k sits at count k. Between beats the count is linear in time; before the first and
    after the last beat it extrapolates with the first/last interval (0.5 s for a single beat).
    """
    times = finite_1d("times", times)
    t = beat[:, 0]
    k = np.arange(len(t), dtype=float)
    first = t[1] - t[0] if len(t) > 1 else 0.5
    last = t[-1] - t[-2] if len(t) > 1 else 0.5
    out = np.interp(times, t, k)
    before, after = times < t[0], times > t[-1]
    out[before] = (times[before] - t[0]) / first
    out[after] = k[-1] + (times[after] - t[-1]) / last
    return out


def beat_impulses(beat: np.ndarray, times: np.ndarray, *, width: float = 0.05) -> np.ndarray:
    """Beat and downbeat impulses smoothed by a Gaussian of ``width`` seconds; ``[T, 2]`` in [0, 1].

    Column 0 is every beat, column 1 the downbeats (position 0), as MTCV2M's beat control.
    """
    times = finite_1d("times", times)
    if not np.isfinite(width) or width <= 0:
        raise ParameterError(f"width = {width!r}: must be seconds > 0")
    out = np.zeros((len(times), 2))
    for col, beat_times in enumerate((beat[:, 0], beat[beat[:, 1] == 0, 0])):
        if len(beat_times) == 0:
            continue
        idx = np.clip(np.searchsorted(beat_times, times), 1, len(beat_times)) if len(beat_times) > 1 else None
        if idx is None:
            nearest = np.abs(times - beat_times[0])
        else:
            nearest = np.minimum(np.abs(times - beat_times[idx - 1]),
                                 np.abs(times - beat_times[np.minimum(idx, len(beat_times) - 1)]))
        out[:, col] = np.exp(-0.5 * (nearest / width) ** 2)
    return out


def melody_onehot(pitch_class: np.ndarray) -> np.ndarray:
    """One-hot ``[T, 12]`` from a pitch-class series with NaN rests (a rest is all zeros)."""
    pc = np.asarray(pitch_class, dtype=float)
    out = np.zeros((len(pc), 12))
    ok = np.isfinite(pc)
    out[np.nonzero(ok)[0], pc[ok].astype(int)] = 1.0
    return out


def resample(controls: Controls, times: np.ndarray) -> dict[str, np.ndarray]:
    """Sample every given control at ``times`` (seconds).

    Returns
    -------
    dict with, for each present control:
      - ``beat``: ``[T, 2]`` smoothed beat/downbeat impulses, and ``beat_count``: ``[T]``
      - ``melody``: ``[T]`` pitch class or NaN
      - ``intensity``: ``[T]`` dB
      - ``emotion``: ``[T, 2]`` valence, arousal
    """
    times = finite_1d("times", times)
    out: dict[str, np.ndarray] = {}
    if controls.beat is not None:
        out["beat"] = beat_impulses(controls.beat, times)
        out["beat_count"] = beat_count(controls.beat, times)
    if controls.melody is not None:
        out["melody"] = sample_hold(controls.melody, times)
    if controls.intensity is not None:
        out["intensity"] = sample_linear(controls.intensity, times)[:, 0]
    if controls.emotion is not None:
        out["emotion"] = sample_linear(controls.emotion, times)
    return out
