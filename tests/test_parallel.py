"""Side work in a child process: values and errors come back, nothing re-runs the caller's script."""
import os
import subprocess
import sys
import threading
import time

import pytest

from cuecraft import parallel
from cuecraft.errors import ParameterError
from cuecraft.parallel import SINGLE_PROCESS_ENV, start, stream

two_cores = pytest.mark.skipif(parallel.usable_cores() < 2, reason="a child process is used only with 2 cores")


@two_cores
def test_the_call_runs_in_another_process():
    handle = start(os.getpid)
    assert handle.result() != os.getpid()


def test_in_process_when_asked_or_when_disabled(monkeypatch):
    assert start(os.getpid, in_child=False).result() == os.getpid()
    monkeypatch.setenv(SINGLE_PROCESS_ENV, "1")
    assert start(os.getpid).result() == os.getpid()


@two_cores
def test_arguments_and_keywords_reach_the_child():
    assert start(int, "ff", base=16).result() == 255
    big = list(range(200_000))  # larger than a pipe's buffer: the request is fed from a thread
    assert start(sum, big).result() == sum(big)


@pytest.mark.parametrize("in_child", [True, False])
def test_errors_keep_their_class_and_message(in_child):
    from cuecraft.checks import seed

    handle = start(seed, -1, in_child=in_child)
    with pytest.raises(ParameterError, match="-1"):
        handle.result()


@two_cores
def test_an_unpicklable_result_is_reported_not_lost():
    with pytest.raises(RuntimeError, match="worker process"):
        start(threading.Lock).result()


@two_cores
def test_the_childs_prints_do_not_corrupt_its_answer(capfd):
    assert start(print, "hello from the child").result() is None
    assert "hello from the child" in capfd.readouterr().err


@two_cores
def test_output_of_the_childs_own_children_does_not_corrupt_its_answer(capfd):
    assert start(os.system, "echo from a grandchild").result() == 0
    assert "from a grandchild" in capfd.readouterr().err


@two_cores
def test_cancel_ends_the_child():
    handle = start(time.sleep, 60)
    handle.cancel()
    assert handle._process.poll() is not None
    handle.cancel()  # twice is harmless


@two_cores
def test_a_child_that_dies_is_an_error():
    with pytest.raises(RuntimeError, match="without a result"):
        start(os._exit, 3).result()


def test_a_script_without_a_main_guard_runs_once(tmp_path):
    # multiprocessing's spawn would re-run this script in the child; a user's script must not score twice.
    script = tmp_path / "unguarded.py"
    script.write_text("import os\nfrom cuecraft.parallel import start\n"
                      "print('ran', start(os.getpid).result() > 0)\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["ran True"]


@two_cores
def test_ctrl_c_is_the_parents_to_handle():
    import signal

    # The child ignores SIGINT (the parent cancels it on Ctrl-C), so it prints no traceback of its own.
    assert start(signal.getsignal, signal.SIGINT).result() == signal.SIG_IGN


@two_cores
def test_a_stream_passes_every_item_and_the_caller_sees_them_too():
    handle = stream(sum, 1000)
    seen = list(handle.send_all(range(100)))
    assert seen == list(range(100))
    assert handle.result() == 1000 + sum(range(100))


@two_cores
def test_a_call_that_fails_mid_stream_neither_hangs_nor_loses_its_error():
    from cuecraft.checks import seed

    handle = stream(seed)  # fails at once on its first argument, the stream
    big = [bytes(1_000_000)] * 20  # far more than the pipe holds: the child must read it all
    assert len(list(handle.send_all(big))) == 20
    with pytest.raises(ParameterError):
        handle.result()


def test_no_stream_child_when_disabled(monkeypatch):
    monkeypatch.setenv(SINGLE_PROCESS_ENV, "1")
    assert stream(sum) is None


@two_cores
def test_a_stream_to_a_child_that_died_is_an_error_not_a_hang():
    handle = stream(sum)
    handle._process.kill()  # the child dies before the items come
    handle._process.wait()
    assert len(list(handle.send_all([bytes(1_000_000)] * 5))) == 5  # the caller still gets its items
    with pytest.raises(RuntimeError, match="without a result"):
        handle.result()
