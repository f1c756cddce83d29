"""Control values at each model step, as the feature vectors a model reads.

One definition for training (controls extracted from a corpus piece at each token's time)
and inference (controls from a video, a file or a reference at each token's time), so the
model sees the same numbers in both.

Layout (``CONTROL_DIMS``):
  - beat [3]: sin and cos of the bar phase (position in the bar / beats per bar), and a
    downbeat flag (1 on the first beat of the bar);
  - melody [43]: one-hot pitch class 0-11, or index 12 for a rest (13); then a look-ahead:
    the time to the melody's next change in 16th notes, one-hot 1-16 with a last bin for
    "not within 4 beats" (17), and the pitch class it changes to, one-hot as above (13, all
    zeros when there is no later change). A token's controls otherwise describe only its own
    time, so without the look-ahead the model cannot see where the requested melody moves
    next when it picks a note's duration or the next onset;
  - intensity [1]: dB / 40 + 1 (0 dB -> 1, -40 dB -> 0, -80 dB -> -1);
  - emotion [2]: valence, arousal in [-1, 1].
A control that is not given is all zeros with its presence flag 0 (see ``presence``).
"""
from __future__ import annotations

import numpy as np

from cuecraft.checks import finite_1d
from cuecraft.errors import ParameterError

CONTROL_DIMS = {"beat": 3, "melody": 43, "intensity": 1, "emotion": 2}
CONTROL_ORDER = tuple(CONTROL_DIMS)
N_FEATURES = sum(CONTROL_DIMS.values())
# Each control's columns in the stacked features, e.g. ``feats[:, CONTROL_SLICES["melody"]]``.
CONTROL_SLICES = {name: slice(start, start + CONTROL_DIMS[name])
                  for name, start in zip(CONTROL_ORDER, np.cumsum([0, *CONTROL_DIMS.values()])[:-1].tolist())}
PITCH_CLASS = slice(0, 13)             # within the melody block: the pitch class now
UNTIL_CHANGE = slice(13, 30)           # 16ths to the next change, last bin "not within 4 beats"
NEXT_PITCH_CLASS = slice(30, 43)       # the pitch class it changes to
LOOKAHEAD_STEPS = 16  # 16th notes: the look-ahead sees 4 beats


def beat_features(position_in_bar: np.ndarray, *, beats_per_bar: int) -> np.ndarray:
    """``[T, 3]`` from the continuous position in the bar, in beats (0 <= p < beats_per_bar)."""
    pos = finite_1d("position_in_bar", position_in_bar)
    if not 1 <= beats_per_bar <= 16:
        raise ParameterError(f"beats_per_bar = {beats_per_bar!r}: must be in [1, 16]")
    phase = 2 * np.pi * np.mod(pos, beats_per_bar) / beats_per_bar
    downbeat = (np.floor(np.mod(pos, beats_per_bar) + 1e-6) == 0).astype(float)
    return np.stack([np.sin(phase), np.cos(phase), downbeat], axis=1)


def _pitch_class_one_hot(pitch_class: np.ndarray, name: str) -> np.ndarray:
    pc = np.asarray(pitch_class, dtype=float)
    if pc.ndim != 1:
        raise ParameterError(f"{name} must be 1-D, got shape {pc.shape}")
    idx = np.where(np.isfinite(pc), np.nan_to_num(pc, nan=12.0), 12.0).astype(int)
    if np.any((idx < 0) | (idx > 12)):
        raise ParameterError(f"{name}: pitch classes must be 0-11 or NaN, got {pc[(idx < 0) | (idx > 12)][0]!r}")
    out = np.zeros((len(pc), 13))
    out[np.arange(len(pc)), idx] = 1.0
    return out


def melody_changes(times: np.ndarray, pitch_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points where a held melody (``pitch_class[i]`` from ``times[i]`` on, NaN a rest)
    changes pitch class: ``(times, pitch_class)`` with repeats of the previous value dropped."""
    times = np.asarray(times, dtype=float)
    code = np.where(np.isfinite(pitch_class), np.nan_to_num(pitch_class, nan=12.0), 12.0)
    keep = np.concatenate([[True], code[1:] != code[:-1]]) if len(code) else np.zeros(0, bool)
    return times[keep], np.where(code[keep] == 12.0, np.nan, code[keep])


def melody_features(pitch_class: np.ndarray | None, *, now: np.ndarray | None = None,
                    change_times: np.ndarray | None = None, change_pitch_class: np.ndarray | None = None) -> np.ndarray:
    """``[T, 43]``: the pitch class at each time and the look-ahead to the melody's next change.

    ``now`` are the times in beats; ``change_times`` (beats, ascending) and ``change_pitch_class``
    are :func:`melody_changes` of the whole melody. Without them the look-ahead reads "no
    change within 4 beats". ``pitch_class=None`` takes the pitch class now from the changes too
    (a rest before the first).
    """
    if pitch_class is None:
        if now is None or change_times is None:
            raise ParameterError("melody_features: pitch_class=None needs now and the melody changes")
        last = np.searchsorted(np.asarray(change_times, dtype=float), finite_1d("now", now) + 1e-3, side="right") - 1
        pitch_class = np.where(last >= 0, np.asarray(change_pitch_class, dtype=float)[np.maximum(last, 0)], np.nan) \
            if len(change_times) else np.full(len(now), np.nan)
    current = _pitch_class_one_hot(pitch_class, "pitch_class")
    until = np.zeros((len(current), LOOKAHEAD_STEPS + 1))
    upcoming = np.zeros((len(current), 13))
    if now is None or change_times is None or len(change_times) == 0:
        until[:, -1] = 1.0
        return np.concatenate([current, until, upcoming], axis=1)
    now = finite_1d("now", now)
    change_times = np.asarray(change_times, dtype=float)
    # The first change later than now; 1e-3 beats absorbs the rounding of times from seconds.
    nxt = np.searchsorted(change_times, now + 1e-3, side="right")
    has = nxt < len(change_times)
    steps = np.full(len(now), LOOKAHEAD_STEPS + 1)
    steps[has] = np.maximum(1, np.rint((change_times[nxt[has]] - now[has]) * 4.0)).astype(int)
    until[np.arange(len(now)), np.minimum(steps, LOOKAHEAD_STEPS + 1) - 1] = 1.0
    upcoming[has] = _pitch_class_one_hot(np.asarray(change_pitch_class, dtype=float)[nxt[has]], "change_pitch_class")
    return np.concatenate([current, until, upcoming], axis=1)


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
    """The controls sampled at ``times`` (seconds) as ``[T, 49]`` features plus the ``[4]`` presence.

    The frame-rate counterpart of the symbolic model's per-token features (the codec
    backbone reads its controls at 50 Hz): the bar phase comes from the beat grid, linear
    between beats and extrapolated past its ends; the other controls are resampled by
    ``controls/resample.py``. The melody look-ahead counts beats on the beat grid (at 120
    bpm without one).
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

    def beats_at(seconds):
        return beat_count(controls.beat, seconds) if controls.beat is not None else np.asarray(seconds) * 2.0

    feats.update(sampled_features(controls, times, beats_at=beats_at))
    return stack_features(feats, length=len(times))


def melody_changes_in_beats(melody: np.ndarray, *, beats_at, snap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`melody_changes` of a melody control (``[N, 2]`` seconds, pitch class) in beats.

    ``snap`` (steps per beat) moves each change to the nearest step of the beat grid; two
    changes on one step leave the later. A symbolic model writes notes on that grid, and
    controls sampled in frames put changes a little off it: read in seconds, a token at the
    step where the melody changes would often still see the old pitch class.
    """
    change_seconds, change_pc = melody_changes(melody[:, 0], melody[:, 1])
    change_beats = np.asarray(beats_at(change_seconds), dtype=float)
    if snap is None or len(change_beats) == 0:
        return change_beats, change_pc
    change_beats = np.round(change_beats * snap) / snap
    last = np.concatenate([change_beats[1:] != change_beats[:-1], [True]])
    return melody_changes(change_beats[last], change_pc[last])


def sampled_features(controls, times: np.ndarray, *, beats_at,
                     melody_in_beats: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Melody, intensity and emotion features of the given controls at ``times`` (seconds); the
    beat's features depend on the backbone's time base (bar position or musical time).

    ``beats_at`` maps seconds to the backbone's musical time in beats, for the melody look-ahead.
    ``melody_in_beats``: the melody's changes from :func:`melody_changes_in_beats`, computed
    once by a caller that asks for many times; the pitch class now is then read in beats too.
    """
    from cuecraft.controls.resample import sample_hold, sample_linear

    feats = {}
    if controls.melody is not None:
        now = beats_at(times)
        if melody_in_beats is None:
            change_beats, change_pc = melody_changes_in_beats(controls.melody, beats_at=beats_at)
            current = sample_hold(controls.melody, times)
        else:
            (change_beats, change_pc), current = melody_in_beats, None
        feats["melody"] = melody_features(current, now=now, change_times=change_beats, change_pitch_class=change_pc)
    if controls.intensity is not None:
        feats["intensity"] = intensity_features(sample_linear(controls.intensity, times)[:, 0])
    if controls.emotion is not None:
        feats["emotion"] = emotion_features(sample_linear(controls.emotion, times))
    return feats
