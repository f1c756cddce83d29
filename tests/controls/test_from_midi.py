"""MIDI → controls on MIDI files built here with known tempo maps, meters and voices."""
from __future__ import annotations

import mido
import numpy as np
import pretty_midi
import pytest

from cuecraft.controls.from_midi import (
    controls_from_midi, estimate_emotion, load_reference_midi, note_intensity_db, top_voice)
from cuecraft.controls.resample import sample_hold, sample_linear
from cuecraft.errors import MediaError, ParameterError

TPB = 480


def write_meter_midi(path, *, bars: int = 8, change_bar: int = 4):
    """3/4 MIDI: 120 BPM, then 80 BPM from ``change_bar``.

    Track 1 (piano): a held bass C3 under a melody that steps E5, G5, A5 per beat. Track 2:
    drums on channel 10 at pitch 96 (above the melody) on every beat.
    """
    meta = mido.MidiTrack([
        mido.MetaMessage("time_signature", numerator=3, denominator=4, time=0),
        mido.MetaMessage("set_tempo", tempo=500000, time=0),
        mido.MetaMessage("set_tempo", tempo=750000, time=change_bar * 3 * TPB),
    ])
    piano, drums = mido.MidiTrack(), mido.MidiTrack()
    piano.append(mido.Message("note_on", note=48, velocity=70, time=0))
    melody = [76, 79, 81]
    for beat in range(bars * 3):
        piano.append(mido.Message("note_on", note=melody[beat % 3], velocity=90, time=0))
        piano.append(mido.Message("note_off", note=melody[beat % 3], velocity=0, time=TPB))
        drums.append(mido.Message("note_on", channel=9, note=96, velocity=100, time=0))
        drums.append(mido.Message("note_off", channel=9, note=96, velocity=0, time=TPB))
    piano.append(mido.Message("note_off", note=48, velocity=0, time=0))
    mid = mido.MidiFile(ticks_per_beat=TPB)
    mid.tracks.extend([meta, piano, drums])
    mid.save(str(path))
    return path


def make_pm(notes, *, tempo: float = 120.0, drums=()) -> pretty_midi.PrettyMIDI:
    """PrettyMIDI from (start, end, pitch, velocity) tuples (piano) and drum tuples."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    for is_drum, group in ((False, notes), (True, drums)):
        if group:
            inst = pretty_midi.Instrument(program=0, is_drum=is_drum)
            inst.notes = [pretty_midi.Note(velocity=int(v), pitch=int(p), start=s, end=e) for s, e, p, v in group]
            pm.instruments.append(inst)
    return pm


def progression(chords, *, seconds: float = 1.0, velocity: int = 80):
    return [(i * seconds, (i + 1) * seconds, p, velocity) for i, chord in enumerate(chords) for p in chord]


@pytest.fixture()
def meter_midi(tmp_path):
    return write_meter_midi(tmp_path / "waltz.mid")


def test_beats_follow_tempo_change_and_meter(meter_midi):
    controls = load_reference_midi(meter_midi)
    pm = pretty_midi.PrettyMIDI(str(meter_midi))
    expected = pm.get_beats()
    expected = expected[expected <= pm.get_end_time() + 1e-9]
    assert controls.beats_per_bar == 3
    np.testing.assert_allclose(controls.beat[:, 0], expected, atol=1e-6)
    down = controls.beat[controls.beat[:, 1] == 0, 0]
    np.testing.assert_allclose(down, pm.get_downbeats()[: len(down)], atol=1e-6)
    assert len(down) == 8
    np.testing.assert_array_equal(controls.beat[:, 1], np.arange(len(controls.beat)) % 3)
    # 0.5 s beats for 4 bars, then 0.75 s.
    gaps = np.diff(controls.beat[:, 0])
    np.testing.assert_allclose(gaps[:12], 0.5, atol=1e-6)
    np.testing.assert_allclose(gaps[12:], 0.75, atol=1e-6)
    assert controls.source["beat"] == "reference MIDI 'waltz.mid'"


def test_top_voice_takes_highest_pitched_note_and_ignores_drums(meter_midi):
    pm = pretty_midi.PrettyMIDI(str(meter_midi))
    times = np.array([0.25, 0.75, 1.25, 6.3, 6.9, 100.0])  # beats 0-2; 6.0 s starts beat 12 (0.75 s each)
    np.testing.assert_array_equal(top_voice(pm, times)[:5], [76, 79, 81, 76, 79])
    assert np.isnan(top_voice(pm, times)[5])
    controls = controls_from_midi(pm)
    np.testing.assert_array_equal(sample_hold(controls.melody, times[:5]), [4, 7, 9, 4, 7])


def test_top_voice_rests_and_unsorted_times():
    pm = make_pm([(0.0, 1.0, 60, 80), (0.5, 1.0, 67, 80), (2.0, 3.0, 62, 80)], drums=[(0.0, 3.0, 90, 100)])
    out = top_voice(pm, np.array([2.5, 0.2, 0.7, 1.5]))
    np.testing.assert_array_equal(out[:3], [62, 60, 67])
    assert np.isnan(out[3])
    melody = controls_from_midi(pm).melody
    np.testing.assert_array_equal(melody, [[0.0, 0], [0.5, 7], [1.0, np.nan], [2.0, 2]])


def test_intensity_rises_with_velocity_and_density():
    ramp = make_pm([(i * 0.5, (i + 1) * 0.5, 60, v) for i, v in enumerate(np.linspace(20, 127, 16).astype(int))])
    times = np.arange(0.5, 7.5, 0.25)
    db = note_intensity_db(ramp, times)
    assert np.all(np.diff(db) > 0)
    assert np.all((db >= -80) & (db <= 0))
    one = make_pm([(0.0, 4.0, 60, 100)])
    four = make_pm([(0.0, 4.0, p, 100) for p in (60, 64, 67, 72)])
    mid = np.array([2.0])
    assert note_intensity_db(four, mid)[0] == pytest.approx(note_intensity_db(one, mid)[0] + 10 * np.log10(4))
    assert note_intensity_db(one, mid)[0] == pytest.approx(20 * np.log10(100 / 127) - 10 * np.log10(16))
    assert note_intensity_db(one, np.array([10.0]))[0] == -80.0
    # A drum hit's notional 10 ms length counts as 0.2 s of sound, averaged over the 1 s window.
    hit = make_pm([], drums=[(1.0, 1.01, 36, 127)])
    assert note_intensity_db(hit, np.array([1.0]))[0] == pytest.approx(10 * np.log10(0.2 / 16))


def test_intensity_series_in_controls():
    pm = make_pm([(i * 0.5, (i + 1) * 0.5, 60, v) for i, v in enumerate(np.linspace(20, 127, 16).astype(int))])
    controls = controls_from_midi(pm, frame_rate=4.0)
    assert np.allclose(np.diff(controls.intensity[:, 0]), 0.25)
    est = sample_linear(controls.intensity, np.array([1.0, 7.0]))[:, 0]
    assert est[1] > est[0] + 10


def test_valence_major_above_minor_and_arousal_fast_above_slow():
    major = make_pm(progression([[60, 64, 67], [65, 69, 72], [67, 71, 74], [60, 64, 67]] * 2))
    minor = make_pm(progression([[60, 63, 67], [65, 68, 72], [67, 70, 74], [60, 63, 67]] * 2))
    times = np.arange(0.0, 8.0, 0.5)
    v_major, v_minor = estimate_emotion(major, times)[:, 0], estimate_emotion(minor, times)[:, 0]
    assert v_major.mean() > v_minor.mean() + 0.5
    assert np.all(v_major > v_minor)

    rng = np.random.default_rng(0)
    slow = make_pm([(i * 1.0, i * 1.0 + 0.9, int(p), 80) for i, p in enumerate(rng.choice([60, 64, 67], 8))],
                   tempo=70)
    fast = make_pm([(i * 0.125, i * 0.125 + 0.1, int(p), 80) for i, p in enumerate(rng.choice([60, 64, 67], 64))],
                   tempo=160)
    a_slow, a_fast = estimate_emotion(slow, times)[:, 1], estimate_emotion(fast, times)[:, 1]
    assert a_fast.mean() > a_slow.mean() + 0.5
    for e in (estimate_emotion(major, times), estimate_emotion(fast, times)):
        assert np.all(np.abs(e) <= 1.0)
    # Register: the same progression two octaves up reads brighter.
    high = make_pm(progression([[p + 24 for p in c] for c in [[60, 64, 67], [65, 69, 72]] * 4]))
    low = make_pm(progression([[p - 12 for p in c] for c in [[60, 64, 67], [65, 69, 72]] * 4]))
    assert estimate_emotion(high, times)[:, 0].mean() > estimate_emotion(low, times)[:, 0].mean()


def test_arousal_rises_with_density_at_equal_tempo():
    times = np.arange(0.0, 8.0, 0.5)
    sparse = make_pm([(i * 2.0, i * 2.0 + 0.4, 60, 80) for i in range(4)])
    dense = make_pm([(i * 0.25, i * 0.25 + 0.2, 60, 80) for i in range(32)])
    chord_hits = make_pm([(i * 2.0, i * 2.0 + 0.4, p, 80) for i in range(4) for p in (60, 64, 67)])
    a_sparse, a_dense = estimate_emotion(sparse, times)[:, 1], estimate_emotion(dense, times)[:, 1]
    assert np.all(a_dense > a_sparse + 0.3)
    # A chord is one rhythmic event: three notes at once do not triple the density.
    np.testing.assert_allclose(estimate_emotion(chord_hits, times)[:, 1], a_sparse)


def test_controls_emotion_at_2hz():
    controls = controls_from_midi(make_pm(progression([[60, 64, 67]] * 5)))
    np.testing.assert_allclose(controls.emotion[:, 0], np.arange(0, 5.0, 0.5))
    assert controls.duration == pytest.approx(5.0)


def test_max_duration_crops(meter_midi):
    controls = load_reference_midi(meter_midi, max_duration=3.0)
    assert controls.duration == 3.0
    assert controls.beat[-1, 0] <= 3.0
    assert controls.intensity[-1, 0] < 3.0


def test_bad_arguments():
    pm = make_pm([(0.0, 1.0, 60, 80)])
    with pytest.raises(ParameterError, match="frame_rate = 0"):
        controls_from_midi(pm, frame_rate=0)
    with pytest.raises(ParameterError, match="PrettyMIDI"):
        controls_from_midi("song.mid")
    with pytest.raises(ParameterError, match="window = -1"):
        note_intensity_db(pm, np.zeros(3), window=-1)
    with pytest.raises(ParameterError, match="finite"):
        top_voice(pm, np.array([0.0, np.nan]))
    with pytest.raises(MediaError, match="no notes"):
        controls_from_midi(pretty_midi.PrettyMIDI())


@pytest.mark.parametrize("content, match", [
    (None, "no such"), (b"", "empty"), (b"MThd\x00\x00\x00\x06\x00\x01\x00", "not a readable MIDI"),
    (b"this is a text file\n", "not a readable MIDI"),
])
def test_bad_files_raise_media_error_naming_them(tmp_path, content, match):
    path = tmp_path / "broken.mid"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError, match=match) as info:
        load_reference_midi(path)
    assert str(path) in str(info.value)


def test_midi_without_notes_names_file(tmp_path):
    path = tmp_path / "empty_song.mid"
    mido.MidiFile(tracks=[mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0)])]).save(str(path))
    with pytest.raises(MediaError, match="empty_song.mid.*no notes"):
        load_reference_midi(path)
