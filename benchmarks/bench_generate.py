"""Symbolic model: KV-cached generation speed of the shipped model on a 60 s beat grid.

Reports event tokens per second and model steps (a compound model writes a note per step).
Other weights files are measured in the same run, alternating with the shipped ones, so
their ratio is side by side:

    .venv/bin/python benchmarks/bench_generate.py [--weights FILE ...]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import print_table


def measure(seconds: float = 60.0, weights: tuple[str | None, ...] = (None,), rounds: int = 1):
    from cuecraft.controls.schema import Controls
    from cuecraft.generate.sample import generate_tokens
    from cuecraft.models.backbones.symbolic import load_symbolic
    from cuecraft.models.compound import step_starts

    beats = np.arange(0.0, seconds, 0.5)
    controls = Controls(beat=np.stack([beats, np.arange(len(beats)) % 4], axis=1),
                        intensity=[[0.0, -24.0], [seconds - 1, -8.0]], emotion=[[0.0, 0.3, 0.2]], duration=seconds)
    models = [load_symbolic(w) for w in weights]
    for model, tokenizer in models:
        generate_tokens(model, tokenizer, Controls(beat=controls.beat[:8]), seed=0)  # warm-up
    best = [float("inf")] * len(models)
    counts = [(0, 0)] * len(models)
    for _ in range(rounds):
        for i, (model, tokenizer) in enumerate(models):
            start = time.perf_counter()
            ids, _ = generate_tokens(model, tokenizer, controls, seed=0)
            best[i] = min(best[i], time.perf_counter() - start)
            steps = len(ids) if model.n_codebooks == 1 else len(step_starts(ids, tokenizer))
            counts[i] = (len(ids), steps)
    rows = []
    for name, elapsed, (tokens, steps) in zip(weights, best, counts):
        label = "shipped model" if name is None else name
        ratio = "" if name is None else f", {elapsed / best[0]:.2f} of the shipped model's time"
        rows.append((f"symbolic generation, {seconds:g} s at 120 BPM, {label}",
                     f"{tokens / elapsed:.0f} tokens/s ({tokens} tokens in {steps} steps, {elapsed:.2f} s{ratio})",
                     "score total <= 6 s"))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="*", default=[], help="other weights files to measure side by side")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each model; the fastest counts")
    args = parser.parse_args()
    print_table(measure(weights=(None, *args.weights), rounds=args.rounds))
