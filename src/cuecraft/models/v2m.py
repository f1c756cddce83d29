"""The codec backbone's trainable model: the token LM plus the video conditioning (MTCV2M / GVMGen).

``VideoMusicLM`` holds a :class:`~cuecraft.models.lm.TokenLM` (with its control guidance:
projections, DCF, CGD) and a :class:`~cuecraft.models.conditioning.VideoConditioner`, and
knows the codec's frame rate and the delay pattern's ids. It computes the training loss
on delayed codes and gives generation everything the LM needs (memory, prefix, masks).

Two training stages (MTCV2M): stage 1 trains the LM and the conditioner on (video, music)
pairs with no controls; stage 2 freezes both and trains only the guidance (control
projections, DCF, CGD). :meth:`VideoMusicLM.set_stage` sets ``requires_grad`` accordingly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cuecraft.errors import ParameterError
from cuecraft.models.patterns import delay, lm_inputs

IGNORE = -100


class VideoMusicLM(nn.Module):
    """Token LM + visual conditioner over codec frames.

    Parameters
    ----------
    lm : TokenLM
        ``n_codebooks`` streams, cross-attention on, input ids including ``pad_id``.
    conditioner : VideoConditioner
        Per-second visual features to memory / prefix / masks.
    frame_rate : int
        Codec frames per second (EnCodec 32 kHz: 50); one visual token covers this many.
    pad_id : int
        Id of delay-pattern pads and of the start column (MusicGen: the codebook size).
    """

    def __init__(self, *, lm: nn.Module, conditioner: nn.Module, frame_rate: int, pad_id: int):
        super().__init__()
        if not lm.cross_attention:
            raise ParameterError("the codec LM needs cross_attention=True to read the video")
        if lm.d_model != conditioner.d_model:
            raise ParameterError(f"conditioner width {conditioner.d_model} does not match the LM's {lm.d_model}")
        if isinstance(frame_rate, bool) or not isinstance(frame_rate, int) or frame_rate < 1:
            raise ParameterError(f"frame_rate must be a positive integer of frames per second, got {frame_rate!r}")
        if not 0 <= pad_id < lm.input_vocab_size:
            raise ParameterError(f"pad_id = {pad_id!r} is outside the LM's input ids [0, {lm.input_vocab_size})")
        self.lm, self.conditioner = lm, conditioner
        self.frame_rate, self.pad_id = frame_rate, pad_id

    def condition(self, batch: dict[str, torch.Tensor]):
        """Conditioning (memory, prefix, time mask) of a batch's visual features."""
        time_mask = None
        if "valid" in batch:
            time_mask = batch["valid"][:, ::self.frame_rate]  # [B, S]: a second is valid if its first frame is
            if bool(time_mask.all()):
                time_mask = None
        return self.conditioner(batch["patch"], batch["frame"], batch["context"], time_mask=time_mask)

    def masks(self, cond, *, n_steps: int, time_offset: float = 0.0):
        return self.conditioner.masks(cond, n_layers=self.lm.n_layers, n_steps=n_steps,
                                      steps_per_second=float(self.frame_rate), time_offset=time_offset)

    def step_controls(self, controls: torch.Tensor, n_steps: int) -> torch.Tensor:
        """Per-frame controls ``[B, T, C]`` as per-step controls ``[B, n_steps, C]``: step ``s`` predicts
        frame ``s`` of codebook 0, and the delay tail holds the last frame's values."""
        T = controls.shape[1]
        index = torch.clamp(torch.arange(n_steps, device=controls.device), max=T - 1)
        return controls[:, index]

    def forward(self, tokens: torch.Tensor, batch: dict[str, torch.Tensor], *, use_controls: bool) -> torch.Tensor:
        """Logits ``[B, K, S, V]`` for delayed input ``tokens`` ``[B, K, S]`` under the batch's video
        (and controls when ``use_controls``)."""
        cond = self.condition(batch)
        S = tokens.shape[2]
        controls = presence = None
        if use_controls:
            controls, presence = self.step_controls(batch["controls"], S), batch["presence"]
        return self.lm(tokens, memory=cond.memory, prefix=cond.prefix, memory_mask=self.masks(cond, n_steps=S),
                       controls=controls, presence=presence)

    def loss(self, batch: dict[str, torch.Tensor], *, use_controls: bool) -> torch.Tensor:
        """Cross-entropy over all codebooks of the delayed codes (pads and padded frames ignored)."""
        codes = batch["codes"]  # [B, K, T]
        inputs, targets = lm_inputs(codes, pad_id=self.pad_id, start_id=self.pad_id, ignore_index=IGNORE)
        if "valid" in batch and not bool(batch["valid"].all()):
            valid = delay(batch["valid"][:, None, :].expand_as(codes).long(), pad_id=0).bool()  # [B, K, S]
            targets = targets.masked_fill(~valid, IGNORE)
        logits = self(inputs, batch, use_controls=use_controls)  # [B, K, S, V]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)

    def set_stage(self, stage: int) -> None:
        """Stage 1: LM + conditioner train, guidance frozen. Stage 2: only the guidance trains."""
        if stage not in (1, 2):
            raise ParameterError(f"stage must be 1 or 2, got {stage!r}")
        for name, param in self.named_parameters():
            in_guidance = name.startswith("lm.guidance.")
            param.requires_grad_(in_guidance if stage == 2 else not in_guidance)
