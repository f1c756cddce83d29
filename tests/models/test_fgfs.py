"""VFA and FGFS: shapes, padding, per-second independence, the alpha/beta gates, grid checks."""
from __future__ import annotations

import pytest
import torch

from cuecraft.errors import ParameterError
from cuecraft.models.fgfs import FineGrainedFeatureSelection, VideoFeatureAggregation

DP, DF, DC, D = 8, 6, 5, 12


pytestmark = pytest.mark.usefixtures("one_thread")


def fgfs(**kwargs) -> FineGrainedFeatureSelection:
    torch.manual_seed(0)
    args = dict(patch_dim=DP, frame_dim=DF, context_dim=DC, width=16, n_blocks=3, n_heads=2, d_model=D)
    args.update(kwargs)
    return FineGrainedFeatureSelection(**args).eval()


def features(B=2, T=5, P=16):
    torch.manual_seed(1)
    return torch.randn(B, T, P, DP), torch.randn(B, T, DF), torch.randn(B, T, DC)


def test_vfa_shape_and_padding_invariance():
    torch.manual_seed(0)
    vfa = VideoFeatureAggregation(frame_dim=DF, d_model=D)
    frame = torch.randn(2, 7, DF)
    out = vfa(frame)
    assert out.shape == (2, 1, D)
    # sequence 0 is 4 s long: whatever sits in its padding, it equals the unpadded 4-s sequence
    mask = torch.tensor([[True] * 4 + [False] * 3, [True] * 7])
    noisy = frame.clone()
    noisy[0, 4:] = 100.0
    padded = vfa(noisy, time_mask=mask)
    torch.testing.assert_close(padded[0], vfa(frame[:1, :4])[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(padded[1], out[1], atol=1e-6, rtol=0)
    changed = frame.clone()
    changed[1, 3] += 1.0
    assert not torch.allclose(vfa(changed)[1], out[1])  # every second counts
    assert torch.allclose(vfa(changed)[0], out[0])      # and only its own sequence's


def test_vfa_is_a_conv_not_a_plain_mean():
    # reversing time changes the conv's output (kernel is not symmetric), a plain mean would not
    torch.manual_seed(0)
    vfa = VideoFeatureAggregation(frame_dim=DF, d_model=D)
    frame = torch.randn(1, 6, DF)
    assert not torch.allclose(vfa(frame), vfa(frame.flip(1)), atol=1e-5)


def test_fgfs_shape_and_backward():
    model = fgfs().train()
    out = model(*features())
    assert out.shape == (2, 5, D)
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
    # beta carries between blocks only: none on the last block
    assert [b.beta is not None for b in model.blocks] == [True, True, False]


def test_fgfs_token_t_depends_only_on_second_t():
    model = fgfs()
    patch, frame, context = features()
    with torch.no_grad():
        base = model(patch, frame, context)
        for x in (patch, frame, context):
            x2 = x.clone()
            x2[1, 3] += torch.randn_like(x2[1, 3])
            args = [x2 if y is x else y for y in (patch, frame, context)]
            out = model(*args)
            changed = (out - base).abs().amax(dim=2) > 1e-6  # [B, T]
            expected = torch.zeros(2, 5, dtype=torch.bool)
            expected[1, 3] = True
            assert torch.equal(changed, expected)


def test_fgfs_alpha_gate_is_used():
    model = fgfs()
    inputs = features()
    with torch.no_grad():
        for block in model.blocks:
            block.alpha.fill_(10.0)   # query = the context slot only
        context_query = model(*inputs)
        for block in model.blocks:
            block.alpha.fill_(-10.0)  # query = the frame slot only
        frame_query = model(*inputs)
    assert not torch.allclose(context_query, frame_query, atol=1e-3)


def test_fgfs_beta_gate_is_used():
    model = fgfs()
    inputs = features()
    with torch.no_grad():
        model.blocks[0].beta.fill_(10.0)
        a = model(*inputs)
        model.blocks[0].beta.fill_(-10.0)
        b = model(*inputs)
    assert not torch.allclose(a, b, atol=1e-3)


def test_fgfs_single_block_has_no_carry():
    model = fgfs(n_blocks=1)
    assert model.blocks[0].beta is None
    assert model(*features()).shape == (2, 5, D)


def test_fgfs_rectangular_grid():
    model = fgfs(grid=(4, 6))
    assert model(*features(P=24)).shape == (2, 5, D)


@pytest.mark.parametrize("P, grid, match", [
    (577, None, "P = 577"),    # CLIP's CLS token left in
    (9, None, "P = 9"),        # square, but an odd side cannot be 2x2-pooled
    (20, None, "P = 20"),
    (16, (4, 6), "P = 16"),
])
def test_fgfs_bad_patch_counts(P, grid, match):
    model = fgfs(grid=grid)
    with pytest.raises(ParameterError, match=match):
        model(*features(P=P))


@pytest.mark.parametrize("kwargs, match", [
    (dict(width=15), "width = 15"),
    (dict(n_blocks=0), "n_blocks .* got 0"),
    (dict(grid=3), "grid .* 3"),
    (dict(grid=(4, 5)), r"grid .* \(4, 5\)"),
    (dict(dropout=1.0), "dropout .* 1.0"),
])
def test_fgfs_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        fgfs(**kwargs)


def test_bad_inputs():
    model = fgfs()
    patch, frame, context = features()
    with pytest.raises(ParameterError, match="frame must be"):
        model(patch, frame[:, :4], context)
    with pytest.raises(ParameterError, match="patch must be"):
        model(patch[..., :4], frame, context)
    with pytest.raises(ParameterError, match="kernel must be odd, got 4"):
        VideoFeatureAggregation(frame_dim=DF, d_model=D, kernel=4)
    vfa = VideoFeatureAggregation(frame_dim=DF, d_model=D)
    with pytest.raises(ParameterError, match="padding at the end"):
        vfa(frame, time_mask=torch.tensor([[False, True, True, True, True]] * 2))
    with pytest.raises(ParameterError, match="no valid second"):
        vfa(frame, time_mask=torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ParameterError, match=r"time_mask must be a \[2, 5\]"):
        vfa(frame, time_mask=torch.ones(2, 4, dtype=torch.bool))
