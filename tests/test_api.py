import threading

import pytest

from cuecraft.api import Background


def test_background_runs_alongside_the_caller_and_returns_its_value():
    started, release = threading.Event(), threading.Event()

    def work(x, *, y):
        started.set()
        assert release.wait(timeout=30)  # finishes only once the caller has moved on
        return x + y

    job = Background(work, 2, y=3)
    assert started.wait(timeout=30)  # running before result() is asked for
    release.set()
    assert job.result() == 5


def test_background_raises_its_error_in_the_caller():
    def fail():
        raise ValueError("bad frame 12")

    with pytest.raises(ValueError, match="bad frame 12"):
        Background(fail).result()
