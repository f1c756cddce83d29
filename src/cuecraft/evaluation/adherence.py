"""Control adherence: does the music do what the controls asked? (mir_eval shape)

Each metric takes the requested control series (times in seconds) and what was produced,
``validate_series`` checks the inputs, and :func:`evaluate` returns a dict whose keys name the
metric and its variant. Shared by the symbolic-model evaluation and ``cuecraft evaluate``.
"""
from __future__ import annotations

import warnings

import numpy as np

from cuecraft.checks import finite_1d, mono_audio
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
    """mir_eval beat F-measure (±70 ms) of produced beats against the requested ones.

    NaN when nothing was requested; 0 when beats were requested and none produced.
    """
    import mir_eval

    req, _ = validate_series("beat", req_beats, np.zeros(len(np.atleast_1d(req_beats))))
    got = finite_1d("produced_beats", produced_beats)
    if len(req) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns on empty estimates; F = 0 says it
        return float(mir_eval.beat.f_measure(req, np.sort(got), f_measure_threshold=BEAT_WINDOW))


def track_beats(audio, *, sr: int) -> np.ndarray:
    """Beat times (s) tracked in ``audio``: librosa's beat tracker, without beats in leading or trailing
    silence (:func:`cuecraft.controls.from_audio.beats_in_sound`, shared with reference controls).

    Parameters
    ----------
    audio : ``[n]`` or ``[n, channels]`` (mixed to mono)
    sr : sample rate of ``audio`` in Hz

    Returns
    -------
    ``[B]`` increasing beat times in seconds; empty for silence (peak below -80 dBFS).
    """
    import librosa

    from cuecraft.controls.from_audio import SILENCE_PEAK, beats_in_sound

    y = mono_audio(audio, sr=sr)
    if float(np.max(np.abs(y))) < SILENCE_PEAK:
        return np.empty(0)
    _, beats = librosa.beat.beat_track(y=y, sr=int(sr), units="time", trim=False)
    beats = np.asarray(beats, dtype=float)
    return beats[beats_in_sound(beats, y, sr=int(sr))]


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


def definitions() -> dict[str, str]:
    """One line per key :func:`evaluate` can return."""
    audio = "estimated from the music audio (cuecraft.controls.from_audio)"
    return {
        "control_intensity_r": "Pearson r of the requested intensity (dB) and the music's RMS dB at the same times",
        "control_melody_chroma_accuracy": f"share of requested melody frames (10 Hz) whose pitch class is the "
                                          f"music's top-1 chroma, {audio}",
        "control_beat_f1": "mir_eval beat F-measure, ±70 ms, untrimmed: requested beats vs beats tracked in the "
                           "music (librosa beat_track, no beats in leading/trailing silence)",
        "control_valence_sign_agreement": f"share of requested emotion points whose valence sign the music's has, "
                                          f"{audio}",
        "control_arousal_sign_agreement": f"the same for arousal, {audio}",
    }


def evaluate(requested, audio, *, sr: int) -> dict[str, float]:
    """Control adherence of one piece of music: what the controls asked for vs what its audio does.

    What the music does is read off its audio (:func:`cuecraft.controls.from_audio.controls_from_audio`
    for melody and emotion, :func:`track_beats` for beats, :func:`rms_db` for intensity), so the
    output of any system is measured alike.

    Parameters
    ----------
    requested : cuecraft.controls.schema.Controls
        The requested controls, times in seconds from the start of ``audio``.
    audio : ``[n]`` or ``[n, channels]`` music, at least 1 s
    sr : sample rate of ``audio`` in Hz

    Returns
    -------
    dict with one key per requested control (none for a control not requested):
    ``control_intensity_r``, ``control_melody_chroma_accuracy``, ``control_beat_f1`` and, for
    emotion, ``control_valence_sign_agreement`` and ``control_arousal_sign_agreement``. Silent
    music does nothing: melody accuracy and beat F1 are 0 where something was asked, intensity r
    and emotion agreement NaN (undefined).

    Raises
    ------
    ParameterError
        If ``requested`` is not a Controls, or ``audio`` or ``sr`` is invalid.
    """
    from cuecraft.controls.from_audio import SILENCE_PEAK, controls_from_audio
    from cuecraft.controls.resample import sample_linear
    from cuecraft.controls.schema import Controls

    if not isinstance(requested, Controls):
        raise ParameterError(f"requested must be a Controls, got {type(requested).__name__}")
    y = mono_audio(audio, sr=sr)
    if len(y) < sr:
        raise ParameterError(f"audio holds {len(y)} samples ({len(y) / sr:.3f} s at sr={sr}): need at least 1 s")
    silent = float(np.max(np.abs(y))) < SILENCE_PEAK
    produced = None if silent else controls_from_audio(y, sr=int(sr), beats_per_bar=requested.beats_per_bar)
    out = {}
    if requested.intensity is not None:
        out["control_intensity_r"] = intensity_correlation(*requested.intensity.T, y, sr=sr)
    if requested.melody is not None:
        got = (np.empty(0), np.empty(0)) if produced is None else produced.melody.T
        out["control_melody_chroma_accuracy"] = melody_accuracy(*requested.melody.T, *got)
    if requested.beat is not None:
        out["control_beat_f1"] = beat_f_measure(requested.beat[:, 0], track_beats(y, sr=sr))
    if requested.emotion is not None:
        if produced is None:
            agreement = {"valence_sign_agreement": float("nan"), "arousal_sign_agreement": float("nan")}
        else:
            got = sample_linear(produced.emotion, requested.emotion[:, 0])
            agreement = emotion_agreement(requested.emotion[:, 1:], got)
        out.update({f"control_{k}": v for k, v in agreement.items()})
    return out
