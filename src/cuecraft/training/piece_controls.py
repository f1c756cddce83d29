"""Controls read off a training piece at each of its tokens' times (MTCV2M's recipe).

The four controls come from the music itself, with the extractors that inference uses
(:mod:`cuecraft.controls.from_midi`), so a model trained on them follows controls taken
from a video, a file or a reference in the same units.

Alignment: ``controls[i]`` describes the music at token ``i``'s time (its ``Bar`` /
``Position``), i.e. what the tokens after it write there. Both ``tokens[i]`` and
``controls[i]`` are known before token ``i + 1`` is sampled, so a model takes them as the
same step's input and needs no shift: at a ``Position`` token the melody control already
names the pitch class that sounds at that position.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cuecraft.controls import features
from cuecraft.controls.from_midi import estimate_emotion, note_intensity_db, top_voice
from cuecraft.errors import ParameterError

REST = 12  # pitch-class code for "nothing sounds" (the melody features' rest index)


@dataclass(frozen=True)
class PieceControls:
    """Raw control values at each token, ``T`` tokens.

    Attributes
    ----------
    seconds : [T] token times in seconds
    position_in_bar : [T] beats since the bar's downbeat
    beats_per_bar : [T] int, the bar's length in beats
    pitch_class : [T] top-voice pitch class 0-11, NaN where nothing sounds
    intensity_db : [T] :func:`note_intensity_db`, in [-80, 0]
    emotion : [T, 2] :func:`estimate_emotion` valence, arousal
    """

    seconds: np.ndarray
    position_in_bar: np.ndarray
    beats_per_bar: np.ndarray
    pitch_class: np.ndarray
    intensity_db: np.ndarray
    emotion: np.ndarray


def beats_to_seconds(pm, beats: np.ndarray) -> np.ndarray:
    """Seconds of times in quarter-note beats under ``pm``'s tempo map (120 bpm without one).

    Beyond the last tempo change the last tempo holds, so times after the piece's end
    (an ``EOS`` in the last bar) still map.
    """
    beats = np.asarray(beats, dtype=float)
    change_times, tempi = pm.get_tempo_changes()
    change_times = np.asarray(change_times, dtype=float)
    tempi = np.asarray(tempi, dtype=float) if len(tempi) else np.array([120.0])
    if len(change_times) == 0:
        change_times = np.array([0.0])
    # Beat count at each tempo change: piecewise linear in time with slope bpm / 60.
    change_beats = np.concatenate([[0.0], np.cumsum(np.diff(change_times) * tempi[:-1] / 60.0)])
    idx = np.clip(np.searchsorted(change_beats, beats, side="right") - 1, 0, len(tempi) - 1)
    return change_times[idx] + (beats - change_beats[idx]) * 60.0 / tempi[idx]


def piece_control_values(pm, ids, *, tokenizer) -> PieceControls:
    """The raw controls at each token of a piece.

    Parameters
    ----------
    pm : pretty_midi.PrettyMIDI
        The piece; its beat 0 must be the first ``Bar`` of ``ids`` (true for
        ``tokenizer.decode(ids)`` and for the MIDI that ``tokenizer.encode`` read).
    ids : [T] token ids of the piece
    tokenizer : cuecraft.models.tokenizer.MusicTokenizer

    Returns
    -------
    PieceControls
    """
    ids = np.asarray(ids)
    if ids.ndim != 1 or len(ids) == 0:
        raise ParameterError(f"ids must be a non-empty 1-D array, got shape {ids.shape}")
    beats, position, bpb = tokenizer.timeline(ids)
    seconds = beats_to_seconds(pm, beats)
    pitch = top_voice(pm, seconds)
    return PieceControls(seconds=seconds, position_in_bar=position, beats_per_bar=bpb,
                         pitch_class=np.where(np.isnan(pitch), np.nan, np.mod(pitch, 12)),
                         intensity_db=note_intensity_db(pm, seconds), emotion=estimate_emotion(pm, seconds))


def token_melody_changes(ids, *, tokenizer, beats: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`features.melody_changes` of a piece's top voice, read off its tokens: ``(beats,
    pitch_class)`` where the highest sounding note's pitch class changes (NaN: nothing sounds).

    The same voice as :func:`top_voice` (a note sounds at ``start <= t < end``), in the
    tokens' musical time, so a crop needs no MIDI to see the melody's next change. ``beats``:
    the tokens' times (``tokenizer.timeline(ids)[0]``) when the caller has them already.
    """
    from cuecraft.models.tokenizer import TYPE_INDEX

    ids = np.asarray(ids)
    beats = tokenizer.timeline(ids)[0] if beats is None else np.asarray(beats, dtype=float)
    pitch_at = np.flatnonzero(tokenizer.types[ids] == TYPE_INDEX["Pitch"])
    pitch_at = pitch_at[pitch_at + 2 < len(ids)]  # a note is Pitch Velocity Duration
    pitch_at = pitch_at[tokenizer.types[ids[pitch_at + 2]] == TYPE_INDEX["Duration"]]
    start = beats[pitch_at]
    end = start + tokenizer.values[ids[pitch_at + 2]]
    pitch = tokenizer.values[ids[pitch_at]]
    points = np.unique(np.concatenate([start, end]))
    a, b = np.searchsorted(points, start), np.searchsorted(points, end)
    top = np.full(len(points), np.nan)
    for i in np.argsort(pitch, kind="stable"):  # lowest first: higher notes overwrite
        top[a[i]:b[i]] = pitch[i]
    return features.melody_changes(points, np.mod(top, 12))


def control_features(*, position_in_bar: np.ndarray, beats_per_bar: np.ndarray, pitch_class: np.ndarray,
                     intensity_db: np.ndarray, emotion: np.ndarray, beats: np.ndarray | None = None,
                     melody_changes: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``[T, 49]`` model features (:func:`features.stack_features`) and ``[4]`` presence
    of raw per-token controls; every control is present.

    ``beats`` (the tokens' times) and ``melody_changes`` (:func:`token_melody_changes`) give
    the melody look-ahead; without them it reads "no change within 4 beats".
    """
    position_in_bar = np.asarray(position_in_bar, dtype=float)
    beats_per_bar = np.asarray(beats_per_bar, dtype=int)
    length = len(position_in_bar)
    beat = np.zeros((length, features.CONTROL_DIMS["beat"]))
    # beat_features takes one meter, so each meter's tokens go through it separately.
    for meter in np.unique(beats_per_bar):
        rows = beats_per_bar == meter
        beat[rows] = features.beat_features(position_in_bar[rows], beats_per_bar=int(meter))
    change_times, change_pc = melody_changes if melody_changes is not None else (None, None)
    melody = features.melody_features(pitch_class, now=beats, change_times=change_times,
                                      change_pitch_class=change_pc)
    return features.stack_features({"beat": beat, "melody": melody,
                                    "intensity": features.intensity_features(intensity_db),
                                    "emotion": features.emotion_features(emotion)}, length=length)


def piece_controls(pm, ids, *, tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """``([T, 49] float32 features, [4] presence)`` of a piece at each of its tokens.

    See :func:`piece_control_values` for the parameters; ``controls[i]`` describes the music
    at token ``i``'s time.
    """
    values = piece_control_values(pm, ids, tokenizer=tokenizer)
    beats = tokenizer.timeline(ids)[0]
    return control_features(position_in_bar=values.position_in_bar, beats_per_bar=values.beats_per_bar,
                            pitch_class=values.pitch_class, intensity_db=values.intensity_db,
                            emotion=values.emotion, beats=beats,
                            melody_changes=token_melody_changes(ids, tokenizer=tokenizer, beats=beats))
