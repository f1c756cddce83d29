"""The transformer block: its decoding fast path equals the training code, which still drops out."""
from __future__ import annotations

import torch

from cuecraft.models.blocks import Block


def test_eval_fast_path_equals_training_code_without_dropout():
    # Eval skips the dropout modules and calls the MLP's layers directly; it must equal the
    # train-mode code with dropout off, and training must still apply dropout.
    torch.manual_seed(0)
    block = Block(d_model=32, n_heads=4, dropout=0.5).eval()
    x = torch.randn(2, 9, 32)
    with torch.no_grad():
        evaluated = block(x)
        block.train()
        block.drop.p, block.attn.dropout = 0.0, 0.0
        trained_no_drop = block(x)
        block.drop.p, block.attn.dropout = 0.5, 0.5
        torch.manual_seed(3)
        dropped = block(x)
    torch.testing.assert_close(trained_no_drop, evaluated, atol=1e-6, rtol=0)
    assert not torch.allclose(dropped, evaluated)
