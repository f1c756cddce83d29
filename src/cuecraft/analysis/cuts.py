"""Streaming scene-cut detection from HSV histograms, with flash rejection by lookahead.

A frame is a cut *candidate* when its histogram differs from the previous frame's by more
than an adaptive threshold. A candidate is a flash, not a cut, when one of the next few
frames looks like the frame before the candidate again (the scene came back). Cuts closer
than a minimum scene length to the previous cut are dropped.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

import cv2
import numpy as np

from cuecraft.analysis.colour import check_frame
from cuecraft.checks import positive
from cuecraft.errors import ParameterError

__all__ = ["hsv_histogram", "histogram_distance", "CutDetector", "detect_cuts", "check_fps"]

_H_BINS, _S_BINS, _V_BINS = 16, 8, 8


def check_fps(fps: float) -> float:
    """Return ``fps`` as a float, or raise :class:`ParameterError` if it is not positive and finite."""
    return positive("fps", fps)


def hsv_histogram(hsv: np.ndarray) -> np.ndarray:
    """Concatenated hue, saturation and value histograms of an HSV frame.

    Parameters
    ----------
    hsv : np.ndarray
        ``[H, W, 3]`` uint8 frame from ``cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)``.

    Returns
    -------
    np.ndarray
        ``[16 + 8 + 8]`` float32. Each part is divided by the pixel count. Hue counts only
        pixels with some saturation and value, because the hue of grey or dark pixels is noise.
    """
    n = float(hsv.shape[0] * hsv.shape[1])
    chroma = cv2.inRange(hsv, (0, 40, 40), (180, 256, 256))
    h = cv2.calcHist([hsv], [0], chroma, [_H_BINS], [0, 180])
    s = cv2.calcHist([hsv], [1], None, [_S_BINS], [0, 256])
    v = cv2.calcHist([hsv], [2], None, [_V_BINS], [0, 256])
    return (np.concatenate([h, s, v]).ravel() / n).astype(np.float32)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Content distance in [0, 1] between two :func:`hsv_histogram` results (mean half-L1)."""
    return float(np.abs(a - b).sum()) / 6.0


class CutDetector:
    """Streaming cut detector over per-frame HSV histograms.

    Parameters
    ----------
    fps : float
        Frame rate of the frames fed to :meth:`update`.
    threshold : float
        Lowest histogram distance that can be a cut; the adaptive threshold never goes below it.
    min_scene : float
        Minimum time between two cuts, in seconds.
    lookahead : int
        Frames after a candidate that are compared with the frame before it (flash rejection).
        Decisions are therefore delayed by ``lookahead`` frames.
    """

    def __init__(self, *, fps: float, threshold: float = 0.3, min_scene: float = 0.3, lookahead: int = 3):
        self.fps = check_fps(fps)
        if not (0 < threshold < 1):
            raise ParameterError(f"threshold must be in (0, 1), got {threshold!r}")
        if not (math.isfinite(min_scene) and min_scene >= 0):
            raise ParameterError(f"min_scene must be >= 0 seconds, got {min_scene!r}")
        if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 1:
            raise ParameterError(f"lookahead must be an integer >= 1, got {lookahead!r}")
        self.threshold = float(threshold)
        self.min_gap = int(round(min_scene * self.fps))
        self.lookahead = lookahead
        self._recent: deque[float] = deque(maxlen=max(4, int(round(self.fps))))
        self._hists: deque[tuple[int, np.ndarray]] = deque(maxlen=lookahead + 1)
        self._pending: deque[tuple[int, float, np.ndarray]] = deque()
        self._index = -1
        self._skip_until = -1
        self._cuts: list[int] = []

    @property
    def cuts(self) -> list[int]:
        """Frame indices of the cuts decided so far (the first frame of each new scene)."""
        return list(self._cuts)

    def update(self, hist: np.ndarray) -> bool:
        """Add the histogram of the next frame.

        Parameters
        ----------
        hist : np.ndarray
            :func:`hsv_histogram` of the frame.

        Returns
        -------
        bool
            True when this frame differs abruptly from the previous one (a cut or a flash
            candidate): optical flow between the two frames is then meaningless.
        """
        self._index += 1
        jump = False
        if self._hists:
            prev = self._hists[-1][1]
            d = histogram_distance(prev, hist)
            # Scale the threshold with recent activity, so busy footage (fast pans, crowds)
            # does not produce a cut on every large but ordinary change.
            level = float(np.mean(self._recent)) if self._recent else 0.0
            jump = d > max(self.threshold, 0.1 + 3.0 * level)
            if jump:
                self._pending.append((self._index, d, prev))
            else:
                self._recent.append(d)
        self._hists.append((self._index, hist))
        self._decide(final=False)
        return jump

    def finish(self) -> list[int]:
        """Decide the remaining candidates with whatever lookahead is left; return all cut indices."""
        self._decide(final=True)
        return self.cuts

    def _decide(self, *, final: bool) -> None:
        while self._pending and (final or self._pending[0][0] + self.lookahead <= self._index):
            index, d, before = self._pending.popleft()
            if index <= self._skip_until:
                continue
            after = [(j, h) for j, h in self._hists if j > index]
            back = [j for j, h in after if histogram_distance(before, h) < min(self.threshold, 0.5 * d)]
            if back:
                # The scene before the candidate came back: a flash (or a glitch), not a cut.
                # Also ignore the jumps back into the scene, which are candidates too.
                self._skip_until = back[0]
                continue
            if self._cuts and index - self._cuts[-1] < self.min_gap:
                continue
            self._cuts.append(index)


def detect_cuts(frames: Iterable[tuple[float, np.ndarray]], *, fps: float, max_width: int = 160) -> np.ndarray:
    """Detect scene cuts in a stream of frames.

    Parameters
    ----------
    frames : iterable of (float, np.ndarray)
        ``(t, rgb)`` pairs in time order, ``rgb`` being ``[H, W, 3]`` uint8.
    fps : float
        Frame rate of the stream.
    max_width : int
        Frames are downscaled to at most this width before the histograms are taken.

    Returns
    -------
    np.ndarray
        Sorted cut times in seconds (time of the first frame of each new scene).
    """
    detector = CutDetector(fps=fps)
    times = []
    for t, rgb in frames:
        check_frame(rgb)
        h, w = rgb.shape[:2]
        if w > max_width:
            rgb = cv2.resize(rgb, (max_width, max(16, round(h * max_width / w))), interpolation=cv2.INTER_AREA)
        detector.update(hsv_histogram(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)))
        times.append(float(t))
    return np.asarray([times[i] for i in detector.finish()], dtype=np.float64)
