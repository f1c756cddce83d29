"""Key and mode from pitch-class weights (Krumhansl & Kessler 1982 probe-tone profiles).

Shared by the controls (the mode behind valence) and the plan (the key of the piece).
"""
from __future__ import annotations

import numpy as np

from cuecraft.errors import ParameterError

MODES = ("major", "minor")
# Probe-tone ratings, index 0 = tonic.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
KK_PROFILES = {"major": KK_MAJOR, "minor": KK_MINOR}
# A mode-correlation difference of this size already reads as clearly major or minor.
MODE_SCALE = 0.15


def _zscore_rows(a: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=-1, keepdims=True)
    return a / a.std(axis=-1, keepdims=True)


_PROFILES = _zscore_rows(np.stack([np.roll(p, k) for p in (KK_MAJOR, KK_MINOR) for k in range(12)]))  # [24, 12]


def mode_strength(hist: np.ndarray) -> np.ndarray:
    """Major-versus-minor evidence of pitch-class histograms (Krumhansl-Kessler).

    Parameters
    ----------
    hist : [..., 12] non-negative weights per pitch class (0 = C)

    Returns
    -------
    [...] ``max_k r(hist, major_k) - max_k r(hist, minor_k)`` where r is Pearson's
    correlation with the 12 rotations of each profile; > 0 leans major, < 0 minor,
    0 for a flat or empty histogram.
    """
    hist = np.asarray(hist, dtype=float)
    if hist.shape[-1:] != (12,):
        raise ParameterError(f"hist must have 12 pitch classes in its last axis, got shape {hist.shape}")
    centred = hist - hist.mean(axis=-1, keepdims=True)
    std = centred.std(axis=-1, keepdims=True)
    flat = std[..., 0] <= 1e-9 * (np.abs(hist).max(axis=-1) + 1e-12)
    r = (centred / np.where(std > 0, std, 1.0)) @ _PROFILES.T / 12.0  # [..., 24]
    out = r[..., :12].max(axis=-1) - r[..., 12:].max(axis=-1)
    return np.where(flat, 0.0, out)


def key_from_melody(pitch_class_weights: np.ndarray, *, mode: str | None = None) -> tuple[int, str]:
    """The key whose Krumhansl-Kessler profile correlates best with a pitch-class histogram.

    Parameters
    ----------
    pitch_class_weights : array [12]
        Time (or count) per pitch class; must not be all zero.
    mode : str or None
        Restrict to ``"major"`` or ``"minor"``; ``None`` tries both.

    Returns
    -------
    (key_root, mode)
    """
    hist = np.asarray(pitch_class_weights, dtype=float)
    if hist.shape != (12,) or not np.all(np.isfinite(hist)) or np.any(hist < 0) or hist.sum() <= 0:
        raise ParameterError(f"pitch_class_weights = {hist!r}: must be 12 finite non-negative weights, not all 0")
    if mode is not None and mode not in MODES:
        raise ParameterError(f"mode = {mode!r}: must be one of {', '.join(MODES)} or None")
    best = (-np.inf, 0, "major")
    for m in (mode,) if mode else MODES:
        profile = np.asarray(KK_PROFILES[m])
        for root in range(12):
            # A single repeated pitch class has zero variance: score it by profile weight.
            rotated = np.roll(profile, root)
            score = float(np.corrcoef(hist, rotated)[0, 1]) if hist.std() > 0 else float(rotated @ hist)
            if score > best[0] + 1e-12:  # strict, so ties keep the first (lowest root, major)
                best = (score, root, m)
    return best[1], best[2]
