from types import SimpleNamespace

import numpy as np

from cuecraft.controls.from_video import beat_grid, controls_from_analysis


def fake_analysis(*, duration=12.0, fps=24.0, impacts=(), cuts=(), tempo=120.0, motion=None, bright=0.5,
                  sat=0.3, warm=0.0):
    """A VisualAnalysis-shaped input with impulses at known times (the analyzer is tested elsewhere)."""
    times = np.arange(int(duration * fps)) / fps
    impact = np.zeros_like(times)
    for t in impacts:
        impact[int(round(t * fps))] = 1.0
    n = len(times)
    return SimpleNamespace(fps=fps, duration=duration, times=times, impact=impact, cuts=np.array(cuts, float),
                           visual_beats=np.array(impacts, float), beat_strengths=np.ones(len(impacts)),
                           tempo=tempo, motion=np.zeros(n) if motion is None else motion,
                           brightness=np.full(n, bright), saturation=np.full(n, sat), warmth=np.full(n, warm))


def test_grid_follows_visual_beats_and_covers_the_video():
    impacts = np.arange(0.5, 11.6, 0.5)
    grid = beat_grid(fake_analysis(impacts=impacts))
    beats = grid[:, 0]
    assert beats[0] < 0.5 + 1e-6 and beats[-1] > 12.0 - 0.6  # covers the whole video
    nearest = np.min(np.abs(impacts[:, None] - beats[None, :]), axis=1)
    assert np.mean(nearest <= 1 / 24 + 1e-6) >= 0.95
    assert np.all(np.diff(beats) > 0.3)


def test_cuts_become_downbeats_with_local_tempo_warp():
    impacts = np.arange(0.5, 11.6, 0.5)
    cuts = [4.0, 8.19]  # the second is off the impact grid
    grid = beat_grid(fake_analysis(impacts=impacts, cuts=cuts))
    for cut in cuts:
        i = np.argmin(np.abs(grid[:, 0] - cut))
        assert abs(grid[i, 0] - cut) < 1e-6 and grid[i, 1] == 0
    # bar positions count up from each cut
    i = np.argmin(np.abs(grid[:, 0] - 4.0))
    np.testing.assert_array_equal(grid[i:i + 5, 1], [0, 1, 2, 3, 0])
    intervals = np.diff(grid[:, 0])
    assert intervals.min() > 0.38 and intervals.max() < 0.62  # warped gently (±24 %), no hiccup
    assert np.max(np.abs(np.diff(intervals))) < 0.22


def test_no_motion_gives_a_steady_grid_at_the_tempo():
    grid = beat_grid(fake_analysis(tempo=100.0))
    np.testing.assert_allclose(np.diff(grid[:, 0]), 0.6, atol=1e-6)
    assert grid[0, 1] == 0


def test_intensity_follows_motion_and_emotion_follows_colour():
    fps, duration = 24.0, 12.0
    motion = np.zeros(int(duration * fps))
    motion[int(6 * fps):int(9 * fps)] = 1.0
    warm = controls_from_analysis(fake_analysis(motion=motion, bright=0.8, sat=0.6, warm=0.4))
    cold = controls_from_analysis(fake_analysis(motion=np.zeros_like(motion), bright=0.2, sat=0.1, warm=-0.4))
    t, db = warm.intensity[:, 0], warm.intensity[:, 1]
    assert db[(t > 6.8) & (t < 8.2)].min() > db[t < 4].max() + 6
    assert warm.emotion[:, 1].mean() > 0.3 > -0.3 > cold.emotion[:, 1].mean()  # valence
    assert warm.emotion[(warm.emotion[:, 0] > 7) & (warm.emotion[:, 0] < 8), 2].mean() > cold.emotion[:, 2].mean()
    assert warm.melody is None and warm.source["beat"] == "video"
    assert np.all(np.diff(warm.intensity[:, 0]) > 0) and warm.intensity[-1, 0] < duration
