"""GVMGen's spatial Q-Former: cross-attention layers, per-second tokens, no positional embedding."""
from __future__ import annotations

import pytest
import torch

from cuecraft.errors import ParameterError
from cuecraft.models.hierarchical import SpatialQFormer

DP, D = 10, 12


pytestmark = pytest.mark.usefixtures("one_thread")


def qformer(**kwargs) -> SpatialQFormer:
    torch.manual_seed(0)
    args = dict(patch_dim=DP, width=16, n_heads=2, d_model=D)
    args.update(kwargs)
    return SpatialQFormer(**args).eval()


def patches(B=2, T=4, P=9):
    torch.manual_seed(1)
    return torch.randn(B, T, P, DP)


def test_gvmgen_layout_cross_attention_on_layers_0_2_4():
    model = qformer()
    assert model.queries.shape == (16, 16) and len(model.layers) == 6
    assert model.cross_layers == [0, 2, 4]
    names = {n.split(".")[1] for n, _ in model.named_parameters() if ".cross." in n}
    assert names == {"0", "2", "4"}
    assert qformer(n_layers=5, cross_every=3).cross_layers == [0, 3]


def test_shape_and_backward():
    model = qformer().train()
    out = model(patches())
    assert out.shape == (2, 4, D)
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def test_token_t_depends_only_on_second_t():
    model = qformer()
    x = patches()
    with torch.no_grad():
        base = model(x)
        x2 = x.clone()
        x2[0, 2, 5] += torch.randn(DP)  # not a uniform shift: the patch LayerNorm would remove that
        changed = (model(x2) - base).abs().amax(dim=2) > 1e-6  # [B, T]
    expected = torch.zeros(2, 4, dtype=torch.bool)
    expected[0, 2] = True
    assert torch.equal(changed, expected)


def test_no_positional_embedding_on_patches_or_seconds():
    model = qformer()
    x = patches()
    with torch.no_grad():
        base = model(x)
        # a frame's patches are a set to the queries
        shuffled = x[:, :, torch.randperm(9)]
        torch.testing.assert_close(model(shuffled), base, atol=1e-5, rtol=0)
        # the seconds carry no position: permuting them permutes the tokens
        order = torch.tensor([2, 0, 3, 1])
        torch.testing.assert_close(model(x[:, order]), base[:, order], atol=1e-5, rtol=0)


def test_patches_matter_up_to_their_per_token_norm():
    model = qformer()
    x = patches()
    with torch.no_grad():
        base = model(x)
        assert not torch.allclose(model(torch.randn_like(x)), base, atol=1e-2)
        # patch tokens are layer-normed first, so a per-token affine change of scale is invisible
        torch.testing.assert_close(model(x * 3 + 1), base, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(width=15), "width = 15"),
    (dict(n_queries=0), "n_queries .* got 0"),
    (dict(cross_every=0), "cross_every .* got 0"),
    (dict(dropout=-0.1), "dropout .* -0.1"),
    (dict(mlp_ratio=0), "mlp_ratio .* 0"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        qformer(**kwargs)


def test_bad_patch_shape():
    with pytest.raises(ParameterError, match=r"patch must be \[B, T, P, 10\], got \(2, 4, 9\)"):
        qformer()(torch.zeros(2, 4, 9))
