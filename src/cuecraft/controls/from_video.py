"""What the picture implies: controls derived from a :class:`VisualAnalysis`.

The mapping (DESIGN.md, "Video -> controls"):

- **beat**: a dynamic-programming beat tracker (Ellis 2007, as librosa's) run on the visual
  impact envelope plus strong impulses at scene cuts, at the visual tempo. The grid is
  therefore phase-aligned to strong visual beats and its local tempo bends to reach cuts;
  the beat nearest each cut is then moved onto it and becomes a downbeat (a hit point).
  Bar positions count from the cuts, so every cut starts a bar.
- **intensity** (4 Hz, dB): motion energy (relative to the clip and absolute) and cut rate.
- **emotion** (2 Hz): valence from brightness, saturation and colour warmth; arousal from
  motion and cut rate.
- **melody**: the picture does not imply a melody, so none is derived.
"""
from __future__ import annotations

import numpy as np

from cuecraft.controls.beat_tracker import track_beats
from cuecraft.controls.schema import Controls
from cuecraft.errors import ParameterError

INTENSITY_FLOOR_DB = -30.0
INTENSITY_SPAN_DB = 24.0
INTENSITY_RATE = 4.0
EMOTION_RATE = 2.0
WARP_SPAN = 2          # beats on each side of a cut over which its phase shift is spread
CUT_WEIGHT = 2.0        # how strongly a cut pulls the beat tracker, relative to the envelope's max (1)


def _smooth(x: np.ndarray, *, fps: float, seconds: float) -> np.ndarray:
    n = max(1, int(round(seconds * fps)))
    if n == 1 or len(x) == 0:
        return x.astype(float)
    kernel = np.hanning(n + 2)[1:-1]
    kernel /= kernel.sum()
    padded = np.pad(x.astype(float), (n // 2, n - 1 - n // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def cut_rate(cuts: np.ndarray, times: np.ndarray, *, window: float = 8.0) -> np.ndarray:
    """Cuts per second around each time (Gaussian window of ``window`` seconds)."""
    if len(cuts) == 0:
        return np.zeros(len(times))
    sigma = window / 4.0
    d = times[:, None] - np.asarray(cuts)[None, :]
    return np.exp(-0.5 * (d / sigma) ** 2).sum(axis=1) / (sigma * np.sqrt(2 * np.pi))


def beat_grid(analysis, *, beats_per_bar: int = 4) -> np.ndarray:
    """``[N, 2]`` (time, position_in_bar) covering the whole video; cuts fall on downbeats."""
    fps, duration = float(analysis.fps), float(analysis.duration)
    period = 60.0 / float(analysis.tempo)
    cuts = np.asarray(analysis.cuts, dtype=float)
    envelope = np.asarray(analysis.impact, dtype=float).copy()
    frames = np.clip(np.round(cuts * fps).astype(int), 0, max(len(envelope) - 1, 0))
    if len(envelope):
        envelope[frames] = np.maximum(envelope[frames], CUT_WEIGHT)
    beats = np.empty(0)
    if len(envelope) > 2 and envelope.max() > 0:
        beats = track_beats(envelope, fps=fps, bpm=float(analysis.tempo), tightness=200.0) / fps
    beats = np.unique(np.round(beats, 4)) if len(beats) >= 2 else np.array([0.0, period])
    beats = _snap_to_cuts(beats, cuts, period=period)
    beats = _spread_warp(beats, cuts)
    beats = _fill_edges(beats, duration=duration, period=period)
    positions = _positions(beats, cuts, beats_per_bar=beats_per_bar)
    return np.stack([beats, positions], axis=1)


def _snap_to_cuts(beats: np.ndarray, cuts: np.ndarray, *, period: float) -> np.ndarray:
    beats = beats.copy()
    for cut in cuts:
        i = int(np.argmin(np.abs(beats - cut)))
        if abs(beats[i] - cut) <= 0.5 * period:
            beats[i] = cut
        else:
            beats = np.sort(np.append(beats, cut))
    # A snap can squeeze a neighbour too close; drop beats closer than 40 % of a period.
    keep = [0]
    for i in range(1, len(beats)):
        if beats[i] - beats[keep[-1]] >= 0.4 * period:
            keep.append(i)
        elif np.min(np.abs(cuts - beats[i]), initial=np.inf) < 1e-6:
            keep[-1] = i  # the cut wins over the beat before it
    return beats[keep]


def _spread_warp(beats: np.ndarray, cuts: np.ndarray, *, span: int = WARP_SPAN) -> np.ndarray:
    """Spread the phase shift of each snapped cut evenly over ``span`` beats on each side.

    Moving one beat onto a cut would otherwise leave one long and one short interval next
    to it (a hiccup); this bends the local tempo gently instead. Other cuts stay fixed.
    """
    beats = beats.copy()
    fixed = np.nonzero([np.min(np.abs(cuts - b), initial=np.inf) < 1e-6 for b in beats])[0]
    for i in fixed:
        before = fixed[fixed < i]
        after = fixed[fixed > i]
        lo = max(i - span, before[-1] if len(before) else 0)
        hi = min(i + span, after[0] if len(after) else len(beats) - 1)
        beats[lo:i + 1] = np.linspace(beats[lo], beats[i], i - lo + 1)
        beats[i:hi + 1] = np.linspace(beats[i], beats[hi], hi - i + 1)
    return beats


def _fill_edges(beats: np.ndarray, *, duration: float, period: float) -> np.ndarray:
    head, tail = [], []
    first_gap = beats[1] - beats[0] if len(beats) > 1 else period
    t = beats[0] - first_gap
    while t >= -1e-6:
        head.append(max(t, 0.0))
        t -= first_gap
    last_gap = beats[-1] - beats[-2] if len(beats) > 1 else period
    t = beats[-1] + last_gap
    while t < duration - 1e-6:
        tail.append(t)
        t += last_gap
    out = np.concatenate([head[::-1], beats, tail])
    return out[(out >= 0) & (out < duration)]


def _positions(beats: np.ndarray, cuts: np.ndarray, *, beats_per_bar: int) -> np.ndarray:
    is_cut = np.array([np.min(np.abs(cuts - b), initial=np.inf) < 1e-6 for b in beats])
    anchors = np.nonzero(is_cut)[0]
    positions = np.empty(len(beats))
    first = anchors[0] if len(anchors) else 0
    for i in range(len(beats)):
        before = anchors[anchors <= i]
        anchor = before[-1] if len(before) else first
        positions[i] = (i - anchor) % beats_per_bar
    return positions


def intensity_curve(analysis) -> np.ndarray:
    """``[N, 2]`` (time, dB) at 4 Hz from motion energy and cut rate."""
    times = np.asarray(analysis.times, dtype=float)
    motion = _smooth(np.asarray(analysis.motion, dtype=float), fps=analysis.fps, seconds=1.0)
    relative = motion / (np.percentile(motion, 95) + 1e-6) if len(motion) else motion
    absolute = 1.0 - np.exp(-motion / 0.3)
    cuts_term = 1.0 - np.exp(-cut_rate(np.asarray(analysis.cuts), times) / 0.3)
    level = np.clip(0.35 * np.clip(relative, 0, 1) + 0.35 * absolute + 0.3 * cuts_term, 0.0, 1.0)
    return _resample_curve(times, INTENSITY_FLOOR_DB + INTENSITY_SPAN_DB * level, rate=INTENSITY_RATE,
                           duration=analysis.duration)


def emotion_curve(analysis) -> np.ndarray:
    """``[N, 3]`` (time, valence, arousal) at 2 Hz from colour and motion."""
    fps = analysis.fps
    times = np.asarray(analysis.times, dtype=float)
    bright = _smooth(np.asarray(analysis.brightness, dtype=float), fps=fps, seconds=2.0)
    sat = _smooth(np.asarray(analysis.saturation, dtype=float), fps=fps, seconds=2.0)
    warm = _smooth(np.asarray(analysis.warmth, dtype=float), fps=fps, seconds=2.0)
    motion = _smooth(np.asarray(analysis.motion, dtype=float), fps=fps, seconds=2.0)
    valence = np.tanh(2.0 * (bright - 0.45) + 1.0 * (sat - 0.3) + 1.5 * warm)
    arousal = np.tanh(2.5 * (1.0 - np.exp(-motion / 0.3)) + 2.0 * cut_rate(np.asarray(analysis.cuts), times) - 1.0)
    v = _resample_curve(times, valence, rate=EMOTION_RATE, duration=analysis.duration)
    a = _resample_curve(times, arousal, rate=EMOTION_RATE, duration=analysis.duration)
    return np.concatenate([v, a[:, 1:]], axis=1)


def _resample_curve(times: np.ndarray, values: np.ndarray, *, rate: float, duration: float) -> np.ndarray:
    grid = np.arange(int(np.ceil(duration * rate - 1e-9))) / rate
    if len(times) == 0:
        return np.stack([grid, np.zeros_like(grid)], axis=1)
    return np.stack([grid, np.interp(grid, times, values)], axis=1)


def controls_from_analysis(analysis, *, beats_per_bar: int = 4) -> Controls:
    """Beat, intensity and emotion controls implied by a video's :class:`VisualAnalysis`."""
    if not analysis.duration > 0:
        raise ParameterError(f"analysis.duration = {analysis.duration!r}: must be > 0")
    source = {name: "video" for name in ("beat", "intensity", "emotion")}
    return Controls(beat=beat_grid(analysis, beats_per_bar=beats_per_bar), intensity=intensity_curve(analysis),
                    emotion=emotion_curve(analysis), beats_per_bar=beats_per_bar,
                    duration=float(analysis.duration), source=source)
