"""The embedded visual encoder: shapes, determinism, and responses to known synthetic events."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cuecraft.errors import MediaError, ParameterError
from cuecraft.io.synthetic import SyntheticEvents, synthetic_frames, write_synthetic_video
from cuecraft.io.video import iter_frames
from cuecraft.models.visual import (CONTEXT_FEATURES, FRAME_FEATURES, PATCH_FEATURES, EmbeddedEncoder, VisualDims,
                                    build_visual_encoder)

F = {name: i for i, name in enumerate(FRAME_FEATURES)}
C = {name: i for i, name in enumerate(CONTEXT_FEATURES)}
P = {name: i for i, name in enumerate(PATCH_FEATURES)}


@pytest.fixture(scope="module")
def features(small_video):
    return EmbeddedEncoder().encode(small_video)


def test_shapes_follow_the_dims(features):
    enc = EmbeddedEncoder()
    assert enc.dims == VisualDims(n_patches=64, patch=12, frame=35, context=20)
    assert features.patch.shape == (6, 64, 12)
    assert features.frame.shape == (6, 35)
    assert features.context.shape == (6, 20)
    assert features.encoder == "embedded" and features.duration == pytest.approx(6.0)
    assert features.dims == enc.dims
    assert all(t.dtype == torch.float32 for t in (features.patch, features.frame, features.context))
    assert EmbeddedEncoder(grid=4).dims.n_patches == 16


def test_values_are_finite_and_roughly_unit_scale(features):
    for name in ("patch", "frame", "context"):
        x = getattr(features, name)
        assert torch.isfinite(x).all(), name
        assert x.abs().max() <= 4.0, (name, x.abs().max())


def test_deterministic(small_video, features):
    again = EmbeddedEncoder().encode(small_video)
    for name in ("patch", "frame", "context"):
        assert torch.equal(getattr(features, name), getattr(again, name)), name


def test_motion_rises_in_the_pan_burst(features):
    # Burst 4.5-5.5 s: a fast pan of the whole background.
    motion = features.frame[:, F["motion"]]
    assert motion[5] > 2 * motion[:2].max()
    assert features.frame[5, F["camera_x"]].abs() > 5 * features.frame[:2, F["camera_x"]].abs().max()
    # Every cell moves with a pan, not just the ball's.
    cells = features.patch[:, :, P["motion"]]
    assert (cells[5] > cells[1]).float().mean() > 0.8


def test_cuts_and_flash_are_marked(features):
    # Cuts at 2.0 and 4.1 s; the flash at 3.0 s is not a cut.
    assert features.frame[:, F["cut"]].tolist() == [0, 0, 1, 0, 1, 0]
    assert int(features.frame[:, F["flash"]].argmax()) == 3
    change = features.frame[:, F["content_change"]]
    assert change[2] > 5 * change[1] and change[4] > 5 * change[5]


def test_frame_tokens_change_more_across_a_cut_than_within_a_scene(features):
    frame = features.frame
    across = (frame[2] - frame[1]).norm()
    within = (frame[1] - frame[0]).norm()
    assert across > 10 * within
    # Every patch changes colour across the cut (a new background); within the scene only
    # the few cells the ball crosses do.
    moved = lambda a, b: ((features.patch[a, :, :3] - features.patch[b, :, :3]).abs().max(dim=1).values > 0.1)
    assert moved(2, 1).float().mean() > 0.9
    assert moved(1, 0).float().mean() < 0.25


def test_context_knows_the_distance_to_cuts(features):
    since, until = features.context[:, C["since_cut"]], features.context[:, C["until_cut"]]
    # Centres at 0.5 .. 5.5 s; cuts at 2.0 and 4.125 s (the first 8 fps sample after 4.1).
    assert since.tolist() == pytest.approx([0.5 / 4, 1.5 / 4, 0.5 / 4, 1.5 / 4, 0.375 / 4, 1.375 / 4], abs=1e-5)
    assert until[1] == pytest.approx(0.5 / 4, abs=1e-5) and until[5] == pytest.approx(0.5 / 4, abs=1e-5)
    # The motion window mean is higher around the burst than at the start.
    assert features.context[5, C["motion_mean"]] > features.context[0, C["motion_mean"]]


def test_short_video_gives_one_token(tmp_path):
    path = tmp_path / "short.mp4"
    write_synthetic_video(path, duration=0.5, fps=24, width=64, height=48, events=SyntheticEvents())
    feats = EmbeddedEncoder().encode(path)
    assert feats.seconds == 1
    assert feats.patch.shape == (1, 64, 12) and feats.context.shape == (1, 20)
    assert torch.isfinite(feats.frame).all()
    assert feats.frame[0, F["cut"]] == 0


def test_partial_last_second_counts(tmp_path):
    path = tmp_path / "partial.mp4"
    write_synthetic_video(path, duration=2.25, fps=24, width=96, height=64, events=SyntheticEvents(cuts=(2.0,)))
    feats = EmbeddedEncoder().encode(path)
    assert feats.seconds == 3
    # The last second's still statistics come from its last frame (at 2.125 s), in the new scene.
    assert (feats.frame[2, :3] - feats.frame[1, :3]).norm() > 0.1


def test_encode_frames_matches_encode(small_video, features):
    frames = iter_frames(small_video, fps=8, max_width=160)
    direct = EmbeddedEncoder().encode_frames(frames, duration=6.0)
    assert torch.equal(direct.patch, features.patch) and torch.equal(direct.context, features.context)


def test_encode_frames_checks_the_time_base():
    frames = list(synthetic_frames(duration=1.0, fps=10, width=64, height=48, events=SyntheticEvents()))
    with pytest.raises(ParameterError, match=r"frames\[1\] is at t = 0.1"):
        EmbeddedEncoder().encode_frames(frames, duration=1.0)
    good = [(k / 8, frames[0][1]) for k in range(8)]
    with pytest.raises(ParameterError, match="needs at least 17 frames"):
        EmbeddedEncoder().encode_frames(good, duration=3.0)
    with pytest.raises(ParameterError, match=r"frames\[0\] must be a uint8"):
        EmbeddedEncoder().encode_frames([(0.0, np.zeros((8, 8), np.uint8))], duration=0.1)


@pytest.mark.parametrize("kwargs, match", [
    ({"grid": 0}, "grid = 0"), ({"grid": 2.0}, "grid = 2.0"), ({"width": 8}, "width = 8"),
    ({"fps": 3}, "fps = 3"), ({"fps": True}, "fps = True"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        EmbeddedEncoder(**kwargs)


def test_missing_video_is_a_media_error(tmp_path):
    with pytest.raises(MediaError, match="nope.mp4"):
        EmbeddedEncoder().encode(tmp_path / "nope.mp4")


def test_builder_default_is_embedded(tmp_path):
    assert isinstance(build_visual_encoder(), EmbeddedEncoder)
    assert isinstance(build_visual_encoder("embedded", clip_dir=""), EmbeddedEncoder)
    with pytest.raises(ParameterError, match="kind = 'vit'"):
        build_visual_encoder("vit")
    with pytest.raises(ParameterError, match="clip_dir was given"):
        build_visual_encoder("embedded", clip_dir=tmp_path)
    with pytest.raises(ParameterError, match="needs clip_dir"):
        build_visual_encoder("clip")
    with pytest.raises(ParameterError, match="needs videomae_dir"):
        build_visual_encoder("clip+videomae", clip_dir=tmp_path)
