"""``cuecraft train`` for the codec backbone: MTCV2M's two stages on (video, music) pair shards.

    cuecraft train --config configs/codec-tiny.toml            # a CPU, here
    accelerate launch -m cuecraft train --config my-codec.toml  # one or many GPUs / nodes

- **Stage 1** trains the LM and the visual conditioner (FGFS + VFA, or GVMGen's Q-Former)
  on the pairs, starting from MusicGen weights when ``[lm].init_from`` names a folder.
- **Stage 2** freezes them and trains only the control guidance (projections, DCF, CGD)
  on the controls extracted from each pair's music. Its CGD blocks start as copies of the
  LM blocks they attach to (ControlNet's trainable copy), **only** when stage 2 starts
  afresh: a resumed stage 2 loads its own checkpoint and never re-copies (MTCV2M re-copied
  on every run, overwriting trained CGD weights on resume).

The run folder gets ``stage1/`` and ``stage2/`` (each resumable, see ``training/fit.py``),
and, when stage 2 ends, the scoring checkpoint: ``model.safetensors`` (its metadata holds
the model config, visual token sizes and frame rate) and ``codec/`` (the EnCodec folder),
which ``cuecraft score --backbone codec --weights RUN`` loads.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import torch

from cuecraft.config import CodecConfig, load_config
from cuecraft.errors import MediaError, ParameterError
from cuecraft.training.checkpoints import WEIGHTS, load_weights
from cuecraft.training.fit import TrainResult, fit, is_main_process, latest_checkpoint

FORMAT = "cuecraft-codec-1"
CODEC_FOLDER = "codec"


def model_metadata(config: CodecConfig, *, dims, frame_rate: int) -> dict[str, str]:
    """What a codec checkpoint must say to be rebuilt and checked (strings, safetensors metadata)."""
    shape = json.loads(config.model_json())
    shape["visual_dims"] = dataclasses.asdict(dims)
    shape["frame_rate"] = frame_rate
    shape["lm"]["init_from"] = ""  # where the weights came from does not change the model's shape
    return {"format": FORMAT, "model_config": json.dumps(shape, sort_keys=True)}


def run_codec_training(config: CodecConfig | str | os.PathLike, *, out_dir: str | os.PathLike | None = None,
                       stages: tuple[int, ...] = (1, 2), progress: bool = True,
                       log: Callable[[str], None] = print) -> dict[int, TrainResult]:
    """Run the two training stages (or the ones in ``stages``); returns each stage's result."""
    from cuecraft.models.backbones.codec import EncodecCodec
    from cuecraft.models.builders import build_codec_model, resolve_codec_lm
    from cuecraft.models.visual.base import VisualDims
    from cuecraft.training.pairs import PairShards

    if not isinstance(config, CodecConfig):
        config = load_config(config)
        if not isinstance(config, CodecConfig):
            raise ParameterError("run_codec_training needs a config with backbone = \"codec\"")
    if not set(stages) <= {1, 2} or not stages:
        raise ParameterError(f"stages = {stages!r}: choose from 1 and 2")
    if 2 in stages:
        if not config.data.codec_dir:
            raise ParameterError("[data].codec_dir is empty: name the EnCodec (or MusicGen) folder the pairs were "
                                 "encoded with, so the trained model can be scored")
        EncodecCodec.from_folder(config.data.codec_dir)  # fail now, not after training
    config = resolve_codec_lm(config)
    out = Path(out_dir or config.stage1.out_dir)
    seconds = config.data.seconds
    pairs = {split: PairShards(config.data.pairs_dir, seconds=seconds, split=split)
             for split in ("train", "validation")}
    first = pairs["train"].pairs[0]
    dims = VisualDims(n_patches=int(first.patch.shape[1]), patch=int(first.patch.shape[2]),
                      frame=int(first.frame.shape[1]), context=int(first.context.shape[1]))
    frame_rate = pairs["train"].frame_rate
    if first.codes.shape[0] != config.lm.n_codebooks:
        raise MediaError(f"pairs in '{config.data.pairs_dir}' have {first.codes.shape[0]} codebooks, the LM "
                         f"{config.lm.n_codebooks}")
    steps_needed = 1 + seconds * frame_rate + config.lm.n_codebooks - 1
    if steps_needed > config.lm.max_positions:
        raise ParameterError(f"[data].seconds = {seconds} needs {steps_needed} LM positions, more than "
                             f"[lm].max_positions = {config.lm.max_positions}")
    metadata = model_metadata(config, dims=dims, frame_rate=frame_rate)
    results: dict[int, TrainResult] = {}
    resuming1 = latest_checkpoint(out / "stage1") is not None or (out / "stage1" / WEIGHTS).is_file()
    torch.manual_seed(config.stage1.seed)
    model = build_codec_model(config, dims=dims, frame_rate=frame_rate, load_init=not resuming1)

    def sampler(stage_cfg):
        def sample_batch(rng, split):
            return pairs[split].sample(rng, batch_size=stage_cfg.batch_size)
        return sample_batch

    if 1 in stages:
        model.set_stage(1)
        results[1] = fit(model, loss_fn=lambda m, b: m.loss(b, use_controls=False),
                         sample_batch=sampler(config.stage1), config=config.stage1, out=out / "stage1",
                         metadata=metadata, progress=progress, log=log, desc="stage 1")
    if 2 in stages:
        stage1_weights = out / "stage1" / WEIGHTS
        if latest_checkpoint(out / "stage2") is None:
            if not stage1_weights.is_file():
                raise MediaError(f"stage 2 needs stage 1's weights '{stage1_weights}'; run stage 1 first")
            load_weights(stage1_weights, model, expect={"model_config": metadata["model_config"]})
            model.lm.guidance.copy_backbone(model.lm)  # fresh stage 2 only; a resume loads its own CGD weights
        model.set_stage(2)
        results[2] = fit(model, loss_fn=lambda m, b: m.loss(b, use_controls=True),
                         sample_batch=sampler(config.stage2), config=config.stage2, out=out / "stage2",
                         metadata=metadata, progress=progress, log=log, desc="stage 2")
        if is_main_process():
            export(out, results[2].weights, codec_dir=config.data.codec_dir, metadata=metadata)
    if not is_main_process():
        return results
    (out / "summary.json").write_text(json.dumps({
        "config": json.loads(config.to_json()),
        **{f"stage{k}": {"steps": r.step, "train_loss": r.train_loss, "val_loss": r.val_loss}
           for k, r in results.items()}}, indent=1) + "\n", encoding="utf-8")
    return results


def export(out: Path, weights: Path, *, codec_dir: str, metadata: dict[str, str]) -> Path:
    """The scoring checkpoint in ``out``: stage 2's weights and a copy of the EnCodec folder."""
    from safetensors.torch import load_file

    from cuecraft.io.files import atomic_path
    from cuecraft.models.backbones.codec import EncodecCodec

    from transformers.utils import logging as hf_logging

    codec = EncodecCodec.from_folder(codec_dir)
    hf_logging.disable_progress_bar()  # its "Writing model shards" bar ignores --quiet
    target = out / CODEC_FOLDER
    tmp = out / (CODEC_FOLDER + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    codec.model.save_pretrained(tmp, safe_serialization=True)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    from safetensors.torch import save_file

    from cuecraft.training.checkpoints import read_metadata

    meta = {**read_metadata(weights), **metadata}
    with atomic_path(out / WEIGHTS) as tmp_weights:
        save_file(load_file(str(weights)), str(tmp_weights), metadata=meta)
    return out / WEIGHTS
