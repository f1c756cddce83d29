import numpy as np
import pretty_midi
import pytest

from cuecraft.errors import ParameterError
from cuecraft.evaluation.symbolic import grooving_similarity, in_scale_ratio, note_density, pitch_class_entropy


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


def test_in_scale_and_density():
    pm = piece([[(0, 60), (0.5, 61)], [(0, 67), (1.0, 64)]])
    assert in_scale_ratio(pm, key_root=0, mode="major") == 0.75
    assert note_density(pm, duration=4.0) == 1.0
    with pytest.raises(ParameterError):
        in_scale_ratio(pm, key_root=12, mode="major")
    with pytest.raises(ParameterError, match="downbeats"):
        pitch_class_entropy(pm, [1.0])
