"""VideoMusicLM: both papers' conditioning on the token LM, the loss, the stages, windowed generation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cuecraft.config import CodecConfig, CodecLMConfig, ConditioningConfig, GuidanceConfig
from cuecraft.controls.features import N_FEATURES
from cuecraft.controls.schema import Controls
from cuecraft.generate.video_music import CodecSampling, compose_codec, window_plan
from cuecraft.models.builders import build_codec_model
from cuecraft.models.visual.base import VisualDims, VisualFeatures

DIMS = VisualDims(n_patches=16, patch=6, frame=5, context=4)
RATE, K, V = 10, 2, 16


pytestmark = pytest.mark.usefixtures("one_thread")


def model(kind="mtcv2m", max_positions=128):
    config = CodecConfig(lm=CodecLMConfig(d_model=16, n_layers=4, n_heads=2, mlp_ratio=2, n_codebooks=K,
                                          codebook_size=V, max_positions=max_positions, dropout=0.0),
                         conditioning=ConditioningConfig(kind=kind, width=8, n_blocks=2, n_heads=2, n_queries=4,
                                                         p_drop_condition=0.0, p_drop_time=0.0),
                         guidance=GuidanceConfig(guidance_every=2, patch_len=RATE))
    torch.manual_seed(0)
    return build_codec_model(config, dims=DIMS, frame_rate=RATE)


def batch(B=2, S=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"patch": torch.randn(B, S, 16, 6, generator=g), "frame": torch.randn(B, S, 5, generator=g),
            "context": torch.randn(B, S, 4, generator=g), "codes": torch.randint(0, V, (B, K, S * RATE), generator=g),
            "controls": torch.randn(B, S * RATE, N_FEATURES, generator=g), "presence": torch.ones(B, 4)}


@pytest.mark.parametrize("kind", ["mtcv2m", "gvmgen"])
def test_a_tiny_batch_overfits_for_both_kinds(kind):
    m = model(kind)
    m.set_stage(1)
    # MTCV2M's prefix dropout (0.5) would zero both global tokens of a 2-clip batch at a
    # quarter of the steps, and with them the gradient this test looks for.
    m.conditioner.p_prefix = 0.0
    b = batch()
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    first = float(m.loss(b, use_controls=False).detach())
    for _ in range(60):
        opt.zero_grad()
        loss = m.loss(b, use_controls=False)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first / 4
    conditioner_grads = [p.grad for p in m.conditioner.parameters()]
    assert all(g is not None and float(g.abs().sum()) > 0 for g in conditioner_grads[:3])


def test_stages_choose_what_trains_and_cgd_starts_as_a_no_op():
    m = model().eval()
    b = batch()
    inputs = torch.randint(0, V, (2, K, 31))
    with torch.no_grad():
        plain = m(inputs, b, use_controls=False)
        guided = m(inputs, b, use_controls=True)
    assert torch.equal(plain, guided)  # zero-initialised CGD: stage-1 output unchanged
    m.set_stage(2)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("lm.guidance.") for n in trainable)
    m.set_stage(1)
    assert not any(p.requires_grad for n, p in m.named_parameters() if n.startswith("lm.guidance."))


def test_padding_frames_carry_no_loss():
    m = model().eval()
    b = batch()
    b["valid"] = torch.ones(2, 3 * RATE, dtype=torch.bool)
    b["valid"][:, 2 * RATE:] = False
    changed = dict(b, codes=b["codes"].clone())
    changed["codes"][:, :, 2 * RATE:] = (changed["codes"][:, :, 2 * RATE:] + 1) % V
    with torch.no_grad():
        assert torch.allclose(m.loss(b, use_controls=False), m.loss(changed, use_controls=False))


def test_window_plan_covers_everything_with_prompts():
    assert window_plan(10, max_frames=20, prompt_frames=5) == [(0, 10, 0)]
    plan = window_plan(50, max_frames=20, prompt_frames=5)
    assert plan == [(0, 20, 0), (15, 35, 5), (30, 50, 5)]
    with pytest.raises(Exception, match="cannot advance"):
        window_plan(50, max_frames=20, prompt_frames=20)


def test_long_videos_are_generated_in_windows_with_shifted_conditions(monkeypatch):
    """Each window reads the video seconds under its own span (MTCV2M reused window 1's)."""
    m = model(max_positions=40).eval()  # 40 - 1 prefix - 1 delay = 38 frames = 3.8 s per window
    S = 9
    feats = VisualFeatures(patch=torch.arange(S, dtype=torch.float32)[:, None, None].expand(S, 16, 6).clone(),
                           frame=torch.randn(S, 5), context=torch.randn(S, 4), duration=9.0, encoder="test")
    seen, offsets = [], []
    forward = m.conditioner.forward

    def spy(patch, frame=None, context=None, **kw):
        seen.append(patch[0, :, 0, 0].tolist())
        return forward(patch, frame, context, **kw)

    masks = m.masks

    def spy_masks(cond, *, n_steps, time_offset=0.0):
        offsets.append(time_offset)
        return masks(cond, n_steps=n_steps, time_offset=time_offset)

    monkeypatch.setattr(m.conditioner, "forward", spy)
    monkeypatch.setattr(m, "masks", spy_masks)

    class Codec:
        sampling_rate = 100

        def decode(self, codes):
            return np.repeat(codes[0].numpy().astype(np.float32), 10)

    controls = Controls(intensity=np.array([[0.0, -20.0], [9.0, -10.0]]), duration=9.0)
    audio = compose_codec(m, Codec(), feats, controls, duration=9.0, seed=3,
                          sampling=CodecSampling(prompt_seconds=1.0, top_k=4))
    assert len(audio) == 900
    starts = [w[0] for w in window_plan(90, max_frames=38, prompt_frames=10)]
    assert len(seen) == len(starts) == 3
    for window, start in zip(seen, starts):
        assert window[0] == start // RATE  # the window's first video second, not second 0
    assert offsets == pytest.approx([s / RATE - s // RATE for s in starts])
    again = compose_codec(m, Codec(), feats, controls, duration=9.0, seed=3,
                          sampling=CodecSampling(prompt_seconds=1.0, top_k=4))
    assert np.array_equal(audio, again)
