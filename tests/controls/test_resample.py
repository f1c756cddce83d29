import math

import numpy as np
import pytest

from cuecraft.controls.resample import (beat_count, beat_impulses, melody_onehot, resample, sample_hold,
                                        time_base)
from cuecraft.controls.schema import Controls
from cuecraft.errors import ParameterError


def test_time_base_has_no_int_fps_drift():
    times = time_base(duration=600.0, rate=29.97)
    assert len(times) == math.ceil(600 * 29.97)
    assert abs(times[-1] - (len(times) - 1) / 29.97) < 1e-9


def test_beat_count_is_linear_between_beats_and_extrapolates():
    beat = np.array([[1.0, 0], [1.5, 1], [2.5, 2]])
    counts = beat_count(beat, np.array([0.5, 1.0, 1.25, 1.5, 2.0, 2.5, 3.5]))
    np.testing.assert_allclose(counts, [-1, 0, 0.5, 1, 1.5, 2, 3])


def test_beat_impulses_peak_on_beats_and_downbeats():
    beat = np.array([[0.5, 0], [1.0, 1], [1.5, 0]])
    times = time_base(duration=2.0, rate=100)
    imp = beat_impulses(beat, times, width=0.02)
    peaks = times[np.nonzero((imp[1:-1, 0] > imp[:-2, 0]) & (imp[1:-1, 0] >= imp[2:, 0]))[0] + 1]
    np.testing.assert_allclose(peaks, [0.5, 1.0, 1.5], atol=0.011)
    assert imp[100, 1] < 0.01 and imp[50, 1] > 0.99 and imp[150, 1] > 0.99


def test_melody_holds_and_rests():
    melody = np.array([[0.5, 4], [1.0, np.nan], [2.0, 11]])
    held = sample_hold(melody, np.array([0.0, 0.6, 1.5, 3.0]))
    assert np.isnan(held[0]) and held[1] == 4 and np.isnan(held[2]) and held[3] == 11
    onehot = melody_onehot(held)
    assert onehot.sum() == 2 and onehot[1, 4] == 1 and onehot[3, 11] == 1


def test_resample_interpolates_intensity_and_emotion():
    c = Controls(intensity=[[0, -40.0], [2, -20.0]], emotion=[[0, -1, 0], [2, 1, 1]])
    out = resample(c, np.array([0.0, 1.0, 3.0]))
    np.testing.assert_allclose(out["intensity"], [-40, -30, -20])
    np.testing.assert_allclose(out["emotion"], [[-1, 0], [0, 0.5], [1, 1]])
    assert "beat" not in out and "melody" not in out


@pytest.mark.parametrize("bad", [np.array([np.nan]), np.zeros((2, 2))])
def test_bad_times(bad):
    with pytest.raises(ParameterError):
        resample(Controls(intensity=[[0, -20.0]]), bad)


@pytest.mark.parametrize("rate", [0, -1, float("nan")])
def test_bad_rate_names_value(rate):
    with pytest.raises(ParameterError, match="rate"):
        time_base(duration=1.0, rate=rate)
