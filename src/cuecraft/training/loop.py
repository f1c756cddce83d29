"""The training loop: AdamW, warm-up + cosine, gradient clipping, validation, resumable checkpoints.

Runs on the CPU out of the box; ``accelerate`` (the ``train`` extra) is used when installed
so that ``accelerate launch`` / ``torchrun`` spread the same command over GPUs and nodes.
Batches are drawn from an RNG seeded by (seed, step), so a resumed run sees the same data
as an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from cuecraft.config import Config
from cuecraft.io.files import atomic_path
from cuecraft.models.builders import build_from_config, learning_rate
from cuecraft.training.checkpoints import (WEIGHTS, load_train_state, load_weights, save_train_state,
                                           save_weights)

Batch = dict[str, torch.Tensor]  # tokens [B, T] long, controls [B, T, C] float, presence [B, 4] float


@dataclass(frozen=True)
class TrainResult:
    weights: Path
    step: int
    train_loss: float
    val_loss: float
    log: Path


def lm_loss(model: torch.nn.Module, batch: Batch, *, ignore_index: int = -100) -> torch.Tensor:
    """Next-token cross-entropy (padding ignored); the controls at step i describe the music at token i."""
    tokens = batch["tokens"]  # [B, T]
    logits = model(tokens[:, None, :-1], controls=batch["controls"][:, :-1], presence=batch["presence"])
    logits = logits[:, 0]  # [B, T-1, V]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), ignore_index=ignore_index)


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, batches: list[Batch], *, ignore_index: int = -100) -> float:
    was_training = model.training
    model.eval()
    losses = [float(lm_loss(model, b, ignore_index=ignore_index)) for b in batches]
    model.train(was_training)
    return float(np.mean(losses)) if losses else math.nan


def model_config_json(config) -> str:
    import dataclasses

    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or None."""
    pointer = out / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    folder = out / "checkpoints" / pointer.read_text(encoding="utf-8").strip()
    return folder if (folder / WEIGHTS).is_file() else None


def save_checkpoint(out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, step: int,
                    val_loss: float, metadata: dict[str, str]) -> Path:
    """Write ``checkpoints/step-N/`` completely, then point ``checkpoints/latest`` at it.

    A kill at any moment leaves ``latest`` naming a complete folder; the folder before the
    newest is kept too, older ones are removed.
    """
    import shutil

    root = out / "checkpoints"
    folder = root / f"step-{step:07d}"
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / WEIGHTS, model, metadata={**metadata, "step": str(step), "val_loss": f"{val_loss:.4f}"})
    save_train_state(folder, optimizer, state={"step": step, "val_loss": val_loss})
    with atomic_path(root / "latest") as tmp:
        tmp.write_text(folder.name, encoding="utf-8")
    for old in sorted(root.glob("step-*"))[:-2]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def train(config: Config, *, vocab_size: int, sample_batch: Callable[[np.random.Generator, str], Batch],
          metadata: dict[str, str], out_dir: str | Path | None = None, progress: bool = True,
          log: Callable[[str], None] = print, ignore_index: int = -100) -> TrainResult:
    """Train (or resume) the model described by ``config``.

    Parameters
    ----------
    vocab_size : the tokenizer's vocabulary size
    sample_batch : ``(rng, split) -> Batch`` for split "train" or "validation"
    metadata : strings stored in every checkpoint (config, tokenizer fingerprint, corpus hash)
    out_dir : run folder (default ``config.train.out_dir``); a checkpoint there is resumed
    """
    from tqdm.auto import tqdm

    cfg = config.train
    out = Path(out_dir or cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model, optimizer = build_from_config(config, vocab_size=vocab_size)
    # The model's shape must match to resume or load; the schedule (e.g. more steps) may change.
    metadata = {**metadata, "model_config": model_config_json(config.model), "config": config.to_json()}
    step = 0
    resume = latest_checkpoint(out)
    state = load_train_state(resume, optimizer) if resume is not None else None
    if state is not None:
        load_weights(resume / WEIGHTS, model, expect={"model_config": metadata["model_config"]})
        step = int(state["step"])
        log(f"resuming {out} at step {step}")
    val_batches = [sample_batch(np.random.default_rng((cfg.seed, 10**9, i)), "validation")
                   for i in range(cfg.eval_batches)]
    log_path = out / "log.jsonl"
    model.train()
    recent: list[float] = []
    val_loss = float(state["val_loss"]) if state else math.nan
    started, tokens_seen = time.perf_counter(), 0
    with tqdm(total=cfg.steps, initial=step, desc="training", disable=not progress, dynamic_ncols=True) as bar:
        while step < cfg.steps:
            batch = sample_batch(np.random.default_rng((cfg.seed, step)), "train")
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, cfg)
            loss = lm_loss(model, batch, ignore_index=ignore_index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            recent = (recent + [float(loss.detach())])[-50:]
            tokens_seen += batch["tokens"].numel()
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(recent):.3f}", val=f"{val_loss:.3f}")
            last = step == cfg.steps
            if step % cfg.eval_every == 0 or last:
                val_loss = evaluate_loss(model, val_batches, ignore_index=ignore_index)
                entry = {"step": step, "loss": round(float(np.mean(recent)), 4), "val_loss": round(val_loss, 4),
                         "lr": learning_rate(step - 1, cfg),
                         "tokens_per_s": round(tokens_seen / (time.perf_counter() - started), 1)}
                with log_path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(entry) + "\n")
                log(f"step {step}: loss {entry['loss']:.4f}, val_loss {val_loss:.4f}")
            if step % cfg.ckpt_every == 0 or last:
                save_checkpoint(out, model, optimizer, step=step, val_loss=val_loss, metadata=metadata)
    final = save_weights(out / WEIGHTS, model, metadata={**metadata, "step": str(step), "val_loss": f"{val_loss:.4f}"})
    return TrainResult(weights=final, step=step, train_loss=float(np.mean(recent)) if recent else math.nan,
                       val_loss=val_loss, log=log_path)
