"""Music to be tokenised, brought to the tokenizer's form: a symusic Score in ticks with one melody
and one harmony track and its meters spelled in quarter notes."""
from __future__ import annotations

import os

import numpy as np

from cuecraft.errors import MediaError, ParameterError
from cuecraft.models.tokenizer import HARMONY_PROGRAM, MELODY_PROGRAM, METERS, meter_beats


def to_score(music):
    """``music`` (a MIDI path, ``pretty_midi.PrettyMIDI`` or ``symusic.Score``) as a symusic Score in ticks."""
    import symusic

    if isinstance(music, (str, os.PathLike)):
        from cuecraft.io.files import check_input_file

        path = check_input_file(music, kind="MIDI")
        try:
            return symusic.Score(str(path))
        except Exception as exc:  # noqa: BLE001 - symusic raises RuntimeError/ValueError variants
            raise MediaError(f"'{path}': not a readable MIDI file ({exc})") from None
    if type(music).__name__ == "PrettyMIDI":
        # Built directly, not through MIDI bytes: a MIDI channel cannot hold two overlapping
        # notes of one pitch (two voices in unison), a PrettyMIDI instrument can.
        score = symusic.Score(music.resolution)
        tick = music.time_to_tick
        for inst in music.instruments:
            track = symusic.Track(program=inst.program, is_drum=inst.is_drum, name=inst.name)
            for n in inst.notes:
                start = tick(n.start)
                track.notes.append(symusic.Note(start, max(1, tick(n.end) - start), n.pitch, n.velocity))
            score.tracks.append(track)
        for ts in music.time_signature_changes:
            score.time_signatures.append(symusic.TimeSignature(tick(ts.time), ts.numerator, ts.denominator))
        return score
    if hasattr(music, "tracks") and hasattr(music, "ttype"):
        return music if str(music.ttype) in ("Tick", "tick") else music.to("tick")
    raise ParameterError(f"music must be a symusic.Score, pretty_midi.PrettyMIDI or MIDI path, "
                         f"got {type(music).__name__}")


def two_roles(score):
    """A copy of ``score`` with one melody and one harmony track (melody first) and its
    time signatures spelled in ``METERS``."""
    import symusic

    tracks = [t for t in score.tracks if not t.is_drum and len(t.notes)]
    if tracks and all(t.program in (MELODY_PROGRAM, HARMONY_PROGRAM) for t in tracks) \
            and any(t.program == MELODY_PROGRAM for t in tracks):
        is_melody = [t.program == MELODY_PROGRAM for t in tracks]
    else:
        means = [float(np.mean(t.notes.numpy()["pitch"])) for t in tracks]
        is_melody = [i == int(np.argmax(means)) for i in range(len(tracks))]
    out = symusic.Score(score.ticks_per_quarter)
    for program, members in ((MELODY_PROGRAM, [t for t, m in zip(tracks, is_melody) if m]),
                             (HARMONY_PROGRAM, [t for t, m in zip(tracks, is_melody) if not m])):
        track = symusic.Track(program=program, name="melody" if program == MELODY_PROGRAM else "harmony")
        for member in members:
            track.notes.extend(member.notes)
        if len(track.notes):
            track.notes.sort()
            out.tracks.append(track)
    for ts in score.time_signatures:
        beats = meter_beats(ts.numerator, ts.denominator)
        if beats is None:
            raise ParameterError(f"time signature {ts.numerator}/{ts.denominator} at tick {ts.time}: "
                                 f"no spelling in {'/4, '.join(map(str, METERS))}/4")
        if not (len(out.time_signatures) and out.time_signatures[-1].numerator == beats):
            out.time_signatures.append(symusic.TimeSignature(ts.time, beats, 4))
    return out
