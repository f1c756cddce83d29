"""The streaming visual analyzer: cuts, impact envelope, visual beats and tempo, motion, colour.

Frames are fed one at a time; only a few small frames are kept (the previous grayscale
frame for flow and the cut detector's short lookahead). Everything else is a per-frame
scalar curve, so memory grows only by a few floats per frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields

import cv2
import numpy as np

from cuecraft.analysis.colour import check_frame, colour_stats
from cuecraft.analysis.cuts import CutDetector, check_fps, hsv_histogram
from cuecraft.analysis.motion import FlowTracker, impact_envelope, visual_beats, visual_tempo
from cuecraft.checks import positive
from cuecraft.errors import ParameterError

__all__ = ["VisualAnalysis", "FrameAnalyzer", "FrameCurves", "analyze_frames", "downscale", "ANALYSIS_WIDTH"]

# Flow, histograms and colour means are all taken at this width: enough for motion at the
# scale of objects, and it keeps the whole analysis well under 1 ms per frame.
ANALYSIS_WIDTH = 160


@dataclass(frozen=True)
class VisualAnalysis:
    """Everything the visual analysis found in a video.

    Attributes
    ----------
    fps : float
        Analysis frame rate.
    duration : float
        Video duration in seconds.
    times : np.ndarray
        ``[N]`` frame times in seconds.
    cuts : np.ndarray
        ``[C]`` sorted cut times in seconds (first frame of each new scene).
    impact : np.ndarray
        ``[N]`` optical-flow impact envelope, >= 0 with maximum 1 (all zeros without motion).
    visual_beats : np.ndarray
        ``[B]`` visual beat times in seconds.
    beat_strengths : np.ndarray
        ``[B]`` beat strengths in (0, 1].
    tempo : float
        Visual tempo in BPM, folded into [70, 140); 100 when there is no periodicity.
    motion : np.ndarray
        ``[N]`` mean flow magnitude in frame widths per second.
    brightness, saturation : np.ndarray
        ``[N]`` means in [0, 1].
    warmth : np.ndarray
        ``[N]`` mean ``(R - B) / 255`` in [-1, 1].
    """

    fps: float
    duration: float
    times: np.ndarray
    cuts: np.ndarray
    impact: np.ndarray
    visual_beats: np.ndarray
    beat_strengths: np.ndarray
    tempo: float
    motion: np.ndarray
    brightness: np.ndarray
    saturation: np.ndarray
    warmth: np.ndarray

    def to_dict(self) -> dict:
        """Return a JSON-friendly dict (floats and lists of floats), for saving and plotting."""
        out: dict = {}
        for field in fields(self):
            value = getattr(self, field.name)
            out[field.name] = value.tolist() if isinstance(value, np.ndarray) else float(value)
        return out


class FrameAnalyzer:
    """Streaming visual analysis: call :meth:`update` per frame, then :meth:`finish`.

    Parameters
    ----------
    fps : float
        Rate at which frames arrive (used for time constants such as the minimum scene
        length and the peak-picking windows).
    """

    def __init__(self, *, fps: float):
        self.fps = check_fps(fps)
        self._cuts = CutDetector(fps=self.fps)
        self._flow = FlowTracker(fps=self.fps)
        self._size: tuple[int, int] | None = None
        self._times: list[float] = []
        self._motion: list[float] = []
        self._decrease: list[float] = []
        self._brightness: list[float] = []
        self._saturation: list[float] = []
        self._warmth: list[float] = []

    def update(self, t: float, rgb: np.ndarray) -> None:
        """Analyse the next frame.

        Parameters
        ----------
        t : float
            Frame time in seconds; strictly increasing from call to call.
        rgb : np.ndarray
            ``[H, W, 3]`` uint8 RGB frame of any size (downscaled internally); the size must
            not change within one stream.

        Raises
        ------
        ParameterError
            If the frame is not ``[H, W, 3]`` uint8, or ``t`` is not finite or not increasing.
        """
        check_frame(rgb)
        try:
            t = float(t)
        except (TypeError, ValueError):
            raise ParameterError(f"t must be a number of seconds, got {t!r}") from None
        if not math.isfinite(t):
            raise ParameterError(f"t must be finite, got {t!r}")
        if self._times and t <= self._times[-1]:
            raise ParameterError(f"frame times must increase, got t={t!r} after t={self._times[-1]!r}")
        if self._size is None:
            self._size = rgb.shape[:2]
        elif rgb.shape[:2] != self._size:
            raise ParameterError(f"frame size changed mid-stream: {self._size} then {rgb.shape[:2]}")
        # OpenCV rejects negative strides (e.g. a BGR->RGB view made with [..., ::-1]).
        rgb = downscale(np.ascontiguousarray(rgb), width=ANALYSIS_WIDTH)
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        jump = self._cuts.update(hsv_histogram(hsv))
        dt = t - self._times[-1] if self._times else 1.0 / self.fps
        motion, decrease = self._flow.update(gray, dt=dt, reliable=not jump)
        if self._decrease:
            self._decrease[-1] = decrease  # see FlowTracker.update: belongs to the previous frame
        self._decrease.append(0.0)
        b, s, warm = colour_stats(rgb, hsv=hsv)
        self._times.append(t)
        self._motion.append(motion)
        self._brightness.append(b)
        self._saturation.append(s)
        self._warmth.append(warm)

    def curves(self) -> FrameCurves:
        """The per-frame curves so far and the cuts found, to finish elsewhere (a child process
        scans the frames, the parent finishes).

        Raises
        ------
        ParameterError
            If no frame was given.
        """
        if not self._times:
            raise ParameterError("no frames were analysed (0 frames given before finish())")
        return FrameCurves(fps=self.fps, times=np.asarray(self._times, dtype=np.float64),
                           cut_frames=np.asarray(self._cuts.finish(), dtype=np.int64),
                           motion=np.asarray(self._motion, dtype=np.float64),
                           decrease=np.asarray(self._decrease, dtype=np.float64),
                           brightness=np.asarray(self._brightness, dtype=np.float64),
                           saturation=np.asarray(self._saturation, dtype=np.float64),
                           warmth=np.asarray(self._warmth, dtype=np.float64))

    def finish(self, *, duration: float) -> VisualAnalysis:
        """Finish the analysis and return its results (:meth:`curves`, then :meth:`FrameCurves.finish`).

        Raises
        ------
        ParameterError
            If ``duration`` is invalid or no frame was given.
        """
        positive("duration", duration)
        return self.curves().finish(duration=duration)


@dataclass(frozen=True)
class FrameCurves:
    """The per-frame scan of a video (:meth:`FrameAnalyzer.curves`): plain arrays, cheap to pickle."""

    fps: float
    times: np.ndarray
    cut_frames: np.ndarray
    motion: np.ndarray
    decrease: np.ndarray
    brightness: np.ndarray
    saturation: np.ndarray
    warmth: np.ndarray

    def finish(self, *, duration: float) -> VisualAnalysis:
        """The impact envelope, visual beats and tempo from the curves.

        Parameters
        ----------
        duration : float
            Duration of the video in seconds (positive and finite).
        """
        duration = positive("duration", duration)
        env = impact_envelope(self.decrease, self.brightness, fps=self.fps, cut_frames=self.cut_frames)
        beat_frames, strengths = visual_beats(env, fps=self.fps)
        return VisualAnalysis(
            fps=self.fps,
            duration=duration,
            times=self.times,
            cuts=self.times[self.cut_frames],
            impact=env,
            visual_beats=self.times[beat_frames],
            beat_strengths=strengths,
            tempo=visual_tempo(env, fps=self.fps),
            motion=self.motion,
            brightness=self.brightness,
            saturation=self.saturation,
            warmth=self.warmth,
        )


def downscale(rgb: np.ndarray, *, width: int) -> np.ndarray:
    """Shrink a frame to at most ``width`` pixels wide, keeping the aspect ratio.

    Exact halvings (area average, cheap at a 2:1 ratio) bring the frame within 2x of the
    target, then one bilinear step finishes: as good as a single area resize at a fraction
    of its cost, which dominates the per-frame budget for large frames.
    """
    h, w = rgb.shape[:2]
    while w >= 2 * width:
        w, h = w // 2, max(16, h // 2)
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    if w > width:
        rgb = cv2.resize(rgb, (width, max(16, int(round(h * width / w)))), interpolation=cv2.INTER_LINEAR)
    return rgb


def analyze_frames(frames: Iterable[tuple[float, np.ndarray]], *, fps: float, duration: float) -> VisualAnalysis:
    """Run :class:`FrameAnalyzer` over a stream of frames.

    Parameters
    ----------
    frames : iterable of (float, np.ndarray)
        ``(t, rgb)`` pairs in time order; ``rgb`` is ``[H, W, 3]`` uint8.
    fps : float
        Rate of the frames.
    duration : float
        Video duration in seconds.

    Returns
    -------
    VisualAnalysis
    """
    analyzer = FrameAnalyzer(fps=fps)
    for t, rgb in frames:
        analyzer.update(t, rgb)
    return analyzer.finish(duration=duration)
