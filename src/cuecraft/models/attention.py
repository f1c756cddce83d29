"""PTAA: MTCV2M's progressive temporal alignment attention, as cross-attention masks.

LM layer ``i`` cross-attends to the per-second visual memory through a block mask whose
window cycles with ``i mod len(windows)`` over ``windows`` (MTCV2M: full, 5 s, 3 s, 2 s).
A music step only sees the video seconds of its own window.

**The window rule** (:func:`ptaa_windows`). Windows start at second 0 every ``window``
seconds; there are ``max(1, n_seconds // window)`` of them, and the last one runs to the
end, absorbing a remainder shorter than a full window. So 12 s with 5-s windows gives
``[0, 5), [5, 12)``; 11 s with 3-s windows gives ``[0, 3), [3, 6), [6, 11)``; 4 s with 5-s
windows gives the single window ``[0, 4)``; ``window = 0`` means one window over
everything. This is what MTCV2M's training mask computes (``blocks_num = k_len //
block_size``, last block open-ended) and it keeps every window at least ``window``
seconds long, so no music step is conditioned on a shorter stretch of video than
training used (a separate 1-s tail window would be). MTCV2M's decoding path used another
rule for the last window (it saw seconds 20-30 instead of 25-30 on a 30-s clip) and its
training rule gave all-False rows (NaN) for clips shorter than the window; here the rule
is one pure function of ``(n_seconds, window)``, used for every row.

**Rows are absolute positions.** :func:`ptaa_masks` returns one ``[n_prefix + n_steps,
n_seconds]`` mask per layer; :class:`~cuecraft.models.lm.TokenLM` takes the rows of the
steps it is computing, so the same masks serve training and KV-cached decoding, and the
masks built for the first ``m`` steps are exactly the first rows of the masks built for
more steps. Prefix rows (e.g. VFA's global token) see every second, and no row is ever
all False (scaled-dot-product attention would return NaN). What the prefix position
gathers from the whole video therefore reaches every music step through self-attention,
like the global token itself (MTCV2M skipped cross-attention at prefix positions
instead; a row cannot be "nothing" here). Without a prefix, a step hears only its window.

**Windowed continuation** (long videos, MTCV2M bug 9: conditions not shifted in time).
A window of music covering ``[start_time, start_time + duration)`` seconds of the video
must be conditioned on the video seconds under it. :func:`aligned_seconds` gives the
video seconds ``[first, stop)`` to slice the visual features (or the per-second memory)
with, and the ``time_offset`` of the window's first step from second ``first``; pass
both to :func:`ptaa_masks`. The windows are then counted from the slice's first second,
as in training, where every clip's windows start at the clip's start.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from cuecraft.errors import ParameterError

WINDOWS = (0, 5, 3, 2)  # MTCV2M blocks_size: full, 5 s, 3 s, 2 s
_EPS = 1e-9  # a step exactly on a second boundary belongs to that second despite float rounding


def check_int(name: str, value, *, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer ``>= minimum``, else a ParameterError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_windows(windows: Sequence[int]) -> tuple[int, ...]:
    """``windows`` as a tuple of non-negative ints (0 = full attention); at least one."""
    if isinstance(windows, (str, bytes)) or not isinstance(windows, Sequence) or not windows:
        raise ParameterError(f"windows must be a non-empty sequence of seconds, got {windows!r}")
    for w in windows:
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            raise ParameterError(f"windows must hold integers >= 0 (0 = full), got {w!r} in {tuple(windows)!r}")
    return tuple(windows)


def ptaa_windows(n_seconds: int, window: int) -> list[tuple[int, int]]:
    """The PTAA windows of a video of ``n_seconds`` per-second tokens.

    Parameters
    ----------
    n_seconds : int
        Per-second visual tokens (>= 1).
    window : int
        Window length in seconds; 0 means one window over everything.

    Returns
    -------
    list of (start, stop)
        Half-open second ranges that tile ``[0, n_seconds)``. Windows start every
        ``window`` seconds from 0; the last one absorbs a remainder shorter than
        ``window`` (see the module docstring).
    """
    check_int("n_seconds", n_seconds)
    check_int("window", window, minimum=0)
    if window == 0 or window >= n_seconds:
        return [(0, n_seconds)]
    n = n_seconds // window
    return [(k * window, (k + 1) * window) for k in range(n - 1)] + [((n - 1) * window, n_seconds)]


def step_seconds(*, n_steps: int, n_seconds: int, steps_per_second: float, time_offset: float = 0.0) -> torch.Tensor:
    """The video second each music step falls in, ``[n_steps]`` long.

    Step ``t`` is at ``time_offset + t / steps_per_second`` seconds after second 0 and
    belongs to the second containing that time; steps past the last second (music a
    little longer than the video) belong to the last one.
    """
    check_int("n_steps", n_steps, minimum=0)
    check_int("n_seconds", n_seconds)
    if isinstance(steps_per_second, bool) or not isinstance(steps_per_second, (int, float)) \
            or not math.isfinite(steps_per_second) or steps_per_second <= 0:
        raise ParameterError(f"steps_per_second must be a finite number > 0, got {steps_per_second!r}")
    if isinstance(time_offset, bool) or not isinstance(time_offset, (int, float)) \
            or not math.isfinite(time_offset) or time_offset < 0:
        raise ParameterError(f"time_offset must be a finite number of seconds >= 0, got {time_offset!r}")
    times = time_offset + torch.arange(n_steps, dtype=torch.float64) / float(steps_per_second)  # [n_steps]
    return torch.floor(times + _EPS).long().clamp_(0, n_seconds - 1)


def window_mask(window: int, seconds: torch.Tensor, *, n_seconds: int, n_prefix: int = 0) -> torch.Tensor:
    """``[n_prefix + len(seconds), n_seconds]`` bool mask of one window length.

    ``seconds`` holds each music step's second (:func:`step_seconds`); a step sees the
    seconds of the window containing its own second; prefix rows see everything.
    """
    check_int("n_prefix", n_prefix, minimum=0)
    start_of = torch.empty(n_seconds, dtype=torch.long)  # window start and stop of every second
    stop_of = torch.empty(n_seconds, dtype=torch.long)
    for start, stop in ptaa_windows(n_seconds, window):
        start_of[start:stop], stop_of[start:stop] = start, stop
    cols = torch.arange(n_seconds)[None]  # [1, S]
    rows = (cols >= start_of[seconds][:, None]) & (cols < stop_of[seconds][:, None])  # [n_steps, S]
    return torch.cat([torch.ones(n_prefix, n_seconds, dtype=torch.bool), rows], dim=0)


def ptaa_masks(*, n_layers: int, n_steps: int, n_seconds: int, steps_per_second: float,
               windows: Sequence[int] = WINDOWS, n_prefix: int = 0, time_offset: float = 0.0,
               device: torch.device | str | None = None) -> list[torch.Tensor]:
    """One PTAA cross-attention mask per LM layer.

    Parameters
    ----------
    n_layers : int
        LM layers; layer ``i`` uses ``windows[i % len(windows)]``.
    n_steps : int
        Music steps after the prefix (the longest sequence the masks will serve).
    n_seconds : int
        Per-second memory tokens (the mask's columns).
    steps_per_second : float
        Music steps per second (50 for EnCodec 32 kHz).
    windows : sequence of int
        Window lengths in seconds; 0 = full attention. Default MTCV2M's ``(0, 5, 3, 2)``.
    n_prefix : int
        Embeddings placed before the music steps (rows that see every second).
    time_offset : float
        Seconds from memory second 0 to music step 0 (>= 0; see :func:`aligned_seconds`).
    device : torch.device, str or None
        Where to put the masks.

    Returns
    -------
    list of BoolTensor ``[n_prefix + n_steps, n_seconds]``
        True = attend. Layers with the same window share one tensor: treat them as
        read-only.
    """
    check_int("n_layers", n_layers)
    windows = check_windows(windows)
    seconds = step_seconds(n_steps=n_steps, n_seconds=n_seconds, steps_per_second=steps_per_second,
                           time_offset=time_offset)
    made = {w: window_mask(w, seconds, n_seconds=n_seconds, n_prefix=n_prefix).to(device) for w in set(windows)}
    return [made[windows[i % len(windows)]] for i in range(n_layers)]


def aligned_seconds(*, start_time: float, duration: float, n_seconds: int) -> tuple[int, int, float]:
    """The video seconds under a window of music, for windowed continuation.

    Parameters
    ----------
    start_time : float
        Time of the window's first music step in the video, seconds (>= 0).
    duration : float
        Seconds of music in the window (> 0).
    n_seconds : int
        Per-second tokens of the whole video.

    Returns
    -------
    first, stop : int
        Slice the per-second visual features (or memory) with ``[first:stop]``.
    time_offset : float
        ``start_time - first``: pass it to :func:`ptaa_masks` with ``n_seconds = stop - first``.
    """
    check_int("n_seconds", n_seconds)
    for name, value in (("start_time", start_time), ("duration", duration)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ParameterError(f"{name} must be a finite number of seconds, got {value!r}")
    if start_time < 0 or start_time >= n_seconds:
        raise ParameterError(f"start_time = {start_time!r} is outside the video's [0, {n_seconds}) seconds")
    if duration <= 0:
        raise ParameterError(f"duration must be > 0 seconds, got {duration!r}")
    first = min(math.floor(start_time + _EPS), n_seconds - 1)
    stop = min(n_seconds, max(first + 1, math.ceil(start_time + duration - _EPS)))
    return first, stop, max(0.0, float(start_time) - first)
