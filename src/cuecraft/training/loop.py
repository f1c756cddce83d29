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
    """Next-step cross-entropy per token (padding ignored); the controls at step i describe the music at step i.

    ``tokens`` is ``[B, T]`` (event tokens) or ``[B, K, T]`` (compound steps, ``models/compound.py``).
    For compound steps the mean runs over every non-padding token of every slot, so the loss is
    the same per-event-token figure as the one-stream model's; slots after the first are read
    with the step's true first token (teacher forcing of ``first``).
    """
    tokens = batch["tokens"]
    if tokens.dim() == 2:
        tokens = tokens[:, None]  # [B, 1, T]
    first = tokens[:, 0, 1:] if tokens.shape[1] > 1 else None
    logits = model(tokens[..., :-1], controls=batch["controls"][:, :-1], presence=batch["presence"],
                   first=first)  # [B, K, T-1, V]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[..., 1:].reshape(-1), ignore_index=ignore_index)


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
