"""Makers of bad media files for the bad-input tests (shared by the I/O and CLI tests), and beat grids."""
import av
import numpy as np


def audio_only(path):
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=44100, layout="mono")
        for i in range(0, 44100, 1024):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 44100, i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def still_png(path):
    with av.open(str(path), "w", format="image2pipe") as c:
        s = c.add_stream("png", rate=1)
        s.width, s.height, s.pix_fmt = 32, 32, "rgb24"
        for p in s.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def no_frames(path):
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()  # header only: a container with zero frames


def beat_grid(n_beats, *, period=0.5, cuts=()):
    """A beat grid with 4/4 bars restarting at the given beat indices (scene cuts)."""
    positions, count = [], 0
    for i in range(n_beats):
        count = 0 if i in cuts else count
        positions.append(count % 4)
        count += 1
    return np.stack([np.arange(n_beats) * period + 0.25, positions], axis=1)
