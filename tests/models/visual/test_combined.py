"""CLIP patch/frame tokens combined with VideoMAE or embedded context tokens, and the builder."""
from __future__ import annotations

import pytest
import torch

from cuecraft.errors import MediaError, ParameterError
from cuecraft.models.visual import (CLIPEncoder, CombinedEncoder, EmbeddedEncoder, VideoMAEEncoder, VisualDims,
                                    build_visual_encoder)

pytest.importorskip("transformers")


def test_clip_plus_videomae(tiny_clip, tiny_videomae, small_video):
    enc = build_visual_encoder("clip+videomae", clip_dir=tiny_clip[0], videomae_dir=tiny_videomae[0])
    assert isinstance(enc, CombinedEncoder) and enc.name == "clip+videomae"
    assert enc.dims == VisualDims(n_patches=16, patch=32, frame=16, context=32)
    feats = enc.encode(small_video)
    assert feats.encoder == "clip+videomae" and feats.seconds == 6 and feats.duration == pytest.approx(6.0)
    assert feats.dims == enc.dims
    patch, frame = enc.clip.encode(small_video)
    assert torch.equal(feats.patch, patch) and torch.equal(feats.frame, frame)
    assert torch.equal(feats.context, enc.context.encode(small_video))


def test_clip_with_embedded_context(tiny_clip, small_video):
    enc = build_visual_encoder("clip", clip_dir=str(tiny_clip[0]), videomae_dir="")
    assert enc.name == "clip+embedded" and isinstance(enc.context, EmbeddedEncoder)
    assert enc.dims == VisualDims(n_patches=16, patch=32, frame=16, context=20)
    feats = enc.encode(small_video)
    assert torch.equal(feats.context, EmbeddedEncoder().encode(small_video).context)
    assert feats.patch.shape == (6, 16, 32)


def test_clip_kind_takes_videomae_when_given(tiny_clip, tiny_videomae):
    enc = build_visual_encoder("clip", clip_dir=tiny_clip[0], videomae_dir=tiny_videomae[0])
    assert isinstance(enc.context, VideoMAEEncoder)


def test_wrong_feature_dimension_is_a_clear_error(tiny_clip, small_video):
    feats = build_visual_encoder("clip", clip_dir=tiny_clip[0]).encode(small_video)
    clip_l = VisualDims(n_patches=576, patch=1024, frame=768, context=1024)
    with pytest.raises(ParameterError, match=r"'n_patches' size = 16 \(encoder 'clip\+embedded'\), but the model "
                                             r"expects 576"):
        feats.check_dims(clip_l)
    with pytest.raises(ParameterError, match=r"'context' size = 20 .* expects 1024"):
        feats.check_dims(VisualDims(n_patches=16, patch=32, frame=16, context=1024))
    assert feats.check_dims(feats.dims) is feats


def test_builder_passes_folder_errors_on(tmp_path, tiny_clip):
    with pytest.raises(MediaError, match="CLIP weights folder '.*missing' does not exist"):
        build_visual_encoder("clip", clip_dir=tmp_path / "missing")
    with pytest.raises(MediaError, match="VideoMAE weights folder '.*missing' does not exist"):
        build_visual_encoder("clip+videomae", clip_dir=tiny_clip[0], videomae_dir=tmp_path / "missing")


def test_parts_are_checked(tiny_clip):
    clip = CLIPEncoder(tiny_clip[0])
    with pytest.raises(ParameterError, match="context must be a VideoMAEEncoder or EmbeddedEncoder, got CLIPEncoder"):
        CombinedEncoder(clip, clip)
    with pytest.raises(ParameterError, match="clip must be a CLIPEncoder, got EmbeddedEncoder"):
        CombinedEncoder(EmbeddedEncoder(), EmbeddedEncoder())
