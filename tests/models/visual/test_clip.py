"""CLIP patch/frame tokens from a tiny random model saved and reloaded like real weights."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from cuecraft.errors import MediaError, ParameterError
from cuecraft.io.synthetic import SyntheticEvents, write_synthetic_video
from cuecraft.models.visual import CLIPEncoder
from cuecraft.models.visual.base import decode_samples

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def encoder(tiny_clip):
    return CLIPEncoder(tiny_clip[0], batch_size=4)   # 4 < T = 6: two batches, one partial


@pytest.fixture(scope="module")
def tokens(encoder, small_video):
    return encoder.encode(small_video)


def _reference(encoder, model, images):
    pixels = encoder.processor(images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        return model(pixel_values=pixels)


def test_shapes(encoder, tokens):
    patch, frame = tokens
    assert (encoder.n_patches, encoder.patch_dim, encoder.frame_dim) == (16, 32, 16)
    assert patch.shape == (6, 16, 32) and frame.shape == (6, 16)
    assert patch.dtype == frame.dtype == torch.float32
    assert not patch.is_inference() and not frame.is_inference()


def test_tokens_are_the_models_at_second_centres(tiny_clip, encoder, tokens, small_video):
    _, model = tiny_clip
    patch, frame = tokens
    _, frames = decode_samples(small_video, fps=2, short_side=encoder.short_side)
    frames = dict(frames)
    centres = [frames[i + 0.5] for i in range(6)]
    ref = _reference(encoder, model, centres)
    torch.testing.assert_close(patch, ref.last_hidden_state[:, 1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(frame, ref.image_embeds, rtol=1e-5, atol=1e-5)
    # Second starts (t = i) are other frames: the check above can tell them apart.
    starts = _reference(encoder, model, [frames[float(i)] for i in range(6)])
    assert not torch.allclose(patch, starts.last_hidden_state[:, 1:], atol=1e-3)


def test_patches_are_before_the_final_norm(tiny_clip, tokens):
    _, model = tiny_clip
    patch, _ = tokens
    normed = model.vision_model.post_layernorm(patch)
    # A random LayerNorm still standardises each token, so normed tokens differ clearly.
    assert not torch.allclose(patch, normed, atol=1e-2)


def test_full_clip_checkpoint_uses_its_projection(tmp_path, tiny_models, small_video):
    full = tiny_models[0](tmp_path, full=True)
    enc = CLIPEncoder(tmp_path)
    assert enc.frame_dim == 24   # the top-level projection_dim, not the vision default
    _, frames = decode_samples(small_video, fps=2, short_side=enc.short_side)
    frames = dict(frames)
    patch, frame = enc.encode(small_video)
    pixels = enc.processor([frames[0.5]], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = full.vision_model(pixel_values=pixels)
        expected = full.visual_projection(out.pooler_output)
    torch.testing.assert_close(frame[:1], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(patch[:1], out.last_hidden_state[:, 1:], rtol=1e-5, atol=1e-5)


def test_short_video_gives_one_token(tmp_path, encoder, capsys):
    path = tmp_path / "short.mp4"
    write_synthetic_video(path, duration=0.5, fps=24, width=64, height=48, events=SyntheticEvents())
    patch, frame = encoder.encode(path, progress=True)
    assert patch.shape == (1, 16, 32) and frame.shape == (1, 16)
    assert "CLIP features" in capsys.readouterr().err


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_folder(tmp_path):
    with pytest.raises(MediaError, match=r"'.*nowhere' does not exist; expected config.json .*model.safetensors"):
        CLIPEncoder(tmp_path / "nowhere")


def test_folder_without_config(tmp_path, tiny_clip):
    folder = _copy(tiny_clip[0], tmp_path / "c")
    (folder / "config.json").unlink()
    with pytest.raises(MediaError, match=r"'.*c' has no config.json; expected .*preprocessor_config.json"):
        CLIPEncoder(folder)


def test_wrong_model_type(tmp_path, tiny_clip):
    folder = _copy(tiny_clip[0], tmp_path / "c")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "bert"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(MediaError, match=r"config.json': model_type = 'bert' is not a CLIP model; "
                                         r"expected config.json \(model_type 'clip' or 'clip_vision_model'\)"):
        CLIPEncoder(folder)


def test_pickled_weights_are_not_loaded(tmp_path, tiny_clip):
    folder = _copy(tiny_clip[0], tmp_path / "c")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(MediaError, match=r"'.*c' has no model.safetensors"):
        CLIPEncoder(folder)


def test_missing_preprocessor_config(tmp_path, tiny_clip):
    folder = _copy(tiny_clip[0], tmp_path / "c")
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(MediaError, match="has no preprocessor_config.json"):
        CLIPEncoder(folder)


def test_weights_that_do_not_fit_the_config(tmp_path, tiny_clip):
    folder = _copy(tiny_clip[0], tmp_path / "c")
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 3   # the third layer has no weights: it would be random
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(MediaError, match=r"lacks \d+ tensors the model needs, e.g. 'vision_model.encoder.layers.2"):
        CLIPEncoder(folder)
    config["num_hidden_layers"], config["projection_dim"] = 2, 8
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(MediaError, match="do not match config.json in shape, e.g. 'visual_projection.weight'"):
        CLIPEncoder(folder)


def test_processor_size_must_match_the_model(tmp_path, tiny_clip):
    folder = _copy(tiny_clip[0], tmp_path / "c")
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    pre["crop_size"] = {"height": 42, "width": 42}
    (folder / "preprocessor_config.json").write_text(json.dumps(pre))
    with pytest.raises(MediaError, match="makes 42x42 images, but config.json has image_size = 56"):
        CLIPEncoder(folder)


def test_bad_arguments(tiny_clip):
    with pytest.raises(ParameterError, match="clip_dir = None"):
        CLIPEncoder(None)
    with pytest.raises(ParameterError, match="batch_size = 0"):
        CLIPEncoder(tiny_clip[0], batch_size=0)
