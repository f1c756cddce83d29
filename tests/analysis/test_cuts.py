"""Cut detection: every cut within one frame, never at a flash, none on static or panning footage."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from cuecraft.analysis.cuts import CutDetector, detect_cuts, histogram_distance, hsv_histogram
from cuecraft.errors import ParameterError
from cuecraft.io.synthetic import SyntheticEvents, synthetic_frames

FPS = 24.0
FRAME = 1.0 / FPS
IMPACTS = tuple(np.arange(0.5, 10.0, 0.5))


def cuts_of(events, *, duration=10.0, width=160, height=90, seed=0):
    frames = synthetic_frames(duration=duration, fps=FPS, width=width, height=height, events=events, seed=seed)
    return detect_cuts(frames, fps=FPS)


@pytest.mark.parametrize("seed", [0, 1])
def test_every_cut_is_found_within_one_frame(seed):
    cuts = (1.3, 2.0, 3.71, 5.5, 6.04, 8.9)
    found = cuts_of(SyntheticEvents(cuts=cuts, impacts=IMPACTS), seed=seed)
    assert len(found) == len(cuts)
    assert np.all(np.abs(found - np.asarray(cuts)) <= FRAME + 1e-9)
    assert np.all(np.diff(found) > 0)


def test_cuts_are_found_in_larger_frames_too():
    cuts = (2.5, 6.0)
    found = cuts_of(SyntheticEvents(cuts=cuts, impacts=IMPACTS), duration=8.0, width=320, height=180)
    assert np.allclose(found, cuts, atol=FRAME + 1e-9)


def test_flashes_are_not_cuts():
    flashes = (1.0, 3.3, 5.52, 7.0)
    assert cuts_of(SyntheticEvents(flashes=flashes, impacts=IMPACTS)).size == 0
    # A flash between two cuts neither hides them nor adds one.
    found = cuts_of(SyntheticEvents(cuts=(2.0, 6.0), flashes=(4.0, 8.0), impacts=IMPACTS))
    assert np.allclose(found, (2.0, 6.0), atol=FRAME + 1e-9)


def test_no_false_cuts_on_static_or_panning_footage():
    assert cuts_of(SyntheticEvents()).size == 0
    assert cuts_of(SyntheticEvents(impacts=IMPACTS, bursts=((1.0, 3.0), (5.0, 9.0)))).size == 0


def test_minimum_scene_length_keeps_the_first_of_two_close_cuts():
    found = cuts_of(SyntheticEvents(cuts=(2.0, 2.15, 5.0, 5.4)), duration=7.0)
    assert np.allclose(found, (2.0, 5.0, 5.4), atol=FRAME + 1e-9)


def test_detector_reports_jumps_immediately_and_decides_after_the_lookahead():
    grey_hsv = cv2.cvtColor(np.full((8, 8, 3), 100, np.uint8), cv2.COLOR_RGB2HSV)
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 200
    red = cv2.cvtColor(red, cv2.COLOR_RGB2HSV)
    detector = CutDetector(fps=FPS, lookahead=3)
    jumps = [detector.update(hsv_histogram(h)) for h in [grey_hsv] * 10 + [red] * 2]
    assert jumps == [False] * 10 + [True, False]
    assert detector.cuts == []  # not decided yet: the scene could still come back
    for _ in range(3):
        detector.update(hsv_histogram(red))
    assert detector.cuts == [10]
    assert detector.finish() == [10]


def test_histogram_distance_range():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 180, (30, 40, 3)).astype(np.uint8)
    b = np.zeros_like(a)
    assert histogram_distance(hsv_histogram(a), hsv_histogram(a)) == 0.0
    assert 0.5 < histogram_distance(hsv_histogram(a), hsv_histogram(b)) <= 1.0


@pytest.mark.parametrize("fps", [0, -24.0, float("nan"), float("inf"), "fast"])
def test_bad_fps_raises_with_the_value(fps):
    with pytest.raises(ParameterError, match=str(fps)):
        CutDetector(fps=fps)
    with pytest.raises(ParameterError, match=str(fps)):
        detect_cuts([], fps=fps)


def test_bad_detector_parameters_raise_with_the_value():
    with pytest.raises(ParameterError, match="1.5"):
        CutDetector(fps=FPS, threshold=1.5)
    with pytest.raises(ParameterError, match="-0.1"):
        CutDetector(fps=FPS, min_scene=-0.1)
    with pytest.raises(ParameterError, match="0"):
        CutDetector(fps=FPS, lookahead=0)


def test_bad_frames_raise():
    with pytest.raises(ParameterError, match="float64"):
        detect_cuts([(0.0, np.zeros((90, 160, 3)))], fps=FPS)
