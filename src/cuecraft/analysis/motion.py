"""Optical flow, the impact envelope, visual beats and visual tempo.

The impact envelope follows the idea of a *directogram*: per frame, the flow magnitude is
summed into angle bins. An impact (a ball hitting the floor, a foot landing, a cut-on-action
stop) is a sudden *drop* of motion in some direction, so the envelope is the half-wave
rectified decrease of the directogram from one frame to the next. A brightness-flux term
adds flashes. Visual beats are peaks of that envelope; visual tempo is its periodicity.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from cuecraft.analysis.cuts import check_fps
from cuecraft.errors import ParameterError

# scipy.ndimage is imported inside the functions that filter whole curves: the per-frame pass
# (a child process on a cold start, on the critical path) never needs it, and it takes 0.19 s.

__all__ = [
    "FlowTracker",
    "directogram",
    "impact_envelope",
    "visual_beats",
    "visual_tempo",
    "fold_tempo",
    "TEMPO_RANGE",
    "DEFAULT_TEMPO",
]

TEMPO_RANGE = (70.0, 140.0)
DEFAULT_TEMPO = 100.0
_BINS = 8
# Shortest side DIS (ultrafast preset) handles; shorter frames crash OpenCV 5.0.
_DIS_MIN_SIDE = 32
# Extra weight of a reversal (drop in one direction with a rise in the opposite one).
_REVERSAL_WEIGHT = 1.0
# Directogram decreases below this (frame widths per second, area weighted) are flow noise.
_NOISE_FLOOR = 0.01
# A brightness rise of this much in one frame counts as a full-strength flash.
_FLASH_FULL = 0.3
_FLASH_DEAD_ZONE = 0.03
# Half-width, in seconds, of the context a visual beat is compared with.
_CONTEXT = 1.5


def directogram(flow: np.ndarray, *, bins: int = _BINS) -> np.ndarray:
    """Flow magnitude summed over angle bins, divided by the pixel count.

    Each vector is shared linearly between the two nearest bin centres. With hard bins, a
    vector turning by a degree across a bin edge would look like a full stop in one
    direction (and a fake impact); soft bins make the change proportional to the turn.

    Parameters
    ----------
    flow : np.ndarray
        ``[H, W, 2]`` float32 flow (dx, dy) in pixels.
    bins : int
        Number of angle bins over the full circle.

    Returns
    -------
    np.ndarray
        ``[bins]`` float64; the sum is the mean flow magnitude in pixels.
    """
    mag, ang = cv2.cartToPolar(flow[..., 0], flow[..., 1])
    pos = ang.ravel() * (bins / (2.0 * math.pi)) - 0.5  # bin centres at (b + 0.5) * width
    low = np.floor(pos)
    upper = (pos - low) * mag.ravel()
    idx = low.astype(np.int64) % bins
    hist = np.bincount(idx, weights=mag.ravel() - upper, minlength=bins)
    hist += np.bincount((idx + 1) % bins, weights=upper, minlength=bins)
    return hist / mag.size


class FlowTracker:
    """Streaming dense optical flow (DIS, ultrafast preset) on small grayscale frames.

    Parameters
    ----------
    fps : float
        Nominal frame rate, used for the first frame's time step.
    bins : int
        Directogram angle bins.
    """

    def __init__(self, *, fps: float, bins: int = _BINS):
        self.fps = check_fps(fps)
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 4 or bins % 2:
            raise ParameterError(f"bins must be an even integer >= 4, got {bins!r}")
        self.bins = bins
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self._prev_gray: np.ndarray | None = None
        self._prev_dir = np.zeros(self.bins)
        self._prev_global = np.zeros(2)
        self._prev_motion = 0.0

    def update(self, gray: np.ndarray, *, dt: float, reliable: bool = True) -> tuple[float, float]:
        """Add the next grayscale frame.

        Parameters
        ----------
        gray : np.ndarray
            ``[H, W]`` uint8 frame; the size must stay the same for the whole stream.
        dt : float
            Seconds since the previous frame.
        reliable : bool
            False when the frame jumps photometrically (cut, flash): the flow to it is then
            meaningless, so the previous flow statistics are held instead.

        Returns
        -------
        motion : float
            Mean flow magnitude in frame widths per second (0 for the first frame).
        decrease : float
            Sudden slow-down between the previous flow step and this one: the rectified
            directogram decrease of the camera-compensated flow, plus reversals, plus the
            slow-down of the global (camera) motion. It measures the change of velocity
            *at the previous frame* (a flow step lies between two frames), so the caller
            should file it under the previous frame.
        """
        prev = self._prev_gray
        self._prev_gray = gray
        if prev is None:
            return 0.0, 0.0
        if prev.shape != gray.shape:
            raise ParameterError(f"frame size changed mid-stream: {prev.shape} then {gray.shape}")
        if not reliable:
            return self._prev_motion, 0.0
        flow = self._flow(prev, gray)
        # The flow field is smooth (DIS works on coarse patches): its 2x2 average keeps the
        # motion and makes the statistics below four times cheaper.
        half_size = (max(1, flow.shape[1] // 2), max(1, flow.shape[0] // 2))
        flow = cv2.resize(flow, half_size, interpolation=cv2.INTER_AREA)
        # Frame widths per second: independent of the analysis resolution and the fps. (The
        # resize above averages vectors; they are still in pixels of the grayscale frame.)
        scale = 1.0 / (gray.shape[1] * dt)
        motion = float(cv2.magnitude(flow[..., 0], flow[..., 1]).mean()) * scale
        # The dominant (camera) motion is measured apart: per-pixel noise of a fast pan
        # would otherwise bury the small moving objects whose impacts we look for. A
        # subsampled median is robust to those objects and costs little.
        shift = np.median(flow[::2, ::2].reshape(-1, 2), axis=0)
        current = directogram(flow - shift.astype(np.float32), bins=self.bins) * scale
        global_v = shift * scale
        drop = np.maximum(self._prev_dir - current, 0.0)
        rise = np.maximum(current - self._prev_dir, 0.0)
        # A bounce reverses motion: a drop in one direction with a rise in the opposite
        # one. Counting the reversal as well pins the peak to the frame of the impact
        # even when flow already under-estimates the speed on the frame of contact.
        turn = self.bins // 2
        opposite = np.roll(rise, turn) + np.roll(rise, turn - 1) + np.roll(rise, turn + 1)
        decrease = float(drop.sum() + _REVERSAL_WEIGHT * np.minimum(drop, opposite).sum())
        # Camera slow-down: previous speed minus current speed along the previous direction
        # (a reversal counts double, like the reversal term above).
        speed = float(np.hypot(*self._prev_global))
        if speed > 0:
            decrease += max(0.0, speed - float(global_v @ self._prev_global) / speed)
        self._prev_dir, self._prev_global, self._prev_motion = current, global_v, motion
        return motion, decrease


    def _flow(self, prev: np.ndarray, gray: np.ndarray) -> np.ndarray:
        h, w = gray.shape
        if min(h, w) >= _DIS_MIN_SIDE:
            return self._dis.calc(prev, gray, None)
        # DIS crashes (not raises) when a side is too short for its pyramid: stretch the
        # frames, then bring the vectors back to the original pixel units.
        size = (max(w, _DIS_MIN_SIDE), max(h, _DIS_MIN_SIDE))
        big = self._dis.calc(cv2.resize(prev, size), cv2.resize(gray, size), None)
        big = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)
        big[..., 0] *= w / size[0]
        big[..., 1] *= h / size[1]
        return big


def _robust_scale(x: np.ndarray) -> float:
    """Third-largest local maximum: one or two freak peaks cannot squash all the others."""
    if x.size < 3:
        return float(x.max(initial=0.0))
    is_peak = (x[1:-1] >= x[:-2]) & (x[1:-1] >= x[2:]) & (x[1:-1] > 0)
    peaks = np.sort(x[1:-1][is_peak])
    if peaks.size == 0:
        return float(x.max())
    return float(peaks[-min(3, peaks.size)])


def impact_envelope(
    decrease: np.ndarray,
    brightness: np.ndarray,
    *,
    fps: float,
    cut_frames: np.ndarray | None = None,
) -> np.ndarray:
    """Combine directogram decreases and brightness flux into the impact envelope.

    Parameters
    ----------
    decrease : np.ndarray
        ``[N]`` directogram decrease filed under the frame where the velocity changes.
    brightness : np.ndarray
        ``[N]`` mean brightness in [0, 1].
    fps : float
        Frame rate of the curves.
    cut_frames : np.ndarray, optional
        Frame indices of cuts (first frame of the new scene). The motion term is zeroed at
        and just before them (the change of motion across a cut is not an on-screen impact)
        and scaled scene by scene.

    Returns
    -------
    np.ndarray
        ``[N]`` envelope, >= 0, with maximum 1 (all zeros if nothing moves or flashes).
    """
    from scipy.ndimage import median_filter

    check_fps(fps)
    decrease = np.asarray(decrease, dtype=np.float64)
    brightness = np.asarray(brightness, dtype=np.float64)
    if decrease.shape != brightness.shape or decrease.ndim != 1:
        raise ParameterError(
            f"decrease and brightness must be 1-D of equal length, got shapes {decrease.shape} and {brightness.shape}"
        )
    n = decrease.size
    if n == 0:
        return np.zeros(0)
    cuts = np.zeros(0, dtype=np.int64) if cut_frames is None else np.asarray(cut_frames, dtype=np.int64)
    cuts = np.unique(cuts[(cuts > 0) & (cuts < n)])
    # Gradual slow-downs (the end of a pan) spread a large decrease over many frames; an
    # impact is a one-frame spike. Subtracting a short running median keeps only spikes.
    width = max(3, int(round(0.3 * fps)) | 1)
    if n >= width:
        decrease = decrease - median_filter(decrease, size=width, mode="nearest")
    motion = np.where(decrease > _NOISE_FLOOR, decrease, 0.0)
    # Before any scaling: the fake "impact" across a cut must not set the scale.
    for offset in (-1, 0):
        motion[cuts + offset] = 0.0
    motion = _normalise_locally(motion, cuts, fps)
    flux = np.zeros(n)
    flux[1:] = np.diff(brightness)
    flash = np.clip((flux - _FLASH_DEAD_ZONE) / (_FLASH_FULL - _FLASH_DEAD_ZONE), 0.0, 1.0)
    flash[cuts] = 0.0  # a cut to a brighter scene is a cut, reported as such, not a flash
    env = motion + flash
    top = env.max()
    return env / top if top > 0 else env


def _normalise_locally(motion: np.ndarray, cuts: np.ndarray, fps: float) -> np.ndarray:
    """Scale the motion term to about 1 at the strongest impacts of each scene.

    How strongly flow registers the same impact depends on the footage (contrast, texture),
    so each scene is scaled by its own running maximum (over 6 s). The global robust scale
    caps that maximum (so one freak peak cannot squash a scene) and a quarter of it floors
    it (so a nearly still scene does not blow its flow noise up to full-size beats).
    """
    from scipy.ndimage import maximum_filter1d

    scale = _robust_scale(motion)
    if scale <= 0:
        return motion
    clipped = np.minimum(motion, scale)
    local = np.empty_like(motion)
    size = 2 * int(round(3.0 * fps)) + 1
    bounds = np.concatenate([[0], cuts, [motion.size]])
    for a, b in zip(bounds[:-1], bounds[1:]):
        local[a:b] = maximum_filter1d(clipped[a:b], size=min(size, 2 * (b - a) + 1), mode="nearest")
    return np.minimum(motion / np.maximum(local, 0.25 * scale), 1.0)


def visual_beats(
    envelope: np.ndarray, *, fps: float, delta: float = 0.1, relative: float = 0.35
) -> tuple[np.ndarray, np.ndarray]:
    """Pick visual beats as peaks of the impact envelope.

    Parameters
    ----------
    envelope : np.ndarray
        ``[N]`` impact envelope in [0, 1].
    fps : float
        Frame rate of the envelope.
    delta : float
        How far a peak must rise above the local mean of the envelope.
    relative : float
        A peak must also reach this fraction of the envelope's maximum within 1.5 s.

    Returns
    -------
    frames : np.ndarray
        ``[B]`` int frame indices of the beats.
    strengths : np.ndarray
        ``[B]`` envelope value at each beat, in (0, 1].
    """
    from scipy.ndimage import maximum_filter1d, uniform_filter1d

    fps = check_fps(fps)
    env = np.asarray(envelope, dtype=np.float64)
    if env.ndim != 1:
        raise ParameterError(f"envelope must be 1-D, got shape {env.shape}")
    if env.size < 3 or not np.any(env > 0):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    near = 2 * max(1, int(round(0.1 * fps))) + 1
    avg = 2 * max(1, int(round(0.3 * fps))) + 1
    is_max = env >= maximum_filter1d(env, size=near, mode="constant")
    rises = env >= uniform_filter1d(env, size=avg, mode="constant") + delta
    # Keep peaks that matter in their context: the envelope's scale drifts from scene to
    # scene (flow is less sure on low-contrast footage), so a fixed floor would either miss
    # every beat of a dim scene or accept the small wobbles (a ball's apex) of a busy one.
    context = maximum_filter1d(env, size=2 * int(round(_CONTEXT * fps)) + 1, mode="nearest")
    candidates = np.flatnonzero(is_max & rises & (env > 0) & (env >= relative * context))
    # A short refractory period (0.1 s): shorter would split one impact over two frames
    # (a plateau), longer would swallow an impact that follows a flash closely.
    wait = max(1, int(round(0.1 * fps)))
    frames: list[int] = []
    for i in candidates:
        if not frames or i - frames[-1] > wait:
            frames.append(int(i))
    out = np.asarray(frames, dtype=np.int64)
    return out, np.clip(env[out], 0.0, 1.0)


def fold_tempo(bpm: float, *, low: float = TEMPO_RANGE[0], high: float = TEMPO_RANGE[1]) -> float:
    """Fold a tempo into ``[low, high)`` by doubling or halving (``high`` must be ``2 * low``)."""
    if not (math.isfinite(bpm) and bpm > 0):
        raise ParameterError(f"bpm must be positive and finite, got {bpm!r}")
    if not (0 < low and math.isclose(high, 2 * low)):
        raise ParameterError(f"tempo range must be one octave [low, 2*low), got [{low!r}, {high!r})")
    while bpm < low:
        bpm *= 2.0
    while bpm >= high:
        bpm /= 2.0
    return float(bpm)


def visual_tempo(
    envelope: np.ndarray, *, fps: float, default: float = DEFAULT_TEMPO, min_strength: float = 0.2
) -> float:
    """Estimate the visual tempo from the periodicity of the impact envelope.

    Every candidate tempo in [70, 140) BPM is scored by the mean autocorrelation of the
    envelope at the multiples of its period (up to 4 s). This comb scores a tempo and its
    double or half together, which folds octaves into the range by construction, and the
    multiples refine the estimate below one frame of lag resolution.

    Parameters
    ----------
    envelope : np.ndarray
        ``[N]`` impact envelope.
    fps : float
        Frame rate of the envelope.
    default : float
        Tempo returned when the envelope has no clear periodicity.
    min_strength : float
        Lowest normalised comb score that counts as periodic.

    Returns
    -------
    float
        Tempo in BPM, in [70, 140).
    """
    from scipy.ndimage import gaussian_filter1d

    fps = check_fps(fps)
    env = np.asarray(envelope, dtype=np.float64)
    low, high = TEMPO_RANGE
    n = env.size
    min_lag = 60.0 * fps / low
    if n < 2 * min_lag or not np.any(env > 0):
        return float(default)
    # Soften one-frame spikes so a beat that lands a frame early or late still lines up.
    x = gaussian_filter1d(env, 1.0)
    x = x - x.mean()
    spec = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(np.abs(spec) ** 2)[:n]
    if acf[0] <= 0:
        return float(default)
    # Unbiased estimate: long lags are averaged over fewer products.
    acf = acf / (n - np.arange(n)) * n / acf[0]
    max_lag = min(4.0 * fps, n / 2.0)
    bpms = np.arange(low, high, 0.1)
    periods = 60.0 * fps / bpms
    k = np.arange(1, int(max_lag / periods.min()) + 1)
    lags = periods[:, None] * k[None, :]
    valid = lags <= max(max_lag, periods.max())
    scores = np.where(valid, np.interp(lags, np.arange(n), acf), 0.0).sum(1) / valid.sum(1)
    best = int(np.argmax(scores))
    if scores[best] < min_strength:
        return float(default)
    return float(bpms[best])
