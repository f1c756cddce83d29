"""The relevance model's inputs: per-second music features (no download) and video features.

Music: log-mel mean and std per second plus onset-strength mean and max, so both timbre and
rhythm are visible (GVMGen used EnCodec latents, which need weights). Video: the frame and
context levels of the visual encoders' tokens.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from cuecraft.errors import ParameterError

FEATURE_SR = 22050
HOP_LENGTH = 512  # ~43 frames per second
N_MELS = 64
MUSIC_FEATURES = f"logmel{N_MELS}-meanstd+onset-meanmax@{FEATURE_SR}"
MUSIC_DIM = 2 * N_MELS + 2


def music_features(audio: np.ndarray, *, sr: int) -> np.ndarray:
    """Per-second music features that need no pretrained weights.

    Parameters
    ----------
    audio : np.ndarray ``[n]`` or ``[n, channels]`` (mixed to mono), float samples
    sr : sample rate of ``audio`` in Hz (resampled to 22050 Hz, so features do not depend on it)

    Returns
    -------
    np.ndarray ``[T, 130]`` float32, ``T = ceil(duration)``: for each second ``[i, i + 1)`` the
    mean and standard deviation of each of 64 log-mel bands (absolute dB, so loudness shows)
    and the mean and maximum of the onset strength (so hits and rhythm show).
    """
    import librosa

    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or not 4000 <= sr <= 192000:
        raise ParameterError(f"sr = {sr!r}: must be an integer sample rate in [4000, 192000]")
    y = np.asarray(audio, dtype=np.float32)
    if y.ndim == 2:
        y = y.mean(axis=1)
    if y.ndim != 1 or y.size == 0:
        raise ParameterError(f"audio must be [n] or [n, channels] with n > 0, got shape {np.shape(audio)}")
    if not np.all(np.isfinite(y)):
        raise ParameterError("audio contains NaN or infinity")
    if sr != FEATURE_SR:
        y = librosa.resample(y, orig_sr=int(sr), target_sr=FEATURE_SR)
    seconds = max(1, math.ceil(y.size / FEATURE_SR - 1e-6))
    mel = librosa.feature.melspectrogram(y=y, sr=FEATURE_SR, n_fft=2048, hop_length=HOP_LENGTH, n_mels=N_MELS)
    logmel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).astype(np.float64)  # [M, F]
    onset = librosa.onset.onset_strength(S=logmel, sr=FEATURE_SR, hop_length=HOP_LENGTH)  # [F]
    # Centred frames: frame k describes the sound around k * hop / sr.
    second = np.minimum((np.arange(logmel.shape[1]) * HOP_LENGTH / FEATURE_SR).astype(int), seconds - 1)
    member = (second[None, :] == np.arange(seconds)[:, None]).astype(np.float64)  # [T, F]
    count = member.sum(axis=1, keepdims=True)  # [T, 1]
    mean = member @ logmel.T / np.maximum(count, 1)  # [T, M]
    std = np.sqrt(np.maximum(member @ logmel.T ** 2 / np.maximum(count, 1) - mean ** 2, 0.0))
    onset_mean = member @ onset / np.maximum(count[:, 0], 1)  # [T]
    onset_max = (member * onset[None, :]).max(axis=1)  # onset strength is >= 0
    out = np.concatenate([mean, std, onset_mean[:, None], onset_max[:, None]], axis=1)  # [T, 130]
    for i in np.flatnonzero(count[1:, 0] == 0) + 1:
        out[i] = out[i - 1]  # a final sliver of a second can hold no frame: repeat the second before
    return out.astype(np.float32)


def video_features(features) -> torch.Tensor:
    """Per-second video features for the relevance model: ``[T, Df + Dc]``.

    The frame and context levels of :class:`~cuecraft.models.visual.base.VisualFeatures`,
    concatenated: one whole-frame token and one few-seconds motion token per second. The patch
    level is left out; it describes layout, which the frame level already summarises.
    """
    return torch.cat([features.frame.float(), features.context.float()], dim=-1)  # [T, Df + Dc]
