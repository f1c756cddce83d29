"""The one place where configuration becomes objects (model, guidance, optimizer, schedule)."""
from __future__ import annotations

import math

import torch

from cuecraft.config import Config, ModelConfig, TrainConfig


def build_symbolic_lm(config: ModelConfig, *, vocab_size: int) -> torch.nn.Module:
    """The symbolic backbone: a one-stream :class:`TokenLM` with control guidance."""
    from cuecraft.models.guidance import ControlGuidance
    from cuecraft.models.lm import TokenLM

    guidance = ControlGuidance(d_model=config.d_model, mode=config.guidance, patch_len=config.patch_len,
                               guidance_every=config.guidance_every, p_global=config.p_drop_global,
                               p_each=config.p_drop_control)
    return TokenLM(vocab_size=vocab_size, d_model=config.d_model, n_layers=config.n_layers, n_heads=config.n_heads,
                   n_codebooks=1, mlp_ratio=float(config.mlp_ratio), dropout=config.dropout, positions="rotary",
                   max_positions=config.max_len, guidance=guidance)


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on norms, biases or embeddings)."""
    decay, plain = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 and "embed" not in name else plain).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95))


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak at ``config.steps``."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = min(1.0, (step - config.warmup) / max(1, config.steps - config.warmup))
    return config.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def build_from_config(config: Config, *, vocab_size: int) -> tuple[torch.nn.Module, torch.optim.AdamW]:
    """Model and optimizer for a training run."""
    model = build_symbolic_lm(config.model, vocab_size=vocab_size)
    return model, build_optimizer(model, config.train)
