"""VideoMAE context tokens (MTCV2M: VideoMAE V2, 2 fps, 16-frame tubelet windows, 1 token/s).

Frames are sampled at exactly 2 fps (``t = k / 2``) and cut into non-overlapping windows
of ``num_frames`` samples (16 -> 8 s). ``VideoMAEModel`` embeds each window with tubelets
of ``tubelet_size = 2`` frames, so temporal token ``j`` of a window covers samples ``2j``
and ``2j + 1``: exactly one second. Its ``last_hidden_state`` ``[1, (F/2) * S, D]`` is
ordered time-major (the Conv3d output is flattened over ``(t, h, w)``), so it reshapes to
``[F/2, S, D]``; the mean over the ``S`` spatial tokens gives one ``D``-d token per second.

Videos shorter than a window, and the final partial window of any video, are padded by
repeating the last frame; tokens of padded seconds are dropped, so the output is always
``[T, D]`` with ``T = ceil(duration)``. (MTCV2M strides its windows by 14 frames; here
they do not overlap, so each second is encoded exactly once.)

A config whose tubelets do not span one second at 2 fps (``tubelet_size != 2``, or
``num_frames`` not a multiple of it) is rejected. Weights come only from a local Hugging
Face folder in ``VideoMAEModel`` format (``model_type`` ``"videomae"``); VideoMAE V2's
official checkpoints use custom code and must be converted to that layout first (the ViT
backbone is the same).
"""
from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import torch

from cuecraft.errors import MediaError, ParameterError
from cuecraft.models.visual.base import (check_model_folder, checked_samples, decode_samples, load_pretrained,
                                         n_seconds, processor_output_size, processor_short_side,
                                         require_transformers)

__all__ = ["VideoMAEEncoder"]


def _processor_class(transformers):
    # The PIL backend needs no torchvision; the fallback covers versions without the split.
    return getattr(transformers, "VideoMAEImageProcessorPil", None) or transformers.VideoMAEImageProcessor


class VideoMAEEncoder:
    """Per-second VideoMAE context tokens: spatial means of each 1-s tubelet.

    Parameters
    ----------
    folder : str or os.PathLike
        Local Hugging Face folder: ``config.json`` (``model_type`` ``"videomae"``),
        ``model.safetensors``, ``preprocessor_config.json``.
    batch_size : int
        Windows per forward pass.

    Raises
    ------
    MediaError
        If the folder, a file in it, or a weight is missing, the ``model_type`` is wrong, the
        tubelets do not give one token per second at 2 fps, or the preprocessor's output
        size differs from the model's ``image_size``.
    ParameterError
        If ``batch_size`` is not a positive integer, or transformers is not installed.
    """

    name = "videomae"
    fps = 2
    tubelet = 2   # frames per temporal token: 2 frames at 2 fps = 1 s

    def __init__(self, folder: str | os.PathLike, *, batch_size: int = 1):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ParameterError(f"batch_size = {batch_size!r}: must be an integer >= 1")
        self.folder, raw = check_model_folder(folder, what="VideoMAE", model_types=("videomae",),
                                              arg="videomae_dir")
        config_path = self.folder / "config.json"
        tubelet, frames = raw.get("tubelet_size", 2), raw.get("num_frames", 16)
        # Checked before loading: a wrong time base would give features that look fine.
        if tubelet != self.tubelet:
            raise MediaError(f"'{config_path}': tubelet_size = {tubelet!r}, but one token per second at "
                             f"{self.fps} fps needs tubelet_size = {self.tubelet}")
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < tubelet or frames % tubelet:
            raise MediaError(f"'{config_path}': num_frames = {frames!r} must be a positive multiple of "
                             f"tubelet_size = {tubelet}")
        self.batch_size = batch_size
        transformers = require_transformers()
        self.model = load_pretrained(transformers.VideoMAEModel, self.folder, what="VideoMAE")
        try:
            self.processor = _processor_class(transformers).from_pretrained(str(self.folder), local_files_only=True)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise MediaError(f"'{self.folder / 'preprocessor_config.json'}': not a VideoMAE image processor "
                             f"config ({exc})") from None
        cfg = self.model.config
        size = processor_output_size(self.processor, what="VideoMAE", folder=self.folder)
        image = cfg.image_size if isinstance(cfg.image_size, (tuple, list)) else (cfg.image_size, cfg.image_size)
        if size != tuple(image):
            raise MediaError(f"'{self.folder / 'preprocessor_config.json'}': makes {size[0]}x{size[1]} frames, "
                             f"but config.json has image_size = {cfg.image_size}")
        self.short_side = processor_short_side(self.processor)
        self.window = int(cfg.num_frames)   # samples per window

    @property
    def window_seconds(self) -> int:
        """Seconds per window (``num_frames / 2``; 8 for the 16-frame models)."""
        return self.window // self.fps

    @property
    def context_dim(self) -> int:
        """Width of a context token (the hidden size, 1024 for ViT-L)."""
        return int(self.model.config.hidden_size)

    def encode(self, path: str | os.PathLike, *, progress: bool = False) -> torch.Tensor:
        """Context tokens of the video at ``path``.

        Parameters
        ----------
        path : str or os.PathLike
            Video file.
        progress : bool
            Show a tqdm bar over the decoded frames.

        Returns
        -------
        torch.Tensor
            ``[T, D]`` float32, ``T = ceil(duration)``.

        Raises
        ------
        MediaError
            For a missing or unreadable video.
        """
        duration, frames = decode_samples(path, fps=self.fps, short_side=self.short_side, progress=progress,
                                          desc="VideoMAE features")
        return self.encode_frames(frames, duration=duration)

    def encode_frames(self, frames: Iterable[tuple[float, np.ndarray]], *, duration: float) -> torch.Tensor:
        """Context tokens of decoded frames: ``(t, rgb)`` at exactly 2 fps from ``t = 0``."""
        T = n_seconds(duration)
        tokens, pending, window = [], [], []
        for _, _, rgb in checked_samples(frames, fps=self.fps, duration=duration):
            window.append(rgb)
            if len(window) == self.window:
                pending.append(window)
                window = []
                if len(pending) == self.batch_size:
                    tokens.append(self._run(pending))
                    pending = []
        if window:
            # Pad the partial window with its last frame. checked_samples guarantees at least
            # 2T - 1 samples, and an odd count cannot fill whole windows (num_frames is even),
            # so every second up to T gets a token.
            pending.append(window + [window[-1]] * (self.window - len(window)))
        if pending:
            tokens.append(self._run(pending))
        out = torch.cat(tokens).reshape(-1, self.context_dim)   # [n_windows * window_seconds, D]
        assert out.shape[0] >= T, (out.shape, T)
        return out[:T]                                          # [T, D]: padded seconds dropped

    def _run(self, windows: list[list[np.ndarray]]) -> torch.Tensor:
        """``[B, window_seconds, D]`` spatially averaged tubelet tokens of ``B`` windows."""
        pixels = self.processor(windows, return_tensors="pt")["pixel_values"]     # [B, F, 3, H, W]
        with torch.inference_mode():
            hidden = self.model(pixel_values=pixels.to(self.model.dtype)).last_hidden_state  # [B, (F/2)*S, D]
        B, L, D = hidden.shape
        steps = self.window // self.tubelet
        assert L % steps == 0, (hidden.shape, steps)
        # Time-major token order: [B, F/2, S, D]; the spatial mean is the second's token.
        return hidden.reshape(B, steps, L // steps, D).mean(dim=2).float()        # [B, F/2, D]
