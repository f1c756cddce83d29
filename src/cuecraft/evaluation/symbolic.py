"""Symbolic music statistics (mir_eval shape): PCHE, GPS, in-scale ratio, note density.

Bars come from explicit downbeat times, so these work on any MIDI with a known bar grid
(a generated piece on the video's grid, or a corpus piece on its own).
"""
from __future__ import annotations

import numpy as np

from cuecraft.errors import ParameterError

POSITIONS_PER_BAR = 16


def _notes(pm) -> tuple[np.ndarray, np.ndarray]:
    """Onsets (s) and pitches of every pitched (non-drum) note."""
    rows = [(n.start, n.pitch) for inst in pm.instruments if not inst.is_drum for n in inst.notes]
    if not rows:
        return np.empty(0), np.empty(0, dtype=int)
    arr = np.array(rows)
    return arr[:, 0], arr[:, 1].astype(int)


def validate_downbeats(downbeats) -> np.ndarray:
    d = np.asarray(downbeats, dtype=float)
    if d.ndim != 1 or len(d) < 2 or not np.all(np.isfinite(d)) or np.any(np.diff(d) <= 0):
        raise ParameterError("downbeats must be at least 2 finite, strictly increasing times")
    return d


def pitch_class_entropy(pm, downbeats) -> float:
    """PCHE: mean Shannon entropy (bits) of the pitch-class histogram of each bar with notes."""
    downbeats = validate_downbeats(downbeats)
    onsets, pitches = _notes(pm)
    bar = np.searchsorted(downbeats, onsets, side="right") - 1
    values = []
    for b in range(len(downbeats) - 1):
        pcs = pitches[bar == b] % 12
        if len(pcs) == 0:
            continue
        p = np.bincount(pcs, minlength=12) / len(pcs)
        p = p[p > 0]
        values.append(float(-(p * np.log2(p)).sum()))
    return float(np.mean(values)) if values else float("nan")


def grooving_similarity(pm, downbeats) -> float:
    """GPS: mean over bar pairs of 1 - XOR(onset-position vectors) / positions (16 per bar)."""
    downbeats = validate_downbeats(downbeats)
    onsets, _ = _notes(pm)
    patterns = []
    for start, end in zip(downbeats[:-1], downbeats[1:]):
        inside = onsets[(onsets >= start) & (onsets < end)]
        vec = np.zeros(POSITIONS_PER_BAR, dtype=bool)
        vec[np.clip(((inside - start) / (end - start) * POSITIONS_PER_BAR).round().astype(int), 0,
                    POSITIONS_PER_BAR - 1)] = True
        patterns.append(vec)
    patterns = np.array(patterns)
    if len(patterns) < 2:
        return float("nan")
    xor = patterns[:, None, :] ^ patterns[None, :, :]
    sim = 1.0 - xor.sum(-1) / POSITIONS_PER_BAR
    iu = np.triu_indices(len(patterns), k=1)
    return float(sim[iu].mean())


def in_scale_ratio(pm, *, key_root: int, mode: str) -> float:
    """Share of pitched notes in the key's scale (natural minor for "minor")."""
    scale = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
    if mode not in scale or not 0 <= key_root < 12:
        raise ParameterError(f"key_root = {key_root!r}, mode = {mode!r}: need 0-11 and major/minor")
    _, pitches = _notes(pm)
    if len(pitches) == 0:
        return float("nan")
    return float(np.isin((pitches - key_root) % 12, scale[mode]).mean())


def note_density(pm, *, duration: float) -> float:
    """Pitched note onsets per second."""
    if not duration > 0:
        raise ParameterError(f"duration = {duration!r}: must be > 0")
    return float(len(_notes(pm)[0]) / duration)
