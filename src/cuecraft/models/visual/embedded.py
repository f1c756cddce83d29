"""The embedded visual encoder: three levels of per-second tokens without pretrained weights.

Frames are decoded at 8 fps and analysed at 160 px wide (OpenCV). Motion is measured
between consecutive samples (DIS optical flow, 1/8 s apart) and averaged over each second,
so a token says how much moved during its whole second, not at one instant. Still-image
statistics come from the frame at the second's centre ``i + 0.5`` (see ``base``).

Every value is scaled to roughly unit size: colours to [-1, 1], spreads and edges by fixed
factors, speeds (frame widths per second) by ``log1p(4 v) / log(5)`` (0 -> 0, 1 -> 1).

Patch level ``[T, grid*grid, 12]``, row-major cells of a ``grid x grid`` (default 8x8)
partition of the frame (:data:`PATCH_FEATURES`):

- ``red, green, blue``: cell mean colour, ``2x - 1``;
- ``saturation, value``: cell mean HSV saturation and value, ``2x - 1``;
- ``value_std``: spread of value in the cell (texture / local contrast), x4;
- ``edges``: mean Sobel gradient magnitude (grey levels per pixel, 0..1), x4;
- ``edge_orientation``: ``(|gx| - |gy|) / (|gx| + |gy|)``: +1 vertical edges, -1 horizontal;
- ``motion``: mean optical-flow speed over the second (squashed);
- ``motion_x, motion_y``: mean flow velocity over the second (signed, squashed);
- ``change``: mean absolute grey-level difference between consecutive samples, x4.

Frame level ``[T, 35]`` (:data:`FRAME_FEATURES`): colour means (``2x - 1``) and spreads (x3),
``brightness``/``saturation`` (``2x - 1``), ``warmth`` (mean ``(R - B)``, x2), ``contrast``
(spread of value, x3), ``colourfulness`` (Hasler-Suesstrunk on a 0..1 scale, x2),
``edges`` (x4) and ``edge_density`` (fraction of pixels with gradient > 0.1); motion over
the second: ``motion`` (mean speed), ``motion_peak`` (fastest 1/8 s step),
``camera_x, camera_y`` (median flow, i.e. pan), ``object_motion`` (speed after removing the
pan), all squashed; ``change`` (mean grey difference between samples, x4), ``flash``
(largest one-step brightness rise, x4), ``content_change`` (HSV histogram distance,
0..1, from the previous second's centre frame), ``cut`` (1 if a scene cut falls in the
second); a coarse histogram: ``hue_0..hue_7`` (fractions of pixels that are chromatic and
in each 45-degree hue sector), ``grey`` (achromatic fraction), ``value_0..value_3``.

Context level ``[T, 20]`` (:data:`CONTEXT_FEATURES`), over the seconds ``i-2 .. i+2``
(truncated at the ends) unless marked ``_long`` (``i-8 .. i+8``): mean/std/max of frame
motion, mean/std of brightness, mean saturation, warmth, change, content change, camera
speed and edges, ``cut_rate`` (cuts per second in the window, x2), ``motion_trend`` and
``brightness_trend`` (mean of the two seconds after minus the two before), ``since_cut`` and
``until_cut`` (seconds from the centre to the previous/next cut or the video's ends,
capped at 4 s, /4), and long-window motion, brightness, cut rate and change.

Cuts come from :class:`cuecraft.analysis.cuts.CutDetector` (flashes are rejected); the
flow step into a cut or flash is skipped, as flow across a jump is meaningless.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np
import torch

from cuecraft.analysis.cuts import CutDetector, histogram_distance, hsv_histogram
from cuecraft.errors import ParameterError
from cuecraft.models.visual.base import (VisualDims, VisualEncoder, VisualFeatures, check_sample_fps,
                                         checked_samples, decode_samples, n_seconds)

__all__ = ["EmbeddedEncoder", "PATCH_FEATURES", "FRAME_FEATURES", "CONTEXT_FEATURES"]

PATCH_FEATURES = ("red", "green", "blue", "saturation", "value", "value_std", "edges", "edge_orientation",
                  "motion", "motion_x", "motion_y", "change")
_STILL_FRAME = ("red", "green", "blue", "red_std", "green_std", "blue_std", "brightness", "saturation",
                "warmth", "contrast", "colourfulness", "edges", "edge_density")
_MOTION_FRAME = ("motion", "motion_peak", "camera_x", "camera_y", "object_motion", "change", "flash",
                 "content_change", "cut")
_HIST_FRAME = tuple(f"hue_{b}" for b in range(8)) + ("grey",) + tuple(f"value_{b}" for b in range(4))
FRAME_FEATURES = _STILL_FRAME + _MOTION_FRAME + _HIST_FRAME
CONTEXT_FEATURES = ("motion_mean", "motion_std", "motion_max", "brightness_mean", "brightness_std",
                    "saturation_mean", "warmth_mean", "change_mean", "content_change_mean", "camera_speed_mean",
                    "edges_mean", "cut_rate", "motion_trend", "brightness_trend", "since_cut", "until_cut",
                    "motion_mean_long", "brightness_mean_long", "cut_rate_long", "change_mean_long")
_F = {name: i for i, name in enumerate(FRAME_FEATURES)}

_SHORT, _LONG = 2, 8          # context half-widths, seconds
_CUT_HORIZON = 4.0            # since/until_cut saturate here, seconds
_EDGE_THRESHOLD = 0.1         # gradient (grey levels per pixel, 0..1) that counts as an edge
_DIS_MIN_SIDE = 32            # DIS (ultrafast) crashes OpenCV on shorter sides


def _squash(x):
    """Speed in frame widths per second to roughly unit scale, keeping the sign."""
    return np.sign(x) * np.log1p(4.0 * np.abs(x)) / math.log(5.0)


def _norm(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Elementwise ``hypot``. cv2.magnitude is avoided: its SIMD and scalar paths round
    differently and which one a pixel takes depends on buffer alignment, so the same video
    gave tokens differing in the last bit from run to run."""
    return np.sqrt(x * x + y * y)


def _cells(maps: np.ndarray, grid: int) -> np.ndarray:
    """Per-cell means of ``[H, W]`` or ``[H, W, C]`` maps -> ``[grid, grid, C]``; ``grid`` divides H and W.

    A plain reshape-and-mean: unlike a BLAS product it sums in a fixed order, so the
    tokens are bitwise reproducible.
    """
    if maps.ndim == 2:
        maps = maps[..., None]
    h, w, c = maps.shape
    return maps.reshape(grid, h // grid, grid, w // grid, c).mean(axis=(1, 3))


class EmbeddedEncoder(VisualEncoder):
    """Hand-made per-second visual tokens from colour, edges, optical flow and cuts.

    Parameters
    ----------
    grid : int
        Cells per side of the patch grid; ``grid * grid`` patches (8 -> 64, which 2x2
        stride-2 pooling halves cleanly).
    width : int
        Analysis width in pixels (>= 32); frames are resized to it, keeping the aspect ratio.
    fps : int
        Sampling rate, an even integer so each second's centre is a sample.

    Deterministic: the same video always gives the same tensors.
    """

    name = "embedded"

    def __init__(self, *, grid: int = 8, width: int = 160, fps: int = 8):
        if isinstance(grid, bool) or not isinstance(grid, int) or not 1 <= grid <= 32:
            raise ParameterError(f"grid = {grid!r}: must be an integer in [1, 32]")
        if isinstance(width, bool) or not isinstance(width, int) or not 32 <= width <= 1024:
            raise ParameterError(f"width = {width!r}: must be an integer number of pixels in [32, 1024]")
        self.grid, self.width, self.fps = grid, width, check_sample_fps(fps)

    @property
    def dims(self) -> VisualDims:
        return VisualDims(n_patches=self.grid * self.grid, patch=len(PATCH_FEATURES), frame=len(FRAME_FEATURES),
                          context=len(CONTEXT_FEATURES))

    def encode(self, path, *, progress: bool = False) -> VisualFeatures:
        """Tokens of the video at ``path``.

        Parameters
        ----------
        path : str or os.PathLike
            Video file.
        progress : bool
            Show a tqdm bar over the decoded frames.

        Returns
        -------
        VisualFeatures
            patch ``[T, grid*grid, 12]``, frame ``[T, 35]``, context ``[T, 20]``, ``T = ceil(duration)``.

        Raises
        ------
        MediaError
            For a missing or unreadable video.
        """
        duration, frames = decode_samples(path, fps=self.fps, max_width=self.width, progress=progress,
                                          desc="embedded visual features")
        return self.encode_frames(frames, duration=duration)

    def encode_frames(self, frames: Iterable[tuple[float, np.ndarray]], *, duration: float) -> VisualFeatures:
        """Tokens of already decoded frames: ``(t, rgb)`` at exactly ``fps`` from ``t = 0``.

        Raises
        ------
        ParameterError
            For a bad ``duration``, wrong timestamps, non-RGB frames or too few frames.
        """
        state = _Analysis(n_seconds(duration), grid=self.grid, width=self.width, fps=self.fps)
        for k, i, rgb in checked_samples(frames, fps=self.fps, duration=duration):
            state.add(k, i, rgb)
        patch, frame, context = state.finish(duration)
        return VisualFeatures(patch=torch.from_numpy(patch), frame=torch.from_numpy(frame),
                              context=torch.from_numpy(context), duration=float(duration), encoder=self.name)


class _Analysis:
    """Streaming per-second accumulators; memory is a few small frames plus ``O(T)`` numbers."""

    def __init__(self, T: int, *, grid: int, width: int, fps: int):
        self.T, self.grid, self.width, self.fps = T, grid, width, fps
        self.size: tuple[int, int] | None = None            # (w, h) fixed by the first frame
        self.still_cells = np.zeros((T, grid, grid, 8), np.float32)    # red .. edge_orientation
        self.motion_cells = np.zeros((T, grid, grid, 3), np.float32)   # speed, vx, vy sums
        self.change_cells = np.zeros((T, grid, grid), np.float32)
        self.frame = np.zeros((T, len(FRAME_FEATURES)), np.float32)
        self.flow_steps = np.zeros(T, np.int64)
        self.diff_steps = np.zeros(T, np.int64)
        self.hists = [None] * T
        self.has_centre = np.zeros(T, bool)
        self.cuts = CutDetector(fps=fps)
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self.prev: tuple[np.ndarray, float] | None = None    # (grey, brightness) of the previous sample
        self.last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _resize(self, rgb: np.ndarray) -> np.ndarray:
        if self.size is None:
            # Sides are multiples of the grid so that cells are whole pixels (see _cells);
            # the aspect ratio changes by at most half a cell.
            h, w = rgb.shape[:2]
            g = self.grid

            def side(x: float) -> int:
                return max(g * math.ceil(_DIS_MIN_SIDE / g), g * int(round(x / g)))

            self.size = (side(self.width), side(min(h * self.width / w, 4 * self.width)))
        if rgb.shape[1::-1] == self.size:
            return rgb
        shrink = rgb.shape[1] > self.size[0]
        return cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)

    def add(self, k: int, i: int, rgb: np.ndarray) -> None:
        rgb = self._resize(rgb)
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        hist = hsv_histogram(hsv)
        jump = self.cuts.update(hist)
        brightness = cv2.mean(hsv)[2] / 255.0
        if self.prev is not None:
            self._step(i, grey, brightness, jump)
        self.prev = (grey, brightness)
        self.last = (rgb, hsv, grey)
        if k == i * self.fps + self.fps // 2:
            self._still(i, rgb, hsv, grey, hist)

    def _step(self, i: int, grey: np.ndarray, brightness: float, jump: bool) -> None:
        """One 1/fps step from the previous sample, filed under the second of the new sample."""
        prev_grey, prev_brightness = self.prev
        f = self.frame[i]
        diff = cv2.absdiff(grey, prev_grey).astype(np.float32) / 255.0       # [H, W]
        self.change_cells[i] += _cells(diff, self.grid)[..., 0]
        f[_F["change"]] += float(diff.mean())
        f[_F["flash"]] = max(f[_F["flash"]], brightness - prev_brightness)
        self.diff_steps[i] += 1
        if jump:
            return
        # Frame widths per second, so speeds do not depend on the analysis size or the fps.
        flow = self.dis.calc(prev_grey, grey, None) * (self.fps / grey.shape[1])   # [H, W, 2]
        speed = _norm(flow[..., 0], flow[..., 1])                                  # [H, W]
        self.motion_cells[i] += _cells(np.dstack([speed, flow]), self.grid)
        pan = np.median(flow[::2, ::2].reshape(-1, 2), axis=0)   # robust to small moving objects
        residual = flow - pan.astype(np.float32)
        motion = float(speed.mean())
        f[_F["motion"]] += motion
        f[_F["motion_peak"]] = max(f[_F["motion_peak"]], motion)
        f[_F["camera_x"]] += float(pan[0])
        f[_F["camera_y"]] += float(pan[1])
        f[_F["object_motion"]] += float(_norm(residual[..., 0], residual[..., 1]).mean())
        self.flow_steps[i] += 1

    def _still(self, i: int, rgb: np.ndarray, hsv: np.ndarray, grey: np.ndarray, hist: np.ndarray) -> None:
        """Colour, edge and histogram statistics of second ``i``'s centre frame."""
        colour = rgb.astype(np.float32) / 255.0                              # [H, W, 3]
        sat, val = (hsv[..., c].astype(np.float32) / 255.0 for c in (1, 2))
        g = grey.astype(np.float32) / 255.0
        # A 3x3 Sobel's weights sum to 4 on each side: /4 gives grey levels per pixel.
        gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) / 4.0
        gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) / 4.0
        grad = _norm(gx, gy)
        ax, ay = np.abs(gx), np.abs(gy)
        maps = np.dstack([colour, sat, val, val * val, grad, ax, ay])        # [H, W, 9]
        c = _cells(maps, self.grid)                                          # [G, G, 9]
        spread = np.sqrt(np.maximum(c[..., 5] - c[..., 4] ** 2, 0.0))
        orientation = (c[..., 7] - c[..., 8]) / (c[..., 7] + c[..., 8] + 1e-3)
        self.still_cells[i] = np.dstack([2 * c[..., :5] - 1, 4 * spread, 4 * c[..., 6], orientation])

        f = self.frame[i]
        means = colour.reshape(-1, 3).mean(0)
        stds = colour.reshape(-1, 3).std(0)
        rg = colour[..., 0] - colour[..., 1]
        yb = 0.5 * (colour[..., 0] + colour[..., 1]) - colour[..., 2]
        colourfulness = math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())
        still = [*(2 * means - 1), *(3 * stds), 2 * val.mean() - 1, 2 * sat.mean() - 1,
                 2 * (means[0] - means[2]), 3 * val.std(), 2 * colourfulness, 4 * grad.mean(),
                 (grad > _EDGE_THRESHOLD).mean()]
        f[: len(_STILL_FRAME)] = still
        chroma = (sat >= 40 / 255) & (val >= 40 / 255)   # hue of grey or dark pixels is noise
        hue_bins = np.bincount((hsv[..., 0][chroma].astype(np.int64) * 8) // 180, minlength=8)[:8]
        value_bins = np.bincount(hsv[..., 2].ravel().astype(np.int64) // 64, minlength=4)[:4]
        n = float(val.size)
        start = _F["hue_0"]
        f[start:start + 8] = hue_bins / n
        f[_F["grey"]] = 1.0 - chroma.sum() / n
        f[_F["value_0"]:_F["value_0"] + 4] = value_bins / n
        self.hists[i] = hist
        self.has_centre[i] = True

    def finish(self, duration: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        T, grid, fps = self.T, self.grid, self.fps
        if not self.has_centre[T - 1]:
            rgb, hsv, grey = self.last   # the video ends before the last centre
            self._still(T - 1, rgb, hsv, grey, hsv_histogram(hsv))
        cut_times = np.asarray(self.cuts.finish(), dtype=np.float64) / fps
        frame = self.frame
        flow_n = np.maximum(self.flow_steps, 1)[:, None]   # [T, 1]; a second without steps keeps zeros
        diff_n = np.maximum(self.diff_steps, 1)
        for name in ("motion", "camera_x", "camera_y", "object_motion"):
            frame[:, _F[name]] /= flow_n[:, 0]
        frame[:, _F["change"]] /= diff_n
        for name in ("motion", "motion_peak", "camera_x", "camera_y", "object_motion"):
            frame[:, _F[name]] = _squash(frame[:, _F[name]])
        frame[:, _F["change"]] *= 4.0
        frame[:, _F["flash"]] = 4.0 * np.maximum(frame[:, _F["flash"]], 0.0)
        for i in range(1, T):
            frame[i, _F["content_change"]] = histogram_distance(self.hists[i - 1], self.hists[i])
        seconds = np.minimum(np.floor(cut_times).astype(np.int64), T - 1)
        frame[seconds, _F["cut"]] = 1.0

        motion = _squash(self.motion_cells / flow_n[:, :, None, None])               # [T, G, G, 3]
        change = 4.0 * self.change_cells / diff_n[:, None, None]
        patch = np.concatenate([self.still_cells, motion, change[..., None]], axis=-1)   # [T, G, G, 12]
        patch = patch.reshape(T, grid * grid, len(PATCH_FEATURES))
        context = _context(frame, cut_times, duration)
        return (np.ascontiguousarray(patch, dtype=np.float32), frame.astype(np.float32),
                context.astype(np.float32))


def _context(frame: np.ndarray, cut_times: np.ndarray, duration: float) -> np.ndarray:
    """``[T, 20]`` window statistics of the frame-level series (see the module docstring)."""
    T = frame.shape[0]
    motion, bright = frame[:, _F["motion"]], frame[:, _F["brightness"]]
    camera = np.hypot(frame[:, _F["camera_x"]], frame[:, _F["camera_y"]])
    out = np.zeros((T, len(CONTEXT_FEATURES)), np.float64)

    def rate(lo: int, hi: int) -> float:
        return 2.0 * float(((cut_times >= lo) & (cut_times < hi)).sum()) / (hi - lo)

    def trend(x: np.ndarray, i: int) -> float:
        before, after = x[max(0, i - _SHORT):i], x[i + 1:i + 1 + _SHORT]
        return float(after.mean() - before.mean()) if before.size and after.size else 0.0

    for i in range(T):
        lo, hi = max(0, i - _SHORT), min(T, i + _SHORT + 1)
        llo, lhi = max(0, i - _LONG), min(T, i + _LONG + 1)
        w = slice(lo, hi)
        centre = min(i + 0.5, duration)
        before = cut_times[cut_times <= centre]
        after = cut_times[cut_times > centre]
        since = centre - (before[-1] if before.size else 0.0)
        until = (after[0] if after.size else duration) - centre
        out[i] = [motion[w].mean(), motion[w].std(), motion[w].max(), bright[w].mean(), bright[w].std(),
                  frame[w, _F["saturation"]].mean(), frame[w, _F["warmth"]].mean(), frame[w, _F["change"]].mean(),
                  frame[w, _F["content_change"]].mean(), camera[w].mean(), frame[w, _F["edges"]].mean(),
                  rate(lo, hi), trend(motion, i), trend(bright, i),
                  min(since, _CUT_HORIZON) / _CUT_HORIZON, min(max(until, 0.0), _CUT_HORIZON) / _CUT_HORIZON,
                  motion[llo:lhi].mean(), bright[llo:lhi].mean(), rate(llo, lhi),
                  frame[llo:lhi, _F["change"]].mean()]
    return out
