"""TokenLM: shapes, overfitting, KV-cached decoding equal to the full forward, bad arguments."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cuecraft.errors import ParameterError
from cuecraft.models.lm import TokenLM

V = 24


def tiny(**kwargs) -> TokenLM:
    torch.manual_seed(0)
    args = dict(vocab_size=V, d_model=32, n_layers=3, n_heads=4)
    args.update(kwargs)
    return TokenLM(**args).eval()


def decode_in_chunks(model, tokens, chunks, **kwargs):
    """Logits from feeding ``tokens`` through a cache in chunks of the given sizes."""
    cache = model.new_cache(tokens.shape[0], tokens.shape[2] + 4)
    outs, t = [], 0
    for i, n in enumerate(chunks):
        extra = {k: v for k, v in kwargs.items() if k != "prefix" or i == 0}
        outs.append(model.step(tokens[:, :, t:t + n], cache=cache, **extra))
        t += n
    assert t == tokens.shape[2]
    return torch.cat(outs, dim=2)


@pytest.mark.parametrize("n_codebooks", [1, 4])
def test_forward_backward_shapes(n_codebooks):
    model = tiny(n_codebooks=n_codebooks).train()
    tokens = torch.randint(0, V, (2, n_codebooks, 11))
    logits = model(tokens)
    assert logits.shape == (2, n_codebooks, 11, V)
    F.cross_entropy(logits.flatten(0, 2), tokens.flatten()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_cross_attention_off_costs_nothing():
    names = [n for n, _ in tiny().named_parameters()]
    assert not any("cross" in n or "norm_x" in n for n in names)
    with_memory = tiny(cross_attention=True)
    assert with_memory.num_parameters() > tiny().num_parameters()


def test_tiny_batch_overfits():
    torch.manual_seed(0)
    model = TokenLM(vocab_size=32, d_model=64, n_layers=2, n_heads=4).train()
    tokens = torch.randint(0, 32, (4, 1, 33))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    for _ in range(200):
        logits = model(tokens[:, :, :-1])
        loss = F.cross_entropy(logits.flatten(0, 2), tokens[:, :, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10


@pytest.mark.parametrize("positions", ["rotary", "sinusoidal", "learned"])
@pytest.mark.parametrize("n_codebooks", [1, 4])
def test_incremental_decode_equals_full_forward(positions, n_codebooks):
    model = tiny(n_codebooks=n_codebooks, positions=positions, max_positions=64)
    tokens = torch.randint(0, V, (2, n_codebooks, 21))
    with torch.no_grad():
        full = model(tokens)
        one_by_one = decode_in_chunks(model, tokens, [1] * 21)
        mixed = decode_in_chunks(model, tokens, [7, 1, 5, 8])
    torch.testing.assert_close(one_by_one, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed, full, atol=1e-5, rtol=0)


def test_first_conditioned_heads_read_the_first_token():
    model = tiny(n_codebooks=4, first_conditioned=True)
    tokens = torch.randint(0, V, (2, 4, 9))
    first = torch.randint(0, V, (2, 9))
    with torch.no_grad():
        plain, conditioned = model(tokens), model(tokens, first=first)
        other = model(tokens, first=(first + 1) % V)
        x = model.hidden(tokens)
    torch.testing.assert_close(conditioned[:, 0], plain[:, 0], atol=0, rtol=0)  # the first head never reads it
    torch.testing.assert_close(other[:, 0], plain[:, 0], atol=0, rtol=0)
    assert not torch.allclose(conditioned[:, 1:], plain[:, 1:]) and not torch.allclose(conditioned[:, 1:], other[:, 1:])
    torch.testing.assert_close(model.read_heads(x, heads=[2, 0]), plain[:, [2, 0]], atol=0, rtol=0)
    # Learned: a one-step task where slot 1 must copy the first token cannot be solved without it.
    torch.manual_seed(1)
    model = tiny(n_codebooks=2, first_conditioned=True).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        target = torch.randint(0, V, (8, 2, 6))
        target[:, 1] = target[:, 0]
        start = torch.zeros(8, 2, 1, dtype=torch.long)
        inputs = torch.cat([start, target[..., :-1]], dim=2)
        logits = model(inputs, first=target[:, 0])
        loss = F.cross_entropy(logits[:, 1].reshape(-1, V), target[:, 1].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1  # chance is log(24) = 3.2


def test_first_token_conditioning_is_not_a_constant_shift_of_the_logits():
    """Which pitch follows depends on the context *and* the first token together (an XOR): an
    embedding added before a linear head can only shift logits per first token and cannot
    learn it; the conditioning MLP can."""
    from cuecraft.models.blocks import FirstTokenConditioning

    torch.manual_seed(0)
    cond = FirstTokenConditioning(vocab_size=2, d_model=16, mlp_ratio=4)
    head = torch.nn.Linear(16, 2)
    context = torch.randn(2, 16)  # two contexts, as hidden states
    opt = torch.optim.AdamW([*cond.parameters(), *head.parameters()], lr=1e-2)
    x = context.repeat_interleave(2, dim=0)[:, None]  # [4, 1, 16]: (context, first) pairs
    first = torch.tensor([[0], [1], [0], [1]])
    target = torch.tensor([0, 1, 1, 0])  # XOR of context and first
    for _ in range(300):
        loss = F.cross_entropy(head(cond(x, first))[:, 0], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_rotary_table_equals_angles_computed_per_call_and_grows():
    model = tiny()
    x = torch.zeros(1, 3, 32)
    cos, sin = model._rotary(5, 3, x)
    angles = torch.arange(5, 8, dtype=torch.float32)[:, None] * model.inv_freq[None]
    assert torch.equal(cos, angles.cos().repeat(1, 2)) and torch.equal(sin, torch.cat([-angles.sin(), angles.sin()], 1))
    cos, sin = model._rotary(1500, 2, x)  # past the first table: it grows, positions stay exact
    angles = torch.arange(1500, 1502, dtype=torch.float32)[:, None] * model.inv_freq[None]
    assert torch.equal(cos, angles.cos().repeat(1, 2)) and torch.equal(sin, torch.cat([-angles.sin(), angles.sin()], 1))
    assert model._rotary(0, 2, x.double())[0].dtype == torch.float64


def test_incremental_decode_with_memory_per_layer_masks_and_prefix():
    model = tiny(n_codebooks=4, cross_attention=True)
    B, T, S, P = 2, 19, 6, 2
    tokens = torch.randint(0, V, (B, 4, T))
    memory = torch.randn(B, S, 32)
    prefix = torch.randn(B, P, 32)
    L = P + T
    # hand-made block masks over absolute rows: full, windows of 3 memory slots, boolean and additive
    block = (torch.arange(L)[:, None] * S // L) // 3 == torch.arange(S)[None] // 3  # [L, S]
    additive = torch.zeros(B, 1, L, S).masked_fill(~block, float("-inf"))
    masks = [None, block, additive]
    with torch.no_grad():
        full = model(tokens, memory=memory, memory_mask=masks, prefix=prefix)
        assert full.shape == (B, 4, T, V)
        inc = decode_in_chunks(model, tokens, [4] + [1] * 10 + [5], memory=memory, memory_mask=masks, prefix=prefix)
        unmasked = model(tokens, memory=memory, prefix=prefix)
    torch.testing.assert_close(inc, full, atol=1e-5, rtol=0)
    assert not torch.allclose(unmasked, full, atol=1e-4)  # the masks matter


def test_cache_recomputes_memory_keys_when_memory_changes():
    model = tiny(cross_attention=True)
    tokens = torch.randint(0, V, (1, 1, 6))
    m1, m2 = torch.randn(1, 3, 32), torch.randn(1, 3, 32)
    last = []
    with torch.no_grad():
        for memory in (m1, m2):
            cache = model.new_cache(1, 8)
            model.step(tokens[:, :, :5], cache=cache, memory=m1)
            last.append(model.step(tokens[:, :, 5:], cache=cache, memory=memory))
    assert not torch.allclose(last[0], last[1])


def test_small_config_fits_30_mb():
    model = TokenLM(vocab_size=350, d_model=256, n_layers=6, n_heads=4)
    assert model.num_parameters() * 4 <= 30 * 2**20


@pytest.mark.parametrize("kwargs, match", [
    (dict(d_model=30), "d_model = 30"),
    (dict(n_heads=0), "n_heads must be a positive integer, got 0"),
    (dict(positions="alibi"), "alibi"),
    (dict(dropout=1.5), "1.5"),
    (dict(vocab_size=True), "True"),
    (dict(input_vocab_size=3), "input_vocab_size = 3"),
    (dict(first_conditioned=True), "needs n_codebooks > 1"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        tiny(**kwargs)


def test_bad_call_arguments():
    model = tiny()
    with pytest.raises(ParameterError, match=r"\[B, 1, T\]"):
        model(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ParameterError, match="token 99"):
        model(torch.full((1, 1, 3), 99))
    with pytest.raises(ParameterError, match="integer"):
        model(torch.zeros(1, 1, 3))
    with pytest.raises(ParameterError, match="cross_attention=False"):
        model(torch.zeros(1, 1, 3, dtype=torch.long), memory=torch.zeros(1, 2, 32))
    with pytest.raises(ParameterError, match=r"first must be \[1, 3\], got \(1, 2\)"):
        tiny(n_codebooks=2, first_conditioned=True)(torch.zeros(1, 2, 3, dtype=torch.long),
                                                    first=torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ParameterError, match="without guidance"):
        model(torch.zeros(1, 1, 3, dtype=torch.long), controls=torch.zeros(1, 3, 19))
    cache = model.new_cache(1, 4)
    model.step(torch.zeros(1, 1, 3, dtype=torch.long), cache=cache)
    with pytest.raises(ParameterError, match="cache holds 4 steps; 3 used, 2 more"):
        model.step(torch.zeros(1, 1, 2, dtype=torch.long), cache=cache)
    with pytest.raises(ParameterError, match="batch 1"):
        model.step(torch.zeros(2, 1, 1, dtype=torch.long), cache=cache)
    with pytest.raises(ParameterError, match="max_len must be a positive integer, got 0"):
        model.new_cache(1, 0)
    with pytest.raises(ParameterError, match="needs a cache"):
        model.step(torch.zeros(1, 1, 1, dtype=torch.long))
    masked = tiny(cross_attention=True)
    with pytest.raises(ParameterError, match="3 query rows, need at least 5"):
        masked(torch.zeros(1, 1, 5, dtype=torch.long), memory=torch.zeros(1, 2, 32),
               memory_mask=torch.ones(3, 2, dtype=torch.bool))


def test_rotate_gives_the_same_floats_as_rotating_each_half():
    from cuecraft.models.blocks import rope_halves, rotate

    x = torch.randn(2, 4, 7, 16)
    angles = torch.arange(7, dtype=torch.float32)[:, None] * (1.0 / 10000 ** (torch.arange(0, 16, 2) / 16))[None]
    x1, x2 = x.chunk(2, dim=-1)
    expected = torch.cat([x1 * angles.cos() - x2 * angles.sin(), x1 * angles.sin() + x2 * angles.cos()], dim=-1)
    assert torch.equal(rotate(x, *rope_halves(angles)), expected)
