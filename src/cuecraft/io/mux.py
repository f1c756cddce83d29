"""Put music into a video: the video stream is copied as is, the music is encoded as AAC."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cuecraft.errors import MediaError, ParameterError
from cuecraft.io.audio import load_audio
from cuecraft.io.files import atomic_path
from cuecraft.io.video import VideoInfo, probe

AAC_FRAME = 1024


def _stereo(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = np.stack([audio, audio], axis=1)
    if audio.ndim != 2 or audio.shape[1] not in (1, 2) or audio.shape[0] == 0:
        raise ParameterError(f"music must be [n] or [n, 1|2] with n > 0, got shape {audio.shape}")
    if audio.shape[1] == 1:
        audio = np.repeat(audio, 2, axis=1)
    if not np.all(np.isfinite(audio)):
        raise ParameterError("music contains NaN or Inf")
    return audio


def mix_with_original(music: np.ndarray, info: VideoInfo, *, sr: int, original_gain: float = 0.7) -> np.ndarray:
    """Music plus the video's own audio (resampled to ``sr``), limited so the sum does not clip."""
    if not info.has_audio:
        return music
    original = load_audio(info.path, sr=sr, mono=False)
    n = len(music)
    mixed = music.copy()
    m = min(n, len(original))
    mixed[:m] += original_gain * original[:m]
    return np.tanh(mixed) if np.max(np.abs(mixed)) > 1.0 else mixed


def mux_music(video_path: str | os.PathLike, music: np.ndarray, out_path: str | os.PathLike, *,
              sr: int, keep_audio: bool = False, bitrate: int = 192_000) -> Path:
    """Write ``out_path``: the video's stream copied without re-encoding plus ``music`` as AAC.

    Parameters
    ----------
    video_path : source video
    music : float ``[n]`` or ``[n, 2]`` in [-1, 1] at ``sr`` Hz; starts with the first video frame
    out_path : an MP4 (or MOV/MKV) path; written atomically
    sr : sample rate of ``music`` in Hz
    keep_audio : mix the video's existing audio under the music instead of replacing it
    """
    import av

    info = probe(video_path)
    music = _stereo(music)
    if keep_audio:
        music = mix_with_original(music, info, sr=sr)
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        try:
            with av.open(str(info.path)) as src, av.open(str(tmp), "w", format=_format_for(out_path)) as dst:
                vin = src.streams.video[0]
                vout = dst.add_stream_from_template(vin)
                aout = dst.add_stream("aac", rate=sr, layout="stereo")
                aout.bit_rate = bitrate
                _write_audio(dst, aout, music, sr=sr, start=info.start_time)
                for packet in src.demux(vin):
                    if packet.dts is None:
                        continue
                    packet.stream = vout
                    dst.mux(packet)
        except av.error.FFmpegError as exc:
            raise MediaError(f"'{out_path}': cannot write the scored video ({exc})") from None
    return out_path


def _format_for(path: Path) -> str | None:
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}.get(path.suffix.lower())


def _write_audio(dst, stream, music: np.ndarray, *, sr: int, start: float) -> None:
    import av

    planar = np.ascontiguousarray(music.T)  # [2, n]
    offset = int(round(max(start, 0.0) * sr))
    for i in range(0, planar.shape[1], AAC_FRAME):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar[:, i:i + AAC_FRAME]), format="fltp",
                                           layout="stereo")
        frame.sample_rate = sr
        frame.pts = offset + i
        for packet in stream.encode(frame):
            dst.mux(packet)
    for packet in stream.encode(None):
        dst.mux(packet)
