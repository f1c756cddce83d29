"""Symbolic music statistics (mir_eval shape): PCHE, GPS, in-scale ratio, note density.

Bars come from explicit downbeat times, so these work on any MIDI with a known bar grid
(a generated piece on the video's grid, or a corpus piece on its own).
"""
from __future__ import annotations

import itertools

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
    """``downbeats`` as a float array of at least 2 finite, strictly increasing times, else ParameterError."""
    d = np.asarray(downbeats, dtype=float)
    if d.ndim != 1 or len(d) < 2:
        raise ParameterError(f"downbeats: need at least 2 bar start times in a 1-D array, got shape {d.shape}")
    bad = np.flatnonzero(~np.isfinite(d))
    if len(bad):
        raise ParameterError(f"downbeats[{bad[0]}] = {float(d[bad[0]])!r}: must be finite seconds")
    down = np.flatnonzero(np.diff(d) <= 0)
    if len(down):
        i = int(down[0]) + 1
        raise ParameterError(f"downbeats[{i}] = {float(d[i])!r}: must increase strictly (previous {float(d[i - 1])!r})")
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
    """GPS: mean over bar pairs of 1 - XOR(onset-position vectors) / positions (16 per bar).

    NaN with fewer than 2 bars, or without any onset in the bars (no groove to compare).
    """
    downbeats = validate_downbeats(downbeats)
    onsets, _ = _notes(pm)
    patterns = []
    for start, end in itertools.pairwise(downbeats):
        inside = onsets[(onsets >= start) & (onsets < end)]
        vec = np.zeros(POSITIONS_PER_BAR, dtype=bool)
        vec[np.clip(((inside - start) / (end - start) * POSITIONS_PER_BAR).round().astype(int), 0,
                    POSITIONS_PER_BAR - 1)] = True
        patterns.append(vec)
    patterns = np.array(patterns)
    if len(patterns) < 2 or not patterns.any():
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


def estimate_key(pm) -> tuple[int, str]:
    """(root 0-11, "major"/"minor"): the Krumhansl-Kessler key of the pitched notes, weighted by
    duration; C major for a piece without pitched notes."""
    from cuecraft.controls.keys import key_from_melody

    weights = np.zeros(12)
    for note in (n for inst in pm.instruments if not inst.is_drum for n in inst.notes):
        weights[note.pitch % 12] += note.end - note.start
    return key_from_melody(weights) if weights.sum() > 0 else (0, "major")


def definitions() -> dict[str, str]:
    """One line per key :func:`evaluate` returns."""
    return {
        "pche_1bar": "pitch-class histogram entropy (bits) per bar, averaged; bars from the controls file's "
                     "downbeats, else the MIDI's own",
        "gps_16pos": "grooving pattern similarity over all bar pairs, 16 onset positions per bar",
        "in_scale_ratio_estimated_key": "share of pitched MIDI notes in the scale of the key estimated "
                                        "(Krumhansl-Kessler) from the same notes",
        "note_density_onsets_per_s": "pitched MIDI note onsets per second of video",
    }


def evaluate(pm, *, duration: float, downbeats=None) -> dict[str, float]:
    """All symbolic statistics of one MIDI piece (drums are left out of each).

    Parameters
    ----------
    pm : pretty_midi.PrettyMIDI
    duration : seconds the piece accompanies (the video's duration), for the note density
    downbeats : bar start times (s); default the MIDI's own (``pm.get_downbeats()``). A bar
        runs from one downbeat to the next, so notes after the last one are in no bar; with
        fewer than 2 downbeats there are no bars, and PCHE and GPS are NaN.

    Returns
    -------
    dict with ``pche_1bar``, ``gps_16pos``, ``in_scale_ratio_estimated_key`` and
    ``note_density_onsets_per_s`` (see :func:`definitions`). A piece without pitched notes
    gets NaN for the first three and density 0.

    Raises
    ------
    ParameterError
        If ``pm`` is not a PrettyMIDI, ``duration`` is not > 0, or the downbeats are not
        finite and strictly increasing.
    """
    import pretty_midi

    if not isinstance(pm, pretty_midi.PrettyMIDI):
        raise ParameterError(f"pm must be a pretty_midi.PrettyMIDI, got {type(pm).__name__}")
    density = note_density(pm, duration=duration)
    downbeats = np.asarray(pm.get_downbeats() if downbeats is None else downbeats, dtype=float)
    if downbeats.ndim != 1:
        raise ParameterError(f"downbeats must be 1-D bar start times, got shape {downbeats.shape}")
    bars = len(downbeats) >= 2
    root, mode = estimate_key(pm)
    nan = float("nan")
    return {"pche_1bar": pitch_class_entropy(pm, downbeats) if bars else nan,
            "gps_16pos": grooving_similarity(pm, downbeats) if bars else nan,
            "in_scale_ratio_estimated_key": in_scale_ratio(pm, key_root=root, mode=mode),
            "note_density_onsets_per_s": density}
