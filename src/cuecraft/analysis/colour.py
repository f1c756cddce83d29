"""Per-frame colour statistics: brightness, saturation and colour warmth (inputs to valence)."""

from __future__ import annotations

import cv2
import numpy as np

from cuecraft.errors import ParameterError

__all__ = ["check_frame", "colour_stats"]


def check_frame(rgb: np.ndarray, *, name: str = "rgb") -> np.ndarray:
    """Check that ``rgb`` is an ``[H, W, 3]`` uint8 frame and return it unchanged.

    Parameters
    ----------
    rgb : np.ndarray
        Candidate frame.
    name : str
        Name used in the error message.

    Returns
    -------
    np.ndarray
        The same array.

    Raises
    ------
    ParameterError
        If the value is not an array, has the wrong shape or dtype, or is smaller than 16x16.
    """
    if not isinstance(rgb, np.ndarray):
        raise ParameterError(f"{name} must be a numpy array, got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ParameterError(f"{name} must have shape [H, W, 3], got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ParameterError(f"{name} must have dtype uint8, got dtype {rgb.dtype}")
    # Optical flow (DIS) needs a few patches in each direction.
    if rgb.shape[0] < 16 or rgb.shape[1] < 16:
        raise ParameterError(f"{name} must be at least 16x16 pixels, got shape {rgb.shape}")
    return rgb


def colour_stats(rgb: np.ndarray, *, hsv: np.ndarray | None = None) -> tuple[float, float, float]:
    """Brightness, saturation and warmth of one RGB frame.

    Parameters
    ----------
    rgb : np.ndarray
        ``[H, W, 3]`` uint8 RGB frame (a downscaled frame is enough: only means are taken).
    hsv : np.ndarray, optional
        The same frame already converted with ``cv2.COLOR_RGB2HSV``, to avoid converting twice.

    Returns
    -------
    brightness : float
        Mean HSV value, in [0, 1].
    saturation : float
        Mean HSV saturation, in [0, 1].
    warmth : float
        Mean ``(R - B) / 255``, in [-1, 1]: red/orange/yellow frames are positive, blue
        frames negative and grey frames zero.

    Raises
    ------
    ParameterError
        If ``rgb`` is not an ``[H, W, 3]`` uint8 frame.
    """
    check_frame(rgb)
    if hsv is None:
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    # cv2.mean runs in C over the whole frame; it is several times faster than numpy here.
    _, s, v, _ = cv2.mean(hsv)
    r, _, b, _ = cv2.mean(rgb)
    return v / 255.0, s / 255.0, (r - b) / 255.0
