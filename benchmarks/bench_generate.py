"""Symbolic model: KV-cached generation speed (tokens/s) of the shipped model on a 60 s beat grid.

    .venv/bin/python benchmarks/bench_generate.py
"""
from __future__ import annotations

import time

import numpy as np

from common import print_table


def measure(seconds: float = 60.0) -> list[tuple[str, str, str]]:
    from cuecraft.controls.schema import Controls
    from cuecraft.generate.sample import generate_tokens
    from cuecraft.models.backbones.symbolic import load_symbolic

    model, tokenizer = load_symbolic()
    beats = np.arange(0.0, seconds, 0.5)
    controls = Controls(beat=np.stack([beats, np.arange(len(beats)) % 4], axis=1),
                        intensity=[[0.0, -24.0], [seconds - 1, -8.0]], emotion=[[0.0, 0.3, 0.2]], duration=seconds)
    generate_tokens(model, tokenizer, Controls(beat=controls.beat[:8]), seed=0)  # warm-up
    start = time.perf_counter()
    ids, _ = generate_tokens(model, tokenizer, controls, seed=0)
    elapsed = time.perf_counter() - start
    return [(f"symbolic generation, {seconds:g} s at 120 BPM", f"{len(ids) / elapsed:.0f} tokens/s "
             f"({len(ids)} tokens, {elapsed:.2f} s)", "score total <= 6 s")]


if __name__ == "__main__":
    print_table(measure())
