import io

import numpy as np
import pretty_midi
import pytest

from cuecraft.errors import MediaError, ParameterError
from cuecraft.models.tokenizer import (HARMONY_PROGRAM, MELODY_PROGRAM, TYPE_INDEX, MusicTokenizer, meter_beats)


@pytest.fixture(scope="module")
def tk():
    return MusicTokenizer()


@pytest.fixture(scope="module")
def chorales():
    """Two-role scores of a few real pieces: Bach chorales and a Nottingham tune with chords."""
    from cuecraft.training.music21_pieces import corpus_root, parse_file, to_piece

    rels = ["bach/bwv66.6.mxl", "bach/bwv1.6.mxl", "bach/bwv10.7.mxl", "nottingham-dataset/reelsa-c.abc"]
    return [to_piece(parse_file(corpus_root() / rel)[0]).score for rel in rels]


def two_track_midi(bpm=90.0):
    """4/4 then 3/4 from bar 2; melody on the 1/16 grid, a block chord per bar below it."""
    beat = 60.0 / bpm
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    pm.time_signature_changes = [pretty_midi.TimeSignature(4, 4, 0.0), pretty_midi.TimeSignature(3, 4, 4 * beat)]
    melody = pretty_midi.Instrument(program=MELODY_PROGRAM)
    harmony = pretty_midi.Instrument(program=HARMONY_PROGRAM)
    # (start beat, duration beats, pitch): an eighth pickup-free line with a dotted note and a tie over the bar
    line = [(0, 1, 72), (1, 0.5, 74), (1.5, 0.25, 76), (1.75, 0.25, 77), (2, 1.5, 79), (3.5, 1.5, 81),
            (5, 1, 79), (6, 0.75, 77)]
    for start, dur, pitch in line:
        melody.notes.append(pretty_midi.Note(velocity=95, pitch=pitch, start=start * beat, end=(start + dur) * beat))
    for start, dur, chord in [(0, 4, (48, 52, 55)), (4, 3, (43, 47, 50, 53))]:
        for pitch in chord:
            harmony.notes.append(pretty_midi.Note(velocity=79, pitch=pitch, start=start * beat,
                                                  end=(start + dur) * beat))
    pm.instruments = [harmony, melody]  # the roles come from the programs, not the order
    return pm, line


def note_rows(pm):
    return sorted((inst.program, n.pitch, round(n.start, 6), round(n.end, 6)) for inst in pm.instruments
                  for n in inst.notes)


def test_vocabulary_is_small_and_laid_out(tk):
    counts = {name: int(tk.is_type[name].sum()) for name in TYPE_INDEX}
    assert tk.vocab_size == len(tk.tokens) < 400
    assert counts == {"PAD": 1, "BOS": 1, "EOS": 1, "Bar": 1, "TimeSig": 3, "Position": 16, "Program": 2,
                      "Chord": 144, "Pitch": 88, "Velocity": 8, "Duration": 16}
    assert tk.pad_id == 0 and tk.tokens[tk.bos_id] == "BOS_None"
    assert MusicTokenizer().fingerprint == tk.fingerprint


def test_meter_spellings():
    assert [meter_beats(*ts) for ts in [(4, 4), (3, 4), (2, 4), (2, 2), (6, 8), (4, 2), (3, 8), (5, 4), (9, 8)]] \
        == [4, 3, 2, 4, 3, 4, 3, None, None]


def test_hand_made_two_track_round_trip(tk, tmp_path):
    pm, line = two_track_midi(bpm=90.0)
    ids = tk.encode(pm)
    assert ids[0] == tk.bos_id and ids[-1] == tk.eos_id
    out = tk.decode(ids, bpm=90.0)
    assert note_rows(out) == note_rows(pm)
    assert [i.name for i in out.instruments] == ["melody", "harmony"]
    assert [(ts.numerator, ts.denominator) for ts in out.time_signature_changes] == [(4, 4), (3, 4)]
    # Each melody Pitch token sits at its note's onset in beats; bar positions restart at the 3/4 bar.
    prev = np.concatenate([[-1], ids[:-1]])
    melody_pitch = (tk.types[ids] == TYPE_INDEX["Pitch"]) & (prev == tk.melody_id)
    assert tk.token_times_in_beats(ids)[melody_pitch].tolist() == [s for s, _, _ in line]
    assert tk.bar_position(ids)[melody_pitch].tolist() == [0, 1, 1.5, 1.75, 2, 3.5, 1, 2]
    assert tk.beats_per_bar(ids)[melody_pitch].tolist() == [4] * 6 + [3] * 2
    # The same tokens come from the MIDI file on disk, and from the decoded score.
    pm.write(str(tmp_path / "two.mid"))
    assert np.array_equal(tk.encode(tmp_path / "two.mid"), ids)
    assert np.array_equal(tk.encode(tk.decode(ids, output="score")), ids)
    assert np.array_equal(tk.encode(tk.decode(ids, output="score").to("quarter")), ids)


def test_real_pieces_round_trip_on_the_grid(tk, chorales):
    for score in chorales:
        ids = tk.encode(score)
        notes = tk.notes(ids)
        tpq = score.ticks_per_quarter
        want = {}
        for track in score.tracks:
            for n in track.notes:
                key = (track.program, n.pitch, round(n.time / tpq * 4) / 4)
                want.setdefault(key, n.duration / tpq)
        got = {(int(r["program"]), int(r["pitch"]), float(r["start"])): float(r["duration"]) for r in notes}
        assert set(got) == set(want)
        for key, dur in want.items():
            # Durations snap to 1/4 beat below 2 beats, 1/2 up to 4, whole beats up to 8.
            assert abs(got[key] - min(dur, 8.0)) <= 0.5 + 1e-9, key
        assert np.array_equal(tk.encode(tk.decode(ids, bpm=100.0)), ids)


def test_grammar_accepts_every_prefix_of_real_pieces(tk, chorales):
    pm, _ = two_track_midi()
    for ids in [tk.encode(s) for s in chorales] + [tk.encode(pm)]:
        state = tk.grammar()
        for j, token in enumerate(ids.tolist()):
            assert state.mask()[token], (j, [tk.tokens[i] for i in ids[max(0, j - 6):j + 1]])
            state.update(token)
        assert np.array_equal(tk.grammar_mask(ids[:40]), _mask_after(tk, ids[:40]))


def _mask_after(tk, ids):
    state = tk.grammar()
    for token in ids.tolist():
        state.update(token)
    return state.mask()


def test_grammar_rules(tk):
    t = tk.token_id
    head = [tk.bos_id, t("Bar_None"), t("TimeSig_3/4"), t("Position_8"), t("Program_73"), t("Pitch_67")]
    mask = tk.grammar_mask(head)
    assert set(np.flatnonzero(mask)) == set(np.flatnonzero(tk.is_type["Velocity"]))
    after_note = head + [t("Velocity_95"), t("Duration_1.0.4")]
    mask = tk.grammar_mask(after_note)
    assert not mask[t("Position_4")] and not mask[t("Position_8")] and mask[t("Position_9")]
    assert not mask[t("Position_12")]  # beyond a 3/4 bar
    assert mask[tk.eos_id] and mask[t("Bar_None")]
    # Pitches ascend within a role; the melody goes before the harmony; a chord opens the harmony.
    assert not tk.grammar_mask(after_note + [t("Program_73")])[t("Pitch_67")]
    assert tk.grammar_mask(after_note + [t("Program_0")])[t("Chord_C:maj")]
    assert not tk.grammar_mask(after_note + [t("Program_73")])[t("Chord_C:maj")]
    harmony = after_note + [t("Program_0"), t("Pitch_48"), t("Velocity_79"), t("Duration_1.0.4")]
    assert not tk.grammar_mask(harmony)[t("Program_73")]
    assert not tk.grammar_mask([])[t("Bar_None")] and tk.grammar_mask([])[tk.bos_id]
    assert not tk.grammar_mask([tk.bos_id, t("Bar_None"), t("TimeSig_4/4")])[tk.eos_id]  # no notes yet
    assert np.flatnonzero(tk.grammar_mask(after_note + [tk.eos_id])).tolist() == [tk.pad_id]


def test_uniform_samples_under_the_mask_decode_to_valid_midi(tk):
    rng = np.random.default_rng(0)
    for _ in range(12):
        state, ids = tk.grammar(), []
        while True:
            mask = state.mask()
            assert mask.any()
            if len(ids) >= 150 and mask[tk.eos_id]:
                token = tk.eos_id
            else:
                mask[tk.eos_id] = False  # long enough samples: uniform sampling would end early
                token = int(rng.choice(np.flatnonzero(mask)))
            ids.append(token)
            state.update(token)
            if token == tk.eos_id:
                break
        ids = np.asarray(ids)
        pitch = tk.types[ids] == TYPE_INDEX["Pitch"]
        pm = tk.decode(ids, bpm=120.0)
        notes = sorted((n.start, n.pitch) for inst in pm.instruments for n in inst.notes)
        assert len(notes) == pitch.sum() > 0
        assert all(n.end > n.start for inst in pm.instruments for n in inst.notes)
        onsets = sorted(zip(np.round(tk.token_times_in_beats(ids)[pitch] * 0.5, 6), tk.values[ids[pitch]]))
        assert onsets == [(round(t, 6), p) for t, p in notes]
        buf = io.BytesIO()
        pm.write(buf)
        again = pretty_midi.PrettyMIDI(io.BytesIO(buf.getvalue()))
        assert sum(len(i.notes) for i in again.instruments) == len(notes)


def test_transpose_and_velocity_tables(tk):
    t = tk.token_id
    up = tk.transpose_table(2)
    assert up[t("Pitch_60")] == t("Pitch_62") and up[t("Chord_A#:min")] == t("Chord_C:min")
    assert up[t("Pitch_107")] == -1 and up[t("Position_3")] == t("Position_3")
    louder = tk.velocity_table(1)
    assert louder[t("Velocity_79")] == t("Velocity_95") and louder[t("Velocity_127")] == t("Velocity_127")


def test_save_and_load_check_the_vocabulary(tk, tmp_path):
    import json

    path = tk.save(tmp_path / "tokenizer.json")
    assert MusicTokenizer.load(path).fingerprint == tk.fingerprint
    data = json.loads(path.read_text())
    data["vocab"][5] = "Pitch_999"
    path.write_text(json.dumps(data))
    with pytest.raises(MediaError, match=r"vocab\[5\] = 'Pitch_999'"):
        MusicTokenizer.load(path)
    data["spec"]["num_velocities"] = 16
    path.write_text(json.dumps(data))
    with pytest.raises(MediaError, match=r"spec.num_velocities = 16"):
        MusicTokenizer.load(path)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(MediaError, match="bad.json"):
        MusicTokenizer.load(tmp_path / "bad.json")


def test_bad_inputs_name_the_value(tk, tmp_path):
    pm, _ = two_track_midi()
    pm.time_signature_changes = [pretty_midi.TimeSignature(5, 4, 0.0)]
    with pytest.raises(ParameterError, match="5/4"):
        tk.encode(pm)
    with pytest.raises(ParameterError, match=r"ids\[1\] = 999"):
        tk.decode([tk.bos_id, 999])
    with pytest.raises(ParameterError, match="bpm"):
        tk.decode([tk.bos_id], bpm=0)
    with pytest.raises(ParameterError, match="music must be"):
        tk.encode(42)
    (tmp_path / "x.mid").write_bytes(b"not midi")
    with pytest.raises(MediaError, match="x.mid"):
        tk.encode(tmp_path / "x.mid")


def test_chords_belong_to_the_harmony_role(tk):
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    melody, harmony = pretty_midi.Instrument(MELODY_PROGRAM), pretty_midi.Instrument(HARMONY_PROGRAM)
    for pitch in (72, 76, 79):  # a melodic triad (double stops) ...
        melody.notes.append(pretty_midi.Note(velocity=95, pitch=pitch, start=0.0, end=0.5))
    for pitch in (41, 45, 48):  # ... over an F major chord
        harmony.notes.append(pretty_midi.Note(velocity=79, pitch=pitch, start=0.0, end=2.0))
    pm.instruments = [melody, harmony]
    names = [tk.tokens[i] for i in tk.encode(pm)]
    chords = [i for i, name in enumerate(names) if name.startswith("Chord")]
    assert [names[i] for i in chords] == ["Chord_F:maj"] and names[chords[0] - 1] == "Program_0"
    assert len(tk.notes(tk.encode(pm))) == 6
