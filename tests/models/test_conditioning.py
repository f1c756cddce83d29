"""VideoConditioner through TokenLM: cached decoding equals the full forward, gradients, overfitting, dropout."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cuecraft.errors import ParameterError
from cuecraft.models.conditioning import Conditioning, VideoConditioner, stack_features
from cuecraft.models.lm import TokenLM
from cuecraft.models.visual.base import VisualFeatures

V, D, K = 16, 32, 4
DP, DF, DC, P = 8, 6, 5, 16
NO_DROPOUT = dict(p_drop=0.0, p_prefix=0.0, p_time=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def lm(n_layers: int = 4) -> TokenLM:
    torch.manual_seed(0)
    return TokenLM(vocab_size=V, d_model=D, n_layers=n_layers, n_heads=4, n_codebooks=K, positions="sinusoidal",
                   cross_attention=True, max_positions=128).eval()


def conditioner(kind: str, **kwargs) -> VideoConditioner:
    torch.manual_seed(0)
    args = dict(kind=kind, patch_dim=DP, frame_dim=DF, context_dim=DC, d_model=D, width=16, n_heads=2, n_layers=2)
    args.update(NO_DROPOUT)
    args.update(kwargs)
    return VideoConditioner(**args).eval()


def features(B: int = 2, T: int = 12, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, P, DP, generator=g), torch.randn(B, T, DF, generator=g), torch.randn(B, T, DC, generator=g)


def decode_step_by_step(model, tokens, cond, masks):
    """Logits from feeding the prefix with step 0, then one step at a time, through a KV cache."""
    cache = model.new_cache(tokens.shape[0], cond.n_prefix + tokens.shape[2])
    outs = []
    for t in range(tokens.shape[2]):
        extra = dict(prefix=cond.prefix) if t == 0 and cond.prefix is not None else {}
        outs.append(model.step(tokens[:, :, t:t + 1], cache=cache, memory=cond.memory, memory_mask=masks, **extra))
    return torch.cat(outs, dim=2)


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("kind", ["mtcv2m", "gvmgen"])
def test_kv_cached_decode_equals_full_forward(kind, padded):
    model, cond_model = lm(), conditioner(kind)
    tokens = torch.randint(0, V, (2, K, 24), generator=torch.Generator().manual_seed(2))
    time_mask = torch.tensor([[True] * 7 + [False] * 5, [True] * 12]) if padded else None
    with torch.no_grad():
        cond = cond_model(*features(), time_mask=time_mask)
        masks = cond_model.masks(cond, n_layers=4, n_steps=24, steps_per_second=2)
        full = model(tokens, memory=cond.memory, prefix=cond.prefix, memory_mask=masks)
        inc = decode_step_by_step(model, tokens, cond, masks)
        unmasked = model(tokens, memory=cond.memory, prefix=cond.prefix)
    assert full.shape == (2, K, 24, V)
    torch.testing.assert_close(inc, full, atol=1e-5, rtol=0)
    if kind == "mtcv2m" or padded:
        assert not torch.allclose(unmasked, full, atol=1e-4)  # the masks are in use


def test_masks_shapes_and_per_sequence_windows():
    cond_model = conditioner("mtcv2m")
    with torch.no_grad():
        cond = cond_model(*features())
        masks = cond_model.masks(cond, n_layers=6, n_steps=24, steps_per_second=2)
        assert cond.prefix.shape == (2, 1, D) and cond.memory.shape == (2, 12, D)
        assert len(masks) == 6 and all(m.shape == (25, 12) for m in masks)
        assert bool(masks[0].all()) and not bool(masks[1].all()) and masks[4] is masks[0]
        time_mask = torch.tensor([[True] * 7 + [False] * 5, [True] * 12])
        padded = cond_model(*features(), time_mask=time_mask)
        assert bool((padded.memory[0, 7:] == 0).all())
        masks = cond_model.masks(padded, n_layers=4, n_steps=24, steps_per_second=2)
    assert all(m.shape == (2, 1, 25, 12) for m in masks)
    w5 = masks[1]
    # sequence 0 is 7 s: one 5-s window absorbs all 7 s, padding is never seen
    assert w5[0, 0, 1 + 13].tolist() == [True] * 7 + [False] * 5   # step 13, 6.5 s
    assert w5[0, 0, 1 + 20].tolist() == [True] * 7 + [False] * 5   # step 20, 10 s: past its end
    assert w5[1, 0, 1 + 13].tolist() == [False] * 5 + [True] * 7   # sequence 1 is 12 s: [5, 12)
    gv = conditioner("gvmgen")
    with torch.no_grad():
        assert gv.masks(gv(*features()), n_layers=4, n_steps=24, steps_per_second=2) is None


def test_music_only_hears_the_video_of_its_window_through_the_whole_lm():
    # without the prefix: its row sees every second (as VFA's token summarises the whole clip anyway)
    model, cond_model = lm(), conditioner("mtcv2m", windows=(5,))
    tokens = torch.randint(0, V, (2, K, 24))
    with torch.no_grad():
        cond = Conditioning(memory=cond_model(*features()).memory)
        masks = cond_model.masks(cond, n_layers=4, n_steps=24, steps_per_second=2)
        assert masks[0].shape == (24, 12)
        base = model(tokens, memory=cond.memory, memory_mask=masks)
        later = cond.memory.clone()
        later[:, 8] += 1.0  # second 8 lies in the window [5, 12)
        out = model(tokens, memory=later, memory_mask=masks)
    changed = (out - base).abs().amax(dim=(1, 3)) > 1e-6  # [B, T]
    assert not bool(changed[:, :10].any())  # steps before 5 s never see it, directly or through earlier steps
    assert bool(changed[:, 10:].all())


@pytest.mark.parametrize("kind", ["mtcv2m", "gvmgen"])
def test_forward_backward_reaches_the_visual_modules(kind):
    model, cond_model = lm().train(), conditioner(kind).train()
    tokens = torch.randint(0, V, (2, K, 24))
    cond = cond_model(*features())
    masks = cond_model.masks(cond, n_layers=4, n_steps=23, steps_per_second=2)
    logits = model(tokens[:, :, :-1], memory=cond.memory, prefix=cond.prefix, memory_mask=masks)
    F.cross_entropy(logits.flatten(0, 2), tokens[:, :, 1:].flatten()).backward()
    modules = dict(gvmgen=["qformer"], mtcv2m=["vfa", "fgfs"])[kind]
    for name in modules:
        for pname, p in getattr(cond_model, name).named_parameters():
            assert p.grad is not None and bool(p.grad.abs().sum() > 0), f"{name}.{pname}"


def test_a_tiny_batch_overfits():
    model, cond_model = lm().train(), conditioner("mtcv2m").train()
    tokens = torch.randint(0, V, (2, K, 40), generator=torch.Generator().manual_seed(3))
    feats = features(T=8)
    params = list(model.parameters()) + list(cond_model.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for _ in range(100):
        cond = cond_model(*feats)
        masks = cond_model.masks(cond, n_layers=4, n_steps=39, steps_per_second=5)
        logits = model(tokens[:, :, :-1], memory=cond.memory, prefix=cond.prefix, memory_mask=masks)
        loss = F.cross_entropy(logits.flatten(0, 2), tokens[:, :, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 5


@pytest.mark.parametrize("kind", ["mtcv2m", "gvmgen"])
def test_eval_mode_is_deterministic_even_with_dropout_set(kind):
    cond_model = conditioner(kind, p_drop=0.5, p_prefix=0.5, p_time=1.0, dropout=0.3)
    with torch.no_grad():
        a, b = cond_model(*features()), cond_model(*features())
    assert torch.equal(a.memory, b.memory)
    assert a.prefix is None if kind == "gvmgen" else torch.equal(a.prefix, b.prefix)
    assert bool((a.memory.abs().sum(dim=2) > 0).all())  # nothing nulled


@pytest.mark.parametrize("kind", ["mtcv2m", "gvmgen"])
def test_condition_dropout_in_training_gives_the_null_condition(kind):
    cond_model = conditioner(kind, p_drop=1.0).train()
    cond = cond_model(*features())
    null = cond_model.null(2, 12)
    assert torch.equal(cond.memory, null.memory)
    if kind == "mtcv2m":
        assert null.prefix.shape == (2, 1, D) and torch.equal(cond.prefix, null.prefix)
    else:
        assert cond.prefix is None and null.prefix is None


def test_global_token_dropout_nulls_only_the_prefix():
    cond_model = conditioner("mtcv2m", p_prefix=1.0).train()
    cond = cond_model(*features())
    assert bool((cond.prefix == 0).all())
    assert bool((cond.memory.abs().sum(dim=2) > 0).all())


def test_time_dropout_drops_a_span_or_keeps_only_a_span():
    cond_model = conditioner("mtcv2m", p_time=1.0).train()
    kinds = set()
    torch.manual_seed(4)
    with torch.no_grad():
        for _ in range(20):
            kept = (cond_model(*features()).memory.abs().sum(dim=2) > 0).tolist()  # [B, T]
            for row in kept:
                on = [i for i, k in enumerate(row) if k]
                off = [i for i, k in enumerate(row) if not k]
                if on and on == list(range(on[0], on[-1] + 1)) and (on[0] > 0 or on[-1] < 11):
                    kinds.add("kept a span")
                if off:
                    assert off == list(range(off[0], off[-1] + 1)) or on == list(range(on[0], on[-1] + 1))
                    if off == list(range(off[0], off[-1] + 1)) and 0 < off[0] and off[-1] < 11:
                        kinds.add("dropped a span")
    assert kinds == {"kept a span", "dropped a span"}  # both branches run (MTCV2M's p // 2 == 0 did not)


def test_time_dropout_mask_respects_lengths():
    torch.manual_seed(5)
    lengths = torch.tensor([1, 3, 8] * 50)
    mask = VideoConditioner.time_dropout_mask(lengths, n_seconds=8, p=1.0)
    assert mask.shape == (150, 8)
    for n in (1, 3):
        rows = mask[lengths == n]
        assert bool(rows[:, n:].all())  # padding is left to the time mask
    none = VideoConditioner.time_dropout_mask(lengths, n_seconds=8, p=0.0)
    assert bool(none.all())


def test_null_condition_runs_through_the_lm_with_the_same_masks():
    model, cond_model = lm(), conditioner("mtcv2m")
    tokens = torch.randint(0, V, (2, K, 24))
    with torch.no_grad():
        cond = cond_model(*features())
        null = cond_model.null(2, 12)
        masks = cond_model.masks(cond, n_layers=4, n_steps=24, steps_per_second=2)
        assert all(torch.equal(a, b) for a, b in
                   zip(masks, cond_model.masks(null, n_layers=4, n_steps=24, steps_per_second=2)))
        uncond = model(tokens, memory=null.memory, prefix=null.prefix, memory_mask=masks)
        cond_logits = model(tokens, memory=cond.memory, prefix=cond.prefix, memory_mask=masks)
    assert uncond.shape == cond_logits.shape and not torch.allclose(uncond, cond_logits, atol=1e-4)
    assert isinstance(null, Conditioning) and null.n_prefix == 1 and null.n_seconds == 12


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="vidmuse"), "kind must be one of .* 'vidmuse'"),
    (dict(kind="mtcv2m", frame_dim=None), "frame_dim is needed"),
    (dict(p_drop=1.5), "p_drop .* 1.5"),
    (dict(p_time=-0.1), "p_time .* -0.1"),
    (dict(windows=(5, "3")), "'3'"),
    (dict(d_model=0), "d_model .* 0"),
])
def test_bad_constructor_arguments(kwargs, match):
    args = dict(kind="gvmgen")
    args.update(kwargs)
    with pytest.raises(ParameterError, match=match):
        conditioner(**args)


def test_bad_call_arguments():
    cond_model = conditioner("mtcv2m")
    patch, frame, context = features()
    with pytest.raises(ParameterError, match="context features are needed"):
        cond_model(patch, frame)
    with pytest.raises(ParameterError, match=r"patch must be a \[B, T, P, Dp\] tensor, got \(2, 12, 16\)"):
        cond_model(patch[..., 0], frame, context)
    with pytest.raises(ParameterError, match="padding at the end"):
        cond_model(patch, frame, context, time_mask=torch.tensor([[False] + [True] * 11] * 2))
    with pytest.raises(ParameterError, match="n_steps .* -1"):
        cond_model.masks(cond_model.null(2, 12), n_layers=4, n_steps=-1, steps_per_second=2)


def test_stack_features_pads_and_masks():
    a, b = features(B=1, T=5), features(B=1, T=3, seed=2)
    videos = [VisualFeatures(patch=x[0][0], frame=x[1][0], context=x[2][0], duration=float(x[1].shape[1]),
                             encoder="test") for x in (a, b)]
    patch, frame, context, time_mask = stack_features(videos)
    assert patch.shape == (2, 5, P, DP) and frame.shape == (2, 5, DF) and context.shape == (2, 5, DC)
    assert time_mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    assert torch.equal(frame[1, :3], b[1][0]) and bool((frame[1, 3:] == 0).all())
    # a padded sequence conditions exactly like the same video alone
    cond_model = conditioner("mtcv2m")
    with torch.no_grad():
        batched = cond_model(patch, frame, context, time_mask=time_mask)
        alone = cond_model(*b)
    torch.testing.assert_close(batched.memory[1, :3], alone.memory[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batched.prefix[1], alone.prefix[0], atol=1e-5, rtol=0)
    assert stack_features(videos[:1])[3] is None
    with pytest.raises(ParameterError, match="at least one"):
        stack_features([])
    odd = VisualFeatures(patch=torch.zeros(2, 4, DP), frame=torch.zeros(2, DF), context=torch.zeros(2, DC),
                         duration=2.0, encoder="test")
    with pytest.raises(ParameterError, match="different token sizes"):
        stack_features([videos[0], odd])
