"""Compound steps: a note's event tokens in one step, converted losslessly both ways."""
import numpy as np
import pytest

from cuecraft.errors import ParameterError
from cuecraft.models.compound import SLOTS, flatten, group, opens_step, step_starts
from cuecraft.models.tokenizer import TYPE_INDEX, MusicTokenizer


@pytest.fixture(scope="module")
def tk():
    return MusicTokenizer()


@pytest.fixture(scope="module")
def pieces(tk):
    """Event tokens of real pieces: Bach chorales (four voices, chords) and a Nottingham tune."""
    from cuecraft.training.music21_pieces import corpus_root, parse_file, to_piece

    rels = ["bach/bwv66.6.mxl", "bach/bwv10.7.mxl", "nottingham-dataset/reelsa-c.abc"]
    return [tk.encode(to_piece(parse_file(corpus_root() / rel)[0]).score) for rel in rels]


def test_real_pieces_group_into_notes_and_back(tk, pieces):
    for ids in pieces:
        steps = group(ids, tk)
        assert steps.shape[0] == SLOTS and steps.dtype == np.int64
        assert np.array_equal(flatten(steps, tk), ids)
        assert opens_step(tk)[steps[0]].all() and not opens_step(tk)[steps[1:]].any()
        types = tk.types[steps]
        notes = types[0] == TYPE_INDEX["Program"]
        is_pitch = types[1] == TYPE_INDEX["Pitch"]
        # A note is one step: Program Pitch Velocity Duration; a Program Chord pair is another.
        note_types = [TYPE_INDEX[t] for t in ("Pitch", "Velocity", "Duration")]
        assert (types[1:, notes & is_pitch].T == note_types).all()
        chords = notes & ~is_pitch
        assert (types[1, chords] == TYPE_INDEX["Chord"]).all() and (steps[2:, chords] == tk.pad_id).all()
        bars = types[0] == TYPE_INDEX["Bar"]
        assert (types[1, bars] == TYPE_INDEX["TimeSig"]).all() and (steps[2:, bars] == tk.pad_id).all()
        # About three event tokens per step: decoding takes about a third of the steps.
        assert 2.5 < len(ids) / steps.shape[1] < 4
        assert np.array_equal(step_starts(ids, tk), np.flatnonzero(opens_step(tk)[ids]))


def test_padding_is_dropped_and_a_crop_may_start_inside_a_step(tk, pieces):
    ids = pieces[0]
    padded = np.concatenate([ids[:40], np.full(5, tk.pad_id)])
    assert np.array_equal(flatten(group(padded, tk), tk), ids[:40])
    inside = int(np.flatnonzero(tk.types[ids] == TYPE_INDEX["Velocity"])[0])
    steps = group(ids[inside:inside + 20], tk)  # the first step is the rest of a note
    assert step_starts(ids[inside:inside + 20], tk)[0] == 0
    assert np.array_equal(flatten(steps, tk), ids[inside:inside + 20])
    assert group(np.zeros(0, dtype=np.int64), tk).shape == (SLOTS, 0)


def test_bad_steps_name_the_problem(tk):
    pitch = tk.token_id("Pitch_60")
    with pytest.raises(ParameterError, match="slot 4"):
        group([tk.token_id("Program_0")] + [pitch] * 4, tk)
    with pytest.raises(ParameterError, match=r"\[4, S\]"):
        flatten(np.zeros((3, 5), dtype=np.int64), tk)


def test_the_grammar_never_mixes_openers_and_continuations(tk, pieces):
    """The decoder ends a step when the grammar allows a token that opens one: that is only
    right if the grammar never allows both kinds at once."""
    opener = opens_step(tk)
    for ids in pieces:
        state = tk.grammar(melody_on_top=False)
        for token in ids.tolist()[:-1]:
            state.update(token)
            allowed = state.mask()
            assert not ((allowed & opener).any() and (allowed & ~opener).any()), tk.tokens[token]
