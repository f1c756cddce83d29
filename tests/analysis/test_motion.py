"""Optical flow, impact envelope, visual beats and visual tempo on footage with known impacts."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from cuecraft.analysis import analyze_frames
from cuecraft.analysis.motion import (
    DEFAULT_TEMPO,
    FlowTracker,
    directogram,
    fold_tempo,
    impact_envelope,
    visual_beats,
    visual_tempo,
)
from cuecraft.errors import ParameterError
from cuecraft.io.synthetic import SyntheticEvents, synthetic_frames

FPS = 24.0
TOL = 1.0 / FPS + 1e-9  # one frame


def analyse(events, *, duration=10.0, width=160, height=90, seed=0):
    frames = synthetic_frames(duration=duration, fps=FPS, width=width, height=height, events=events, seed=seed)
    return analyze_frames(frames, fps=FPS, duration=duration)


def recall_precision(found, truth):
    found, truth = np.asarray(found), np.asarray(truth)
    hits = sum(np.any(np.abs(found - t) <= TOL) for t in truth)
    good = sum(np.any(np.abs(truth - f) <= TOL) for f in found)
    return hits / len(truth), good / max(1, len(found))


@pytest.mark.parametrize(
    "period, size, seed",
    [(0.5, (160, 90), 0), (0.5, (320, 180), 1), (2 / 3, (160, 90), 2), (0.6, (320, 180), 3)],
)
def test_visual_beats_land_on_impacts(period, size, seed):
    impacts = tuple(np.arange(0.5, 10.0, period))
    result = analyse(SyntheticEvents(impacts=impacts), width=size[0], height=size[1], seed=seed)
    recall, precision = recall_precision(result.visual_beats, impacts)
    assert recall >= 0.9 and precision >= 0.8, (recall, precision, result.visual_beats)
    assert np.all((result.beat_strengths > 0) & (result.beat_strengths <= 1))


def test_visual_beats_survive_cuts_and_camera_pans():
    impacts = tuple(np.arange(0.5, 10.0, 0.5))
    events = SyntheticEvents(impacts=impacts, cuts=(3.2, 7.3), bursts=((4.0, 6.0),))
    result = analyse(events, seed=4)
    recall, precision = recall_precision(result.visual_beats, impacts)
    assert recall >= 0.9 and precision >= 0.8, (recall, precision, result.visual_beats)


@pytest.mark.parametrize("period, bpm", [(0.5, 120.0), (2 / 3, 90.0)])
def test_visual_tempo_from_bouncing_ball(period, bpm):
    result = analyse(SyntheticEvents(impacts=tuple(np.arange(0.5, 12.0, period))), duration=12.0)
    assert result.tempo == pytest.approx(bpm, abs=3.0)


@pytest.mark.parametrize(
    "spacing, bpm",
    [(12, 120.0), (16, 90.0), (8, 90.0), (24, 120.0), (20, 72.0), (15, 96.0), (10, 72.0)],
)
def test_visual_tempo_folds_octaves_into_range(spacing, bpm):
    env = np.zeros(int(20 * FPS))
    env[5::spacing] = 1.0
    assert visual_tempo(env, fps=FPS) == pytest.approx(bpm, abs=1.5)


def test_visual_tempo_defaults_without_periodicity():
    assert visual_tempo(np.zeros(500), fps=FPS) == DEFAULT_TEMPO
    assert visual_tempo(np.ones(5), fps=FPS) == DEFAULT_TEMPO  # too short to tell
    rng = np.random.default_rng(0)
    env = np.zeros(int(30 * FPS))
    env[rng.choice(env.size, 4, replace=False)] = 1.0  # a few isolated, aperiodic events
    assert visual_tempo(env, fps=FPS) == DEFAULT_TEMPO


def test_fold_tempo():
    assert fold_tempo(60.0) == 120.0
    assert fold_tempo(240.0) == 120.0
    assert fold_tempo(140.0) == 70.0
    assert fold_tempo(69.9) == pytest.approx(139.8)
    assert fold_tempo(100.0) == 100.0
    with pytest.raises(ParameterError, match="-5"):
        fold_tempo(-5.0)
    with pytest.raises(ParameterError, match="150"):
        fold_tempo(100.0, low=70.0, high=150.0)


def test_directogram_bins_by_direction_and_sums_to_mean_magnitude():
    flow = np.zeros((10, 10, 2), np.float32)
    flow[..., 1] = 3.0  # straight down (image y grows downwards): 90 degrees
    d = directogram(flow, bins=8)
    assert d.sum() == pytest.approx(3.0, rel=1e-5)
    assert d[[1, 2]] == pytest.approx([1.5, 1.5], rel=1e-4)  # bin centres at 67.5 and 112.5 degrees
    up = directogram(-flow, bins=8)
    assert up[[5, 6]] == pytest.approx([1.5, 1.5], rel=1e-4)
    assert directogram(np.zeros((4, 4, 2), np.float32)).sum() == 0.0


def _texture(width, height, seed=0):
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), width / 80)
    return cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


@pytest.mark.parametrize("width, height", [(80, 45), (160, 90), (160, 20)])
def test_flow_motion_is_in_frame_widths_per_second(width, height):
    """A pan of 0.5 frame widths per second reads ~0.5 at any resolution, shape and fps."""
    texture = _texture(width * 2, height)
    for fps in (24.0, 12.0):
        tracker = FlowTracker(fps=fps)
        speeds = []
        for i in range(8):
            shift = 0.5 * width * i / fps
            m = np.float32([[1, 0, -shift], [0, 1, 0]])
            frame = cv2.warpAffine(texture, m, (width, height), borderMode=cv2.BORDER_WRAP)
            speeds.append(tracker.update(frame, dt=1.0 / fps)[0])
        assert speeds[0] == 0.0
        assert np.median(speeds[1:]) == pytest.approx(0.5, rel=0.2)


def test_flow_tracker_holds_statistics_across_unreliable_frames():
    texture = _texture(160, 90)
    tracker = FlowTracker(fps=FPS)
    tracker.update(texture, dt=1 / FPS)
    moved = np.roll(texture, 3, axis=1)
    motion, _ = tracker.update(moved, dt=1 / FPS)
    assert motion > 0.1
    white = np.full_like(texture, 255)
    assert tracker.update(white, dt=1 / FPS, reliable=False) == (motion, 0.0)
    with pytest.raises(ParameterError, match=r"\(90, 160\).*\(45, 80\)"):
        tracker.update(texture[::2, ::2], dt=1 / FPS)


def test_impact_envelope_normalises_suppresses_cuts_and_adds_flashes():
    n = 100
    decrease = np.zeros(n)
    decrease[[20, 40, 60]] = 0.3
    decrease[79] = 50.0  # the fake "impact" across a cut at frame 80
    brightness = np.full(n, 0.4)
    brightness[90] = 0.9  # a flash
    env = impact_envelope(decrease, brightness, fps=FPS, cut_frames=np.array([80]))
    assert env.max() == pytest.approx(1.0) and env.min() >= 0
    assert env[79] == 0.0 and env[80] == 0.0
    assert np.all(env[[20, 40, 60]] > 0.5)
    assert env[90] > 0.5
    quiet = impact_envelope(np.zeros(n), brightness * 0 + 0.5, fps=FPS)
    assert np.all(quiet == 0.0)


def test_visual_beats_of_an_impulse_train_and_of_silence():
    env = np.zeros(200)
    env[10::20] = 1.0
    env[20::20] = 0.05  # small wobbles between the impacts are not beats
    frames, strengths = visual_beats(env, fps=FPS)
    assert frames.tolist() == list(range(10, 200, 20))
    assert np.all(strengths == 1.0)
    frames, strengths = visual_beats(np.zeros(200), fps=FPS)
    assert frames.size == 0 and strengths.size == 0


@pytest.mark.parametrize("fps", [0, -1.0, float("nan")])
def test_bad_fps_raises_with_the_value(fps):
    for call in (
        lambda: FlowTracker(fps=fps),
        lambda: visual_beats(np.zeros(10), fps=fps),
        lambda: visual_tempo(np.zeros(10), fps=fps),
        lambda: impact_envelope(np.zeros(10), np.zeros(10), fps=fps),
    ):
        with pytest.raises(ParameterError, match=str(fps)):
            call()


def test_bad_curves_raise_with_the_shapes():
    with pytest.raises(ParameterError, match=r"\(10,\).*\(9,\)"):
        impact_envelope(np.zeros(10), np.zeros(9), fps=FPS)
    with pytest.raises(ParameterError, match=r"\(2, 5\)"):
        visual_beats(np.zeros((2, 5)), fps=FPS)
