"""Peak RSS of `cuecraft score` on 640x360 videos of 2.5 and 10 minutes (must stay flat in length).

Each run is a fresh process; its peak RSS is read with getrusage(RUSAGE_CHILDREN).

    .venv/bin/python benchmarks/bench_memory.py
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from common import example_video, print_table

_CHILD = """
import resource, sys
from cuecraft.api import score
score(sys.argv[1], out=sys.argv[2])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mb(video: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", _CHILD, str(video), str(Path(tmp) / "o.mp4")], check=True,
                             capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def measure(minutes: tuple[float, ...] = (2.5, 10.0)) -> list[tuple[str, str, str]]:
    rows = []
    for m in minutes:
        mb = peak_rss_mb(example_video(m * 60))
        rows.append((f"peak RSS, score {m:g} min 640x360", f"{mb:.0f} MB", "<= 1500 MB, flat in length"))
    return rows


if __name__ == "__main__":
    print_table(measure())
