"""Video probing and streaming decode at an exact frame rate (PyAV, which bundles FFmpeg).

Frames are picked by presentation timestamp: output frame k shows the source frame on
screen at ``t_k = k / fps`` (the last frame whose timestamp is <= t_k). There is no
``int(fps)`` rounding anywhere, so variable-frame-rate and 29.97 fps sources stay in sync
over any length. Decoding streams: memory holds two frames, whatever the video's length.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from cuecraft.errors import MediaError, ParameterError
from cuecraft.io.files import check_input_file

# FFmpeg demuxers that read a single picture; such a file is a still image, not a video.
_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "gif", "tiff_pipe",
                  "jpegls_pipe", "pgm_pipe", "ppm_pipe", "svg_pipe", "qoi_pipe")
_DECODE_ERRORS: tuple[type[BaseException], ...] = (ValueError, IndexError, OSError, EOFError)


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds. ``width``/``height`` are as displayed (after rotation)."""

    path: Path
    duration: float       # seconds
    width: int
    height: int
    fps: float            # average frame rate of the source
    rotation: int         # display rotation in degrees (0, 90, 180, 270)
    has_audio: bool
    codec: str
    start_time: float     # timestamp of the first video frame, seconds


def _av():
    import av

    return av


def _open(path: Path):
    av = _av()
    try:
        return av.open(str(path))
    except av.error.FFmpegError as exc:
        raise MediaError(f"'{path}': not a readable video ({_reason(exc)})") from None
    except _DECODE_ERRORS as exc:
        raise MediaError(f"'{path}': not a readable video ({exc})") from None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _rotation_of(frame) -> int:
    rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
    return rotation if rotation in (0, 90, 180, 270) else 0


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video's duration, size, frame rate, rotation and audio presence.

    Decodes the first frame to check that the video stream is really decodable.

    Raises
    ------
    MediaError
        For a missing, empty, truncated or corrupt file, audio only, a still image,
        or zero duration, naming the file.
    """
    path = check_input_file(path, kind="video")
    av = _av()
    with _open(path) as container:
        fmt = container.format.name or ""
        if any(name in _IMAGE_FORMATS for name in fmt.split(",")):
            raise MediaError(f"'{path}': a still image ({fmt}), not a video")
        if not container.streams.video:
            kind = "audio only" if container.streams.audio else "no video stream"
            raise MediaError(f"'{path}': {kind}; a video is needed")
        stream = container.streams.video[0]
        try:
            first = next(container.decode(stream), None)
        except (av.error.FFmpegError, *_DECODE_ERRORS) as exc:
            raise MediaError(f"'{path}': cannot decode the video stream ({_reason(exc)})") from None
        if first is None:
            raise MediaError(f"'{path}': the video stream holds no frames")
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        if not math.isfinite(fps) or fps <= 0:
            fps = 25.0
        start = float(first.time or 0.0)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000 - max(start, 0.0)
        else:
            duration = 0.0
        if stream.frames and stream.frames <= 1 and duration <= 1.0 / fps + 1e-9:
            raise MediaError(f"'{path}': a single frame (still image), not a video")
        if not math.isfinite(duration) or duration <= 0:
            raise MediaError(f"'{path}': zero duration")
        rotation = _rotation_of(first)
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(path=path, duration=duration, width=width, height=height, fps=fps,
                         rotation=rotation, has_audio=bool(container.streams.audio),
                         codec=stream.codec_context.name, start_time=start)


def analysis_size(width: int, height: int, *, max_width: int) -> tuple[int, int]:
    """A smaller even size with the same aspect ratio (never upscaled)."""
    if max_width < 16:
        raise ParameterError(f"max_width = {max_width!r}: must be >= 16 pixels")
    scale = min(1.0, max_width / width)
    w = max(16, int(round(width * scale / 2)) * 2)
    h = max(16, int(round(height * scale / 2)) * 2)
    return w, h


def iter_frames(path: str | os.PathLike, *, fps: float, max_width: int = 256,
                info: VideoInfo | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(t, rgb)`` at exactly ``fps`` frames per second for the whole video.

    Parameters
    ----------
    path : video file
    fps : output frame rate (frames per second), any positive float
    max_width : frames are scaled down to at most this width (displayed orientation)
    info : the result of :func:`probe`, if already known

    Yields
    ------
    t : float, seconds from the first frame (``k / fps``)
    rgb : uint8 ``[H, W, 3]``, rotated as the video is displayed
    """
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise ParameterError(f"fps = {fps!r}: must be a finite frame rate > 0")
    info = info or probe(path)
    av = _av()
    n_out = max(1, int(math.ceil(info.duration * fps - 1e-9)))
    step = Fraction(fps).limit_denominator(1_000_000)
    w, h = analysis_size(info.width, info.height, max_width=max_width)
    if info.rotation in (90, 270):
        w, h = h, w  # scale in the coded orientation, then rotate

    from av.video.reformatter import Interpolation, VideoReformatter

    reformatter = VideoReformatter()  # one scaler for the stream: building one per frame costs 3x the decode

    def convert(frame) -> np.ndarray:
        rgb = reformatter.reformat(frame, width=w, height=h, format="rgb24",
                                   interpolation=Interpolation.AREA).to_ndarray()
        return np.ascontiguousarray(np.rot90(rgb, k=info.rotation // 90)) if info.rotation else rgb

    k = 0
    held = None            # the frame currently on screen (not yet converted)
    held_rgb = None
    with _open(info.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                t = float(frame.time) - info.start_time
                # Frames up to the new one's timestamp show the held frame.
                while k < n_out and held is not None and Fraction(k) / step < t - 1e-6:
                    if held_rgb is None:
                        held_rgb = convert(held)
                    yield float(Fraction(k) / step), held_rgb
                    k += 1
                held, held_rgb = frame, None
                if k >= n_out:
                    break
        except (av.error.FFmpegError, *_DECODE_ERRORS) as exc:
            if k == 0:
                raise MediaError(f"'{info.path}': cannot decode the video stream ({_reason(exc)})") from None
            # A damaged tail: keep what decoded and hold the last good frame to the end.
        if held is None:
            raise MediaError(f"'{info.path}': the video stream holds no frames")
        while k < n_out:
            if held_rgb is None:
                held_rgb = convert(held)
            yield float(Fraction(k) / step), held_rgb
            k += 1
