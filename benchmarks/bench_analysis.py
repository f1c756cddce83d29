"""Analysis throughput: seconds of 640x360 video analysed per second of wall time (decode included).

    .venv/bin/python benchmarks/bench_analysis.py [SECONDS]
"""
from __future__ import annotations

import sys
import time

from common import example_video, print_table


def measure(seconds: float = 60.0) -> list[tuple[str, str, str]]:
    from cuecraft.api import analyze_video

    path = example_video(seconds)
    analyze_video(example_video(4.0))  # warm-up: librosa's numba compilation is a one-off cost
    start = time.perf_counter()
    result = analyze_video(path)
    elapsed = time.perf_counter() - start
    speed = result.info.duration / elapsed
    return [(f"analysis speed, {seconds:g} s 640x360 video", f"{speed:.1f}x real time ({elapsed:.2f} s)",
             ">= 30x real time")]


if __name__ == "__main__":
    print_table(measure(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0))
