"""The timeline PNG: valid, the expected size, written atomically."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from cuecraft.controls.schema import Controls
from cuecraft.errors import OutputError, ParameterError
from cuecraft.render.timeline import plot_timeline

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND"  # complete file, not a truncated write
    return struct.unpack(">II", data[16:24])


def inputs(**overrides):
    beat = np.array([[0.5 * k, k % 4] for k in range(24)])
    controls = Controls(beat=beat, intensity=np.array([[0.0, -40.0], [12.0, -6.0]]), duration=12.0)
    times = np.linspace(0, 12, 121)
    args = dict(duration=12.0, cuts=[4.0, 8.0], visual_beats=[1.0, 2.0, 4.0, 6.5], beat_strengths=[0.3, 1.0, 0.8, 0.5],
                curve_times=times, motion=5.0 + 3.0 * np.sin(times), controls=controls)
    return {**args, **overrides}


def test_writes_a_1600x600_png_atomically(tmp_path):
    out = tmp_path / "clip.timeline.png"
    plot_timeline(out, **inputs())
    assert png_size(out) == (1600, 600)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.timeline.png"]  # no temp file left


def test_overwrites_in_place_and_draws_the_data(tmp_path):
    out = tmp_path / "t.png"
    plot_timeline(out, **inputs())
    first = out.read_bytes()
    plot_timeline(out, **inputs(cuts=[2.0], visual_beats=[], beat_strengths=[]))
    assert out.read_bytes() != first
    assert [p.name for p in tmp_path.iterdir()] == ["t.png"]


def test_controls_without_beat_or_intensity(tmp_path):
    out = tmp_path / "bare.png"
    plot_timeline(out, **inputs(controls=Controls(duration=12.0), cuts=[], curve_times=[], motion=[]))
    assert png_size(out) == (1600, 600)


@pytest.mark.parametrize(("overrides", "match"), [
    ({"duration": 0.0}, "duration = 0.0"),
    ({"beat_strengths": [1.0]}, "beat_strengths has 1"),
    ({"motion": [1.0, 2.0]}, "motion has 2"),
    ({"cuts": [1.0, float("nan")]}, "cuts must be finite, got nan"),
])
def test_rejects_bad_inputs(tmp_path, overrides, match):
    with pytest.raises(ParameterError, match=match):
        plot_timeline(tmp_path / "x.png", **inputs(**overrides))
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_is_output_error(tmp_path):
    target = tmp_path / "no such dir" / "x.png"
    with pytest.raises(OutputError, match="no such dir"):
        plot_timeline(target, **inputs())


@pytest.mark.parametrize("in_place", [False, True])
def test_in_place_writes_no_file_but_the_path_itself(tmp_path, monkeypatch, in_place):
    # scoring hands a child process its own temporary file and kills the child if scoring fails:
    # a second temporary file of the child's would be left behind (seen in CI).
    from matplotlib.figure import Figure

    written = []
    original = Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        written.append(sorted(p.name for p in tmp_path.iterdir()))
        return original(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    out = tmp_path / "t.png"
    plot_timeline(out, **inputs(), in_place=in_place)
    assert png_size(out) == (1600, 600)
    assert [p.name for p in tmp_path.iterdir()] == ["t.png"]
    if in_place:
        assert written == [[]]  # nothing but the path itself is ever made
    else:
        assert len(written) == 1 and len(written[0]) == 1 and written[0][0].endswith(".part.png")
