"""Shared fixtures: small synthetic videos with known events, made once per session."""
from __future__ import annotations

import pytest

from cuecraft.io.synthetic import SyntheticEvents, write_synthetic_video

SMALL_EVENTS = SyntheticEvents(cuts=(2.0, 4.1), flashes=(3.0,), impacts=tuple(0.5 * k for k in range(1, 12)),
                               bursts=((4.5, 5.5),))


@pytest.fixture(scope="session")
def small_events():
    return SMALL_EVENTS


@pytest.fixture(scope="session")
def small_video(tmp_path_factory):
    """6 s, 320x180, 24 fps, with an AAC audio track; cuts at 2.0 and 4.1 s, impacts every 0.5 s."""
    path = tmp_path_factory.mktemp("media") / "small clip.mp4"
    write_synthetic_video(path, duration=6.0, fps=24, width=320, height=180, events=SMALL_EVENTS, audio=True)
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: OpenMP threads only add barrier waits, badly so on a shared 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
