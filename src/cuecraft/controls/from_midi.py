"""Controls (beat, melody, intensity, emotion) read off a MIDI piece.

These are the definitions the training pipeline uses on symbolic training pieces, so the
extractors are pure functions of a ``pretty_midi.PrettyMIDI`` object and an array of times;
:func:`load_reference_midi` is only a thin file layer on top.

Definitions
-----------
beat
    ``pm.get_beats()`` / ``pm.get_downbeats()``, which follow the file's tempo and
    time-signature changes. Position in bar = beats since the last downbeat.
melody
    Pitch class of the highest sounding non-drum note (:func:`top_voice`), at ``frame_rate``,
    written only where it changes; NaN where nothing pitched sounds.
intensity
    :func:`note_intensity_db`: a velocity/density loudness in dB-like units, [-80, 0].
emotion
    :func:`estimate_emotion`: heuristic valence/arousal in [-1, 1] at 2 Hz.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from cuecraft.controls.keys import MODE_SCALE, mode_strength
from cuecraft.controls.resample import time_base
from cuecraft.controls.schema import Controls
from cuecraft.checks import finite_1d
from cuecraft.errors import MediaError, ParameterError
from cuecraft.io.files import check_input_file

EMOTION_RATE = 2.0
# Sum of (velocity/127)^2 over sounding notes that maps to 0 dB: 16 notes at full velocity.
REFERENCE_POWER = 16.0
# MIDI note lengths of drums (and staccato notes) are notional; the sound rings longer.
MIN_NOTE_SECONDS = 0.2
def _check_pm(pm: object) -> None:
    import pretty_midi

    if not isinstance(pm, pretty_midi.PrettyMIDI):
        raise ParameterError(f"pm must be a pretty_midi.PrettyMIDI, got {type(pm).__name__}")


def _check_seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value) \
            or value <= 0:
        raise ParameterError(f"{name} = {value!r}: must be a finite number of seconds > 0")
    return float(value)


def _notes(pm, *, drums: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, pitch, velocity) of every note with end > start; drums included if asked."""
    rows = [(n.start, n.end, n.pitch, n.velocity) for inst in pm.instruments if drums or not inst.is_drum
            for n in inst.notes if n.end > n.start]
    if not rows:
        return np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)
    start, end, pitch, velocity = np.array(rows, dtype=float).T
    return start, end, pitch, velocity


def _windowed_integral(start: np.ndarray, end: np.ndarray, weight: np.ndarray,
                       lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``sum_i weight[i] * |[start_i, end_i) ∩ [lo, hi)|`` for each window; ``[T, C]``.

    The running integral G(x) of the summed weights is piecewise linear with knots at note
    boundaries, so it is exact to evaluate it at the knots and interpolate.
    """
    weight = weight.reshape(len(start), -1)  # [N, C]
    if len(start) == 0:
        return np.zeros((len(lo), weight.shape[1]))
    knots = np.concatenate([start, end])
    order = np.argsort(knots, kind="stable")
    knots = knots[order]
    rate = np.cumsum(np.concatenate([weight, -weight])[order], axis=0)  # [2N, C] rate after each knot
    g = np.concatenate([np.zeros((1, weight.shape[1])), np.cumsum(rate[:-1] * np.diff(knots)[:, None], axis=0)])
    return np.stack([np.interp(hi, knots, g[:, c]) - np.interp(lo, knots, g[:, c])
                     for c in range(weight.shape[1])], axis=1)


def top_voice(pm, times: np.ndarray) -> np.ndarray:
    """Pitch (MIDI number) of the highest sounding non-drum note at each time.

    A note sounds at ``t`` when ``start <= t < end``.

    Parameters
    ----------
    pm : pretty_midi.PrettyMIDI
    times : [T] seconds

    Returns
    -------
    [T] float MIDI pitch, NaN where no pitched note sounds.
    """
    _check_pm(pm)
    times = finite_1d("times", times)
    start, end, pitch, _ = _notes(pm, drums=False)
    order = np.argsort(times, kind="stable")
    sorted_times = times[order]
    a = np.searchsorted(sorted_times, start, side="left")
    b = np.searchsorted(sorted_times, end, side="left")
    top = np.full(times.shape, -np.inf)
    # Lowest pitch first, so a higher note written later overwrites it: a running maximum.
    for i in np.argsort(pitch, kind="stable"):
        top[a[i]:b[i]] = pitch[i]
    out = np.empty(times.shape)
    out[order] = np.where(np.isfinite(top), top, np.nan)
    return out


def note_intensity_db(pm, times: np.ndarray, *, window: float = 1.0) -> np.ndarray:
    """Loudness in dB-like units from note velocities and density, in [-80, 0].

    ``dB(t) = 10 log10(P(t) / 16)`` clipped to [-80, 0], where ``P(t)`` is the mean over the
    ``window`` seconds centred on ``t`` of ``sum (velocity/127)^2`` over the sounding notes
    (drums included; every note counts as lasting at least 0.2 s). For ``n`` equal notes
    this is ``20 log10(velocity/127) + 10 log10(n) - 12``: the loudest notes' level plus a
    density term, as incoherent sources add in power. No note gives -80.

    Parameters
    ----------
    pm : pretty_midi.PrettyMIDI
    times : [T] seconds
    window : smoothing window in seconds

    Returns
    -------
    [T] float dB
    """
    _check_pm(pm)
    times = finite_1d("times", times)
    window = _check_seconds("window", window)
    start, end, _, velocity = _notes(pm, drums=True)
    end = np.maximum(end, start + MIN_NOTE_SECONDS)
    energy = _windowed_integral(start, end, (velocity / 127.0) ** 2, times - window / 2, times + window / 2)[:, 0]
    power = np.maximum(energy / window, 0.0)  # the windowed integral's rounding leaves -1e-17 in silence
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(power / REFERENCE_POWER)
    return np.clip(np.nan_to_num(db, nan=-80.0, neginf=-80.0), -80.0, 0.0)


def _tempo_at(pm, times: np.ndarray) -> np.ndarray:
    change_times, tempi = pm.get_tempo_changes()
    if len(tempi) == 0:
        return np.full(times.shape, 120.0)
    idx = np.clip(np.searchsorted(change_times, times, side="right") - 1, 0, len(tempi) - 1)
    return np.asarray(tempi, dtype=float)[idx]


def estimate_emotion(pm, times: np.ndarray, *, window: float = 4.0) -> np.ndarray:
    """Heuristic valence and arousal in [-1, 1] over a window centred on each time.

    This is a rule-of-thumb estimate, not a trained model::

        valence = 0.75 * tanh(mode / 0.15) + 0.25 * tanh((mean_pitch - 60) / 12)
        arousal = 0.35 * tanh((bpm - 110) / 40) + 0.45 * tanh((onsets_per_s - 3) / 3)
                  + 0.20 * tanh((mean_velocity - 80) / 30)

    ``mode`` is :func:`mode_strength` of the duration-weighted pitch-class histogram of the
    non-drum notes in the window; ``mean_pitch`` is their duration-weighted mean (the
    register term; 0 without notes); ``bpm`` the MIDI tempo at ``t``; ``onsets_per_s``
    counts distinct onset times (30 ms apart, drums included) per second of window;
    ``mean_velocity`` is over the notes starting in the window (its term is -1 without any).
    Windows are cut at 0 and at ``pm.get_end_time()``.

    Parameters
    ----------
    pm : pretty_midi.PrettyMIDI
    times : [T] seconds
    window : window length in seconds

    Returns
    -------
    [T, 2] float: valence, arousal
    """
    _check_pm(pm)
    times = finite_1d("times", times)
    window = _check_seconds("window", window)
    # Windows stop at the piece's ends, so its first and last seconds are not diluted by silence.
    lo = np.maximum(times - window / 2, 0.0)
    hi = np.maximum(np.minimum(times + window / 2, pm.get_end_time()), lo)
    length = np.maximum(hi - lo, 1e-3)

    start, end, pitch, _ = _notes(pm, drums=False)
    onehot = np.zeros((len(pitch), 12))
    onehot[np.arange(len(pitch)), pitch.astype(int) % 12] = 1.0
    weights = np.concatenate([onehot, np.ones((len(pitch), 1)), pitch[:, None]], axis=1)  # [N, 14]
    sums = _windowed_integral(start, end, weights, lo, hi)  # [T, 14]
    hist, sounding, pitch_sum = sums[:, :12], sums[:, 12], sums[:, 13]
    mean_pitch = np.where(sounding > 0, pitch_sum / np.maximum(sounding, 1e-12), 60.0)
    valence = 0.75 * np.tanh(mode_strength(hist) / MODE_SCALE) + 0.25 * np.tanh((mean_pitch - 60.0) / 12.0)

    all_start, _, _, all_velocity = _notes(pm, drums=True)
    order = np.argsort(all_start)
    all_start, all_velocity = all_start[order], all_velocity[order]
    # A chord is one rhythmic event, not three: merge onsets closer than 30 ms.
    distinct = all_start[np.concatenate([[True], np.diff(all_start) > 0.03])] if len(all_start) else all_start
    a, b = np.searchsorted(distinct, lo), np.searchsorted(distinct, hi)
    onset_rate = (b - a) / length
    va, vb = np.searchsorted(all_start, lo), np.searchsorted(all_start, hi)
    vel_cum = np.concatenate([[0.0], np.cumsum(all_velocity)])
    count = vb - va
    mean_velocity = (vel_cum[vb] - vel_cum[va]) / np.maximum(count, 1)
    velocity_term = np.where(count > 0, np.tanh((mean_velocity - 80.0) / 30.0), -1.0)
    arousal = (0.35 * np.tanh((_tempo_at(pm, times) - 110.0) / 40.0)
               + 0.45 * np.tanh((onset_rate - 3.0) / 3.0) + 0.20 * velocity_term)
    return np.clip(np.stack([valence, arousal], axis=1), -1.0, 1.0)


def change_points(times: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``[N, 2]`` (t, value) keeping the first frame and each frame whose value differs
    from the previous one (NaN equals NaN), so that holding each value reproduces the input."""
    values = np.asarray(values, dtype=float)
    same = (values[1:] == values[:-1]) | (np.isnan(values[1:]) & np.isnan(values[:-1]))
    keep = np.concatenate([[True], ~same])
    return np.stack([times[keep], values[keep]], axis=1)


def _beat_grid(pm, duration: float) -> tuple[np.ndarray | None, int]:
    """(beat series [N, 2], beats_per_bar) from the MIDI's own tempo map and meter."""
    beats = np.asarray(pm.get_beats(), dtype=float)
    downbeats = np.asarray(pm.get_downbeats(), dtype=float)
    beats = beats[beats <= duration + 1e-9]
    nominal = 4
    if pm.time_signature_changes:
        first = min(pm.time_signature_changes, key=lambda ts: ts.time).numerator
        # pretty_midi counts a compound meter (6/8, 9/8, 12/8) in dotted beats.
        nominal = first // 3 if first % 3 == 0 and first != 3 else first
    if len(beats) == 0:
        return None, max(1, min(nominal, 16))
    is_down = np.isclose(beats[:, None], downbeats[None, :], atol=1e-6).any(axis=1) if len(downbeats) else \
        np.arange(len(beats)) == 0
    down_idx = np.flatnonzero(is_down)
    if len(down_idx) == 0:
        down_idx = np.array([0])
    last = np.searchsorted(down_idx, np.arange(len(beats)), side="right") - 1
    position = np.where(last >= 0, np.arange(len(beats)) - down_idx[np.maximum(last, 0)], 0)
    # Beats before the first downbeat are a pickup: count them back from that downbeat.
    pickup = last < 0
    position[pickup] = (np.arange(len(beats))[pickup] - down_idx[0]) % nominal
    # One beats_per_bar serves the whole piece: the first meter unless a later bar is longer.
    beats_per_bar = int(min(max(nominal, int(position.max()) + 1), 16))
    position = position % beats_per_bar
    return np.stack([beats, position.astype(float)], axis=1), beats_per_bar


def _controls(pm, *, frame_rate: float, duration: float) -> Controls:
    beat, beats_per_bar = _beat_grid(pm, duration)
    times = time_base(duration=duration, rate=frame_rate)
    pitch = top_voice(pm, times)
    melody = change_points(times, np.where(np.isnan(pitch), np.nan, pitch % 12))
    intensity = np.stack([times, note_intensity_db(pm, times)], axis=1)
    emotion_times = time_base(duration=duration, rate=EMOTION_RATE)
    emotion = np.concatenate([emotion_times[:, None], estimate_emotion(pm, emotion_times)], axis=1)
    source = {name: "MIDI analysis" for name in ("beat", "melody", "intensity", "emotion")}
    if beat is None:
        del source["beat"]
    return Controls(beat=beat, melody=melody, intensity=intensity, emotion=emotion,
                    beats_per_bar=beats_per_bar, duration=duration, source=source)


def controls_from_midi(pm, *, frame_rate: float = 10.0) -> Controls:
    """Beat, melody, intensity and emotion controls of a MIDI piece.

    Parameters
    ----------
    pm : pretty_midi.PrettyMIDI
    frame_rate : frames per second of the melody and intensity series (emotion is 2 Hz)

    Returns
    -------
    Controls
        With ``duration = pm.get_end_time()`` and ``beats_per_bar`` from the first time
        signature (4 without one; the longest bar if a later meter has more beats).

    Raises
    ------
    MediaError
        If the MIDI has no notes.
    """
    _check_pm(pm)
    if isinstance(frame_rate, bool) or not isinstance(frame_rate, (int, float, np.number)) \
            or not math.isfinite(frame_rate) or not 0 < frame_rate <= 1000:
        raise ParameterError(f"frame_rate = {frame_rate!r}: must be frames per second in (0, 1000]")
    if not any(inst.notes for inst in pm.instruments):
        raise MediaError("the MIDI holds no notes: no controls can be read from it")
    return _controls(pm, frame_rate=float(frame_rate), duration=float(pm.get_end_time()))


def _crop(pm, until: float) -> None:
    """Drop everything of ``pm`` at or after ``until`` seconds, in place."""
    for inst in pm.instruments:
        inst.notes = [n for n in inst.notes if n.start < until]
        for n in inst.notes:
            n.end = min(n.end, until)
        inst.pitch_bends = [e for e in inst.pitch_bends if e.time < until]
        inst.control_changes = [e for e in inst.control_changes if e.time < until]
    for name in ("time_signature_changes", "key_signature_changes", "lyrics", "text_events"):
        setattr(pm, name, [e for e in getattr(pm, name) if e.time < until])


def read_midi(path: str | os.PathLike):
    """Parse a MIDI file into a ``pretty_midi.PrettyMIDI``.

    Raises
    ------
    MediaError
        For a missing, empty or unparsable file, naming it.
    """
    import pretty_midi

    path = check_input_file(path, kind="MIDI")
    try:
        with warnings.catch_warnings():
            # pretty_midi warns about meta events on non-zero tracks, which are common and harmless.
            warnings.simplefilter("ignore")
            return pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:  # noqa: BLE001 - the MIDI parsers raise many unrelated exception types
        raise MediaError(f"'{path}': not a readable MIDI file ({type(exc).__name__}: {exc})") from None


def load_reference_midi(path: str | os.PathLike, *, max_duration: float | None = None) -> Controls:
    """Controls taken from a reference MIDI file.

    Parameters
    ----------
    path : .mid / .midi file
    max_duration : only use the first this many seconds (None = all)

    Returns
    -------
    Controls
        As :func:`controls_from_midi`; ``source`` names the file.

    Raises
    ------
    MediaError
        If the file is missing, empty, not MIDI, or holds no notes, naming the file.
    """
    if max_duration is not None:
        max_duration = _check_seconds("max_duration", max_duration)
    pm = read_midi(path)
    path = Path(path)
    duration = float(pm.get_end_time())
    if max_duration is not None and duration > max_duration:
        _crop(pm, max_duration)
        duration = max_duration
    if not any(inst.notes for inst in pm.instruments):
        raise MediaError(f"'{path}': the MIDI holds no notes: no controls can be read from it")
    controls = _controls(pm, frame_rate=10.0, duration=duration)
    return replace(controls, source={n: f"reference MIDI '{path.name}'" for n in controls.present})
