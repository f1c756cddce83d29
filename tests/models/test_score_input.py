import pretty_midi
import pytest

from cuecraft.errors import MediaError, ParameterError
from cuecraft.models.score_input import to_score, two_roles
from cuecraft.models.tokenizer import HARMONY_PROGRAM, MELODY_PROGRAM


def string_trio():
    """Violin (high), viola and cello (low) on other programs, a drum track, 6/8."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    pm.time_signature_changes = [pretty_midi.TimeSignature(6, 8, 0.0)]
    for program, pitches in ((40, (76, 79)), (41, (64, 64)), (42, (48, 43))):
        inst = pretty_midi.Instrument(program=program)
        inst.notes = [pretty_midi.Note(velocity=80, pitch=p, start=0.5 * i, end=0.5 * i + 0.5)
                      for i, p in enumerate(pitches)]
        pm.instruments.append(inst)
    # Two voices in unison on one instrument: a MIDI channel cannot hold them, the Score must.
    pm.instruments[1].notes.append(pretty_midi.Note(velocity=70, pitch=64, start=0.0, end=1.0))
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    drums.notes = [pretty_midi.Note(velocity=100, pitch=36, start=0.0, end=0.1)]
    pm.instruments.append(drums)
    return pm


def test_the_highest_track_becomes_the_melody_and_the_rest_the_harmony():
    score = two_roles(to_score(string_trio()))
    programs = [t.program for t in score.tracks]
    assert programs == [MELODY_PROGRAM, HARMONY_PROGRAM]
    melody, harmony = (sorted(n.pitch for n in t.notes) for t in score.tracks)
    assert melody == [76, 79] and harmony == [43, 48, 64, 64, 64]  # the unison note kept, the drums gone
    assert [(ts.numerator, ts.denominator) for ts in score.time_signatures] == [(3, 4)]  # 6/8 in quarters


def test_tracks_already_in_the_two_roles_keep_them():
    pm = pretty_midi.PrettyMIDI()
    low_melody, high_harmony = pretty_midi.Instrument(MELODY_PROGRAM), pretty_midi.Instrument(HARMONY_PROGRAM)
    low_melody.notes = [pretty_midi.Note(velocity=90, pitch=50, start=0.0, end=1.0)]
    high_harmony.notes = [pretty_midi.Note(velocity=90, pitch=80, start=0.0, end=1.0)]
    pm.instruments = [high_harmony, low_melody]
    melody, harmony = two_roles(to_score(pm)).tracks
    assert (melody.program, melody.notes[0].pitch) == (MELODY_PROGRAM, 50)
    assert (harmony.program, harmony.notes[0].pitch) == (HARMONY_PROGRAM, 80)


def test_bad_music_names_the_type_the_file_or_the_meter(tmp_path):
    with pytest.raises(ParameterError, match="got int"):
        to_score(3)
    (tmp_path / "broken.mid").write_bytes(b"MThd nonsense")
    with pytest.raises(MediaError, match="broken.mid"):
        to_score(tmp_path / "broken.mid")
    pm = string_trio()
    pm.time_signature_changes = [pretty_midi.TimeSignature(7, 8, 0.0)]
    with pytest.raises(ParameterError, match="7/8"):
        two_roles(to_score(pm))
