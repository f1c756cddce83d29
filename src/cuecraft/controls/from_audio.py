"""Controls (beat, melody, intensity, emotion) estimated from an audio signal.

These are the definitions the training pipeline uses on audio training pieces (MTCV2M
extracts each piece's controls from the piece itself), so :func:`controls_from_audio` is a
pure function of a sample array; :func:`load_reference_audio` is a thin file layer on top.

All analysis runs at 22050 Hz (other rates are resampled first) with a 512-sample hop, so
that the same piece gives the same controls whatever rate it arrives at.

Definitions
-----------
beat
    ``librosa.beat.beat_track``. Downbeats are an *estimate* (no downbeat model is
    installed): of the ``beats_per_bar`` possible bar phases, the one whose beats carry
    the strongest onsets, low frequencies (< 200 Hz, kick drum and bass) counting double.
melody
    Top-1 chroma (argmax of ``chroma_cqt``) at 10 Hz after a 3-frame median filter; NaN
    (rest) where the frame is quiet (below -60 dBFS or 40 dB under the loudest frame) or
    the chroma is flat (peak/mean < 2). Written only where the value changes.
intensity
    RMS in dBFS (``10 log10`` of the mean square over 0.5 s), clipped to [-80, 0], at 10 Hz.
emotion
    Valence/arousal in [-1, 1] at 2 Hz over 4 s windows, on the scale of the note-level
    definition the model was trained with; see :mod:`cuecraft.controls.audio_emotion`.

Silence: audio whose peak is below -80 dBFS is rejected with a :class:`MediaError`, as
neither beats nor a melody can be read from it. Audio in which the beat tracker finds
fewer than two beats gives controls without a ``beat``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import librosa
import numpy as np
from scipy.ndimage import median_filter, uniform_filter1d

from cuecraft.controls.audio_emotion import (CQT_BINS_PER_OCTAVE, AudioFrames, EmotionMap, cqt_pitch,
                                              load_emotion_map, window_features)
from cuecraft.controls.from_midi import change_points
from cuecraft.controls.resample import time_base
from cuecraft.controls.schema import Controls
from cuecraft.errors import MediaError, ParameterError
from cuecraft.io.audio import load_audio

ANALYSIS_SR = 22050
HOP = 512
N_FFT = 2048
FRAME_RATE = 10.0
EMOTION_RATE = 2.0
EMOTION_WINDOW = 4.0
SILENCE_PEAK = 1e-4  # -80 dBFS
SILENCE_TOP_DB = 60.0  # dB below the loudest frame that count as silence (librosa.effects.trim's default)
BEAT_MARGIN = 0.07  # s: a beat this close to the first or last sound is still heard (mir_eval's window)
LOW_HZ = 200.0
QUIET_DB = -60.0
QUIET_BELOW_LOUDEST_DB = 40.0
MIN_CHROMA_PEAK_RATIO = 2.0


def _check_sr(sr: int) -> int:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or not 4000 <= sr <= 192000:
        raise ParameterError(f"sr = {sr!r}: must be an integer sample rate in [4000, 192000]")
    return int(sr)


def _check_audio(y: np.ndarray, sr: int) -> np.ndarray:
    if not isinstance(y, np.ndarray) or not np.issubdtype(y.dtype, np.floating):
        dtype = getattr(y, "dtype", type(y).__name__)
        raise ParameterError(f"y must be a floating-point numpy array, got {dtype}")
    if y.ndim != 1:
        raise ParameterError(f"y must be mono audio of shape [n], got shape {y.shape}")
    if len(y) < sr:
        raise ParameterError(f"y holds {len(y)} samples ({len(y) / sr:.3f} s at sr={sr}): need at least 1 s")
    bad = ~np.isfinite(y)
    if bad.any():
        raise ParameterError(f"y contains non-finite samples (first at index {int(np.argmax(bad))}: "
                             f"{y[np.argmax(bad)]!r})")
    peak = float(np.max(np.abs(y)))
    if peak < SILENCE_PEAK:
        shown = "-inf" if peak == 0 else f"{20 * math.log10(peak):.1f}"
        raise MediaError(f"the audio is silent (peak {shown} dBFS < -80 dBFS): no beat, melody, "
                         "intensity or emotion can be read from it")
    return y


def _pool(features: np.ndarray, frame_times: np.ndarray, n_out: int, rate: float) -> np.ndarray:
    """Mean of the feature frames ``[n, C]`` falling in each output frame ``[k/rate, (k+1)/rate)``."""
    idx = np.minimum((frame_times * rate + 1e-9).astype(int), n_out - 1)
    sums = np.zeros((n_out, features.shape[1]))
    np.add.at(sums, idx, features)
    counts = np.bincount(idx, minlength=n_out)[:, None]
    out = sums / np.maximum(counts, 1)
    empty = counts[:, 0] == 0
    if empty.any():
        # Only possible for a very short final bin: take the nearest filled one.
        filled = np.flatnonzero(~empty)
        out[empty] = out[filled[np.abs(filled[None, :] - np.flatnonzero(empty)[:, None]).argmin(axis=1)]]
    return out


def sounding_span(y: np.ndarray, *, sr: int) -> tuple[float, float]:
    """Seconds from the first to the last frame within :data:`SILENCE_TOP_DB` of the loudest."""
    _, (start, end) = librosa.effects.trim(y, top_db=SILENCE_TOP_DB)
    return start / sr, end / sr


def beats_in_sound(beats: np.ndarray, y: np.ndarray, *, sr: int) -> np.ndarray:
    """Keep the beats that fall where ``y`` sounds (within :data:`BEAT_MARGIN`).

    librosa's beat tracker, untrimmed, starts its path at frame 0 and can end it a beat after
    the music stops: beats nobody hears. Its own ``trim=True`` instead drops end beats that are
    weak relative to the mean beat, which also loses a soft but real intro or ending. Dropping
    beats only where nothing sounds keeps both right; rests inside the music keep their
    beats, as a pulse goes on through a rest.
    """
    start, end = sounding_span(y, sr=sr)
    beats = np.asarray(beats, dtype=float)
    return (beats >= start - BEAT_MARGIN) & (beats <= end + BEAT_MARGIN)


def _beats(onset_env: np.ndarray, low_env: np.ndarray, *, y: np.ndarray, sr: int, duration: float,
           beats_per_bar: int) -> tuple[np.ndarray | None, float]:
    """(beat series [N, 2] or None, global tempo in BPM)."""
    tempo, frames = librosa.beat.beat_track(onset_envelope=onset_env, sr=sr, hop_length=HOP, units="frames",
                                            trim=False)
    tempo = float(np.atleast_1d(tempo)[0])
    frames = np.asarray(frames, dtype=int)
    times = librosa.frames_to_time(frames, sr=sr, hop_length=HOP)
    keep = (times <= duration) & beats_in_sound(times, y, sr=sr)
    frames, times = frames[keep], times[keep]
    if len(times) < 2:
        return None, tempo
    # Onset strength near each beat (+-2 frames, ~46 ms), relative to its mean over the beats.
    near = np.clip(frames[:, None] + np.arange(-2, 3)[None, :], 0, len(onset_env) - 1)
    full = onset_env[near].max(axis=1)
    low = low_env[near].max(axis=1)
    score = 2.0 * low / (low.mean() + 1e-9) + full / (full.mean() + 1e-9)
    phases = np.arange(len(times)) % beats_per_bar
    phase_score = [score[phases == p].mean() if np.any(phases == p) else -np.inf for p in range(beats_per_bar)]
    downbeat_phase = int(np.argmax(phase_score))
    position = (np.arange(len(times)) - downbeat_phase) % beats_per_bar
    return np.stack([times, position.astype(float)], axis=1), tempo


def controls_from_audio(y: np.ndarray, *, sr: int, beats_per_bar: int = 4,
                        emotion_map: EmotionMap | None = None) -> Controls:
    """Estimate beat, melody, intensity and emotion controls from mono audio.

    See the module docstring for the beat, melody and intensity definitions. Emotion
    (valence, arousal) is read every 0.5 s over 4 s windows: the window's audio features
    (:func:`~cuecraft.controls.audio_emotion.window_features`: mode, brightness, register,
    tempo, level, onset rate, voiced share) go through a linear map fitted to the note-level
    definition the model was trained with (:mod:`cuecraft.controls.audio_emotion`).

    Parameters
    ----------
    y : [n] float audio, at least 1 s
    sr : sample rate of ``y`` in Hz
    beats_per_bar : bar length used for the downbeat estimate
    emotion_map : the features-to-emotion map (default: the shipped, fitted one)

    Returns
    -------
    Controls
        With ``duration = len(y) / sr``. ``beat`` is None if fewer than two beats are found.

    Raises
    ------
    ParameterError
        If ``y`` is not finite 1-D float audio of at least 1 s, or ``sr`` is invalid.
    MediaError
        If the audio is silent (peak below -80 dBFS).
    """
    analysis = _analyse(y, sr=sr, beats_per_bar=beats_per_bar)
    emotion_times = time_base(duration=analysis.duration, rate=EMOTION_RATE)
    features = window_features(analysis.frames, emotion_times, window=EMOTION_WINDOW, duration=analysis.duration)
    emotion = np.column_stack([emotion_times, (emotion_map or load_emotion_map())(features)])
    source = {name: "audio analysis" for name in ("beat", "melody", "intensity", "emotion")}
    if analysis.beat is None:
        del source["beat"]
    return Controls(beat=analysis.beat, melody=analysis.melody, intensity=analysis.intensity, emotion=emotion,
                    beats_per_bar=int(beats_per_bar), duration=analysis.duration, source=source)


def emotion_features(y: np.ndarray, *, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """``(times [T], features [T, F])``: the emotion features :func:`controls_from_audio` maps to
    valence and arousal, at its emotion times (for fitting the map)."""
    analysis = _analyse(y, sr=sr, beats_per_bar=4)
    times = time_base(duration=analysis.duration, rate=EMOTION_RATE)
    return times, window_features(analysis.frames, times, window=EMOTION_WINDOW, duration=analysis.duration)


@dataclass(frozen=True)
class _Analysis:
    beat: np.ndarray | None
    melody: np.ndarray
    intensity: np.ndarray
    frames: AudioFrames
    duration: float


def _analyse(y: np.ndarray, *, sr: int, beats_per_bar: int) -> _Analysis:
    sr = _check_sr(sr)
    if isinstance(beats_per_bar, bool) or not isinstance(beats_per_bar, (int, np.integer)) \
            or not 1 <= beats_per_bar <= 16:
        raise ParameterError(f"beats_per_bar = {beats_per_bar!r}: must be an integer in [1, 16]")
    y = _check_audio(y, sr)
    duration = len(y) / sr
    y = y.astype(np.float32)
    if sr != ANALYSIS_SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=ANALYSIS_SR)
    sr = ANALYSIS_SR

    spec = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP))  # [F, n]
    n = spec.shape[1]
    frame_times = librosa.frames_to_time(np.arange(n), sr=sr, hop_length=HOP)
    mel_db = librosa.power_to_db(librosa.feature.melspectrogram(S=spec ** 2, sr=sr, n_mels=64), ref=np.max)
    n_low = max(1, int(np.sum(librosa.mel_frequencies(n_mels=64, fmax=sr / 2) < LOW_HZ)))
    onset_env = librosa.onset.onset_strength(S=mel_db, sr=sr)
    low_env = librosa.onset.onset_strength_multi(S=mel_db, sr=sr, channels=[0, n_low])[0]
    beat, tempo = _beats(onset_env, low_env, y=y, sr=sr, duration=duration, beats_per_bar=int(beats_per_bar))

    power = librosa.feature.rms(y=y, frame_length=N_FFT, hop_length=HOP)[0, :n].astype(np.float64) ** 2
    # chroma_cqt's own constant-Q spectrum, kept for the register feature.
    cqt = np.abs(librosa.cqt(y, sr=sr, hop_length=HOP, n_bins=7 * CQT_BINS_PER_OCTAVE,
                             bins_per_octave=CQT_BINS_PER_OCTAVE, tuning=None))
    chroma = librosa.feature.chroma_cqt(C=cqt, sr=sr, hop_length=HOP, norm=None)[:, :n]  # [12, n]
    centroid = librosa.feature.spectral_centroid(S=spec, sr=sr)[0, :n]
    loudest_db = 10 * np.log10(power.max() + 1e-20)
    frame_quiet = 10 * np.log10(power + 1e-20) < max(QUIET_DB, loudest_db - QUIET_BELOW_LOUDEST_DB)

    # Melody and intensity at 10 Hz.
    times = time_base(duration=duration, rate=FRAME_RATE)
    pooled = _pool(np.concatenate([chroma.T, power[:, None]], axis=1), frame_times, len(times), FRAME_RATE)
    frame_chroma = median_filter(pooled[:, :12], size=(3, 1), mode="nearest")
    ratio = frame_chroma.max(axis=1) / (frame_chroma.mean(axis=1) + 1e-12)
    pooled_db = 10 * np.log10(pooled[:, 12] + 1e-20)
    rest = (pooled_db < max(QUIET_DB, loudest_db - QUIET_BELOW_LOUDEST_DB)) | (ratio < MIN_CHROMA_PEAK_RATIO)
    melody = change_points(times, np.where(rest, np.nan, frame_chroma.argmax(axis=1).astype(float)))

    half_second = max(1, int(round(0.5 * sr / HOP)))
    # The running sum behind the filter can dip a hair below 0 in silence.
    smooth_power = np.maximum(uniform_filter1d(power, size=half_second, mode="nearest"), 0.0)
    smooth_db = 10 * np.log10(_pool(smooth_power[:, None], frame_times, len(times), FRAME_RATE)[:, 0] + 1e-20)
    intensity = np.stack([times, np.clip(smooth_db, -80.0, 0.0)], axis=1)

    onsets = librosa.onset.onset_detect(onset_envelope=onset_env, sr=sr, hop_length=HOP, units="time")
    frames = AudioFrames(times=frame_times, power=power, chroma=chroma, pitch=cqt_pitch(cqt[:, :n]),
                         centroid=centroid, quiet=frame_quiet, onsets=np.asarray(onsets, dtype=float),
                         beats=beat[:, 0] if beat is not None else np.zeros(0), tempo=tempo)
    return _Analysis(beat=beat, melody=melody, intensity=intensity, frames=frames, duration=duration)


def load_reference_audio(path: str | os.PathLike, *, max_duration: float | None = None) -> Controls:
    """Controls taken from a reference audio file (any format :func:`load_audio` reads).

    Parameters
    ----------
    path : audio or video file
    max_duration : only use the first this many seconds (None = all)

    Returns
    -------
    Controls
        As :func:`controls_from_audio` with 4 beats per bar; ``source`` names the file.

    Raises
    ------
    MediaError
        If the file is missing, unreadable, shorter than 1 s or silent, naming the file.
    """
    if max_duration is not None and (isinstance(max_duration, bool)
                                     or not isinstance(max_duration, (int, float, np.number))
                                     or not math.isfinite(max_duration) or max_duration <= 0):
        raise ParameterError(f"max_duration = {max_duration!r}: must be a finite number of seconds > 0")
    path = Path(path)
    y = load_audio(path, sr=ANALYSIS_SR, mono=True, max_duration=max_duration)
    try:
        controls = controls_from_audio(y, sr=ANALYSIS_SR)
    except (MediaError, ParameterError) as exc:
        raise MediaError(f"'{path}': {exc}") from None
    name = f"reference audio '{path.name}'"
    return replace(controls, source={n: name for n in controls.present})
