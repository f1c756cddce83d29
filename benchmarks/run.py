"""Run every benchmark and print one table of figures, goals and the machine.

    .venv/bin/python benchmarks/run.py            # all (the 10-minute memory run takes a few minutes)
    .venv/bin/python benchmarks/run.py --quick    # skip the memory run; codec LM with 4 layers, not 24
"""
from __future__ import annotations

import sys

import bench_analysis
import bench_codec
import bench_generate
import bench_memory
import bench_score
from common import print_table


def main() -> None:
    quick = "--quick" in sys.argv
    rows = bench_analysis.measure() + bench_generate.measure() + bench_score.measure()
    rows += bench_codec.measure(quick=quick, frames=100, rounds=2)
    rows += bench_codec.measure(quick=quick, frames=1500, rounds=1)  # a 30-s window; about 8 min at full size
    if not quick:
        rows += bench_memory.measure()
    print_table(rows)


if __name__ == "__main__":
    main()
