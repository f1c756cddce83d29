"""Codec LM: KV-cached decoding speed of our TokenLM vs transformers' MusicGen, same random weights.

A MusicGen-small-architecture decoder (width 1024, 24 layers, 16 heads, FFN 4096, 4 codebooks
of 2048; ``--quick``: 4 layers) is saved once with ``save_pretrained``. Each side then runs in
its own fresh process, so its peak RSS (getrusage) is its own:

- **transformers**: ``MusicgenForCausalLM.from_pretrained`` + ``generate`` (sampling, top-k 250,
  CFG 3 over a doubled batch, an ``EncoderDecoderCache`` so cross-attention keys are cached);
- **cuecraft**: ``load_musicgen_lm`` + ``generate_codes`` (the same sampling and CFG).

Both decode the same number of frames (plus the 3 delay steps) against the same 30-token
memory, with 2 threads, after a short warm-up. ``benchmarks/run.py`` measures two lengths:
100 frames (2 s), where both sides are bound by reading the weights once per step, and
1500 frames (30 s, MusicGen's generation window), where the cost of each side's KV cache
shows too (transformers' cache grows by concatenation every step; ours is preallocated). Tokens/s counts codes: 4 per frame. The
two sides run alternately (A B B A) and each keeps its fastest run, since the machine may be
shared.

    .venv/bin/python benchmarks/bench_codec.py            # MusicGen-small architecture
    .venv/bin/python benchmarks/bench_codec.py --quick    # 4 layers
    .venv/bin/python benchmarks/bench_codec.py --frames 50
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile

from common import print_table

K, V, D, MEMORY = 4, 2048, 1024, 30


def build(folder: str, layers: int) -> None:
    """Save a random-weight MusicGen decoder (musicgen-small's shape, ``layers`` deep) to ``folder``."""
    import torch
    from transformers import MusicgenDecoderConfig, MusicgenForCausalLM

    torch.manual_seed(0)
    config = MusicgenDecoderConfig(vocab_size=V, hidden_size=D, num_hidden_layers=layers, num_attention_heads=16,
                                   ffn_dim=4096, num_codebooks=K, max_position_embeddings=2048, pad_token_id=V,
                                   bos_token_id=V)
    MusicgenForCausalLM(config).eval().save_pretrained(folder, safe_serialization=True)


def run(side: str, folder: str, frames: int) -> dict:
    """Load one side, warm up, time one decode of ``frames`` frames; its figures as a dict."""
    import resource
    import time

    import torch

    torch.set_num_threads(2)
    memory = torch.randn(1, MEMORY, D, generator=torch.Generator().manual_seed(1))
    if side == "transformers":
        from transformers import DynamicCache, EncoderDecoderCache, MusicgenForCausalLM
        from transformers.utils import logging

        logging.set_verbosity_error()
        model = MusicgenForCausalLM.from_pretrained(folder, local_files_only=True).eval()

        def decode(n: int) -> torch.Tensor:
            torch.manual_seed(0)
            with torch.no_grad():
                return model.generate(
                    input_ids=torch.full((K, 1), V), attention_mask=torch.ones(K, 1, dtype=torch.long),
                    encoder_hidden_states=torch.cat([memory, torch.zeros_like(memory)]),
                    cache=EncoderDecoderCache(DynamicCache(), DynamicCache()), do_sample=True, top_k=250,
                    temperature=1.0, guidance_scale=3.0, max_length=n + K, decoder_start_token_id=V,
                    pad_token_id=V, bos_token_id=V, num_return_sequences=1)[0]
    else:
        from cuecraft.generate.codec import generate_codes
        from cuecraft.models.backbones.codec import load_musicgen_lm

        model, _ = load_musicgen_lm(folder)

        def decode(n: int) -> torch.Tensor:
            return generate_codes(model, n_frames=n, memory=memory, cfg_scale=3.0, top_k=250, seed=0)

    decode(4)  # warm-up: first-call allocations and kernel selection
    start = time.perf_counter()
    codes = decode(frames)
    seconds = time.perf_counter() - start
    assert tuple(codes.shape) == (K, frames), codes.shape
    return {"seconds": seconds, "tokens_per_s": K * frames / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # KiB on Linux


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _figures(side: dict) -> str:
    return f"{side['tokens_per_s']:.1f} tokens/s ({side['seconds']:.2f} s), peak RSS {side['peak_rss_mb']:.0f} MB"


def measure(quick: bool = False, frames: int = 100, rounds: int = 2) -> list[tuple[str, str, str]]:
    """Rows for the table. Sides alternate A B B A ... over ``rounds`` rounds (each its own process)
    and each side keeps its fastest run, so load from other processes on the machine hits
    both alike; the peak RSS is the largest of a side's runs."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        return [("codec LM decoding speed-up, cuecraft / transformers", "skipped: pip install 'cuecraft[codec]'",
                 ">= 1.5x")]
    layers = 4 if quick else 24
    runs: dict[str, list[dict]] = {"transformers": [], "cuecraft": []}
    with tempfile.TemporaryDirectory() as tmp:
        _child("build", tmp, str(layers))
        for r in range(rounds):
            for side in ("transformers", "cuecraft")[::1 if r % 2 == 0 else -1]:
                runs[side].append(_child(side, tmp, str(frames)))
    best = {side: {"seconds": min(x["seconds"] for x in rs), "peak_rss_mb": max(x["peak_rss_mb"] for x in rs)}
            for side, rs in runs.items()}
    for b in best.values():
        b["tokens_per_s"] = K * frames / b["seconds"]
    hf, ours = best["transformers"], best["cuecraft"]
    arch = (f"MusicGen-small arch, {layers} layers, random weights, {frames} frames, CFG 3, top-k 250, 2 threads, "
            f"best of {rounds}")
    ratio = ours["tokens_per_s"] / hf["tokens_per_s"]
    return [(f"codec LM decoding, cuecraft ({arch})", _figures(ours), ""),
            ("codec LM decoding, transformers generate (same)", _figures(hf), ""),
            (f"codec LM decoding speed-up, cuecraft / transformers, {frames} frames", f"{ratio:.2f}x", ">= 1.5x")]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        role, folder, number = sys.argv[2:5]
        if role == "build":
            build(folder, int(number))
            print("{}")
        else:
            print(json.dumps(run(role, folder, int(number))))
    else:
        frames = int(sys.argv[sys.argv.index("--frames") + 1]) if "--frames" in sys.argv else 100
        print_table(measure(quick="--quick" in sys.argv, frames=frames))
