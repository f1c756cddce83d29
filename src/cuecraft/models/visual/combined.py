"""One encoder from two: CLIP patch/frame tokens with VideoMAE or embedded context tokens."""
from __future__ import annotations

import os

from cuecraft.errors import ParameterError
from cuecraft.io.video import probe
from cuecraft.models.visual.base import VisualDims, VisualEncoder, VisualFeatures
from cuecraft.models.visual.clip import CLIPEncoder
from cuecraft.models.visual.embedded import EmbeddedEncoder
from cuecraft.models.visual.videomae import VideoMAEEncoder

__all__ = ["CombinedEncoder"]


class CombinedEncoder(VisualEncoder):
    """Patch and frame levels from CLIP, the context level from VideoMAE or the embedded encoder.

    Each part decodes the video itself, at the size and rate it needs: decoding costs far
    less than a CLIP or VideoMAE forward pass, and no frames need to be held for the other.

    Parameters
    ----------
    clip : CLIPEncoder
    context : VideoMAEEncoder or EmbeddedEncoder
        Only its context level is used.
    """

    def __init__(self, clip: CLIPEncoder, context: VideoMAEEncoder | EmbeddedEncoder):
        if not isinstance(clip, CLIPEncoder):
            raise ParameterError(f"clip must be a CLIPEncoder, got {type(clip).__name__}")
        if not isinstance(context, (VideoMAEEncoder, EmbeddedEncoder)):
            raise ParameterError(f"context must be a VideoMAEEncoder or EmbeddedEncoder, got {type(context).__name__}")
        self.clip, self.context = clip, context
        self.name = f"clip+{context.name}"

    @property
    def dims(self) -> VisualDims:
        context = (self.context.context_dim if isinstance(self.context, VideoMAEEncoder)
                   else self.context.dims.context)
        return VisualDims(n_patches=self.clip.n_patches, patch=self.clip.patch_dim, frame=self.clip.frame_dim,
                          context=context)

    def encode(self, path: str | os.PathLike, *, progress: bool = False) -> VisualFeatures:
        """Three levels of tokens for the video at ``path``.

        Returns
        -------
        VisualFeatures
            patch ``[T, P, Dp]`` and frame ``[T, Df]`` from CLIP, context ``[T, Dc]``; all
            trimmed to the shortest ``T`` (the parts agree on ``T = ceil(duration)``, so this
            only guards against rounding at the very end).

        Raises
        ------
        MediaError
            For a missing or unreadable video.
        """
        duration = probe(path).duration   # checked once, before any model runs
        patch, frame = self.clip.encode(path, progress=progress)                   # [T, P, Dp], [T, Df]
        if isinstance(self.context, VideoMAEEncoder):
            context = self.context.encode(path, progress=progress)                 # [T, Dc]
        else:
            context = self.context.encode(path, progress=progress).context         # [T, Dc]
        T = min(patch.shape[0], context.shape[0])
        return VisualFeatures(patch=patch[:T], frame=frame[:T], context=context[:T], duration=float(duration),
                              encoder=self.name)
