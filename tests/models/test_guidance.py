"""Control guidance: projections, causal DCF, CGD zero init, attribute dropout, CFG, control following."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cuecraft.controls.features import CONTROL_DIMS
from cuecraft.errors import ParameterError
from cuecraft.models.guidance import ControlGuidance, ControlProjections, cfg_logits
from cuecraft.models.lm import TokenLM

V, C = 24, sum(CONTROL_DIMS.values())


def guided(mode="cgd", n_codebooks=1, cross_attention=False, wake=True, **kwargs) -> TokenLM:
    """A tiny guided LM; ``wake`` makes the zero-initialised CGD projections non-zero."""
    torch.manual_seed(0)
    guidance = ControlGuidance(d_model=32, mode=mode, guidance_every=2, patch_len=4, **kwargs)
    model = TokenLM(vocab_size=V, d_model=32, n_layers=3, n_heads=4, n_codebooks=n_codebooks,
                    cross_attention=cross_attention, guidance=guidance)
    if wake:
        for p in [*guidance.zero_in.parameters(), *guidance.zero_out.parameters()]:
            torch.nn.init.normal_(p, std=0.2)
    return model.eval()


def inputs(B=2, T=17, K=1):
    torch.manual_seed(1)
    tokens = torch.randint(0, V, (B, K, T))
    controls = torch.randn(B, T, C)
    presence = torch.tensor([[1.0, 1, 1, 1], [0, 1, 0, 1]])[:B]
    return tokens, controls, presence


def test_absent_control_contributes_exact_zeros():
    proj = ControlProjections(control_dims=tuple(CONTROL_DIMS.values()), d_model=32)
    controls = torch.randn(2, 5, C)
    controls[1, :, 3:16] = float("nan")  # garbage in an absent control is ignored
    presence = torch.tensor([[1.0, 0, 1, 1], [1, 0, 1, 1]])
    presence[1, 1] = 0
    out = proj(controls, presence)  # [B, T, 32], 8 channels per control
    assert out.shape == (2, 5, 32)
    assert torch.equal(out[:, :, 8:16], torch.zeros(2, 5, 8))
    assert torch.isfinite(out).all() and out[:, :, :8].abs().sum() > 0
    assert torch.equal(proj(controls, torch.zeros(2, 4)), torch.zeros(2, 5, 32))


def test_projections_follow_weights_changed_after_a_decode():
    # The joined block-diagonal weight is kept between decoding steps; a load must refresh it.
    proj = ControlProjections(control_dims=tuple(CONTROL_DIMS.values()), d_model=32)
    controls, presence = torch.randn(1, 2, C), torch.ones(1, 4)
    other = ControlProjections(control_dims=tuple(CONTROL_DIMS.values()), d_model=32)
    with torch.no_grad():
        before = proj(controls, presence)
        proj.load_state_dict(other.state_dict())
        after = proj(controls, presence)
        proj.proj[2].bias.add_(1.0)
        bumped = proj(controls, presence)
    assert torch.equal(after, other(controls, presence)) and not torch.equal(before, after)
    assert torch.allclose(bumped[..., 16:24], after[..., 16:24] + 1) and torch.equal(bumped[..., :16], after[..., :16])
    out = proj(controls, presence)  # with gradients: through the parameters
    out.sum().backward()
    assert all(p.grad is not None for p in proj.parameters())


def test_dcf_is_causal():
    guidance = guided().guidance
    controls = torch.randn(1, 20, C)
    changed = controls.clone()
    changed[:, 9:] = torch.randn(1, 11, C)
    with torch.no_grad():
        a = guidance.fuse(controls, None, batch=1, length=20)
        b = guidance.fuse(changed, None, batch=1, length=20)
    assert torch.equal(a[:, :9], b[:, :9]) and not torch.allclose(a[:, 9:], b[:, 9:])


@pytest.mark.parametrize("mode", ["cgd", "concat"])
@pytest.mark.parametrize("n_codebooks", [1, 4])
def test_incremental_decode_with_controls_equals_full_forward(mode, n_codebooks):
    model = guided(mode, n_codebooks=n_codebooks, cross_attention=True)
    tokens, controls, presence = inputs(K=n_codebooks)
    memory = torch.randn(2, 5, 32)
    with torch.no_grad():
        full = model(tokens, controls=controls, presence=presence, memory=memory)
        for chunks in ([1] * 17, [6, 1, 3, 7]):
            cache, outs, t = model.new_cache(2, 20), [], 0
            for n in chunks:
                outs.append(model.step(tokens[:, :, t:t + n], controls[:, t:t + n], presence, cache, memory=memory))
                t += n
            torch.testing.assert_close(torch.cat(outs, dim=2), full, atol=1e-5, rtol=0)
        no_controls = model(tokens)
        cache = model.new_cache(2, 20)
        inc = torch.cat([model.step(tokens[:, :, t:t + 1], cache=cache) for t in range(17)], dim=2)
    torch.testing.assert_close(inc, no_controls, atol=1e-5, rtol=0)
    torch.testing.assert_close(no_controls, model(tokens, controls=controls, presence=torch.zeros(2, 4)))


def test_cgd_at_init_leaves_outputs_unchanged():
    model = guided(wake=False, cross_attention=True)
    assert model.guidance.layers == (0, 2) and len(model.guidance.blocks) == 2
    plain = TokenLM(vocab_size=V, d_model=32, n_layers=3, n_heads=4, cross_attention=True).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("guidance.")}
    plain.load_state_dict(state, strict=True)
    tokens, controls, presence = inputs()
    memory = torch.randn(2, 5, 32)
    with torch.no_grad():
        assert torch.equal(model(tokens, controls=controls, presence=presence, memory=memory),
                           plain(tokens, memory=memory))
        cache = model.new_cache(2, 17)
        inc = torch.cat([model.step(tokens[:, :, t:t + 1], controls[:, t:t + 1], presence, cache, memory=memory)
                         for t in range(17)], dim=2)
    torch.testing.assert_close(inc, plain(tokens, memory=memory), atol=1e-5, rtol=0)


def test_copy_backbone_copies_attached_blocks():
    model = guided()
    model.guidance.copy_backbone(model)
    for k, layer in enumerate(model.guidance.layers):
        for (name, a), b in zip(model.blocks[layer].state_dict().items(), model.guidance.blocks[k].state_dict().values()):
            assert torch.equal(a, b), name


def test_attribute_dropout_only_in_training():
    model = guided("concat")
    tokens, controls, presence = inputs()
    with torch.no_grad():
        first = model(tokens, controls=controls, presence=presence)
        assert all(torch.equal(first, model(tokens, controls=controls, presence=presence)) for _ in range(5))
        model.train()
        outs = [model(tokens, controls=controls, presence=presence) for _ in range(8)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    torch.manual_seed(3)
    dropped = model.guidance.drop_attributes(torch.ones(2000, 4))
    patterns = {tuple(row.tolist()) for row in dropped}
    assert len(patterns) == 16
    all_dropped = (dropped.sum(1) == 0).float().mean().item()
    assert 0.4 < all_dropped < 0.5  # 0.4 global + 0.6 * P(each dropped independently)
    kept = dropped[dropped.sum(1) > 0].mean(0)  # per-control keep rate given not globally dropped
    assert 0.45 < kept[0] < 0.65 and 0.55 < kept[1] < 0.75


@pytest.mark.parametrize("mode", ["cgd", "concat"])
def test_cfg_scales(mode):
    model = guided(mode)
    tokens, controls, presence = inputs()
    with torch.no_grad():
        cond = model(tokens, controls=controls, presence=presence)
        uncond = model(tokens, controls=controls, presence=torch.zeros(2, 4))
        assert not torch.allclose(cond, uncond, atol=1e-3)
        torch.testing.assert_close(cfg_logits(model, tokens, controls=controls, presence=presence, scale=1.0), cond,
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(cfg_logits(model, tokens, controls=controls, presence=presence, scale=0.0),
                                   uncond, atol=1e-5, rtol=0)
        full = cfg_logits(model, tokens, controls=controls, presence=presence, scale=3.0)
        torch.testing.assert_close(full, uncond + 3.0 * (cond - uncond), atol=1e-5, rtol=0)
        cache = model.new_cache(4, 17)
        inc = torch.cat([cfg_logits(model, tokens[:, :, t:t + 1], controls=controls[:, t:t + 1], presence=presence,
                                    scale=3.0, cache=cache)[0] for t in range(17)], dim=2)
    torch.testing.assert_close(inc, full, atol=1e-5, rtol=0)
    with pytest.raises(ParameterError, match="batch 2 \\* 2 = 4, got 2"):
        cfg_logits(model, tokens, controls=controls, presence=presence, scale=3.0, cache=model.new_cache(2, 17))


def test_bad_guidance_arguments():
    with pytest.raises(ParameterError, match="'film'"):
        ControlGuidance(d_model=32, mode="film")
    with pytest.raises(ParameterError, match="patch_len must be an integer >= 1, got 0"):
        ControlGuidance(d_model=32, patch_len=0)
    with pytest.raises(ParameterError, match="1.5"):
        ControlGuidance(d_model=32, p_global=1.5)
    with pytest.raises(ParameterError, match="d_model = 30"):
        ControlGuidance(d_model=30)
    with pytest.raises(ParameterError, match="does not match"):
        TokenLM(vocab_size=V, d_model=64, n_layers=2, n_heads=4, guidance=ControlGuidance(d_model=32))
    model = guided()
    tokens, controls, presence = inputs()
    with pytest.raises(ParameterError, match=rf"controls must be \[2, 17, {C}\], got \(2, 17, {C - 1}\)"):
        model(tokens, controls=controls[..., :-1])
    with pytest.raises(ParameterError, match="presence must hold 0 or 1, got 0.5"):
        model(tokens, controls=controls, presence=torch.full((2, 4), 0.5))
    with pytest.raises(ParameterError, match=r"presence must be \[2, 4\]"):
        model(tokens, controls=controls, presence=torch.ones(2, 3))


def melody_batch(gen, B=16, T=32):
    """Random pitch-class sequences; the melody control at step t is the next token."""
    seq = torch.randint(0, 12, (B, T + 1), generator=gen)
    controls = torch.randn(B, T, C, generator=gen)
    controls[:, :, 3:16] = 0.0
    controls[torch.arange(B)[:, None], torch.arange(T)[None], 3 + seq[:, 1:]] = 1.0
    return seq[:, None, :-1], seq[:, 1:], controls


@pytest.mark.parametrize("mode", ["cgd", "concat"])
def test_model_learns_to_follow_the_melody_control(mode):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    guidance = ControlGuidance(d_model=32, mode=mode, guidance_every=2, p_global=0.2, p_each=0.2)
    model = TokenLM(vocab_size=12, d_model=32, n_layers=2, n_heads=4, guidance=guidance).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        tokens, target, controls = melody_batch(gen)
        loss = F.cross_entropy(model(tokens, controls=controls).flatten(0, 2), target.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    tokens, target, controls = melody_batch(gen, B=64)
    no_melody = torch.tensor([[1.0, 0, 1, 1]]).expand(64, 4)
    with torch.no_grad():
        followed = (model(tokens, controls=controls).argmax(-1)[:, 0] == target).float().mean().item()
        without = (model(tokens, controls=controls, presence=no_melody).argmax(-1)[:, 0] == target).float().mean()
    assert followed > 0.9
    assert without.item() < 0.2  # chance is 1/12
