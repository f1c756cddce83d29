"""Synthetic videos with known visual events, for tests, the bundled example and benchmarks.

A scene is a textured background with a floor band and a bouncing ball. The events are:

- **cuts**: a new scene (new background colour and texture, new ball colour);
- **flashes**: a short white flash that returns to the same scene;
- **impacts**: the ball hits the floor, moving on a parabola between consecutive impacts,
  so its vertical velocity reverses sharply at each impact;
- **bursts**: intervals in which the background pans fast (smooth speed ramp up and down).

Frames are generated one at a time, so memory does not grow with the duration.
"""

from __future__ import annotations

import colorsys
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from cuecraft.checks import positive
from cuecraft.errors import CuecraftError, MediaError, OutputError, ParameterError
from cuecraft.io.files import atomic_path

__all__ = ["SyntheticEvents", "synthetic_frames", "write_synthetic_video", "example_events"]

# Peak pan speed in a burst, in frame widths per second. Fast enough to dominate the
# motion energy, slow enough (about 5 px per frame at 160 px wide) for optical flow.
_BURST_SPEED = 0.8
_FLOOR_FRACTION = 0.12
_BALL_RADIUS_FRACTION = 0.14
_APEX_FRACTION = 0.3


@dataclass(frozen=True)
class SyntheticEvents:
    """Known events of a synthetic video, all in seconds.

    Attributes
    ----------
    cuts : tuple of float
        Scene changes: new background colour and texture and a new ball colour.
    flashes : tuple of float
        Short white flashes (one full and one half-strength frame); the scene after a flash
        is the same as before, so a flash is not a cut.
    impacts : tuple of float
        Times the bouncing ball hits the floor.
    bursts : tuple of (float, float)
        ``(start, end)`` intervals of fast horizontal panning of the background.
    """

    cuts: tuple[float, ...] = ()
    flashes: tuple[float, ...] = ()
    impacts: tuple[float, ...] = ()
    bursts: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        for name in ("cuts", "flashes", "impacts"):
            values = tuple(float(v) for v in getattr(self, name))
            for i, v in enumerate(values):
                if not math.isfinite(v) or v < 0:
                    raise ParameterError(f"SyntheticEvents.{name}[{i}] must be finite and >= 0, got {v!r}")
            object.__setattr__(self, name, tuple(sorted(values)))
        bursts = []
        for i, pair in enumerate(self.bursts):
            try:
                start, end = (float(v) for v in pair)
                ok = math.isfinite(start) and math.isfinite(end) and 0 <= start < end
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ParameterError(f"SyntheticEvents.bursts[{i}] must be (start, end) with 0 <= start < end, got {pair!r}")
            bursts.append((start, end))
        object.__setattr__(self, "bursts", tuple(sorted(bursts)))


def _check_size(name: str, value: int, *, even: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 16:
        raise ParameterError(f"{name} must be an integer >= 16, got {value!r}")
    if even and value % 2:
        raise ParameterError(f"{name} must be even for yuv420p video, got {value!r}")
    return int(value)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def _tileable_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Zero-mean noise in [-1, 1] that wraps around horizontally (so panning can roll it).

    A 1/f spectrum like natural images, nothing finer than 1/48 of the width: flow finds
    features at every pyramid level, and none so fine that a fast pan aliases it.
    """
    white = rng.standard_normal((height, width))
    fy = np.fft.fftfreq(height)[:, None] * width  # cycles per frame width
    fx = np.fft.rfftfreq(width)[None, :] * width
    f = np.sqrt(fx**2 + fy**2)
    spectrum = np.fft.rfft2(white) / (f + 2.0) * np.exp(-((f / 48.0) ** 2))
    noise = np.fft.irfft2(spectrum, s=(height, width))
    noise -= noise.mean()
    return (noise / (np.abs(noise).max() + 1e-9)).astype(np.float32)


def _scene_image(seed: int, scene: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Background (uint8 HxWx3, floor included) and ball colour of scene number ``scene``."""
    rng = np.random.default_rng([seed, scene])
    # Golden-ratio hue steps keep consecutive scenes far apart in hue, so every cut is clear.
    hue = (np.random.default_rng(seed).random() + scene * 0.618034) % 1.0
    base = _hsv_to_rgb(hue, 0.45 + 0.35 * rng.random(), 0.4 + 0.35 * rng.random())
    floor = _hsv_to_rgb((hue + 0.5) % 1.0, 0.3, 0.25)
    noise = _tileable_noise(rng, height, width)
    img = base[None, None, :] * (1.0 + 0.45 * noise[..., None])
    floor_top = height - max(2, int(round(height * _FLOOR_FRACTION)))
    img[floor_top:] = floor[None, None, :] * (1.0 + 0.3 * noise[floor_top:, :, None])
    image = np.clip(img * 255.0, 0, 255).astype(np.uint8)
    ball = _contrasting(_hsv_to_rgb((hue + 0.33 + 0.3 * rng.random()) % 1.0, 0.9, 1.0), base)
    return image, ball * 255.0


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _contrasting(colour: np.ndarray, background: np.ndarray, *, gap: float = 0.35) -> np.ndarray:
    """Lighten or darken ``colour`` until its luma differs from the background's by ``gap``.

    Optical flow runs on grayscale, so a ball with a different hue but the same luma as the
    background would be invisible to it.
    """
    luma, bg = float(colour @ _LUMA), float(background @ _LUMA)
    if bg < 0.5 and luma < bg + gap:
        return colour + (1.0 - colour) * (min(1.0, bg + gap) - luma) / (1.0 - luma)  # toward white
    if bg >= 0.5 and luma > bg - gap:
        return colour * (max(0.0, bg - gap) / luma)  # toward black
    return colour


def _ball_sprite(radius: int, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    """Disc mask and shading of the ball, centred ``(dx, dy)`` pixels off the sprite centre.

    Sub-pixel positions matter: a ball snapped to whole pixels moves in jerks, each a small
    real deceleration for optical flow. The shading gives flow texture to track; it is not
    periodic, since a pattern moving over a period per frame makes flow lock on wrongly.
    """
    half = radius + 1
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    xx, yy = (xx - dx) / radius, (yy - dy) / radius
    r2 = xx**2 + yy**2
    mask = np.clip((1.0 - np.sqrt(r2)) * radius + 0.5, 0.0, 1.0)  # anti-aliased edge
    shade = 1.0 - 0.5 * r2 + 0.35 * np.exp(-((xx + 0.35) ** 2 + (yy + 0.35) ** 2) / 0.05)
    for cx, cy, amp in ((0.3, 0.1, -0.5), (-0.2, 0.45, -0.4), (0.1, -0.5, -0.3)):
        shade += amp * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.03)
    return mask[..., None], np.clip(shade, 0.15, 1.3)[..., None]


def _ball_height(t: float, impacts: tuple[float, ...]) -> float:
    """Height above the floor in units of the apex height (0 at impacts, 1 at the apex)."""
    if not impacts:
        return 0.0
    k = np.searchsorted(impacts, t, side="right")
    if 0 < k < len(impacts):
        t0, t1 = impacts[k - 1], impacts[k]
        s = (t - t0) / (t1 - t0)
        return 4.0 * s * (1.0 - s)
    if k == 0:
        # Hanging at the apex, then falling freely into the first impact (no velocity jump).
        half = 0.5 * ((impacts[1] - impacts[0]) if len(impacts) > 1 else 1.0)
        s = min(1.0, (impacts[0] - t) / half)
        return 1.0 - (1.0 - s) ** 2
    return 0.0  # resting on the floor after the last impact


def _pan_offset(t: float, bursts: tuple[tuple[float, float], ...]) -> float:
    """Background pan offset in frame widths; speed follows sin^2 inside each burst."""
    offset = 0.0
    for start, end in bursts:
        length = end - start
        u = min(max(t - start, 0.0), length)
        offset += _BURST_SPEED * (u / 2.0 - length / (4.0 * math.pi) * math.sin(2.0 * math.pi * u / length))
    return offset


def synthetic_frames(
    *, duration: float, fps: float, width: int, height: int, events: SyntheticEvents, seed: int = 0
) -> Iterator[tuple[float, np.ndarray]]:
    """Generate the frames of a synthetic video with known events.

    Parameters
    ----------
    duration : float
        Length in seconds; frames are produced for every ``t = i / fps < duration``.
    fps : float
        Frame rate.
    width, height : int
        Frame size in pixels (each at least 16).
    events : SyntheticEvents
        The cuts, flashes, impacts and bursts to render.
    seed : int
        Seed of the scene colours and textures.

    Yields
    ------
    t : float
        Frame time in seconds, ``i / fps``.
    frame : np.ndarray
        ``[height, width, 3]`` uint8 RGB frame.

    Raises
    ------
    ParameterError
        If ``duration`` or ``fps`` is not positive and finite, or a size is invalid.
    """
    duration = positive("duration", duration)
    fps = positive("fps", fps)
    width = _check_size("width", width, even=False)
    height = _check_size("height", height, even=False)
    if not isinstance(events, SyntheticEvents):
        raise ParameterError(f"events must be a SyntheticEvents, got {type(events).__name__}")
    return _generate(duration, fps, width, height, events, int(seed))


def _generate(duration, fps, width, height, events, seed):
    n_frames = int(math.ceil(duration * fps - 1e-9))
    radius = max(3, int(round(height * _BALL_RADIUS_FRACTION)))
    floor_top = height - max(2, int(round(height * _FLOOR_FRACTION)))
    apex = _APEX_FRACTION * height
    cuts = np.asarray(events.cuts, dtype=np.float64)
    # Flash strength per frame: full on the first frame at/after the flash, half on the next.
    flash_strength: dict[int, float] = {}
    for f in events.flashes:
        first = int(math.ceil(f * fps - 1e-9))
        flash_strength[first] = max(flash_strength.get(first, 0.0), 0.85)
        flash_strength[first + 1] = max(flash_strength.get(first + 1, 0.0), 0.45)
    scene_index, background, ball_colour = -1, None, None
    for i in range(n_frames):
        t = i / fps
        scene = int(np.searchsorted(cuts, t + 1e-9, side="right"))
        if scene != scene_index:
            # Only the current scene's texture is kept: memory stays flat over long videos.
            background, ball_colour = _scene_image(seed, scene, height, width)
            scene_index = scene
        frame = _panned(background, _pan_offset(t, events.bursts) * width)
        # A slow sideways sway keeps the ball from sitting in one place for the whole video.
        x = width * (0.5 + 0.25 * math.sin(2.0 * math.pi * t / 7.0))
        y = floor_top - radius - apex * _ball_height(t, events.impacts)
        cx, cy = int(round(x)), int(round(y))
        mask, shade = _ball_sprite(radius, x - cx, y - cy)
        _paste(frame, mask, np.minimum(shade * ball_colour, 255.0), cx, cy)
        strength = flash_strength.get(i)
        if strength:
            frame = (frame * (1.0 - strength) + 255.0 * strength).astype(np.uint8)
        yield t, frame


def _panned(background: np.ndarray, shift: float) -> np.ndarray:
    """The background moved ``shift`` pixels to the left, wrapping around, sub-pixel accurate
    (a pan rounded to whole pixels stutters, and each stutter is a deceleration for flow)."""
    if shift == 0.0:
        return background.copy()
    h, w = background.shape[:2]
    matrix = np.array([[1.0, 0.0, -(shift % w)], [0.0, 1.0, 0.0]], dtype=np.float64)
    return cv2.warpAffine(background, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def _paste(frame: np.ndarray, mask: np.ndarray, colour: np.ndarray, cx: int, cy: int) -> None:
    h, w = frame.shape[:2]
    radius = mask.shape[0] // 2
    y0, y1 = cy - radius, cy + radius + 1
    x0, x1 = cx - radius, cx + radius + 1
    sy0, sx0 = max(0, -y0), max(0, -x0)
    sy1 = mask.shape[0] - max(0, y1 - h)
    sx1 = mask.shape[1] - max(0, x1 - w)
    if sy1 <= sy0 or sx1 <= sx0:
        return
    region = frame[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
    m = mask[sy0:sy1, sx0:sx1]
    region[...] = (region * (1.0 - m) + colour[sy0:sy1, sx0:sx1] * m).astype(np.uint8)


def write_synthetic_video(
    path: str | os.PathLike, *, duration: float, fps: float, width: int, height: int, events: SyntheticEvents,
    seed: int = 0, audio: bool = False, sample_rate: int = 44100,
) -> None:
    """Write a synthetic video (H.264 or MPEG-4, yuv420p) atomically, frame by frame.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; the container is chosen from its extension (e.g. ``.mp4``, ``.mkv``).
        An existing file is replaced.
    duration, fps, width, height, events, seed
        As in :func:`synthetic_frames`; ``width`` and ``height`` must be even.
    audio : bool
        Add an AAC stream with a quiet 440 Hz tone (lets muxing tests check that existing
        audio is replaced).
    sample_rate : int
        Sample rate of the audio stream.

    Raises
    ------
    ParameterError
        If a parameter is invalid.
    MediaError
        If the video cannot be encoded (e.g. unknown container extension).
    OutputError
        If the output directory does not exist or cannot be written.
    """
    import av

    fps = positive("fps", fps)
    width = _check_size("width", width, even=True)
    height = _check_size("height", height, even=True)
    sample_rate = positive("sample_rate", sample_rate)
    if sample_rate != int(sample_rate):
        raise ParameterError(f"sample_rate must be a whole number of Hz, got {sample_rate!r}")
    frames = synthetic_frames(duration=duration, fps=fps, width=width, height=height, events=events, seed=seed)
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"output directory does not exist: {str(path.parent)!r}")
    # A Fraction keeps NTSC rates exact (30000/1001) instead of drifting like int(fps).
    rate = Fraction(fps).limit_denominator(1001)
    try:
        with atomic_path(path) as tmp, av.open(str(tmp), mode="w") as container:
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"  # wheels without x264
            vstream = container.add_stream(codec, rate=rate)
            vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
            vstream.codec_context.time_base = 1 / rate
            if vstream.codec_context.name == "libx264":
                vstream.codec_context.options = {"preset": "ultrafast", "crf": "20"}
            else:
                vstream.codec_context.bit_rate = 4_000_000
            astream = container.add_stream("aac", rate=int(sample_rate)) if audio else None
            if astream is not None:
                astream.layout = "mono"
            n_audio = 0
            for i, (t, rgb) in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = i
                container.mux(vstream.encode(frame))
                if astream is not None:
                    n_audio = _write_audio(container, astream, n_audio, int(round((t + 1 / fps) * sample_rate)))
            container.mux(vstream.encode(None))
            if astream is not None:
                container.mux(astream.encode(None))
    except CuecraftError:
        raise
    except (av.FFmpegError, ValueError) as exc:  # PyAV raises ValueError for an unknown container
        raise MediaError(f"cannot encode synthetic video {str(path)!r}: {exc}") from exc
    except OSError as exc:
        raise OutputError(f"cannot write synthetic video {str(path)!r}: {exc}") from exc


def _write_audio(container, stream, start: int, stop: int) -> int:
    """Encode the tone from sample ``start`` up to ``stop`` in AAC-sized (1024) frames."""
    import av

    sr = stream.codec_context.sample_rate
    while start + 1024 <= stop:
        n = np.arange(start, start + 1024)
        tone = (0.05 * np.sin(2.0 * np.pi * 440.0 * n / sr)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(tone[None, :], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = sr, start
        container.mux(stream.encode(frame))
        start += 1024
    return start


def example_events(duration: float) -> SyntheticEvents:
    """Events of the bundled example and the benchmarks, scaled to any duration.

    Ball impacts every 0.5 s (120 BPM) starting at 0.5 s, a cut about every 4 s (every
    other cut falls between impacts, to exercise tempo warping), a flash every 8 s away
    from cuts, and a 1.5 s fast-panning burst every 20 s.

    Parameters
    ----------
    duration : float
        Length of the video in seconds.

    Returns
    -------
    SyntheticEvents
    """
    duration = positive("duration", duration)
    impacts = tuple(np.round(np.arange(0.5, duration - 0.25, 0.5), 6))
    # Alternate on-grid cuts with cuts 0.19 s off the impact grid.
    cuts = [round(float(c) + 0.19 * (k % 2), 6) for k, c in enumerate(np.arange(4.0, duration - 1.0, 4.0))]
    # Flashes and bursts sit mid-scene (about 2 s from the nearest cut), so they never mask a cut.
    flashes = tuple(round(float(f), 6) for f in np.arange(6.3, duration - 0.5, 8.0))
    bursts = tuple((round(float(s), 6), round(float(s) + 1.5, 6)) for s in np.arange(9.0, duration - 2.0, 20.0))
    return SyntheticEvents(cuts=tuple(cuts), flashes=flashes, impacts=impacts, bursts=bursts)
