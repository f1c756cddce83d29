import numpy as np
import pytest

from cuecraft.controls.features import (CONTROL_DIMS, CONTROL_SLICES, NEXT_PITCH_CLASS, PITCH_CLASS, UNTIL_CHANGE,
                                        features_at, melody_changes, melody_changes_in_beats,
                                        melody_features)
from cuecraft.controls.schema import Controls
from cuecraft.errors import ParameterError


def controls():
    beat = np.array([[1.0, 0], [1.5, 1], [2.0, 2], [2.5, 3], [3.0, 0], [3.5, 1]])
    melody = np.array([[0.0, 7], [2.0, np.nan], [2.5, 0]])
    intensity = np.array([[0.0, -40.0], [4.0, 0.0]])
    emotion = np.array([[0.0, -1.0, 0.5], [4.0, 1.0, 0.5]])
    return Controls(beat=beat, melody=melody, intensity=intensity, emotion=emotion, duration=4.0)


def test_features_at_frame_times_follow_each_control():
    times = np.array([1.0, 1.25, 2.25, 3.0, 3.75])
    feats, presence = features_at(controls(), times)
    assert feats.shape == (5, sum(CONTROL_DIMS.values())) and presence.tolist() == [1, 1, 1, 1]
    phase = np.arctan2(feats[:, 0], feats[:, 1]) % (2 * np.pi) / (2 * np.pi) * 4  # position in the bar
    np.testing.assert_allclose(phase, [0.0, 0.5, 2.5, 0.0, 1.5], atol=1e-9)
    assert feats[:, 2].tolist() == [1, 1, 0, 1, 0]  # downbeat flag during beat 0 of each bar
    melody = feats[:, CONTROL_SLICES["melody"]]
    assert melody[:, PITCH_CLASS].argmax(1).tolist() == [7, 7, 12, 0, 0]  # 12 = rest
    # The beat grid runs at 0.5 s a beat from 1.0 s: the rest at 2.0 s is 8 16ths after 1.0 s,
    # 6 after 1.25 s; C at 2.5 s is 2 after 2.25 s; nothing changes after 2.5 s (last bin).
    assert (melody[:, UNTIL_CHANGE].argmax(1) + 1).tolist() == [8, 6, 2, 17, 17]
    assert melody[:3, NEXT_PITCH_CLASS].argmax(1).tolist() == [12, 12, 0] and not melody[3:, NEXT_PITCH_CLASS].any()
    assert melody.sum(1).tolist() == [3, 3, 3, 2, 2]
    intensity, emotion = CONTROL_SLICES["intensity"].start, CONTROL_SLICES["emotion"].start
    np.testing.assert_allclose(feats[:, intensity], (np.interp(times, [0, 4], [-40, 0]) / 40 + 1))
    np.testing.assert_allclose(feats[:, emotion], np.interp(times, [0, 4], [-1, 1]))


def test_melody_changes_drop_repeats_and_the_look_ahead_rounds_to_16ths():
    times, pc = melody_changes(np.array([0.0, 1.0, 2.0, 2.5, 3.0]), np.array([4, 4, np.nan, np.nan, 4]))
    assert times.tolist() == [0.0, 2.0, 3.0] and np.isnan(pc[1]) and pc[[0, 2]].tolist() == [4, 4]
    out = melody_features(np.array([4.0, 4.0, np.nan]), now=np.array([0.0, 1.9, 2.0]), change_times=times,
                          change_pitch_class=pc)
    # From 1.9 beats the change at 2.0 is 0.4 16ths away: at least one step. A change at the
    # token's own time is already in its pitch class, so the look-ahead names the one after.
    assert (out[:, UNTIL_CHANGE].argmax(1) + 1).tolist() == [8, 1, 4]
    assert out[:, NEXT_PITCH_CLASS].argmax(1).tolist() == [12, 12, 4]
    without = melody_features(np.array([4.0]))
    assert without[0, UNTIL_CHANGE].argmax() == 16 and not without[0, NEXT_PITCH_CLASS].any()


def test_features_at_beyond_the_grid_extrapolates_and_absent_controls_are_zero():
    c = Controls(beat=controls().beat, duration=5.0)
    feats, presence = features_at(c, np.array([0.5, 4.5]))
    assert presence.tolist() == [1, 0, 0, 0] and not feats[:, 3:].any()  # everything after the beat block
    phase = np.arctan2(feats[:, 0], feats[:, 1]) % (2 * np.pi) / (2 * np.pi) * 4
    np.testing.assert_allclose(phase, [3.0, 3.0], atol=1e-6)  # a beat before the first downbeat; 2 beats after beat 1 at 3.5 s


def test_features_at_rejects_nan_times():
    with pytest.raises(ParameterError, match="times"):
        features_at(controls(), np.array([0.0, np.nan]))


def test_melody_changes_snap_to_the_grid_and_the_later_of_two_wins():
    melody = np.array([[0.0, 0], [0.49, 4], [0.52, 7], [1.13, np.nan]])  # 2 beats a second
    beats, pc = melody_changes_in_beats(melody, beats_at=lambda s: np.asarray(s) * 2.0, snap=4)
    assert beats.tolist() == [0.0, 1.0, 2.25] and pc[:2].tolist() == [0, 7] and np.isnan(pc[2])
    unsnapped, _ = melody_changes_in_beats(melody, beats_at=lambda s: np.asarray(s) * 2.0)
    assert unsnapped == pytest.approx([0.0, 0.98, 1.04, 2.26])
