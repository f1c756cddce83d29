"""Visual encoders: per-second patch, frame and context tokens of a video.

``build_visual_encoder(kind)`` makes one of:

- ``"embedded"`` (default): :class:`EmbeddedEncoder`, no pretrained weights;
- ``"clip"``: CLIP ViT patch and frame tokens; context from VideoMAE if ``videomae_dir`` is
  given, else from the embedded encoder;
- ``"clip+videomae"``: CLIP patch and frame tokens, VideoMAE context tokens (MTCV2M).

Pretrained weights load only from local Hugging Face folders, never from the hub.
"""
from __future__ import annotations

import os

from cuecraft.errors import ParameterError
from cuecraft.models.visual.base import VisualDims, VisualEncoder, VisualFeatures, n_seconds
from cuecraft.models.visual.clip import CLIPEncoder
from cuecraft.models.visual.combined import CombinedEncoder
from cuecraft.models.visual.embedded import CONTEXT_FEATURES, FRAME_FEATURES, PATCH_FEATURES, EmbeddedEncoder
from cuecraft.models.visual.videomae import VideoMAEEncoder

__all__ = ["VisualFeatures", "VisualDims", "VisualEncoder", "n_seconds", "EmbeddedEncoder", "CLIPEncoder",
           "VideoMAEEncoder", "CombinedEncoder", "build_visual_encoder", "KINDS", "PATCH_FEATURES",
           "FRAME_FEATURES", "CONTEXT_FEATURES"]

KINDS = ("embedded", "clip", "clip+videomae")


def build_visual_encoder(kind: str = "embedded", *, clip_dir: str | os.PathLike | None = None,
                         videomae_dir: str | os.PathLike | None = None) -> VisualEncoder:
    """Make the visual encoder named ``kind``.

    Parameters
    ----------
    kind : {"embedded", "clip", "clip+videomae"}
    clip_dir : str or os.PathLike, optional
        Local CLIP folder; needed by ``"clip"`` and ``"clip+videomae"``.
    videomae_dir : str or os.PathLike, optional
        Local VideoMAE folder; needed by ``"clip+videomae"``, optional for ``"clip"``.
        An empty string counts as not given (as in ``VisualConfig``).

    Returns
    -------
    VisualEncoder

    Raises
    ------
    ParameterError
        For an unknown ``kind``, a folder the kind needs but did not get, or a folder it
        would ignore.
    MediaError
        For a folder with the wrong layout (see :class:`CLIPEncoder`, :class:`VideoMAEEncoder`).
    """
    clip_dir = clip_dir or None
    videomae_dir = videomae_dir or None
    if kind not in KINDS:
        raise ParameterError(f"visual encoder kind = {kind!r}: must be one of {', '.join(KINDS)}")
    if kind == "embedded":
        given = [name for name, value in (("clip_dir", clip_dir), ("videomae_dir", videomae_dir)) if value]
        if given:
            raise ParameterError(f"visual encoder kind = 'embedded' uses no weights, but {given[0]} was given "
                                 f"(use kind 'clip' or 'clip+videomae')")
        return EmbeddedEncoder()
    if clip_dir is None:
        raise ParameterError(f"visual encoder kind = {kind!r} needs clip_dir, a local CLIP weights folder")
    if kind == "clip+videomae" and videomae_dir is None:
        raise ParameterError("visual encoder kind = 'clip+videomae' needs videomae_dir, "
                             "a local VideoMAE weights folder")
    context = VideoMAEEncoder(videomae_dir) if videomae_dir is not None else EmbeddedEncoder()
    return CombinedEncoder(CLIPEncoder(clip_dir), context)
