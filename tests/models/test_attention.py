"""PTAA windows and masks: hand-worked cases, the last window, prefix rows, decoding identity, continuation."""
from __future__ import annotations

import pytest
import torch

from cuecraft.errors import ParameterError
from cuecraft.models.attention import aligned_seconds, ptaa_masks, ptaa_windows


def row(spec: str) -> list[bool]:
    """'111110000000' -> booleans (one character per video second)."""
    return [c == "1" for c in spec]


@pytest.mark.parametrize("n_seconds, window, expected", [
    (12, 5, [(0, 5), (5, 12)]),                          # the 2-s remainder joins the last window
    (12, 3, [(0, 3), (3, 6), (6, 9), (9, 12)]),
    (12, 2, [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12)]),
    (11, 3, [(0, 3), (3, 6), (6, 11)]),
    (11, 2, [(0, 2), (2, 4), (4, 6), (6, 8), (8, 11)]),
    (9, 5, [(0, 9)]),                                    # one full window plus a remainder
    (4, 5, [(0, 4)]),                                    # shorter than one window (MTCV2M: all False)
    (12, 0, [(0, 12)]),                                  # 0 = full attention
    (30, 5, [(0, 5), (5, 10), (10, 15), (15, 20), (20, 25), (25, 30)]),  # MTCV2M's training clips
    (1, 1, [(0, 1)]),
])
def test_ptaa_windows_hand_worked(n_seconds, window, expected):
    assert ptaa_windows(n_seconds, window) == expected


def test_ptaa_masks_hand_worked_12_seconds():
    # 12 s at 2 steps/s = 24 steps, one prefix row; 5 layers cycle full, 5, 3, 2, full
    masks = ptaa_masks(n_layers=5, n_steps=24, n_seconds=12, steps_per_second=2, n_prefix=1)
    assert len(masks) == 5 and all(m.shape == (25, 12) and m.dtype == torch.bool for m in masks)
    full, w5, w3, w2, again = masks
    assert bool(full.all()) and torch.equal(again, full)
    # row r = prefix (r = 0) or music step r - 1 at time (r - 1) / 2 s
    assert w5[0].tolist() == row("111111111111")    # prefix sees everything
    assert w5[1].tolist() == row("111110000000")    # step 0, 0.0 s
    assert w5[10].tolist() == row("111110000000")   # step 9, 4.5 s: still the first window
    assert w5[11].tolist() == row("000001111111")   # step 10, 5.0 s: last window [5, 12)
    assert w5[24].tolist() == row("000001111111")   # step 23, 11.5 s
    assert w3[0].tolist() == row("111111111111")
    assert w3[6].tolist() == row("111000000000")    # step 5, 2.5 s -> [0, 3)
    assert w3[7].tolist() == row("000111000000")    # step 6, 3.0 s -> [3, 6)
    assert w3[18].tolist() == row("000000111000")   # step 17, 8.5 s -> [6, 9)
    assert w3[19].tolist() == row("000000000111")   # step 18, 9.0 s -> [9, 12)
    assert w2[21].tolist() == row("000000000011")   # step 20, 10.0 s -> [10, 12)
    assert w2[20].tolist() == row("000000001100")   # step 19, 9.5 s -> [8, 10)


def test_ptaa_masks_hand_worked_11_seconds_last_window_absorbs():
    w5, w3, w2 = ptaa_masks(n_layers=4, n_steps=22, n_seconds=11, steps_per_second=2)[1:]
    assert w5[21].tolist() == row("00000111111")    # step 21, 10.5 s -> [5, 11)
    assert w3[12].tolist() == row("00000011111")    # step 12, 6.0 s -> [6, 11)
    assert w3[11].tolist() == row("00011100000")    # step 11, 5.5 s -> [3, 6)
    assert w2[16].tolist() == row("00000000111")    # step 16, 8.0 s -> [8, 11)
    assert w2[15].tolist() == row("00000011000")    # step 15, 7.5 s -> [6, 8)


def test_the_window_of_each_step_is_its_own():
    # every step sees its own second, and only seconds of one window
    for w in (5, 3, 2):
        (m,) = ptaa_masks(n_layers=1, n_steps=60, n_seconds=12, steps_per_second=5, windows=(w,))
        for t in range(60):
            cols = m[t].nonzero().flatten().tolist()
            assert t // 5 in cols
            assert (cols[0], cols[-1] + 1) in ptaa_windows(12, w)
            assert cols == list(range(cols[0], cols[-1] + 1))


def test_mtcv2m_last_window_bug_is_absent():
    # MTCV2M's decoder gave a step at 27 s seconds 20-30 while training gave 25-30
    (m,) = ptaa_masks(n_layers=1, n_steps=1500, n_seconds=30, steps_per_second=50, windows=(5,))
    expected = torch.zeros(30, dtype=torch.bool)
    expected[25:] = True
    assert torch.equal(m[27 * 50], expected)


@pytest.mark.parametrize("n_prefix", [0, 1, 3])
def test_masks_for_a_prefix_of_the_sequence_are_rows_of_the_full_mask(n_prefix):
    kw = dict(n_layers=4, n_seconds=11, steps_per_second=3.0, n_prefix=n_prefix)
    full = ptaa_masks(n_steps=33, **kw)
    for m in (0, 1, 7, 15, 16, 32, 33):
        short = ptaa_masks(n_steps=m, **kw)
        for a, b in zip(short, full):
            assert torch.equal(a, b[:n_prefix + m])


def test_no_row_is_ever_all_false():
    for n_seconds in range(1, 14):
        for sps in (1, 2, 3.5, 50):
            n_steps = int(n_seconds * sps) + 7  # a little music past the video's end
            for m in ptaa_masks(n_layers=4, n_steps=n_steps, n_seconds=n_seconds, steps_per_second=sps, n_prefix=1):
                assert bool(m.any(dim=1).all())


def test_non_integer_steps_per_second_and_boundary_steps():
    # 29.97 steps/s: step 30 is at 1.001 s, step 29 at 0.968 s
    (m,) = ptaa_masks(n_layers=1, n_steps=90, n_seconds=3, steps_per_second=29.97, windows=(1,))
    assert m[29].tolist() == [True, False, False] and m[30].tolist() == [False, True, False]
    # 50 steps/s: step 250 is exactly 5.0 s and belongs to second 5
    (m,) = ptaa_masks(n_layers=1, n_steps=300, n_seconds=6, steps_per_second=50, windows=(1,))
    assert m[249].nonzero().item() == 4 and m[250].nonzero().item() == 5


def test_continuation_window_sees_time_aligned_seconds():
    # music from 10.5 s for 3 s in a 20-s video: seconds 10-13 are sliced, step 0 sits 0.5 s into the slice
    first, stop, offset = aligned_seconds(start_time=10.5, duration=3.0, n_seconds=20)
    assert (first, stop, offset) == (10, 14, 0.5)
    (m,) = ptaa_masks(n_layers=1, n_steps=6, n_seconds=stop - first, steps_per_second=2, windows=(1,),
                      time_offset=offset)
    # steps at 10.5, 11, 11.5, 12, 12.5, 13 s -> slice columns 0, 1, 1, 2, 2, 3
    assert [int(r.nonzero().item()) for r in m] == [0, 1, 1, 2, 2, 3]
    # windows count from the slice's first second, as in training on clips
    (m,) = ptaa_masks(n_layers=1, n_steps=6, n_seconds=4, steps_per_second=2, windows=(2,), time_offset=offset)
    assert m[2].tolist() == [True, True, False, False] and m[3].tolist() == [False, False, True, True]


def test_aligned_seconds_edges():
    assert aligned_seconds(start_time=0.0, duration=30.0, n_seconds=12) == (0, 12, 0.0)  # clipped at the end
    assert aligned_seconds(start_time=11.9, duration=5.0, n_seconds=12) == (11, 12, pytest.approx(0.9))
    assert aligned_seconds(start_time=4.0, duration=2.0, n_seconds=12) == (4, 6, 0.0)


@pytest.mark.parametrize("call, match", [
    (lambda: ptaa_windows(0, 5), "n_seconds must be an integer >= 1, got 0"),
    (lambda: ptaa_windows(10, -1), "window must be an integer >= 0, got -1"),
    (lambda: ptaa_windows(10, 2.5), "window must be an integer >= 0, got 2.5"),
    (lambda: ptaa_masks(n_layers=0, n_steps=4, n_seconds=2, steps_per_second=2), "n_layers .* got 0"),
    (lambda: ptaa_masks(n_layers=2, n_steps=4, n_seconds=2, steps_per_second=0), "steps_per_second .* got 0"),
    (lambda: ptaa_masks(n_layers=2, n_steps=4, n_seconds=2, steps_per_second=2, windows=()), r"windows .* \(\)"),
    (lambda: ptaa_masks(n_layers=2, n_steps=4, n_seconds=2, steps_per_second=2, windows=(0, -3)), "-3"),
    (lambda: ptaa_masks(n_layers=2, n_steps=4, n_seconds=2, steps_per_second=2, n_prefix=-1), "n_prefix .* -1"),
    (lambda: ptaa_masks(n_layers=2, n_steps=4, n_seconds=2, steps_per_second=2, time_offset=-0.5),
     "time_offset .* -0.5"),
    (lambda: aligned_seconds(start_time=12.0, duration=1.0, n_seconds=12), "start_time = 12.0"),
    (lambda: aligned_seconds(start_time=1.0, duration=0.0, n_seconds=12), "duration .* 0.0"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ParameterError, match=match):
        call()
