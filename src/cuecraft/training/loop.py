"""Training the symbolic model: its loss, on the shared loop in ``training/fit.py``."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from cuecraft.config import Config
from cuecraft.training.fit import Batch, TrainResult, fit, latest_checkpoint, save_checkpoint  # noqa: F401

__all__ = ["lm_loss", "train", "latest_checkpoint", "save_checkpoint", "TrainResult", "model_config_json"]


def lm_loss(model: torch.nn.Module, batch: Batch, *, ignore_index: int = -100) -> torch.Tensor:
    """Next-token cross-entropy (padding ignored); the controls at step i describe the music at token i."""
    tokens = batch["tokens"]  # [B, T]
    logits = model(tokens[:, None, :-1], controls=batch["controls"][:, :-1], presence=batch["presence"])
    logits = logits[:, 0]  # [B, T-1, V]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), ignore_index=ignore_index)


def model_config_json(config) -> str:
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def train(config: Config, *, vocab_size: int, sample_batch: Callable[[np.random.Generator, str], Batch],
          metadata: dict[str, str], out_dir: str | Path | None = None, progress: bool = True,
          log: Callable[[str], None] = print, ignore_index: int = -100) -> TrainResult:
    """Train (or resume) the symbolic model described by ``config``.

    Parameters
    ----------
    vocab_size : the tokenizer's vocabulary size
    sample_batch : ``(rng, split) -> Batch`` for split "train" or "validation"
    metadata : strings stored in every checkpoint (config, tokenizer fingerprint, corpus hash)
    out_dir : run folder (default ``config.train.out_dir``); a checkpoint there is resumed
    """
    from cuecraft.models.builders import build_symbolic_lm

    torch.manual_seed(config.train.seed)
    model = build_symbolic_lm(config.model, vocab_size=vocab_size)
    # The model's shape must match to resume or load; the schedule (e.g. more steps) may change.
    metadata = {**metadata, "model_config": model_config_json(config.model), "config": config.to_json()}

    def loss_fn(m, batch):
        return lm_loss(m, batch, ignore_index=ignore_index)

    return fit(model, loss_fn=loss_fn, sample_batch=sample_batch, config=config.train,
               out=Path(out_dir or config.train.out_dir), metadata=metadata, progress=progress, log=log)
