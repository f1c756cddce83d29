"""Audio decoding (any container PyAV/FFmpeg reads) and WAV writing."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from cuecraft.errors import MediaError, ParameterError
from cuecraft.io.files import atomic_path, check_input_file


def _check_sr(sr: int) -> int:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or not 4000 <= sr <= 192000:
        raise ParameterError(f"sr = {sr!r}: must be an integer sample rate in [4000, 192000]")
    return int(sr)


def load_audio(path: str | os.PathLike, *, sr: int = 22050, mono: bool = True,
               max_duration: float | None = None) -> np.ndarray:
    """Decode the first audio stream of ``path`` to float32 at ``sr`` Hz.

    Parameters
    ----------
    path : audio or video file (WAV, FLAC, MP3, M4A, MP4, ...)
    sr : target sample rate in Hz
    mono : mix down to one channel (``[n]``); otherwise ``[n, channels]``
    max_duration : stop decoding after this many seconds (None = all)

    Raises
    ------
    MediaError
        If the file is missing, empty, unreadable, has no audio stream or no samples.
    """
    import av

    path = check_input_file(path, kind="audio")
    sr = _check_sr(sr)
    limit = None if max_duration is None else int(round(max_duration * sr))
    chunks: list[np.ndarray] = []
    got = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"'{path}': no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp", layout="mono" if mono else "stereo", rate=sr)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
                    got += out.samples
                if limit is not None and got >= limit:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
    except MediaError:
        raise
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise MediaError(f"'{path}': cannot decode audio ({exc})") from None
    if not chunks:
        raise MediaError(f"'{path}': the audio stream holds no samples")
    y = np.concatenate(chunks, axis=1).T.astype(np.float32)  # [n, channels]
    if limit is not None:
        y = y[:limit]
    if not np.all(np.isfinite(y)):
        raise MediaError(f"'{path}': the decoded audio contains NaN or Inf")
    return y[:, 0] if mono else y


def write_wav(path: str | os.PathLike, audio: np.ndarray, *, sr: int) -> Path:
    """Write float audio ``[n]`` or ``[n, channels]`` in [-1, 1] as 16-bit PCM WAV, atomically."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim not in (1, 2) or audio.shape[0] == 0:
        raise ParameterError(f"audio must be [n] or [n, channels] with n > 0, got shape {audio.shape}")
    return write_wav_blocks(path, [audio], sr=sr)


def write_wav_blocks(path: str | os.PathLike, blocks: Iterable[np.ndarray], *, sr: int) -> Path:
    """Write a stream of float blocks ``[n, channels]`` as 16-bit PCM WAV, atomically, in flat memory."""
    import soundfile as sf

    sr = _check_sr(sr)
    path = Path(path)
    with atomic_path(path) as tmp:
        handle = None
        try:
            for block in blocks:
                block = np.asarray(block, dtype=np.float32)
                block = block[:, None] if block.ndim == 1 else block
                if not np.all(np.isfinite(block)):
                    raise ParameterError("audio contains NaN or Inf")
                if handle is None:
                    handle = sf.SoundFile(str(tmp), "w", samplerate=sr, channels=block.shape[1], subtype="PCM_16",
                                          format="WAV")
                handle.write(np.clip(block, -1.0, 1.0))
        finally:
            if handle is not None:
                handle.close()
        if handle is None:
            raise ParameterError("audio has no samples")
    return path
