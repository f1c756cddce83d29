"""The streaming visual analyzer end to end: known events in, VisualAnalysis out."""
from __future__ import annotations

import json
import time
import tracemalloc

import numpy as np
import pytest

from cuecraft.analysis import FrameAnalyzer, VisualAnalysis, analyze_frames
from cuecraft.analysis.motion import DEFAULT_TEMPO
from cuecraft.errors import ParameterError
from cuecraft.io.synthetic import SyntheticEvents, example_events, synthetic_frames

FPS = 24.0
TOL = 1.0 / FPS + 1e-9
IMPACTS = tuple(np.arange(0.5, 12.0, 0.5))
EVENTS = SyntheticEvents(cuts=(3.2, 8.0), flashes=(5.3,), impacts=IMPACTS, bursts=((9.0, 11.0),))


@pytest.fixture(scope="module")
def result() -> VisualAnalysis:
    frames = synthetic_frames(duration=12.0, fps=FPS, width=320, height=180, events=EVENTS, seed=5)
    return analyze_frames(frames, fps=FPS, duration=12.0)


def test_curves_share_the_frame_time_base(result):
    n = int(12.0 * FPS)
    assert result.fps == FPS and result.duration == 12.0
    assert np.allclose(result.times, np.arange(n) / FPS)
    for name in ("impact", "motion", "brightness", "saturation", "warmth"):
        assert getattr(result, name).shape == (n,), name
    assert result.visual_beats.shape == result.beat_strengths.shape


def test_curves_are_in_range(result):
    assert result.impact.min() >= 0 and result.impact.max() == pytest.approx(1.0)
    assert result.motion.min() >= 0
    assert np.all((result.brightness >= 0) & (result.brightness <= 1))
    assert np.all((result.saturation >= 0) & (result.saturation <= 1))
    assert np.all((result.warmth >= -1) & (result.warmth <= 1))
    assert np.all((result.beat_strengths > 0) & (result.beat_strengths <= 1))
    assert 70 <= result.tempo < 140


def test_cuts_but_not_the_flash(result):
    assert len(result.cuts) == 2
    assert np.allclose(result.cuts, EVENTS.cuts, atol=TOL)


def test_beats_tempo_and_the_flash_as_a_visual_event(result):
    impacts = np.asarray(IMPACTS)
    on_impact = [np.any(np.abs(impacts - b) <= TOL) for b in result.visual_beats]
    hits = sum(np.any(np.abs(result.visual_beats - t) <= TOL) for t in impacts)
    # The impact at 8.0 s coincides with a cut: it is suppressed with the cut, by design.
    assert hits / len(impacts) >= 0.9
    # A flash is a visual accent; apart from it every beat is an impact.
    extra = result.visual_beats[~np.asarray(on_impact)]
    assert np.all(np.abs(extra - 5.333) <= TOL), extra
    assert result.tempo == pytest.approx(120.0, abs=3.0)


def test_motion_is_higher_during_the_burst(result):
    inside = result.motion[(result.times > 9.5) & (result.times < 10.5)].mean()
    outside = result.motion[(result.times > 0.5) & (result.times < 8.5)].mean()
    assert inside > 4 * outside


def test_to_dict_is_json_friendly(result):
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) == {
        "fps", "duration", "times", "cuts", "impact", "visual_beats", "beat_strengths", "tempo",
        "motion", "brightness", "saturation", "warmth",
    }
    assert data["cuts"] == pytest.approx(result.cuts.tolist())
    assert len(data["impact"]) == len(result.times)


def test_still_footage_has_no_motion_beats_or_tempo():
    frame = np.full((90, 160, 3), 90, np.uint8)
    frame[30:60, 40:80] = (200, 120, 40)
    result = analyze_frames(((i / FPS, frame) for i in range(120)), fps=FPS, duration=5.0)
    assert np.all(result.impact == 0.0) and np.all(result.motion == 0.0)
    assert result.visual_beats.size == 0 and result.cuts.size == 0
    assert result.tempo == DEFAULT_TEMPO


def test_colour_curves_order_red_blue_grey_scenes():
    scenes = {"red": (200, 40, 30), "blue": (30, 50, 200), "grey": (110, 110, 110)}
    frames = []
    for k, colour in enumerate(scenes.values()):
        frame = np.tile(np.array(colour, np.uint8), (90, 160, 1))
        frames += [((k * 24 + i) / FPS, frame) for i in range(24)]
    result = analyze_frames(frames, fps=FPS, duration=3.0)
    assert np.allclose(result.cuts, [1.0, 2.0])
    mean = {name: slice(24 * k + 2, 24 * k + 22) for k, name in enumerate(scenes)}
    warmth = {name: result.warmth[s].mean() for name, s in mean.items()}
    saturation = {name: result.saturation[s].mean() for name, s in mean.items()}
    brightness = {name: result.brightness[s].mean() for name, s in mean.items()}
    assert warmth["red"] > warmth["grey"] > warmth["blue"]
    assert warmth["grey"] == pytest.approx(0.0)
    assert min(saturation["red"], saturation["blue"]) > saturation["grey"] + 0.5
    assert brightness["red"] > brightness["grey"] > 0


@pytest.mark.parametrize("shape", [(16, 16), (16, 400), (400, 16), (21, 37)])
def test_small_and_odd_shaped_frames_are_analysed(shape):
    """OpenCV's DIS flow crashes the process on very short sides unless they are stretched."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (shape[0], shape[1] + 40, 3), dtype=np.uint8)
    frames = [(i / FPS, np.ascontiguousarray(texture[:, i : i + shape[1]])) for i in range(30)]
    result = analyze_frames(frames, fps=FPS, duration=30 / FPS)
    assert result.times.shape == (30,) and np.all(np.isfinite(result.motion))
    assert result.motion[1:].mean() > 0


@pytest.mark.parametrize("fps", [0, -24.0, float("nan"), None])
def test_bad_fps_raises_with_the_value(fps):
    with pytest.raises(ParameterError, match=str(fps)):
        FrameAnalyzer(fps=fps)
    with pytest.raises(ParameterError, match=str(fps)):
        analyze_frames([], fps=fps, duration=1.0)


@pytest.mark.parametrize(
    "frame, text",
    [
        (np.zeros((90, 160), np.uint8), r"\(90, 160\)"),
        (np.zeros((90, 160, 4), np.uint8), r"\(90, 160, 4\)"),
        (np.zeros((90, 160, 3), np.float64), "float64"),
        (np.zeros((90, 160, 3), np.uint16), "uint16"),
    ],
)
def test_bad_frames_raise_with_the_bad_value(frame, text):
    analyzer = FrameAnalyzer(fps=FPS)
    with pytest.raises(ParameterError, match=text):
        analyzer.update(0.0, frame)


def test_stream_checks():
    frame = np.zeros((90, 160, 3), np.uint8)
    analyzer = FrameAnalyzer(fps=FPS)
    with pytest.raises(ParameterError, match="0 frames"):
        analyzer.finish(duration=1.0)
    with pytest.raises(ParameterError, match="nan"):
        analyzer.update(float("nan"), frame)
    analyzer.update(1.0, frame)
    with pytest.raises(ParameterError, match="0.5"):
        analyzer.update(0.5, frame)
    with pytest.raises(ParameterError, match=r"\(90, 160\) then \(180, 320\)"):
        analyzer.update(2.0, np.zeros((180, 320, 3), np.uint8))
    for duration in (0.0, -1.0, float("inf")):
        with pytest.raises(ParameterError, match=str(duration)):
            analyzer.finish(duration=duration)
    assert analyzer.finish(duration=1.0).times.tolist() == [1.0]


def test_memory_does_not_grow_with_frames_kept():
    """Per frame only a few scalars are kept: far less than one small frame (43 kB)."""
    frames = [f for _, f in synthetic_frames(duration=2.0, fps=FPS, width=160, height=90, events=example_events(2.0))]
    analyzer = FrameAnalyzer(fps=FPS)
    tracemalloc.start()
    try:
        for i in range(100):
            analyzer.update(i / FPS, frames[i % len(frames)].copy())  # fresh, so keeping one would show
        before = tracemalloc.get_traced_memory()[0]
        for i in range(100, 600):
            analyzer.update(i / FPS, frames[i % len(frames)].copy())
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert (after - before) / 500 < 2000


def test_per_frame_cost_is_reported():
    """Measures (prints, does not assert) the analysis cost per frame at 256x144, 24 fps."""
    duration = 30.0
    events = example_events(duration)
    frames = list(synthetic_frames(duration=duration, fps=FPS, width=256, height=144, events=events, seed=1))
    analyzer = FrameAnalyzer(fps=FPS)
    start = time.perf_counter()
    for t, rgb in frames:
        analyzer.update(t, rgb)
    result = analyzer.finish(duration=duration)
    per_frame = (time.perf_counter() - start) / len(frames)
    print(f"\nvisual analysis: {per_frame * 1e3:.3f} ms/frame at 256x144 ({1 / (per_frame * FPS):.0f}x real time)")
    assert np.allclose(result.cuts, events.cuts, atol=TOL)
    assert result.tempo == pytest.approx(120.0, abs=3.0)
