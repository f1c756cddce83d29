"""One optimisation loop for every model: AdamW, warm-up + cosine, clipping, EMA, checkpoints.

It runs through ``accelerate`` when installed (the ``train`` extra), so the same command
runs on a CPU, one GPU, or many GPUs and nodes under ``accelerate launch`` / ``torchrun``,
with mixed precision where the device has it. Without accelerate it runs the same loop in
plain PyTorch on one device (:class:`_Plain` offers the few calls used here).

Batches come from ``sample_batch(rng, split)`` with an RNG seeded by (seed, step, rank),
so a resumed run sees the same data as an uninterrupted one and every rank sees its own.
Only parameters with ``requires_grad`` are optimised, checkpointed in the optimizer state
and averaged by the EMA; the weights file always holds the whole model.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cuecraft.config import TrainConfig
from cuecraft.errors import ParameterError
from cuecraft.io.files import atomic_path
from cuecraft.models.builders import build_optimizer, learning_rate
from cuecraft.training.checkpoints import (WEIGHTS, load_train_state, load_weights, save_train_state,
                                           save_weights)

Batch = dict[str, torch.Tensor]
EMA_WEIGHTS = "ema.safetensors"


@dataclass(frozen=True)
class TrainResult:
    weights: Path
    step: int
    train_loss: float
    val_loss: float
    log: Path


class _Plain:
    """The subset of ``accelerate.Accelerator`` this loop uses, for runs without accelerate."""

    is_main_process = True
    process_index = 0
    num_processes = 1
    device = torch.device("cpu")

    def prepare(self, *objects):
        return objects if len(objects) > 1 else objects[0]

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip_grad_norm_(self, params, max_norm: float):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def autocast(self):
        return contextlib.nullcontext()

    def unwrap_model(self, model):
        return model

    def wait_for_everyone(self) -> None:
        pass


def is_main_process() -> bool:
    """True on the process that writes shared files (rank 0 under accelerate / torchrun, else True)."""
    try:
        from accelerate import PartialState
    except ImportError:
        return True
    return PartialState().is_main_process


def make_accelerator(mixed_precision: str = "no"):
    """An ``accelerate.Accelerator`` if the library is installed, else a plain single-device stand-in."""
    if mixed_precision not in ("no", "fp16", "bf16"):
        raise ParameterError(f"mixed_precision = {mixed_precision!r}: must be 'no', 'fp16' or 'bf16'")
    try:
        from accelerate import Accelerator
    except ImportError:
        if mixed_precision != "no":
            raise ParameterError(f"mixed_precision = {mixed_precision!r} needs accelerate: "
                                 "pip install 'cuecraft[train]'") from None
        return _Plain()
    if mixed_precision == "fp16" and not torch.cuda.is_available():
        mixed_precision = "no"  # fp16 autocast needs a GPU; on a CPU the run stays in float32
    return Accelerator(mixed_precision=mixed_precision)


class EMA:
    """Exponential moving average of the trainable parameters (``decay`` per step)."""

    def __init__(self, model: torch.nn.Module, *, decay: float):
        if not 0.0 < decay < 1.0:
            raise ParameterError(f"ema = {decay!r}: must be in (0, 1), or 0 for no EMA")
        self.decay = decay
        self.shadow = {n: p.detach().clone().float() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for name, param in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].mul_(self.decay).add_(param.detach().float(), alpha=1.0 - self.decay)

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The model's full state with the averaged values in place of the trainable parameters."""
        return {k: self.shadow.get(k, v).detach().to("cpu").contiguous() for k, v in model.state_dict().items()}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        for name in self.shadow:
            if name in tensors:
                self.shadow[name] = tensors[name].float().clone()


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or None."""
    pointer = Path(out) / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    folder = Path(out) / "checkpoints" / pointer.read_text(encoding="utf-8").strip()
    return folder if (folder / WEIGHTS).is_file() else None


def save_checkpoint(out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, step: int,
                    val_loss: float, metadata: dict[str, str], ema: EMA | None = None) -> Path:
    """Write ``checkpoints/step-N/`` completely, then point ``checkpoints/latest`` at it.

    A kill at any moment leaves ``latest`` naming a complete folder; the folder before the
    newest is kept too, older ones are removed.
    """
    import shutil

    from safetensors.torch import save_file

    root = Path(out) / "checkpoints"
    folder = root / f"step-{step:07d}"
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / WEIGHTS, model, metadata={**metadata, "step": str(step), "val_loss": f"{val_loss:.4f}"})
    if ema is not None:
        with atomic_path(folder / EMA_WEIGHTS) as tmp:
            save_file({k: v.contiguous() for k, v in ema.shadow.items()}, str(tmp))
    save_train_state(folder, optimizer, state={"step": step, "val_loss": val_loss})
    with atomic_path(root / "latest") as tmp:
        tmp.write_text(folder.name, encoding="utf-8")
    for old in sorted(root.glob("step-*"))[:-2]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, loss_fn, batches: list[Batch]) -> float:
    was_training = model.training
    model.eval()
    losses = [float(loss_fn(model, b)) for b in batches]
    model.train(was_training)
    return float(np.mean(losses)) if losses else math.nan


def _to(batch: Batch, device) -> Batch:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def fit(model: torch.nn.Module, *, loss_fn: Callable[[torch.nn.Module, Batch], torch.Tensor],
        sample_batch: Callable[[np.random.Generator, str], Batch], config: TrainConfig, out: str | Path,
        metadata: dict[str, str], progress: bool = True, log: Callable[[str], None] = print,
        desc: str = "training") -> TrainResult:
    """Train (or resume) ``model``'s trainable parameters; returns the final weights' path and losses.

    Parameters
    ----------
    loss_fn : ``(model, batch) -> scalar loss``
    sample_batch : ``(rng, split) -> Batch`` for split "train" or "validation"
    config : the schedule (steps, lr, warm-up, clipping, EMA, mixed precision, checkpoint cadence)
    out : run folder; a checkpoint there is resumed (the weights must fit: strict load)
    metadata : strings stored in every checkpoint and compared on resume (``model_config``)
    """
    from tqdm.auto import tqdm

    cfg = config
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    accelerator = make_accelerator(cfg.mixed_precision)
    optimizer = build_optimizer(model, cfg)
    step, state = 0, None
    resume = latest_checkpoint(out)
    if resume is not None:
        state = load_train_state(resume, optimizer)
    if state is not None:
        expect = {"model_config": metadata["model_config"]} if "model_config" in metadata else None
        load_weights(resume / WEIGHTS, model, expect=expect)
        step = int(state["step"])
        log(f"resuming {out} at step {step}")
    else:
        torch.manual_seed(cfg.seed)  # dropout draws depend on this run's seed alone, not on what ran before
    ema = EMA(model, decay=cfg.ema) if cfg.ema else None
    if ema is not None and state is not None and (resume / EMA_WEIGHTS).is_file():
        from safetensors.torch import load_file

        ema.load(load_file(str(resume / EMA_WEIGHTS)))
    model, optimizer = accelerator.prepare(model, optimizer)
    rank = accelerator.process_index
    val_batches = [_to(sample_batch(np.random.default_rng((cfg.seed, 10**9, i)), "validation"), accelerator.device)
                   for i in range(cfg.eval_batches)]
    log_path = out / "log.jsonl"
    model.train()
    recent: list[float] = []
    val_loss = float(state["val_loss"]) if state else math.nan
    started, seen = time.perf_counter(), 0
    trainable = [p for p in model.parameters() if p.requires_grad]
    bare = accelerator.unwrap_model(model)
    show = progress and accelerator.is_main_process
    with tqdm(total=cfg.steps, initial=step, desc=desc, disable=not show, dynamic_ncols=True) as bar:
        while step < cfg.steps:
            batch = _to(sample_batch(np.random.default_rng((cfg.seed, step, rank)), "train"), accelerator.device)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, cfg)
            with accelerator.autocast():
                loss = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise ParameterError(f"training loss became {float(loss)} at step {step}; lower the learning rate "
                                     f"(lr = {cfg.lr})")
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(trainable, cfg.grad_clip)
            optimizer.step()
            if ema is not None:
                ema.update(bare)
            step += 1
            recent = (recent + [float(loss.detach())])[-50:]
            seen += 1
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(recent):.3f}", val=f"{val_loss:.3f}")
            last = step == cfg.steps
            if step % cfg.eval_every == 0 or last:
                val_loss = evaluate_loss(model, loss_fn, val_batches)
                entry = {"step": step, "loss": round(float(np.mean(recent)), 4), "val_loss": round(val_loss, 4),
                         "lr": learning_rate(step - 1, cfg),
                         "steps_per_s": round(seen / (time.perf_counter() - started), 3)}
                if accelerator.is_main_process:
                    with log_path.open("a", encoding="utf-8") as f:
                        f.write(json.dumps(entry) + "\n")
                    log(f"{desc} step {step}: loss {entry['loss']:.4f}, val_loss {val_loss:.4f}")
            if step % cfg.ckpt_every == 0 or last:
                accelerator.wait_for_everyone()
                if accelerator.is_main_process:
                    save_checkpoint(out, bare, optimizer, step=step, val_loss=val_loss, metadata=metadata, ema=ema)
    accelerator.wait_for_everyone()
    final = out / WEIGHTS
    if accelerator.is_main_process:
        _save_final(final, bare, ema, metadata={**metadata, "step": str(step), "val_loss": f"{val_loss:.4f}",
                                                "ema": str(cfg.ema)})
    return TrainResult(weights=final, step=step, train_loss=float(np.mean(recent)) if recent else math.nan,
                       val_loss=val_loss, log=log_path)


def _save_final(path: Path, model: torch.nn.Module, ema: EMA | None, *, metadata: dict[str, str]) -> None:
    """The run's result: the EMA weights when EMA is on (they are what inference should use)."""
    if ema is None:
        save_weights(path, model, metadata=metadata)
        return
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(ema.state_dict(model), str(tmp), metadata={k: str(v) for k, v in metadata.items()})
