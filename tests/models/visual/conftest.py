"""Tiny random CLIP and VideoMAE folders in Hugging Face format, saved the way real weights are."""
from __future__ import annotations

import pytest

CLIP_SIZE = 56      # 4x4 patches of 14 px
VIDEOMAE_SIZE = 32  # 2x2 patches of 16 px


def save_tiny_clip(folder, *, full: bool = False, seed: int = 0, **overrides):
    """A random CLIP vision tower with projection (or a full CLIP with a text tower) in ``folder``."""
    import torch
    from transformers import (CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)

    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=CLIP_SIZE, patch_size=14, projection_dim=16)
    vision.update(overrides)
    torch.manual_seed(seed)
    if full:
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                    vocab_size=100, max_position_embeddings=16, bos_token_id=0, eos_token_id=1)
        vision.pop("projection_dim")
        model = CLIPModel(CLIPConfig(vision_config=vision, text_config=text, projection_dim=24))
    else:
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**vision))
    model.save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": CLIP_SIZE},
                          crop_size={"height": CLIP_SIZE, "width": CLIP_SIZE}).save_pretrained(folder)
    return model.eval()


def save_tiny_videomae(folder, *, num_frames: int = 16, tubelet_size: int = 2, seed: int = 0):
    """A random VideoMAE encoder in ``folder``."""
    import torch
    from transformers import VideoMAEConfig, VideoMAEImageProcessorPil, VideoMAEModel

    torch.manual_seed(seed)
    config = VideoMAEConfig(image_size=VIDEOMAE_SIZE, patch_size=16, num_frames=num_frames,
                            tubelet_size=tubelet_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64)
    model = VideoMAEModel(config)
    model.save_pretrained(folder)
    VideoMAEImageProcessorPil(size={"shortest_edge": VIDEOMAE_SIZE},
                              crop_size={"height": VIDEOMAE_SIZE, "width": VIDEOMAE_SIZE}).save_pretrained(folder)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """``(folder, model)`` of a tiny CLIP vision tower with projection."""
    folder = tmp_path_factory.mktemp("tiny clip")
    return folder, save_tiny_clip(folder)


@pytest.fixture(scope="session")
def tiny_videomae(tmp_path_factory):
    """``(folder, model)`` of a tiny 16-frame VideoMAE (8-s windows)."""
    folder = tmp_path_factory.mktemp("tiny videomae")
    return folder, save_tiny_videomae(folder)


@pytest.fixture(scope="session")
def tiny_models():
    """The folder makers, for tests that need a variant."""
    return save_tiny_clip, save_tiny_videomae
