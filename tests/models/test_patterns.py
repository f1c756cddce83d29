"""Delay pattern: hand-worked case, round trips both ways, pad positions, LM inputs, bad shapes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cuecraft.errors import ParameterError
from cuecraft.models.patterns import delay, delayed_length, lm_inputs, undelay, valid_mask

P = 99


def test_hand_worked_case():
    codes = torch.tensor([[[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]])  # [1, 3, 4]
    want = torch.tensor([[[1, 2, 3, 4, P, P],
                          [P, 5, 6, 7, 8, P],
                          [P, P, 9, 10, 11, 12]]])
    assert torch.equal(delay(codes, pad_id=P), want)
    assert torch.equal(undelay(want), codes)


@pytest.mark.parametrize("K,T", [(1, 1), (1, 7), (4, 1), (4, 3), (4, 50), (2, 9)])
def test_round_trip_both_ways(K, T):
    g = torch.Generator().manual_seed(K * 100 + T)
    codes = torch.randint(0, 64, (3, K, T), generator=g)
    delayed = delay(codes, pad_id=P)
    assert delayed.shape == (3, K, T + K - 1) == (3, K, delayed_length(T, K))
    assert torch.equal(undelay(delayed), codes)
    # the other way: a delayed layout with pads in place survives undelay -> delay unchanged
    assert torch.equal(delay(undelay(delayed), pad_id=P), delayed)


def test_pads_exactly_where_the_mask_says():
    K, T = 4, 6
    codes = torch.randint(0, 64, (2, K, T))  # never equal to the pad
    delayed = delay(codes, pad_id=P)
    mask = valid_mask(K, T)
    assert torch.equal(delayed == P, (~mask).expand(2, -1, -1))
    for k in range(K):  # codebook k: k leading pads, K - 1 - k trailing pads
        row = mask[k].tolist()
        assert row == [False] * k + [True] * T + [False] * (K - 1 - k)
    # at step s, the codebooks sampled are those whose frame s - k exists
    assert mask[:, 0].tolist() == [True, False, False, False]
    assert mask[:, T + K - 2].tolist() == [False, False, False, True]


def test_numpy_in_numpy_out():
    codes = np.arange(8, dtype=np.int64).reshape(1, 2, 4)
    delayed = delay(codes, pad_id=P)
    assert isinstance(delayed, np.ndarray)
    assert delayed.tolist() == [[[0, 1, 2, 3, P], [P, 4, 5, 6, 7]]]
    assert np.array_equal(undelay(delayed), codes)


def test_lm_inputs_are_start_then_shifted_delayed():
    codes = torch.tensor([[[1, 2], [3, 4]]])  # [1, 2, 2]
    inputs, targets = lm_inputs(codes, pad_id=P, start_id=77)
    assert inputs.tolist() == [[[77, 1, 2], [77, P, 3]]]
    assert targets.tolist() == [[[1, 2, -100], [-100, 3, 4]]]


def test_zero_frames_is_all_pad():
    assert delay(torch.zeros(1, 3, 0, dtype=torch.long), pad_id=5).tolist() == [[[5, 5], [5, 5], [5, 5]]]
    assert undelay(torch.zeros(1, 3, 2, dtype=torch.long)).shape == (1, 3, 0)


@pytest.mark.parametrize("bad", [torch.zeros(2, 3, dtype=torch.long), torch.zeros(1, 2, 3, 4, dtype=torch.long)])
def test_wrong_shapes(bad):
    with pytest.raises(ParameterError, match="codes must be"):
        delay(bad, pad_id=P)
    with pytest.raises(ParameterError, match="delayed must be"):
        undelay(bad)


def test_bad_arguments():
    with pytest.raises(ParameterError, match="fewer than"):
        undelay(torch.zeros(1, 4, 2, dtype=torch.long))  # 4 codebooks need at least 3 steps
    with pytest.raises(ParameterError, match="integer"):
        delay(torch.zeros(1, 2, 3), pad_id=P)
    with pytest.raises(ParameterError, match="pad_id"):
        delay(torch.zeros(1, 2, 3, dtype=torch.long), pad_id=-1)
    with pytest.raises(ParameterError, match="torch.Tensor or numpy"):
        delay([[[1, 2]]], pad_id=P)
    with pytest.raises(ParameterError, match="n_codebooks"):
        valid_mask(0, 3)
