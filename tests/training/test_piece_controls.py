import numpy as np
import pretty_midi
import pytest

from cuecraft.controls import features
from cuecraft.controls.from_midi import estimate_emotion, note_intensity_db
from cuecraft.models.tokenizer import HARMONY_PROGRAM, MELODY_PROGRAM, TYPE_INDEX, MusicTokenizer
from cuecraft.training.piece_controls import (beats_to_seconds, control_features, piece_control_values,
                                              piece_controls, token_melody_changes)

MELODY = slice(3, 16)  # features layout: beat 3, melody 43 (its pitch class first), intensity 1, emotion 2
UNTIL = slice(16, 33)
NEXT = slice(33, 46)
INTENSITY = features.CONTROL_SLICES["intensity"].start


@pytest.fixture(scope="module")
def tk():
    return MusicTokenizer()


def piece(bpm=120.0):
    """Bar 1 (4/4): C5 for 2 beats, E5 for 2 beats over a held C3; bar 2 (3/4): G5, rest, A5 (soft)."""
    beat = 60.0 / bpm
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    pm.time_signature_changes = [pretty_midi.TimeSignature(4, 4, 0.0), pretty_midi.TimeSignature(3, 4, 4 * beat)]
    melody, harmony = pretty_midi.Instrument(MELODY_PROGRAM), pretty_midi.Instrument(HARMONY_PROGRAM)
    for start, dur, pitch, vel in [(0, 2, 72, 100), (2, 2, 76, 100), (4, 1, 79, 100), (6, 1, 81, 31)]:
        melody.notes.append(pretty_midi.Note(velocity=vel, pitch=pitch, start=start * beat, end=(start + dur) * beat))
    harmony.notes.append(pretty_midi.Note(velocity=79, pitch=48, start=0.0, end=4 * beat))
    pm.instruments = [melody, harmony]
    return pm


def test_beats_to_seconds_follows_tempo_changes():
    import symusic

    score = symusic.Score(480)
    score.tempos = [symusic.Tempo(0, qpm=120.0), symusic.Tempo(4 * 480, qpm=60.0)]
    track = symusic.Track(program=0)
    track.notes.append(symusic.Note(0, 480 * 8, 60, 80))
    score.tracks.append(track)
    pm = pretty_midi.PrettyMIDI(__import__("io").BytesIO(score.dumps_midi()))
    # 4 beats at 0.5 s, then 1 s a beat, extrapolated past the end.
    assert beats_to_seconds(pm, np.array([0, 2, 4, 5, 10])) == pytest.approx([0, 1, 2, 3, 8])


def test_controls_describe_the_music_at_each_tokens_time(tk):
    pm = piece(bpm=120.0)
    ids = tk.encode(pm)
    values = piece_control_values(pm, ids, tokenizer=tk)
    names = [tk.tokens[i] for i in ids]
    beats = tk.token_times_in_beats(ids)
    assert values.seconds == pytest.approx(beats * 0.5)
    # At the Position where E5 starts (beat 2), the melody is already E, not the C before it.
    at_e = names.index("Position_8")
    assert values.pitch_class[at_e] == 4 and values.pitch_class[at_e - 1] == 0
    is_pitch = tk.types[ids] == TYPE_INDEX["Pitch"]
    top = {0: 0, 2: 4, 4: 7, 6: 9}
    for i in np.flatnonzero(is_pitch):
        assert values.pitch_class[i] == top[beats[i]]
    # Intensity and emotion are the shared extractors' values at the token times.
    assert values.intensity_db == pytest.approx(note_intensity_db(pm, values.seconds))
    assert values.emotion == pytest.approx(estimate_emotion(pm, values.seconds))
    assert values.intensity_db[names.index("Position_8", at_e + 1)] < values.intensity_db[at_e]  # the soft A5
    # The meter changes at the TimeSig token (a Bar token's position 0 reads the same in any meter).
    change = names.index("TimeSig_3/4")
    assert values.beats_per_bar.tolist() == [4] * change + [3] * (len(ids) - change)


def test_features_layout_and_downbeats(tk):
    pm = piece()
    ids = tk.encode(pm)
    controls, presence = piece_controls(pm, ids, tokenizer=tk)
    assert controls.shape == (len(ids), sum(features.CONTROL_DIMS.values())) and controls.dtype == np.float32
    assert presence.tolist() == [1, 1, 1, 1]
    bars = np.flatnonzero(ids == tk.token_id("Bar_None"))
    assert controls[bars, 2].tolist() == [1.0, 1.0]  # downbeat flag
    assert controls[bars, 1] == pytest.approx([1.0, 1.0])  # cos of phase 0
    pos8 = [tk.tokens[i] for i in ids].index("Position_8")
    assert controls[pos8, :2] == pytest.approx([0.0, -1.0], abs=1e-6)  # beat 2 of 4: half a bar
    assert controls[pos8, MELODY].argmax() == 4
    assert np.all(controls[:, MELODY].sum(axis=1) == 1)
    # The look-ahead: from E5 at beat 2 the melody next changes to G at beat 4 (bar 2), 8 16ths on.
    assert controls[pos8, UNTIL].argmax() + 1 == 8 and controls[pos8, NEXT].argmax() == 7


def test_melody_changes_read_off_the_tokens_are_the_top_voice(tk):
    pm = piece()
    times, pc = token_melody_changes(tk.encode(pm), tokenizer=tk)
    # C5, E5, G5 (bar 2 of 3/4 starts at beat 4), a rest, A5, then nothing; the held C3 is below.
    assert times.tolist() == [0, 2, 4, 5, 6, 7]
    assert pc[[0, 1, 2, 4]].tolist() == [0, 4, 7, 9] and np.isnan(pc[[3, 5]]).all()


def test_control_features_handles_meter_changes_and_rests():
    out, presence = control_features(position_in_bar=np.array([0.0, 1.0, 0.0, 1.5]), beats_per_bar=np.array([4, 4, 3, 3]),
                                     pitch_class=np.array([0.0, np.nan, 11.0, 5.0]),
                                     intensity_db=np.array([0.0, -40.0, -80.0, -20.0]),
                                     emotion=np.array([[0.5, -0.5]] * 4))
    assert out[:, 0] == pytest.approx([0.0, 1.0, 0.0, 0.0], abs=1e-6)  # sin: quarter of 4/4, half of 3/4
    assert out[3, 1] == pytest.approx(-1.0)
    assert out[1, MELODY].argmax() == 12 and out[2, MELODY].argmax() == 11
    assert out[:, INTENSITY].tolist() == [1.0, 0.0, -1.0, 0.5]
    assert (out[:, UNTIL].argmax(1) == 16).all()  # no melody changes given: none within 4 beats


def test_bad_ids_are_refused(tk):
    with pytest.raises(Exception, match="ids"):
        piece_control_values(piece(), np.zeros((2, 2), dtype=int), tokenizer=tk)
