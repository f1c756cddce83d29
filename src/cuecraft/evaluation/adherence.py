"""Control adherence: does the music do what the controls asked? (mir_eval shape)

Each metric takes the requested control series (times in seconds) and what was produced,
``validate`` checks the inputs, and :func:`evaluate` returns a dict whose keys name the
metric and its variant. Shared by the symbolic-model evaluation and ``cuecraft evaluate``.
"""
from __future__ import annotations

import warnings

import numpy as np

from cuecraft.errors import ParameterError

BEAT_WINDOW = 0.07          # seconds, mir_eval's beat F-measure window
FRAME_RATE = 10.0           # Hz, for melody and intensity comparisons


def validate_series(name: str, times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Times must be finite and increasing, values finite (melody may be NaN = rest), same length."""
    times = np.asarray(times, dtype=float)
    values = np.asarray(values, dtype=float)
    if times.ndim != 1 or len(times) != len(values):
        raise ParameterError(f"{name}: times {times.shape} and values {values.shape} must be 1-D and equally long")
    if len(times) and (not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0)):
        raise ParameterError(f"{name}: times must be finite and strictly increasing")
    if name != "melody" and not np.all(np.isfinite(values)):
        raise ParameterError(f"{name}: values must be finite (got {values[~np.isfinite(values)][0]!r})")
    return times, values


def rms_db(audio: np.ndarray, *, sr: int, times: np.ndarray, window: float = 0.5) -> np.ndarray:
    """RMS loudness in dBFS of ``audio`` in windows centred on ``times``."""
    audio = np.asarray(audio, dtype=float)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    half = int(window * sr / 2)
    out = np.empty(len(times))
    for i, t in enumerate(times):
        c = int(t * sr)
        seg = audio[max(0, c - half):c + half]
        out[i] = 10 * np.log10(np.mean(seg ** 2) + 1e-10) if len(seg) else -100.0
    return out


def intensity_correlation(req_times, req_db, audio: np.ndarray, *, sr: int) -> float:
    """Pearson r between the requested intensity and the produced RMS dB (NaN if either is constant)."""
    req_times, req_db = validate_series("intensity", req_times, req_db)
    if len(req_times) < 3:
        return float("nan")
    got = rms_db(audio, sr=sr, times=req_times)
    if np.std(req_db) == 0 or np.std(got) == 0:
        return float("nan")
    return float(np.corrcoef(req_db, got)[0, 1])


def melody_accuracy(req_times, req_pc, produced_times, produced_pc) -> float:
    """Share of requested (non-rest) melody frames whose produced pitch class matches.

    Both melodies are step functions given at change points; they are compared on a
    ``FRAME_RATE`` grid over the requested span. NaN if nothing was requested.
    """
    req_times, req_pc = validate_series("melody", req_times, req_pc)
    produced_times, produced_pc = validate_series("melody", produced_times, produced_pc)
    if len(req_times) == 0:
        return float("nan")
    grid = np.arange(req_times[0], req_times[-1] + 1.0, 1.0 / FRAME_RATE)
    want = _hold(req_times, req_pc, grid)
    got = _hold(produced_times, produced_pc, grid) if len(produced_times) else np.full(len(grid), np.nan)
    asked = np.isfinite(want)
    if not asked.any():
        return float("nan")
    return float(np.mean(want[asked] == got[asked]))


def _hold(times: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(times, grid, side="right") - 1
    out = np.full(len(grid), np.nan)
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    return out


def beat_f_measure(req_beats, produced_beats) -> float:
    """mir_eval beat F-measure (±70 ms) of produced beats against the requested ones."""
    import mir_eval

    req = np.asarray(req_beats, dtype=float)
    got = np.asarray(produced_beats, dtype=float)
    if len(req) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns on empty estimates; F = 0 says it
        return float(mir_eval.beat.f_measure(req, np.sort(got), f_measure_threshold=BEAT_WINDOW))


def track_beats(audio: np.ndarray, *, sr: int) -> np.ndarray:
    """Beat times tracked in audio (librosa's beat tracker)."""
    import librosa

    y = np.asarray(audio, dtype=np.float32)
    y = y.mean(axis=1) if y.ndim == 2 else y
    _, beats = librosa.beat.beat_track(y=y, sr=sr, units="time", trim=False)
    return np.asarray(beats, dtype=float)


def emotion_agreement(requested: np.ndarray, produced: np.ndarray) -> dict[str, float]:
    """Share of frames where the produced valence / arousal has the requested sign."""
    requested = np.asarray(requested, dtype=float)
    produced = np.asarray(produced, dtype=float)
    if requested.shape != produced.shape or requested.ndim != 2 or requested.shape[1] != 2:
        raise ParameterError(f"emotion: requested {requested.shape} and produced {produced.shape} must be [T, 2]")
    if len(requested) == 0:
        return {"valence_sign_agreement": float("nan"), "arousal_sign_agreement": float("nan")}
    same = np.sign(requested) == np.sign(produced)
    return {"valence_sign_agreement": float(same[:, 0].mean()), "arousal_sign_agreement": float(same[:, 1].mean())}
