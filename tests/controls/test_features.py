import numpy as np
import pytest

from cuecraft.controls.features import CONTROL_DIMS, features_at
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
    melody = feats[:, 3:16]
    assert melody.argmax(1).tolist() == [7, 7, 12, 0, 0]  # 12 = rest
    np.testing.assert_allclose(feats[:, 16], (np.interp(times, [0, 4], [-40, 0]) / 40 + 1))
    np.testing.assert_allclose(feats[:, 17], np.interp(times, [0, 4], [-1, 1]))


def test_features_at_beyond_the_grid_extrapolates_and_absent_controls_are_zero():
    c = Controls(beat=controls().beat, duration=5.0)
    feats, presence = features_at(c, np.array([0.5, 4.5]))
    assert presence.tolist() == [1, 0, 0, 0] and not feats[:, 3:].any()
    phase = np.arctan2(feats[:, 0], feats[:, 1]) % (2 * np.pi) / (2 * np.pi) * 4
    np.testing.assert_allclose(phase, [3.0, 3.0], atol=1e-6)  # a beat before the first downbeat; 2 beats after beat 1 at 3.5 s


def test_features_at_rejects_nan_times():
    with pytest.raises(ParameterError, match="times"):
        features_at(controls(), np.array([0.0, np.nan]))
