"""Symbolic statistics: each on perfect, empty and invalid input and on a hand-worked case."""
import math

import numpy as np
import pretty_midi
import pytest

from cuecraft.errors import ParameterError
from cuecraft.evaluation.symbolic import (estimate_key, evaluate, grooving_similarity, in_scale_ratio, note_density,
                                          pitch_class_entropy)


def piece(bars):
    """bars: list of lists of (onset within a 2 s bar, pitch)."""
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    for b, notes in enumerate(bars):
        for onset, pitch in notes:
            inst.notes.append(pretty_midi.Note(velocity=80, pitch=pitch, start=2 * b + onset, end=2 * b + onset + 0.2))
    pm.instruments.append(inst)
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    drums.notes.append(pretty_midi.Note(velocity=80, pitch=36, start=0.25, end=0.3))  # ignored
    pm.instruments.append(drums)
    return pm


DOWNBEATS = np.array([0.0, 2.0, 4.0])


def test_pche_hand_worked():
    one_class = piece([[(0, 60), (0.5, 72)], [(0, 60)]])
    assert pitch_class_entropy(one_class, DOWNBEATS) == 0.0
    two_classes = piece([[(0, 60), (0.5, 62)], [(0, 60), (0.5, 62), (1.0, 64), (1.5, 65)]])
    assert abs(pitch_class_entropy(two_classes, DOWNBEATS) - (1.0 + 2.0) / 2) < 1e-9
    assert np.isnan(pitch_class_entropy(piece([[], []]), DOWNBEATS))


def test_gps_hand_worked():
    same = piece([[(0, 60), (1.0, 60)], [(0, 60), (1.0, 60)]])
    assert grooving_similarity(same, DOWNBEATS) == 1.0
    # Bar 1: positions 0 and 8; bar 2: positions 0 and 4 -> XOR has 2 of 16 -> 1 - 2/16.
    other = piece([[(0, 60), (1.0, 60)], [(0, 60), (0.5, 60)]])
    assert abs(grooving_similarity(other, DOWNBEATS) - (1 - 2 / 16)) < 1e-9
    assert np.isnan(grooving_similarity(same, DOWNBEATS[:2]))
    assert np.isnan(grooving_similarity(piece([[], []]), DOWNBEATS))  # no onsets: no groove to compare
    with pytest.raises(ParameterError, match=r"downbeats\[2\] = 1.0: must increase strictly \(previous 2.0\)"):
        grooving_similarity(same, [0.0, 2.0, 1.0])
    with pytest.raises(ParameterError, match=r"downbeats\[1\] = nan"):
        grooving_similarity(same, [0.0, np.nan])


def test_in_scale_and_density():
    pm = piece([[(0, 60), (0.5, 61)], [(0, 67), (1.0, 64)]])
    assert in_scale_ratio(pm, key_root=0, mode="major") == 0.75
    assert note_density(pm, duration=4.0) == 1.0
    assert in_scale_ratio(pm, key_root=0, mode="minor") == 0.5  # C and G are in C minor, Db and E are not
    assert in_scale_ratio(piece([[(0, 62), (1.0, 69)]]), key_root=0, mode="major") == 1.0
    assert np.isnan(in_scale_ratio(piece([[]]), key_root=0, mode="major"))
    assert note_density(piece([[]]), duration=4.0) == 0.0
    with pytest.raises(ParameterError):
        in_scale_ratio(pm, key_root=12, mode="major")
    with pytest.raises(ParameterError, match="mode = 'dorian'"):
        in_scale_ratio(pm, key_root=0, mode="dorian")
    with pytest.raises(ParameterError, match="duration = 0"):
        note_density(pm, duration=0)
    with pytest.raises(ParameterError, match="downbeats"):
        pitch_class_entropy(pm, [1.0])


def test_estimate_key():
    assert estimate_key(piece([[(0, 60), (0.5, 64), (1.0, 67)], [(0, 65), (0.5, 69), (1.0, 72)]])) == (0, "major")
    assert estimate_key(piece([[(0, 57), (0.5, 60), (1.0, 64)], [(0, 57), (0.5, 62), (1.0, 65)]])) == (9, "minor")
    assert estimate_key(piece([[]])) == (0, "major")  # nothing to go by


def test_evaluate_perfect_and_hand_worked():
    # Every bar the same C major arpeggio: one groove (GPS 1), all in the key; C, E, G, C per bar -> 1.5 bits.
    bar = [(0, 60), (0.5, 64), (1.0, 67), (1.5, 72)]
    # Bars from the MIDI's own downbeats (0, 2, 4 s: the piece ends at 5.7 s, so its third bar is not closed).
    out = evaluate(piece([bar, bar, bar]), duration=6.0)
    assert out == {"pche_1bar": pytest.approx(1.5), "gps_16pos": 1.0, "in_scale_ratio_estimated_key": 1.0,
                   "note_density_onsets_per_s": 2.0}
    # Hand-worked: given downbeats make one 4-s bar of it: classes C, E, G, C, C, E, G, C -> p = (1/2, 1/4, 1/4),
    # H = 1.5 bits; a single bar has no pair for GPS.
    out = evaluate(piece([bar, bar]), duration=8.0, downbeats=[0.0, 4.0])
    assert out["pche_1bar"] == pytest.approx(1.5) and math.isnan(out["gps_16pos"])
    assert out["note_density_onsets_per_s"] == 1.0
    other = evaluate(piece([bar, [(0, 60), (1.0, 61)]]), duration=4.0, downbeats=DOWNBEATS)  # bar 2: 0, 8; a Db
    assert other["gps_16pos"] == pytest.approx(1 - 2 / 16)  # positions {0,4,8,12} vs {0,8}
    assert other["in_scale_ratio_estimated_key"] == pytest.approx(5 / 6)


def test_evaluate_empty_and_invalid():
    empty = evaluate(pretty_midi.PrettyMIDI(), duration=3.0)
    assert empty["note_density_onsets_per_s"] == 0.0
    assert all(math.isnan(empty[k]) for k in ("pche_1bar", "gps_16pos", "in_scale_ratio_estimated_key"))
    assert math.isnan(evaluate(piece([[], []]), duration=4.0, downbeats=DOWNBEATS)["gps_16pos"])
    with pytest.raises(ParameterError, match="PrettyMIDI, got str"):
        evaluate("song.mid", duration=3.0)
    with pytest.raises(ParameterError, match="duration = -1"):
        evaluate(piece([[(0, 60)]]), duration=-1.0)
    with pytest.raises(ParameterError, match=r"downbeats\[1\] = 0.0"):
        evaluate(piece([[(0, 60)]]), duration=2.0, downbeats=[1.0, 0.0])
    with pytest.raises(ParameterError, match="1-D"):
        evaluate(piece([[(0, 60)]]), duration=2.0, downbeats=[[0.0, 2.0]])
