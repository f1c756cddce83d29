"""The API's two-process scoring: a cold process analyses in a child, with the same result."""
import dataclasses

import numpy as np
import pytest

from cuecraft import api, parallel
from cuecraft.errors import MediaError
from cuecraft.models.backbones import symbolic


@pytest.fixture
def children(monkeypatch):
    """Every call started in a child, by name; the model counts as not loaded yet (a cold process)."""
    names = []

    class Recorded(parallel._Child):
        def __init__(self, fn, args, kwargs, **options):
            names.append(fn.__name__)
            super().__init__(fn, args, kwargs, **options)

    monkeypatch.setattr(parallel, "_Child", Recorded)
    monkeypatch.setattr(symbolic, "is_loaded", lambda path=None: False)
    monkeypatch.setattr(api, "LONG_VIDEO", 0.0)  # the timeline too, whatever this process drew before
    return names


@pytest.mark.skipif(parallel.usable_cores() < 2, reason="a child process is used only with 2 cores")
def test_cold_scoring_in_two_processes_writes_the_same_files(small_video, tmp_path, children, monkeypatch):
    two = api.score(small_video, out=tmp_path / "two.mp4", seed=3)
    assert children == ["scan_video", "plot_analysis", "mux_streamed"]
    monkeypatch.setenv(parallel.SINGLE_PROCESS_ENV, "1")
    one = api.score(small_video, out=tmp_path / "one.mp4", seed=3)
    assert children == ["scan_video", "plot_analysis", "mux_streamed"]  # no more children
    for name in ("midi", "wav", "controls"):
        assert two[name].read_bytes() == one[name].read_bytes(), name
    assert two["timeline"].stat().st_size > 10_000 and two["video"].stat().st_size > 10_000


def test_an_error_in_the_analysing_child_is_a_clean_error(small_video, tmp_path, children, monkeypatch):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00" * 4096)
    real_probe = api.probe
    # Probing passes; the child then opens a file it cannot decode.
    monkeypatch.setattr(api, "probe", lambda video: dataclasses.replace(real_probe(video), path=garbage))
    with pytest.raises(MediaError, match="garbage.mp4"):
        api.score(small_video, out=tmp_path / "out.mp4")
    assert children == (["scan_video"] if parallel.usable_cores() >= 2 else [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.mp4"]  # nothing written


def test_a_warm_process_draws_a_short_videos_timeline_itself(small_video, tmp_path, monkeypatch):
    import matplotlib.backends.backend_agg  # noqa: F401 - as in a process that has drawn before

    names = []
    monkeypatch.setattr(parallel, "_Child", lambda fn, args, kwargs, **options: names.append(fn.__name__))
    api.score(small_video, out=tmp_path / "warm.mp4")  # loads the model first if no test has
    names.clear()
    written = api.score(small_video, out=tmp_path / "again.mp4")
    assert names == [] and written["timeline"].stat().st_size > 10_000  # no child: short and warm


@pytest.mark.skipif(parallel.usable_cores() < 2, reason="a child process is used only with 2 cores")
def test_a_failure_while_the_music_streams_to_the_muxing_child_leaves_nothing(small_video, tmp_path, children,
                                                                               monkeypatch):
    import numpy as np

    from cuecraft.errors import ParameterError
    from cuecraft.render import synth

    def one_block_then_nan(pm, **kwargs):
        yield np.zeros((44100, 2), np.float32)
        yield np.full((44100, 2), np.nan, np.float32)

    monkeypatch.setattr(synth, "render_blocks", one_block_then_nan)
    out = tmp_path / "out" / "scored.mp4"
    out.parent.mkdir()
    with pytest.raises(ParameterError, match="NaN"):
        api.score(small_video, out=out)
    assert "mux_streamed" in children
    assert list(out.parent.iterdir()) == []  # no output, no temporary file


def test_the_frame_scan_a_child_runs_needs_no_scipy_and_finishes_to_the_same_analysis(small_video):
    # On a cold start the scan is on the critical path; importing scipy.ndimage there cost 0.19 s.
    import subprocess
    import sys

    code = ("import sys; from cuecraft.api import scan_video; c = scan_video(sys.argv[1]); "
            "print(len(c.times), 'scipy.ndimage' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(small_video)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["144", "False"]  # 6 s at 24 fps
    info = api.probe(small_video)
    whole = api.analyze_video(small_video, info=info)
    split = api.finish_analysis(api.scan_video(small_video, info=info), info)
    assert list(split.visual.cuts) == list(whole.visual.cuts) and len(whole.visual.cuts) == 2
    np.testing.assert_array_equal(split.visual.impact, whole.visual.impact)
    np.testing.assert_array_equal(split.controls.beat, whole.controls.beat)
