"""Side work in a second process, so that a cold ``score`` uses both cores.

A fresh process spends its first 1.5 s importing torch and loading the model, and its last
second synthesising and muxing: pure-Python work that holds the GIL, so a thread beside it
gains nothing (measured: 7.84 s without one, 7.87 s with). A child process has its own
interpreter. It is a new interpreter, not a fork, because a fork after torch has started its
thread pools can deadlock, and the child needs none of the parent's state.

:func:`start` returns a handle whose :meth:`result` gives the call's value or raises its
exception in the parent (a :class:`~cuecraft.errors.CuecraftError` keeps its class and
one-line message, so the CLI's exit code 2 still applies). With one usable core it runs the
call in-process, when :meth:`result` is asked for, so the order of work is as it was.

:func:`stream` starts a call that takes a stream of items as they are made: ``score`` has a
child encode the music as AAC while it synthesises the next block (ffmpeg's encoder and the
synthesiser both hold the GIL, so threads took turns: 0.99-1.05 s against 0.89-1.05 s one after the other).
"""
from __future__ import annotations

import os
import pickle
import sys
import threading
import traceback
from typing import Iterable, Iterator

SINGLE_PROCESS_ENV = "CUECRAFT_SINGLE_PROCESS"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Inline:
    """The call, run when its result is wanted."""

    def __init__(self, fn, args, kwargs) -> None:
        self._call = (fn, args, kwargs)

    def result(self):
        fn, args, kwargs = self._call
        return fn(*args, **kwargs)

    def cancel(self) -> None:
        pass


class _Child:
    """The call, running in a new interpreter from construction on.

    A plain ``python -c`` child rather than multiprocessing's spawn, which would re-run the
    caller's main script in the child: a user's script without an ``if __name__ ==
    "__main__"`` guard would score its video twice. The call and its answer travel pickled
    over the child's stdin and stdout, a pipe between two processes of this package.
    """

    def __init__(self, fn, args, kwargs, *, stream: bool = False) -> None:
        import subprocess

        self._process = subprocess.Popen([sys.executable, "-c", "from cuecraft.parallel import serve; serve()"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._done = False
        try:
            # sys.path first, so that the child can import fn's module
            request = pickle.dumps(list(sys.path)) + pickle.dumps((fn, args, kwargs, stream))
        except BaseException:
            self.cancel()
            raise
        # Written from a thread: a request larger than the pipe's buffer would otherwise hold the
        # caller until the child has started and imported what it needs to read it.
        self._feeder = threading.Thread(target=_feed, args=(self._process.stdin, request, not stream), daemon=True)
        self._feeder.start()

    def send_all(self, items: Iterable) -> Iterator:
        """Yield ``items`` after sending each to the call's stream (see :func:`stream`); the stream
        ends when they do. Nothing more is sent once the child has stopped reading."""
        self._feeder.join()
        pipe = self._process.stdin
        for item in items:
            if not pipe.closed:
                try:
                    pipe.write(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
                except OSError:  # the child ended; result() says why
                    _close(pipe)
            yield item
        if not pipe.closed:
            try:
                pipe.write(pickle.dumps(_END))
            except OSError:
                pass
            _close(pipe)

    def result(self):
        try:
            ok, value = pickle.load(self._process.stdout)
        except (EOFError, pickle.UnpicklingError):
            self._process.wait()
            raise RuntimeError(f"a worker process ended without a result (exit code {self._process.returncode})") \
                from None
        finally:
            self._done = True
            self._process.stdout.close()
        self._process.wait()
        if ok:
            return value
        raise value

    def cancel(self) -> None:
        if not self._done:
            self._done = True
            self._process.kill()
            self._process.wait()
            self._process.stdout.close()
            if self._feeder.is_alive():
                self._feeder.join()
            _close(self._process.stdin)


def _feed(pipe, data: bytes, close: bool) -> None:
    try:
        pipe.write(data)
        pipe.flush()
        if close:
            pipe.close()
    except OSError:  # the child was cancelled or died; result() reports it
        pass


def _close(pipe) -> None:
    try:
        pipe.close()
    except OSError:  # what was buffered cannot reach a child that has ended
        pass


_END = "cuecraft.parallel: end of stream"


STREAM_AHEAD = 8  # items a child reads ahead of its call: the parent does not wait while the call works


def _incoming(pipe) -> Iterator:
    """The objects the parent streams to this child, up to the end marker.

    A thread reads them as they come, up to ``STREAM_AHEAD`` ahead of the call: read only when
    the call asks, the pipe would hold the parent until the call had finished the last item,
    and the two processes would take turns instead of working at once.
    """
    import queue

    ahead: queue.Queue = queue.Queue(maxsize=STREAM_AHEAD)

    def read() -> None:
        try:
            while True:
                item = pickle.load(pipe)
                ahead.put(item)
                if isinstance(item, str) and item == _END:
                    return
        except (EOFError, OSError, pickle.UnpicklingError) as exc:  # the parent ended or cancelled
            ahead.put(exc)

    threading.Thread(target=read, daemon=True).start()
    while True:
        item = ahead.get()
        if isinstance(item, str) and item == _END:
            return
        if isinstance(item, BaseException):
            raise RuntimeError(f"the stream from the parent process broke ({item!r})")
        yield item


def serve() -> None:
    """The child's side: read the call from stdin, answer on stdout (print goes to stderr)."""
    import signal

    # Ctrl-C reaches the whole process group; the parent handles it and ends this child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The answer gets a private copy of the pipe; fd 1 itself now points at stderr, so nothing
    # the call prints (from Python, C libraries or its own children) can corrupt the answer.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path[:] = pickle.load(sys.stdin.buffer)
    fn, args, kwargs, streamed = pickle.load(sys.stdin.buffer)
    items = _incoming(sys.stdin.buffer) if streamed else None
    try:
        answer = (True, fn(items, *args, **kwargs) if streamed else fn(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        answer = (False, exc)
    if items is not None:  # a call that failed mid-stream: read the rest, or the parent would wait to write
        for _ in items:
            pass
    try:
        data = pickle.dumps(answer)
    except Exception:  # an unpicklable value or exception: send its traceback as text
        text = "".join(traceback.format_exception(answer[1])) if not answer[0] else repr(answer[1])
        data = pickle.dumps((False, RuntimeError(f"worker process: {text}")))
    answers.write(data)
    answers.close()


def _children_allowed() -> bool:
    return usable_cores() >= 2 and bool(sys.executable) and os.environ.get(SINGLE_PROCESS_ENV) != "1"


def stream(fn, *args, **kwargs):
    """``fn(items, *args, **kwargs)`` in a child process that starts now, or None where
    :func:`start` would not use a child (the caller then does the work itself).

    ``items`` are what the caller passes through ``handle.send_all(items)``, a generator that
    yields each item after sending it, so the caller can use it too (e.g. write a file of the
    same blocks) while the child works on it; ``handle.result()`` then waits for the call.
    Pickling rules are those of :func:`start`; the items must be picklable too.
    """
    if _children_allowed():
        try:
            return _Child(fn, args, kwargs, stream=True)
        except OSError:
            pass
    return None


def start(fn, *args, in_child: bool = True, **kwargs):
    """``fn(*args, **kwargs)`` in a child process when ``in_child`` and two cores are usable
    (and ``CUECRAFT_SINGLE_PROCESS=1`` is not set), else in-process at :meth:`result`. ``fn``
    must be importable (a module-level function), its arguments and result picklable."""
    if in_child and _children_allowed():
        try:
            return _Child(fn, args, kwargs)
        except OSError:  # no process to be had (limits, an embedded interpreter): do it here
            pass
    return _Inline(fn, args, kwargs)
