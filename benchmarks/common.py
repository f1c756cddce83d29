"""Shared helpers for the benchmark scripts: test media, the machine line, the table."""
from __future__ import annotations

import os
import platform
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def reference_seconds(rounds: int = 5) -> float:
    """Seconds a fixed single-core workload takes (the fastest of ``rounds``): small numpy
    operations in a Python loop, matrix products in cache, and matrix-vector products that
    stream 20 MB from memory, the kinds of work ``score`` does. This machine's speed drifts through the day by 20-40%; printed beside the figures,
    it tells a slow hour from a slow change."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    small, big = rng.standard_normal(256).astype(np.float32), rng.standard_normal((512, 512)).astype(np.float32)
    weights = rng.standard_normal((2560, 2048)).astype(np.float32)  # 20 MB, as a decoding step reads
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        acc = 0.0
        for _ in range(20_000):
            acc += float((small * 1.0001 + 0.5).sum())
        for _ in range(20):
            big = np.tanh(big @ big.T / 512.0)
        row = weights[0]
        for _ in range(50):
            row = np.tanh(weights[:, :2048] @ row[:2048] / 45.0)[:2048]
        best = min(best, time.perf_counter() - start)
    return best


def example_video(seconds: float, *, width: int = 640, height: int = 360) -> Path:
    """A synthetic video with the example's events, made once and cached in benchmarks/out/."""
    from cuecraft.io.synthetic import example_events, write_synthetic_video

    OUT.mkdir(exist_ok=True)
    path = OUT / f"bench_{int(seconds)}s_{width}x{height}.mp4"
    if not path.exists():
        write_synthetic_video(path, duration=seconds, fps=24, width=width, height=height,
                              events=example_events(seconds), seed=1, audio=False)
    return path


def print_table(rows: list[tuple[str, str, str]]) -> None:
    """Rows of (figure, value, goal), then the machine they were measured on."""
    widths = [max(len(r[i]) for r in rows + [("figure", "value", "goal")]) for i in range(3)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(("figure", "value", "goal"), widths)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    print(f"machine: {machine()}; reference workload {reference_seconds():.3f} s (lower is a faster hour)")
