"""CLIP patch and frame tokens (MTCV2M / GVMGen: CLIP ViT-L/14@336, frozen, 1 frame per second).

For each second ``i`` the frame at its centre ``i + 0.5`` (decoded at 2 fps, odd samples;
see ``base``) goes through ``CLIPVisionModelWithProjection``:

- **patch** ``[T, P, D]``: the vision tower's ``last_hidden_state`` with the CLS token
  dropped. In transformers' ``CLIPVisionModel.forward`` the encoder output is returned as
  ``last_hidden_state`` unnormalised, and ``post_layernorm`` is applied only to the pooled
  CLS token, so these are the hidden states *before* the final norm (``ln_post``), as
  MTCV2M uses. ViT-L/14@336: ``P = 576`` (24x24), ``D = 1024``.
- **frame** ``[T, Df]``: ``image_embeds``, the projected CLS token
  (``visual_projection(post_layernorm(CLS))``); 768-d for ViT-L/14.

Weights come only from a local Hugging Face folder (``config.json`` with ``model_type``
``"clip"`` or ``"clip_vision_model"``, ``model.safetensors``, ``preprocessor_config.json``),
never from the hub. A full CLIP checkpoint (text and vision towers) is fine: the text
tower's tensors are skipped.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import torch

from cuecraft.errors import MediaError, ParameterError
from cuecraft.models.visual.base import (check_model_folder, decode_samples, load_pretrained, n_seconds,
                                         processor_output_size, processor_short_side, require_transformers,
                                         second_centres)

__all__ = ["CLIPEncoder"]

_MODEL_TYPES = ("clip", "clip_vision_model")


def _processor_class(transformers):
    # The PIL backend needs no torchvision and is the reference implementation of CLIP's
    # preprocessing; the name falls back for transformers versions without the split.
    return getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor


class CLIPEncoder:
    """Per-second CLIP patch tokens (before the final norm) and projected CLS tokens.

    Parameters
    ----------
    folder : str or os.PathLike
        Local Hugging Face folder: ``config.json`` (``model_type`` ``"clip"`` or
        ``"clip_vision_model"``), ``model.safetensors``, ``preprocessor_config.json``.
    batch_size : int
        Frames per forward pass.

    Raises
    ------
    MediaError
        If the folder, a file in it, or a weight the model needs is missing, or the
        ``model_type`` or the preprocessor's output size is wrong; the message names the
        folder and the expected layout.
    ParameterError
        If ``batch_size`` is not a positive integer, or transformers is not installed.
    """

    name = "clip"
    fps = 2   # decode rate; each second's centre is an odd sample

    def __init__(self, folder: str | os.PathLike, *, batch_size: int = 8):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ParameterError(f"batch_size = {batch_size!r}: must be an integer >= 1")
        self.folder, raw = check_model_folder(folder, what="CLIP", model_types=_MODEL_TYPES, arg="clip_dir")
        self.batch_size = batch_size
        transformers = require_transformers()
        config = None
        if raw["model_type"] == "clip":
            # A full CLIP checkpoint keeps projection_dim at the top level; its vision_config
            # may carry the class default (512) instead, which would mis-size the projection.
            try:
                full = transformers.CLIPConfig.from_pretrained(str(self.folder), local_files_only=True)
            except (OSError, ValueError, TypeError, KeyError) as exc:
                raise MediaError(f"'{self.folder / 'config.json'}': not a CLIP config ({exc})") from None
            config = full.vision_config
            config.projection_dim = full.projection_dim
        self.model = load_pretrained(transformers.CLIPVisionModelWithProjection, self.folder, what="CLIP",
                                     config=config)
        try:
            self.processor = _processor_class(transformers).from_pretrained(str(self.folder), local_files_only=True)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise MediaError(f"'{self.folder / 'preprocessor_config.json'}': not a CLIP image processor "
                             f"config ({exc})") from None
        cfg = self.model.config
        size = processor_output_size(self.processor, what="CLIP", folder=self.folder)
        if size != (cfg.image_size, cfg.image_size):
            raise MediaError(f"'{self.folder / 'preprocessor_config.json'}': makes {size[0]}x{size[1]} images, "
                             f"but config.json has image_size = {cfg.image_size}")
        self.short_side = processor_short_side(self.processor)

    @property
    def n_patches(self) -> int:
        """Patch tokens per frame, ``(image_size / patch_size) ** 2`` (576 for ViT-L/14@336)."""
        return (self.model.config.image_size // self.model.config.patch_size) ** 2

    @property
    def patch_dim(self) -> int:
        """Width of a patch token (the vision tower's hidden size, 1024 for ViT-L)."""
        return int(self.model.config.hidden_size)

    @property
    def frame_dim(self) -> int:
        """Width of a frame token (the projection size, 768 for ViT-L/14)."""
        return int(self.model.config.projection_dim)

    def encode(self, path: str | os.PathLike, *, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch and frame tokens of the video at ``path``.

        Parameters
        ----------
        path : str or os.PathLike
            Video file.
        progress : bool
            Show a tqdm bar over the decoded frames.

        Returns
        -------
        patch : torch.Tensor
            ``[T, P, D]`` float32, ``T = ceil(duration)``.
        frame : torch.Tensor
            ``[T, Df]`` float32.

        Raises
        ------
        MediaError
            For a missing or unreadable video.
        """
        duration, frames = decode_samples(path, fps=self.fps, short_side=self.short_side, progress=progress,
                                          desc="CLIP features")
        return self.encode_frames(frames, duration=duration)

    def encode_frames(self, frames: Iterable[tuple[float, np.ndarray]], *,
                      duration: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch and frame tokens of decoded frames: ``(t, rgb)`` at exactly 2 fps from ``t = 0``."""
        T = n_seconds(duration)
        patches, embeds, batch = [], [], []
        for _, rgb in second_centres(frames, fps=self.fps, duration=duration):
            batch.append(rgb)
            if len(batch) == self.batch_size:
                self._run(batch, patches, embeds)
                batch = []
        if batch:
            self._run(batch, patches, embeds)
        # cat outside inference mode also turns the inference tensors into ordinary ones,
        # which callers may then use in autograd (e.g. a trainable norm on top).
        patch, frame = torch.cat(patches), torch.cat(embeds)   # [T, P, D], [T, Df]
        assert patch.shape[0] == T == frame.shape[0], (patch.shape, frame.shape, T)
        return patch, frame

    def _run(self, images: list[np.ndarray], patches: list, embeds: list) -> None:
        pixels = self.processor(images, return_tensors="pt")["pixel_values"]   # [B, 3, S, S]
        with torch.inference_mode():
            out = self.model(pixel_values=pixels.to(self.model.dtype))
        hidden = out.last_hidden_state                                           # [B, 1 + P, D]
        assert hidden.shape[1] == self.n_patches + 1, (hidden.shape, self.n_patches)
        patches.append(hidden[:, 1:].float())                            # [B, P, D], CLS dropped
        embeds.append(out.image_embeds.float())                          # [B, Df]
