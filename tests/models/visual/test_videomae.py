"""VideoMAE context tokens from tiny random models saved and reloaded like real weights."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from cuecraft.errors import MediaError, ParameterError
from cuecraft.io.synthetic import SyntheticEvents, write_synthetic_video
from cuecraft.models.visual import VideoMAEEncoder
from cuecraft.models.visual.base import decode_samples

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def short_windows(tmp_path_factory, tiny_models):
    """A 4-frame model: 2-s windows, so a 6-s video has three windows."""
    folder = tmp_path_factory.mktemp("videomae4")
    return folder, tiny_models[1](folder, num_frames=4, seed=1)


def _window_tokens(encoder, model, window):
    """Hand-computed: the model's tokens for one window, split by tubelet, mean over space."""
    pixels = encoder.processor([window], return_tensors="pt")["pixel_values"]   # [1, F, 3, H, W]
    with torch.no_grad():
        hidden = model(pixel_values=pixels).last_hidden_state[0]                # [(F/2)*S, D]
    seconds = len(window) // 2
    return torch.stack([hidden[j * 4:(j + 1) * 4].mean(0) for j in range(seconds)])   # S = 2x2 = 4


def test_one_padded_window_for_a_short_clip(tiny_videomae, small_video):
    folder, model = tiny_videomae
    enc = VideoMAEEncoder(folder)
    assert (enc.window, enc.window_seconds, enc.context_dim) == (16, 8, 32)
    context = enc.encode(small_video)
    assert context.shape == (6, 32) and context.dtype == torch.float32
    assert not context.is_inference()
    # 12 samples padded to 16 with the last (t = 5.5 s); the 2 padded seconds are dropped.
    _, frames = decode_samples(small_video, fps=2, short_side=enc.short_side)
    frames = [rgb for _, rgb in frames]
    assert len(frames) == 12
    expected = _window_tokens(enc, model, frames + [frames[-1]] * 4)[:6]
    torch.testing.assert_close(context, expected, rtol=1e-5, atol=1e-5)


def test_windows_are_consecutive_and_tokens_are_spatial_means(short_windows, small_video):
    folder, model = short_windows
    enc = VideoMAEEncoder(folder, batch_size=2)   # 3 windows: a batch of 2, then 1
    context = enc.encode(small_video)
    assert context.shape == (6, 32)
    _, frames = decode_samples(small_video, fps=2, short_side=enc.short_side)
    frames = [rgb for _, rgb in frames]
    for w in range(3):
        expected = _window_tokens(enc, model, frames[4 * w:4 * w + 4])
        torch.testing.assert_close(context[2 * w:2 * w + 2], expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(context[0], context[1], atol=1e-4)


def test_token_order_is_time_major(short_windows, small_video):
    """What the reshape relies on: tubelet j's spatial tokens are rows j*S .. (j+1)*S - 1."""
    folder, model = short_windows
    enc = VideoMAEEncoder(folder)
    _, frames = decode_samples(small_video, fps=2, short_side=enc.short_side)
    frames = [rgb for _, rgb in frames][4:8]
    pixels = enc.processor([frames], return_tensors="pt")["pixel_values"]     # [1, 4, 3, 32, 32]
    with torch.no_grad():
        embedded = model.embeddings.patch_embeddings(pixels)[0]                # [2 * 4, D]
        second = model.embeddings.patch_embeddings(pixels[:, 2:4].repeat(1, 2, 1, 1, 1))[0]
    torch.testing.assert_close(embedded[4:8], second[:4])


def test_partial_window_and_partial_second_are_padded(tmp_path, short_windows):
    folder, model = short_windows
    path = tmp_path / "partial.mp4"
    write_synthetic_video(path, duration=2.5, fps=24, width=96, height=64, events=SyntheticEvents(cuts=(2.0,)))
    enc = VideoMAEEncoder(folder)
    context = enc.encode(path)
    assert context.shape == (3, 32)
    _, frames = decode_samples(path, fps=2, short_side=enc.short_side)
    frames = [rgb for _, rgb in frames]
    assert len(frames) == 5   # t = 0 .. 2.0: second 2 has one sample
    expected = _window_tokens(enc, model, [frames[4]] * 4)[:1]
    torch.testing.assert_close(context[2:], expected, rtol=1e-5, atol=1e-5)


def test_shorter_than_one_second(tmp_path, tiny_videomae):
    path = tmp_path / "short.mp4"
    write_synthetic_video(path, duration=0.5, fps=24, width=64, height=48, events=SyntheticEvents())
    assert VideoMAEEncoder(tiny_videomae[0]).encode(path).shape == (1, 32)


def _edit(folder, name, **changes):
    data = json.loads((folder / name).read_text())
    data.update(changes)
    (folder / name).write_text(json.dumps(data))


@pytest.mark.parametrize("changes, match", [
    ({"tubelet_size": 4}, r"tubelet_size = 4, but one token per second at 2 fps needs tubelet_size = 2"),
    ({"num_frames": 5}, r"num_frames = 5 must be a positive multiple of tubelet_size = 2"),
    ({"model_type": "clip"}, (r"model_type = 'clip' is not a VideoMAE model; expected config.json "
                              r"\(model_type 'videomae'\), model.safetensors and preprocessor_config.json")),
])
def test_bad_config(tmp_path, tiny_videomae, changes, match):
    folder = shutil.copytree(tiny_videomae[0], tmp_path / "v")
    _edit(folder, "config.json", **changes)
    with pytest.raises(MediaError, match=match):
        VideoMAEEncoder(folder)


def test_missing_folder_and_files(tmp_path, tiny_videomae):
    with pytest.raises(MediaError, match=r"VideoMAE weights folder '.*absent' does not exist; expected config.json"):
        VideoMAEEncoder(tmp_path / "absent")
    folder = shutil.copytree(tiny_videomae[0], tmp_path / "v")
    (folder / "model.safetensors").unlink()
    with pytest.raises(MediaError, match=r"'.*v' has no model.safetensors"):
        VideoMAEEncoder(folder)


def test_processor_size_must_match_the_model(tmp_path, tiny_videomae):
    folder = shutil.copytree(tiny_videomae[0], tmp_path / "v")
    _edit(folder, "preprocessor_config.json", crop_size={"height": 48, "width": 48})
    with pytest.raises(MediaError, match="makes 48x48 frames, but config.json has image_size = 32"):
        VideoMAEEncoder(folder)


def test_bad_arguments(tiny_videomae):
    with pytest.raises(ParameterError, match="videomae_dir = ''"):
        VideoMAEEncoder("")
    with pytest.raises(ParameterError, match="batch_size = -1"):
        VideoMAEEncoder(tiny_videomae[0], batch_size=-1)
