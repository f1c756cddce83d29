"""Input checks shared by every stage (librosa style: the message names the argument and shows the value)."""
from __future__ import annotations

import math

import numpy as np

from cuecraft.errors import ParameterError


def positive(name: str, value: object) -> float:
    """``value`` as a float if it is a finite number > 0 (not a bool), else ParameterError."""
    if isinstance(value, bool):
        raise ParameterError(f"{name} must be a positive finite number, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a positive finite number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ParameterError(f"{name} must be a positive finite number, got {value!r}")
    return number


def finite_1d(name: str, values: object) -> np.ndarray:
    """``values`` as a 1-D float array with only finite entries, else ParameterError."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ParameterError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} must be finite, got {float(arr[~np.isfinite(arr)][0])!r}")
    return arr


def seconds(name: str, value: object) -> float:
    """``value`` as float seconds if finite and > 0 (not a bool), else ParameterError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        raise ParameterError(f"{name} = {value!r}: must be finite seconds > 0")
    return float(value)


def seed(value: object) -> int:
    """``value`` as an int if it is an integer >= 0 (not a bool), else ParameterError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ParameterError(f"seed = {value!r}: must be an integer >= 0")
    return int(value)


def mono_audio(audio: object, *, sr: object) -> np.ndarray:
    """``audio`` ``[n]`` or ``[n, channels]`` as finite mono float32 ``[n]`` (n > 0), else ParameterError.

    ``sr`` must be an integer sample rate in [4000, 192000].
    """
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or not 4000 <= sr <= 192000:
        raise ParameterError(f"sr = {sr!r}: must be an integer sample rate in [4000, 192000]")
    y = np.asarray(audio, dtype=np.float32)
    if y.ndim == 2:
        y = y.mean(axis=1)
    if y.ndim != 1 or len(y) == 0:
        raise ParameterError(f"audio must be [n] or [n, channels] with n > 0, got shape {np.shape(audio)}")
    if not np.all(np.isfinite(y)):
        raise ParameterError("audio contains NaN or Inf")
    return y
