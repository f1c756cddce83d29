"""Put music into a video: the video stream is copied as is, the music is encoded as AAC.

Everything streams: the music is read block by block (from an array or a WAV file) and
interleaved with the copied video packets, so memory does not grow with the video's length.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from cuecraft.errors import MediaError, ParameterError
from cuecraft.io.files import atomic_path, check_input_file
from cuecraft.io.video import VideoInfo, probe

AAC_FRAME = 1024
BLOCK = 64 * AAC_FRAME          # samples per music block (~1.5 s at 44.1 kHz)
ORIGINAL_GAIN = 0.7             # level of the video's own audio under the music (--keep-audio)
AUDIO_LEAD = 0.5                # seconds of audio muxed ahead of each video packet


def _stereo(block: np.ndarray) -> np.ndarray:
    block = np.asarray(block, dtype=np.float32)
    if block.ndim == 1:
        block = block[:, None]
    if block.ndim != 2 or block.shape[1] not in (1, 2):
        raise ParameterError(f"music must be [n] or [n, 1|2], got shape {block.shape}")
    if block.shape[1] == 1:
        block = np.repeat(block, 2, axis=1)
    if not np.all(np.isfinite(block)):
        raise ParameterError("music contains NaN or Inf")
    return block


def _music_blocks(music: np.ndarray | str | os.PathLike | Iterable[np.ndarray], *, sr: int) -> Iterator[np.ndarray]:
    if isinstance(music, Iterator):  # blocks as they are made (e.g. streamed from another process)
        for block in music:
            yield _stereo(block)
        return
    if isinstance(music, (str, os.PathLike)):
        import soundfile as sf

        path = check_input_file(music, kind="audio")
        try:
            with sf.SoundFile(str(path)) as f:
                if f.samplerate != sr:
                    raise MediaError(f"'{path}': sample rate {f.samplerate} Hz, expected {sr} Hz")
                while True:
                    block = f.read(BLOCK, dtype="float32", always_2d=True)
                    if not len(block):
                        return
                    yield _stereo(block)
        except sf.LibsndfileError as exc:
            raise MediaError(f"'{path}': cannot read the music ({exc})") from None
    music = np.asarray(music)
    if music.ndim not in (1, 2) or len(music) == 0:
        raise ParameterError(f"music must be [n] or [n, 1|2] with n > 0, got shape {music.shape}")
    for start in range(0, len(music), BLOCK):
        yield _stereo(music[start:start + BLOCK])


def _original_blocks(info: VideoInfo, *, sr: int) -> Iterator[np.ndarray]:
    """The video's own audio, stereo float32 at ``sr``, in decoder-sized blocks."""
    import av

    with av.open(str(info.path)) as container:
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=sr)
        try:
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    yield out.to_ndarray().T
        except av.error.FFmpegError:
            return  # a damaged audio tail: the music continues alone


class _Samples:
    """Pull exact numbers of samples from a stream of blocks."""

    def __init__(self, blocks: Iterator[np.ndarray]) -> None:
        self._blocks, self._buffer = blocks, np.zeros((0, 2), np.float32)

    def take(self, n: int, *, pad: bool) -> np.ndarray:
        """The next ``n`` samples; after the stream ends, zeros (``pad``) or fewer samples."""
        if len(self._buffer) >= n:  # a view, not a copy: blocks may be far longer than n
            out, self._buffer = self._buffer[:n], self._buffer[n:]
            return out
        parts, have = [self._buffer], len(self._buffer)
        while have < n:
            block = next(self._blocks, None)
            if block is None:
                if pad:
                    parts.append(np.zeros((n - have, 2), np.float32))
                break
            parts.append(block)
            have += len(block)
        joined = np.concatenate(parts)
        self._buffer = joined[n:]
        return joined[:n]


def soft_clip(x: np.ndarray, *, knee: float = 0.9) -> np.ndarray:
    """Identity below ``knee``, a smooth tanh shoulder above it, never beyond 1."""
    mag = np.abs(x)
    over = mag > knee
    if over.any():
        x = x.copy()
        x[over] = np.sign(x[over]) * (knee + (1 - knee) * np.tanh((mag[over] - knee) / (1 - knee)))
    return x


def mux_music(video_path: str | os.PathLike, music: np.ndarray | str | os.PathLike | Iterator[np.ndarray],
              out_path: str | os.PathLike, *,
              sr: int, keep_audio: bool = False, bitrate: int = 192_000, info: VideoInfo | None = None) -> Path:
    """Write ``out_path``: the video's stream copied without re-encoding plus ``music`` as AAC.

    Parameters
    ----------
    video_path : source video (never modified)
    music : float ``[n]`` / ``[n, 2]`` array in [-1, 1], a WAV file, or an iterator of such
        blocks, at ``sr`` Hz; it starts with the first video frame
    out_path : an MP4 (or MOV/MKV) path; written atomically
    sr : sample rate of ``music`` in Hz
    keep_audio : mix the video's existing audio under the music instead of replacing it
    info : the video's :func:`probe` result, if already known
    """
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        _mux_into(tmp, video_path, music, name=out_path, sr=sr, keep_audio=keep_audio, bitrate=bitrate, info=info)
    return out_path


def mux_streamed(blocks: Iterator[np.ndarray], video_path: str | os.PathLike, out_path: str | os.PathLike, *,
                 sr: int, keep_audio: bool = False, bitrate: int = 192_000, info: VideoInfo | None = None) -> Path:
    """:func:`mux_music` of music ``blocks`` as they come, first in its arguments, for
    :func:`cuecraft.parallel.stream`: a child process encodes the music while its parent makes
    the next block. ``out_path`` is written in place, not atomically: it must be the caller's
    own temporary file (an :class:`~cuecraft.io.files.OutputSet` temp), which the caller removes
    if anything fails."""
    out_path = Path(out_path)
    _mux_into(out_path, video_path, iter(blocks), name=out_path, sr=sr, keep_audio=keep_audio, bitrate=bitrate,
              info=info)
    return out_path


def _mux_into(path: Path, video_path, music, *, name: Path, sr: int, keep_audio: bool, bitrate: int,
              info: VideoInfo | None) -> None:
    """Write the scored video to ``path`` (a temporary file or the output); ``name`` is the output's
    own path, whose suffix picks the container and which errors name."""
    import av

    info = info or probe(video_path)
    blocks = _music_blocks(music, sr=sr)
    if keep_audio and info.has_audio:
        blocks = _mixed(blocks, _Samples(_original_blocks(info, sr=sr)))
    try:
        with av.open(str(info.path)) as src, av.open(str(path), "w", format=_format_for(name)) as dst:
            vin = src.streams.video[0]
            vout = dst.add_stream_from_template(vin)
            # ffmpeg's "fast" AAC coder: half the encode time of "twoloop", and its authors found
            # it sounds better at high bitrates (ffmpeg commit fcb681ac, 2018) such as our 192k.
            aout = dst.add_stream("aac", rate=sr, layout="stereo", options={"aac_coder": "fast"})
            aout.bit_rate = bitrate
            audio = _AudioWriter(dst, aout, blocks, sr=sr, start=info.start_time)
            for packet in src.demux(vin):
                if packet.dts is None:
                    continue
                if packet.pts is not None and packet.time_base is not None:
                    audio.write_until(float(packet.pts * packet.time_base) - info.start_time + AUDIO_LEAD)
                packet.stream = vout
                dst.mux(packet)
            audio.write_until(None)
    except av.error.FFmpegError as exc:
        raise MediaError(f"'{name}': cannot write the scored video ({exc})") from None


def _mixed(music: Iterator[np.ndarray], original: _Samples) -> Iterator[np.ndarray]:
    for block in music:
        yield soft_clip(block + ORIGINAL_GAIN * original.take(len(block), pad=True))


def _format_for(path: Path) -> str | None:
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}.get(path.suffix.lower())


class _AudioWriter:
    """Encodes the music as AAC frames on demand, so audio and video packets interleave."""

    def __init__(self, dst, stream, blocks: Iterator[np.ndarray], *, sr: int, start: float) -> None:
        self._dst, self._stream, self._sr = dst, stream, sr
        self._samples = _Samples(blocks)
        self._done = False
        self._written = 0
        self._offset = int(round(max(start, 0.0) * sr))

    def write_until(self, seconds: float | None) -> None:
        """Encode music up to ``seconds`` (None: all of it, then flush the encoder)."""
        import av

        target = None if seconds is None else int(seconds * self._sr)
        while not self._done and (target is None or self._written < target):
            samples = self._samples.take(AAC_FRAME, pad=False)
            if len(samples) < AAC_FRAME:
                self._done = True
                if not len(samples):
                    break
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T), format="fltp", layout="stereo")
            frame.sample_rate = self._sr
            frame.pts = self._offset + self._written
            for packet in self._stream.encode(frame):
                self._dst.mux(packet)
            self._written += len(samples)
        if seconds is None:
            for packet in self._stream.encode(None):
                self._dst.mux(packet)
