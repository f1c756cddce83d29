"""Synthetic videos: known events end up in the frames, and files round-trip through PyAV."""
from __future__ import annotations

import math
from fractions import Fraction

import av
import numpy as np
import pytest

from cuecraft.errors import MediaError, OutputError, ParameterError
from cuecraft.io import synthetic
from cuecraft.io.synthetic import SyntheticEvents, example_events, synthetic_frames, write_synthetic_video

FPS = 24.0
W, H = 160, 90


def frames(duration=3.0, events=SyntheticEvents(), seed=0, fps=FPS, width=W, height=H):
    return list(synthetic_frames(duration=duration, fps=fps, width=width, height=height, events=events, seed=seed))


def corner(frame):
    """Top-left 10% of the frame: background only (the ball sways between 25% and 75% of the width)."""
    return frame[: H // 10, : W // 10].astype(np.float64)


def test_frames_have_exact_times_shape_and_dtype():
    out = frames(duration=2.5, fps=FPS)
    assert len(out) == math.ceil(2.5 * FPS)
    for i, (t, f) in enumerate(out):
        assert t == i / FPS
        assert f.shape == (H, W, 3) and f.dtype == np.uint8


def test_frames_are_deterministic_per_seed():
    a, b, c = frames(seed=3), frames(seed=3), frames(seed=4)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert not np.array_equal(a[0][1], c[0][1])


def test_cut_changes_the_scene_and_flash_returns_to_it():
    out = frames(duration=3.0, events=SyntheticEvents(cuts=(2.0,), flashes=(1.0,)))
    before_flash, flash, after_flash = out[23][1], out[24][1], out[26][1]
    # The background does not move outside bursts, so the scene after the flash is the same.
    assert np.array_equal(corner(before_flash), corner(after_flash))
    assert flash.mean() > before_flash.mean() + 100
    assert out[25][1].mean() > before_flash.mean() + 40  # the half-strength second frame
    before_cut, after_cut = out[47][1], out[48][1]
    assert np.abs(corner(before_cut).mean((0, 1)) - corner(after_cut).mean((0, 1))).max() > 20


def test_background_pans_only_inside_bursts():
    out = frames(duration=3.0, events=SyntheticEvents(bursts=((1.0, 2.0),)))
    still = [np.abs(corner(out[i][1]) - corner(out[i + 1][1])).mean() for i in range(0, 23)]
    moving = [np.abs(corner(out[i][1]) - corner(out[i + 1][1])).mean() for i in range(30, 42)]
    assert max(still) == 0.0
    assert min(moving) > 2.0


def test_ball_height_is_a_parabola_that_touches_the_floor_at_impacts():
    impacts = (0.5, 1.0, 1.75)
    for t in impacts:
        assert synthetic._ball_height(t, impacts) == pytest.approx(0.0, abs=1e-12)
    assert synthetic._ball_height(0.75, impacts) == pytest.approx(1.0)
    assert synthetic._ball_height(1.375, impacts) == pytest.approx(1.0)
    assert synthetic._ball_height(0.625, impacts) == pytest.approx(0.75)
    # Falls from the apex into the first impact and rests after the last one.
    assert synthetic._ball_height(0.0, impacts) == pytest.approx(1.0)
    assert synthetic._ball_height(3.0, impacts) == 0.0


def test_ball_is_lowest_at_the_impact_frame():
    out = frames(duration=1.5, events=SyntheticEvents(impacts=(0.5, 1.0)))
    # The ball keeps moving, so the per-pixel median over time is the bare background.
    background = np.median(np.stack([f for _, f in out]), axis=0)

    def ball_row(frame):
        rows = np.flatnonzero(np.abs(frame.astype(float) - background).sum(2).max(1) > 60)
        return rows.mean()  # image rows grow downwards

    rows = {i: ball_row(out[i][1]) for i in (9, 11, 12, 13, 15)}
    assert rows[12] == max(rows.values())
    assert rows[9] < rows[11] < rows[12] and rows[12] > rows[13] > rows[15]


@pytest.mark.parametrize(
    "kwargs, value",
    [
        ({"duration": 0.0}, "0.0"),
        ({"duration": float("nan")}, "nan"),
        ({"fps": -24.0}, "-24.0"),
        ({"fps": float("inf")}, "inf"),
        ({"width": 8}, "8"),
        ({"height": 15.5}, "15.5"),
    ],
)
def test_bad_parameters_raise_with_the_value(kwargs, value):
    args = {"duration": 1.0, "fps": FPS, "width": W, "height": H, "events": SyntheticEvents()} | kwargs
    with pytest.raises(ParameterError, match=value):
        synthetic_frames(**args)


def test_bad_events_raise_with_the_value():
    with pytest.raises(ParameterError, match="-1.0"):
        SyntheticEvents(cuts=(1.0, -1.0))
    with pytest.raises(ParameterError, match=r"\(3.0, 2.0\)"):
        SyntheticEvents(bursts=((3.0, 2.0),))
    with pytest.raises(ParameterError, match="events"):
        synthetic_frames(duration=1.0, fps=FPS, width=W, height=H, events=(1.0,))


def test_example_events_scale_with_duration():
    for duration in (60.0, 600.0):
        ev = example_events(duration)
        assert np.allclose(np.diff(ev.impacts), 0.5)
        assert ev.impacts[0] == 0.5 and ev.impacts[-1] < duration
        assert len(ev.cuts) == pytest.approx(duration / 4.0, abs=2)
        assert 3.5 < np.diff(ev.cuts).mean() < 4.5
        off_grid = [c for c in ev.cuts if abs(c * 2 - round(c * 2)) > 0.1]
        assert 0 < len(off_grid) < len(ev.cuts)
        assert len(ev.flashes) >= 3 and len(ev.bursts) >= 1
        assert all(0 < s < e < duration for s, e in ev.bursts)
        # Flashes and bursts keep clear of cuts, so each event is tested on its own.
        cuts = np.asarray(ev.cuts)
        assert all(np.min(np.abs(cuts - f)) > 1.0 for f in ev.flashes)
        assert not any(((cuts > s - 0.5) & (cuts < e + 0.5)).any() for s, e in ev.bursts)


def _probe(path):
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        n = sum(1 for _ in container.decode(video=0))
        return {
            "frames": n,
            "width": video.codec_context.width,
            "height": video.codec_context.height,
            "rate": video.average_rate,
            "duration": container.duration / 1e6,
            "audio": [s.codec_context.name for s in container.streams.audio],
        }


def test_write_round_trips_through_pyav(tmp_path):
    path = tmp_path / "clip.mp4"
    write_synthetic_video(path, duration=2.0, fps=FPS, width=W, height=H, events=example_events(2.0))
    info = _probe(path)
    assert info["frames"] == 48 and (info["width"], info["height"]) == (W, H)
    assert info["rate"] == 24 and info["duration"] == pytest.approx(2.0, abs=0.05)
    assert info["audio"] == []
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temp file left behind


def test_write_with_audio_and_ntsc_rate(tmp_path):
    path = tmp_path / "clip with audio.mkv"
    write_synthetic_video(
        path, duration=1.0, fps=30000 / 1001, width=64, height=48, events=SyntheticEvents(), audio=True
    )
    info = _probe(path)
    assert info["rate"] == Fraction(30000, 1001)
    assert info["frames"] == 30
    assert info["audio"] == ["aac"]
    with av.open(str(path)) as container:
        samples = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)])
    assert 0.01 < np.abs(samples).max() < 0.2  # a quiet tone, not silence


def test_write_replaces_an_existing_file_atomically(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"old")
    write_synthetic_video(path, duration=0.5, fps=FPS, width=64, height=48, events=SyntheticEvents())
    assert _probe(path)["frames"] == 12


def test_write_errors(tmp_path):
    with pytest.raises(ParameterError, match="161"):
        write_synthetic_video(tmp_path / "a.mp4", duration=1, fps=FPS, width=161, height=90, events=SyntheticEvents())
    with pytest.raises(OutputError, match="missing"):
        write_synthetic_video(
            tmp_path / "missing" / "a.mp4", duration=1, fps=FPS, width=64, height=48, events=SyntheticEvents()
        )
    with pytest.raises(MediaError, match="a.notavideo"):
        write_synthetic_video(tmp_path / "a.notavideo", duration=1, fps=FPS, width=64, height=48,
                              events=SyntheticEvents())
    assert list(tmp_path.iterdir()) == []
