"""End-to-end `cuecraft score` time for a 60 s 640x360 video.

Three figures: warm (in-process, after one short run has paid librosa's numba compilation),
cold (a fresh `python -m cuecraft score` process, as a user runs it; the median of three),
cold without the worker process (``CUECRAFT_SINGLE_PROCESS=1``; alternated with the default
runs), and warm with `--melody-only` (the model writes no harmony voice: about half the tokens).

    .venv/bin/python benchmarks/bench_score.py [SECONDS] [--weights FILE ...]

``--weights``: other symbolic weights files, each also run warm in the same session (after
the shipped model's runs), for a side-by-side ratio.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import example_video, print_table

from cuecraft.parallel import SINGLE_PROCESS_ENV

COLD_RUNS = 3  # a single cold run varies by about 0.2 s


def measure(seconds: float = 60.0, weights: tuple[str, ...] = ()) -> list[tuple[str, str, str]]:
    from cuecraft.api import score

    video = example_video(seconds)
    with tempfile.TemporaryDirectory() as tmp:
        score(example_video(4.0), out=Path(tmp) / "warm.mp4")
        start = time.perf_counter()
        score(video, out=Path(tmp) / "a.mp4")
        warm = time.perf_counter() - start
        colds, singles = [], []
        for _ in range(COLD_RUNS):  # alternated, so that both see the same machine
            for times, env in ((colds, {}), (singles, {SINGLE_PROCESS_ENV: "1"})):
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "cuecraft", "score", str(video), "-o",
                                str(Path(tmp) / "b.mp4"), "-q", "--overwrite"], check=True,
                               stdout=subprocess.DEVNULL, env={**os.environ, **env})
                times.append(time.perf_counter() - start)
        start = time.perf_counter()
        score(video, out=Path(tmp) / "c.mp4", melody_only=True)
        melody_only = time.perf_counter() - start
        others = []
        for i, path in enumerate(weights):
            score(example_video(4.0), out=Path(tmp) / f"warm{i}.mp4", weights=path)
            start = time.perf_counter()
            score(video, out=Path(tmp) / f"w{i}.mp4", weights=path)
            elapsed = time.perf_counter() - start
            others.append((f"score {seconds:g} s 640x360, warm, {path}",
                           f"{elapsed:.2f} s ({elapsed / warm:.2f} of the shipped model's)", "<= 6 s"))
    return [(f"score {seconds:g} s 640x360, warm (in process)", f"{warm:.2f} s", "<= 6 s"),
            (f"score {seconds:g} s 640x360, cold (new process), median of {COLD_RUNS}", _runs(colds), "<= 6 s"),
            (f"score {seconds:g} s 640x360, cold, {SINGLE_PROCESS_ENV}=1 (no worker process)",
             f"{_runs(singles)}; {statistics.median(singles) / statistics.median(colds):.2f}x the default", "<= 6 s"),
            (f"score {seconds:g} s 640x360 --melody-only, warm", f"{melody_only:.2f} s", "<= 6 s")] + others


def _runs(times: list[float]) -> str:
    return f"{statistics.median(times):.2f} s ({', '.join(f'{t:.2f}' for t in times)})"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seconds", nargs="?", type=float, default=60.0, help="video length")
    parser.add_argument("--weights", nargs="*", default=[], help="other symbolic weights files, run warm too")
    args = parser.parse_args()
    print_table(measure(args.seconds, tuple(args.weights)))
