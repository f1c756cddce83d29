"""The piece being written: bars on the video's grid, controls at musical times, the grammar narrowed by the video."""
import numpy as np
import pytest

from cuecraft.controls.features import CONTROL_SLICES
from cuecraft.controls.schema import Controls
from cuecraft.errors import ParameterError
from cuecraft.generate.piece import ControlTrack, PieceState, music_bars
from cuecraft.models.tokenizer import MusicTokenizer
from media import beat_grid as grid


@pytest.mark.parametrize("cuts, lengths", [
    ((), [4, 4, 4]),
    ((5,), [3, 2, 4, 3]),        # a 5-beat bar before the cut is spelled 3 + 2
    ((4, 5), [3, 2, 4, 3]),      # a 1-beat bar joins its neighbour
    ((6,), [4, 2, 4, 2]),
])
def test_music_bars_keep_every_beat_and_downbeat(cuts, lengths):
    first, bars = music_bars(grid(12 if cuts != (6,) else 12, cuts=cuts))
    assert first == 0 and bars == lengths and sum(bars) == 12


def test_control_track_reads_the_melody_on_the_16th_grid():
    # Beats every 0.5 s from 0.25 s; the melody, sampled in 0.1 s frames, changes C -> E at 0.9 s
    # (meant for beat 1.25, 0.875 s), E -> rest at 1.3 s (beat 2.0, 1.25 s) and rest -> G at 2.3 s
    # (beat 4.0, 2.25 s): each change a frame late, as frame-sampled controls put them.
    melody = np.array([[0.0, 0], [0.9, 4], [1.3, np.nan], [2.3, 7]])
    track = ControlTrack(Controls(beat=grid(8), melody=melody, duration=4.0), first_downbeat=0)
    beats = np.array([1.0, 1.25, 1.75, 2.0, 3.75, 4.0])
    feats = track.features(beats, np.mod(beats, 4), np.full(6, 4))[:, CONTROL_SLICES["melody"]]
    # At the 16th where a change belongs the token already sees the new pitch class (12 = rest).
    assert feats[:, :13].argmax(1).tolist() == [0, 4, 4, 12, 12, 7]
    # 16ths to the next change, and what it changes to; nothing after G (last bin, zeros).
    assert (feats[:, 13:30].argmax(1) + 1).tolist() == [1, 3, 1, 8, 1, 17]
    assert feats[:5, 30:].argmax(1).tolist() == [4, 12, 12, 7, 7] and not feats[5, 30:].any()

    # One token's row (kept for the other tokens of its position) is the same as computed alone.
    for beat in beats:
        row = track.token_features(float(beat), float(beat % 4), 4)
        assert np.array_equal(row, track.features(np.array([beat]), np.array([beat % 4]), np.array([4]))[0])
        assert track.token_features(float(beat), float(beat % 4), 4) is row and not row.flags.writeable


def test_music_bars_need_a_downbeat():
    beat = grid(8)
    beat[:, 1] = 1
    with pytest.raises(ParameterError, match="downbeat"):
        music_bars(beat)


def test_piece_state_narrows_the_grammar_to_the_video():
    tk = MusicTokenizer()
    t = tk.token_id
    beat = grid(12, cuts=(5,))  # bars of 3, 2, 4 and 3 beats
    piece = PieceState(tk, Controls(beat=beat), harmony=True)
    assert piece.ids == [tk.bos_id] and len(piece.feats) == 1
    piece.append(t("Bar_None"))
    assert np.flatnonzero(piece.allowed()).tolist() == [t("TimeSig_3/4")]  # the video's first bar
    for token in ("TimeSig_3/4", "Position_0", "Program_73", "Pitch_72", "Velocity_95", "Duration_1.0.4"):
        piece.append(t(token))
    allowed = piece.allowed()  # after the first note: a harmony voice, once
    assert np.flatnonzero(allowed).tolist() == [t("Program_0")]
    for token in ("Program_0", "Pitch_60", "Velocity_79", "Duration_1.0.4"):
        piece.append(t(token))
    allowed = piece.allowed()
    assert allowed[t("Program_0")] and allowed[t("Position_4")] and not allowed[tk.eos_id]  # not in the last bar
    assert not piece.ends_with(t("Bar_None")) and piece.ends_with(tk.eos_id)
    for _ in range(3):
        piece.append(t("Bar_None"))
        piece.append(t("TimeSig_2/4" if piece.bar == 1 else "TimeSig_4/4" if piece.bar == 2 else "TimeSig_3/4"))
    assert piece.bar == 3 == len(piece.bars) - 1 and piece.ends_with(t("Bar_None"))  # no bar past the video's
    # Each token's controls are those at its musical time: the last bar starts at beat 9.
    np.testing.assert_array_equal(piece.feats[-1], piece.track.token_features(9.0, 0.0, 3))
