"""MusicGen's delay pattern over parallel codebooks, as pure index code (no model).

With ``K`` codebooks, codebook ``k`` is shifted right by ``k`` steps, so at sequence step
``s`` the LM predicts codebook 0 of frame ``s``, codebook 1 of frame ``s - 1``, and so on:
each codebook is predicted after the coarser ones of the same frame. A clip of ``T``
frames becomes ``T + K - 1`` steps; the cells no frame fills hold a pad id.

For K = 3, T = 4 (``a``-``l`` are codes, ``P`` the pad)::

    frames           delayed
    a b c d          a b c d P P
    e f g h    ->    P e f g h P
    i j k l          P P i j k l

The LM input is the delayed sequence shifted right by one step behind a start column
(MusicGen uses one special id, 2048, both as start and as pad); see :func:`lm_inputs`.
Both torch tensors and numpy arrays are accepted and returned in kind.
"""
from __future__ import annotations

import numpy as np
import torch

from cuecraft.errors import ParameterError


def _as_tensor(x, name: str) -> tuple[torch.Tensor, bool]:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x), True
    if isinstance(x, torch.Tensor):
        return x, False
    raise ParameterError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ParameterError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def delayed_length(n_frames: int, n_codebooks: int) -> int:
    """Steps of the delayed sequence for ``n_frames`` frames: ``n_frames + n_codebooks - 1``."""
    return _check_int("n_frames", n_frames, 0) + _check_int("n_codebooks", n_codebooks, 1) - 1


def valid_mask(n_codebooks: int, n_frames: int) -> torch.Tensor:
    """``[K, T + K - 1]`` bool: True where the delayed sequence holds a real code, False at pads.

    Column ``s`` says which codebooks the LM samples at step ``s``; the others are forced
    to the pad id.
    """
    K = _check_int("n_codebooks", n_codebooks, 1)
    T = _check_int("n_frames", n_frames, 0)
    frame = torch.arange(T + K - 1)[None, :] - torch.arange(K)[:, None]  # [K, S]: frame index of each cell
    return (frame >= 0) & (frame < T)


def delay(codes, *, pad_id: int):
    """Shift codebook ``k`` of ``codes`` ``[B, K, T]`` right by ``k``: ``[B, K, T + K - 1]``.

    Parameters
    ----------
    codes : Tensor or ndarray ``[B, K, T]``
        Integer codes, one row per codebook.
    pad_id : int
        Id written where no frame lands (MusicGen: 2048).

    Returns
    -------
    delayed : same kind as ``codes``, ``[B, K, T + K - 1]``
    """
    x, was_numpy = _as_tensor(codes, "codes")
    if x.dim() != 3:
        raise ParameterError(f"codes must be [B, K, T], got shape {tuple(x.shape)}")
    if x.dtype.is_floating_point or x.dtype == torch.bool:
        raise ParameterError(f"codes must be integer, got {x.dtype}")
    pad_id = _check_int("pad_id", pad_id, 0)
    B, K, T = x.shape
    mask = valid_mask(K, T).to(x.device)  # [K, S]
    frame = (torch.arange(T + K - 1, device=x.device)[None, :] - torch.arange(K, device=x.device)[:, None])
    index = frame.clamp(0, max(T - 1, 0)).expand(B, K, -1)  # [B, K, S]
    if T == 0:  # nothing to gather from; every cell is pad
        out = torch.full((B, K, K - 1), pad_id, dtype=x.dtype, device=x.device)
    else:
        out = torch.where(mask, x.gather(2, index), torch.full_like(index, pad_id, dtype=x.dtype))
    return out.numpy() if was_numpy else out


def undelay(delayed):
    """Invert :func:`delay`: ``[B, K, T + K - 1]`` -> ``[B, K, T]`` (pad cells are dropped).

    Parameters
    ----------
    delayed : Tensor or ndarray ``[B, K, S]`` with ``S >= K - 1``

    Returns
    -------
    codes : same kind as ``delayed``, ``[B, K, S - K + 1]``
    """
    x, was_numpy = _as_tensor(delayed, "delayed")
    if x.dim() != 3:
        raise ParameterError(f"delayed must be [B, K, T + K - 1], got shape {tuple(x.shape)}")
    B, K, S = x.shape
    if K < 1:
        raise ParameterError(f"delayed must have at least one codebook, got shape {tuple(x.shape)}")
    T = S - K + 1
    if T < 0:
        raise ParameterError(f"delayed has {S} steps, fewer than the {K - 1} pads of {K} codebooks")
    index = (torch.arange(T, device=x.device)[None, :] + torch.arange(K, device=x.device)[:, None])  # [K, T]
    out = x.gather(2, index.expand(B, K, T))
    return out.numpy() if was_numpy else out


def lm_inputs(codes, *, pad_id: int, start_id: int, ignore_index: int = -100):
    """Teacher-forcing pair for codes ``[B, K, T]``: ``(inputs, targets)``, both ``[B, K, T + K - 1]``.

    ``inputs`` is a start column followed by the delayed codes without their last step;
    ``targets`` is the delayed codes with pad cells set to ``ignore_index`` (no loss there,
    as MusicGen masks them).
    """
    x, was_numpy = _as_tensor(codes, "codes")
    start_id = _check_int("start_id", start_id, 0)
    if x.dim() == 3 and x.shape[2] == 0:
        raise ParameterError("codes must have at least one frame, got T = 0")
    d = delay(x, pad_id=pad_id)  # [B, K, S]
    start = torch.full_like(d[:, :, :1], start_id)
    inputs = torch.cat([start, d[:, :, :-1]], dim=2)  # [B, K, S]
    targets = d.masked_fill(~valid_mask(d.shape[1], x.shape[2]).to(d.device), ignore_index)
    if was_numpy:
        return inputs.numpy(), targets.numpy()
    return inputs, targets
