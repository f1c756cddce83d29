"""Rhythmic correspondence between a video and its music (mir_eval shape).

:func:`validate_events` checks event lists, the metric functions are pure functions of
event times, and :func:`evaluate` returns a dict whose keys name the metric, its variant
and, where it matters, its reference. Event times are seconds from the first video frame.

Which events are compared
-------------------------
visual beats, cuts
    From the video (:func:`cuecraft.api.analyze_video`).
music beats
    :func:`music_beats`, librosa's beat tracker without beats in leading or trailing silence
    (the same implementation the control adherence metrics use,
    :func:`cuecraft.evaluation.adherence.track_beats`).
music onsets
    :func:`music_onsets`, ``librosa.onset.onset_detect`` at 22050 Hz with the peak-picking
    parameters of a named variant (:data:`ONSET_VARIANTS`).

The BCS/BHS reference
---------------------
In D2M-GAN and LORIS the reference of BCS/BHS is the ground-truth music of the clip.
Video-to-music output has no ground-truth music, so :func:`evaluate` uses the video's
visual beats as the reference (keys ``*_vs_visual``); given reference music, it also
reports the papers' setting (keys ``*_vs_reference``). Numbers against the two references
are not comparable, and neither is comparable across the D2M and LORIS variants.

Undefined values are NaN (e.g. a hit rate over zero cuts); the report counts them apart.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from cuecraft.checks import mono_audio, seconds
from cuecraft.errors import ParameterError
from cuecraft.evaluation.adherence import BEAT_WINDOW, track_beats

ONSET_SR = 22050              # the rate both papers' scripts load audio at (librosa.load's default)
CUT_WINDOW = 0.1              # seconds: a cut "lands on" the music within ±100 ms
BEAT_ALIGN_SIGMA = 0.05       # seconds: Bailando's 3 frames at 60 fps
ONSET_VARIANTS = {
    # L-YeZhu/Beats_Scores beat_detect(); pre_max is librosa's default at 22050 Hz / hop 512.
    "d2m": {"wait": 1, "delta": 0.2, "pre_avg": 1, "post_avg": 1, "pre_max": 1, "post_max": 1},
    # OpenGVLab/LORIS beats_scores.py beat_detect().
    "loris": {"wait": 1, "delta": 0.2, "pre_avg": 3, "post_avg": 3, "pre_max": 3, "post_max": 3},
    # librosa's own defaults: the onsets cut hits are measured against.
    "librosa": {},
}
MAX_TIME = 30000.0            # seconds, as mir_eval: larger values are almost surely samples or frames


def validate_events(name: str, times) -> np.ndarray:
    """Return ``times`` as a 1-D float array of finite, non-negative, non-decreasing seconds.

    Raises
    ------
    ParameterError
        Naming ``name``, the index and the bad value.
    """
    arr = np.asarray(times, dtype=float)
    if arr.ndim != 1:
        raise ParameterError(f"{name}: event times must be 1-D, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0) | (arr > MAX_TIME))
    if len(bad):
        i = int(bad[0])
        raise ParameterError(f"{name}[{i}] = {float(arr[i])!r}: times must be finite seconds in [0, {MAX_TIME:g}]")
    down = np.flatnonzero(np.diff(arr) < 0)
    if len(down):
        i = int(down[0]) + 1
        raise ParameterError(f"{name}[{i}] = {float(arr[i])!r}: times must not decrease "
                             f"(previous {float(arr[i - 1])!r})")
    return arr


def _duration(duration) -> float:
    duration = seconds("duration", duration)
    if duration > MAX_TIME:
        raise ParameterError(f"duration = {duration!r}: must be at most {MAX_TIME:g} s")
    return duration


def visual_beat_f1(video_beats, music_beats, *, window: float = BEAT_WINDOW, min_time: float = 0.0) -> float:
    """mir_eval beat F-measure of the music's beats against the video's visual beats.

    Greedy one-to-one matching within ±``window`` (``mir_eval.beat.f_measure``). Unlike
    ``mir_eval.beat.evaluate`` nothing is trimmed by default: video clips are short and the
    music starts with the picture, so the first 5 s matter. Pass ``min_time=5.0`` to get
    mir_eval's trimmed variant (both lists lose their events before ``min_time``).

    Returns
    -------
    float in [0, 1]; NaN when there are no visual beats (nothing to follow), 0 when the
    music has no beats but the video has.
    """
    import mir_eval

    ref = validate_events("video_beats", video_beats)
    est = validate_events("music_beats", music_beats)
    window = seconds("window", window)
    if isinstance(min_time, bool) or not math.isfinite(min_time) or min_time < 0:
        raise ParameterError(f"min_time = {min_time!r}: must be finite seconds >= 0")
    ref, est = ref[ref >= min_time], est[est >= min_time]
    if len(ref) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns on an empty estimate; F = 0 says it
        return float(mir_eval.beat.f_measure(ref, est, f_measure_threshold=window))


def cut_hit_rate(cuts, music_events, *, window: float = CUT_WINDOW) -> float:
    """Share of scene cuts with a music event (onset) within ±``window``.

    Not one-to-one: one onset may serve two cuts closer than ``2 * window``. NaN without
    cuts; 0 when there are cuts but no music events.
    """
    cuts = validate_events("cuts", cuts)
    events = validate_events("music_events", music_events)
    window = seconds("window", window)
    if len(cuts) == 0:
        return float("nan")
    if len(events) == 0:
        return 0.0
    return float(np.mean(_nearest_distance(cuts, events) <= window + 1e-9))


def cut_hit_chance(music_events, *, duration: float, window: float = CUT_WINDOW) -> float:
    """The cut hit rate a cut at a uniformly random time in ``[0, duration]`` would get.

    The share of ``[0, duration]`` within ±``window`` of a music event. Dense music scores
    high cut hit rates by chance; this is the baseline to read :func:`cut_hit_rate` against.
    """
    events = validate_events("music_events", music_events)
    duration = _duration(duration)
    window = seconds("window", window)
    lo = np.clip(events - window, 0.0, duration)
    hi = np.clip(events + window, 0.0, duration)
    covered, reach = 0.0, 0.0
    for a, b in zip(lo, hi):  # events are sorted, so the intervals are too: merge as we go
        a = max(a, reach)
        if b > a:
            covered += b - a
            reach = b
    return float(covered / duration)


def _nearest_distance(times: np.ndarray, events: np.ndarray) -> np.ndarray:
    """Distance from each time to its nearest event (``events`` sorted and non-empty)."""
    idx = np.searchsorted(events, times)
    left = events[np.clip(idx - 1, 0, len(events) - 1)]
    right = events[np.clip(idx, 0, len(events) - 1)]
    return np.minimum(np.abs(times - left), np.abs(times - right))


def beat_align(music_beats, visual_beats, *, sigma: float = BEAT_ALIGN_SIGMA, symmetric: bool = False) -> float:
    """BeatAlign score (AIST++ / Bailando), with visual beats in place of motion beats.

    ``BA = mean over music beats t of exp(-min_v (t - v)^2 / (2 sigma^2))``: the direction
    of Bailando's published code, where each *music* beat looks for the nearest visual
    beat (so it reads like recall of the music's beats). ``symmetric=True`` averages that
    with the reverse direction (each visual beat looking for the nearest music beat, the
    direction of the AIST++ paper's formula).

    Returns
    -------
    float in [0, 1]; NaN when a direction has nothing to average over (no music beats,
    or for ``symmetric`` no visual beats either); 0 for a direction with no partner events.
    """
    music = validate_events("music_beats", music_beats)
    visual = validate_events("visual_beats", visual_beats)
    sigma = seconds("sigma", sigma)

    def one_way(src: np.ndarray, dst: np.ndarray) -> float:
        if len(src) == 0:
            return float("nan")
        if len(dst) == 0:
            return 0.0
        d = _nearest_distance(src, dst)
        return float(np.mean(np.exp(-d ** 2 / (2 * sigma ** 2))))

    forward = one_way(music, visual)
    return float(np.mean([forward, one_way(visual, music)])) if symmetric else forward


def _bins(name: str, times, n_bins: int) -> np.ndarray:
    # As both papers' scripts: an event at t marks bin trunc(t); 1-s bins over ceil(duration).
    times = validate_events(name, times)
    occupied = np.zeros(n_bins, dtype=bool)
    idx = np.trunc(times).astype(int)
    occupied[idx[idx < n_bins]] = True
    return occupied


def bcs_bhs_d2m(ref_onsets, gen_onsets, *, duration: float) -> dict[str, float]:
    """Beats Coverage / Hit Scores as D2M-GAN defines them (``L-YeZhu/Beats_Scores``).

    Both onset lists are quantised to 1-s bins (a bin is set if it holds any onset) over
    ``ceil(duration)`` bins. ``bcs = #generated bins / #reference bins`` (may exceed 1),
    ``bhs = #bins set in both / #reference bins``. Both are NaN without reference bins
    (the original script divides by zero there).
    """
    n = math.ceil(_duration(duration))
    ref, gen = _bins("ref_onsets", ref_onsets, n), _bins("gen_onsets", gen_onsets, n)
    if not ref.any():
        return {"bcs": float("nan"), "bhs": float("nan")}
    return {"bcs": float(gen.sum() / ref.sum()), "bhs": float((ref & gen).sum() / ref.sum())}


def bcs_bhs_loris(ref_onsets, gen_onsets, *, duration: float) -> dict[str, float]:
    """Beats Coverage / Hit Scores as LORIS computes them (``OpenGVLab/LORIS`` beats_scores.py).

    Same 1-s bins as :func:`bcs_bhs_d2m`, but ``bcs = hits / #generated bins``
    (precision-like), ``bhs = hits / #reference bins`` (recall-like), and ``f1`` their
    harmonic mean. LORIS reports F1 of the *mean* BCS and BHS over clips; this per-clip F1
    is for convenience (the report gives both). Without reference bins ``bhs`` is NaN (LORIS
    gives 0); without generated bins ``bcs`` is 0, as in LORIS.
    """
    n = math.ceil(_duration(duration))
    ref, gen = _bins("ref_onsets", ref_onsets, n), _bins("gen_onsets", gen_onsets, n)
    hits = float((ref & gen).sum())
    bcs = hits / gen.sum() if gen.any() else 0.0
    bhs = hits / ref.sum() if ref.any() else float("nan")
    return {"bcs": float(bcs), "bhs": float(bhs), "f1": harmonic_mean(bcs, bhs)}


def harmonic_mean(a: float, b: float) -> float:
    """F1 of two rates; 0 when both are 0, NaN when either is NaN."""
    if math.isnan(a) or math.isnan(b):
        return float("nan")
    return 0.0 if a + b == 0 else float(2 * a * b / (a + b))


def music_onsets(audio, *, sr: int, variant: str = "d2m") -> np.ndarray:
    """Onset times (s) of ``audio`` with the peak picking of ``variant`` (see :data:`ONSET_VARIANTS`).

    Audio at another rate is resampled to 22050 Hz first: the peak-picking windows are in
    frames of 512 samples, so the same parameters at another rate would mean other times.
    """
    import librosa

    if variant not in ONSET_VARIANTS:
        raise ParameterError(f"variant = {variant!r}: must be one of {', '.join(ONSET_VARIANTS)}")
    y = mono_audio(audio, sr=sr)
    if sr != ONSET_SR:
        y = librosa.resample(y, orig_sr=int(sr), target_sr=ONSET_SR)
    onsets = librosa.onset.onset_detect(y=y, sr=ONSET_SR, units="time", **ONSET_VARIANTS[variant])
    return np.asarray(onsets, dtype=float)


def music_beats(audio, *, sr: int) -> np.ndarray:
    """Beat times (s) tracked in ``audio`` (:func:`cuecraft.evaluation.adherence.track_beats`)."""
    return track_beats(audio, sr=sr)


def definitions(*, cut_window: float = CUT_WINDOW, sigma: float = BEAT_ALIGN_SIGMA) -> dict[str, str]:
    """One line per key :func:`evaluate` can return, saying what it measures against what."""
    w, s = f"{round(cut_window * 1000):d}ms", sigma_tag(sigma)
    out = {
        "visual_beat_f1": "mir_eval beat F-measure, ±70 ms, untrimmed; reference = the video's visual beats, "
                          "estimate = beats tracked in the music (librosa beat_track, none in leading/trailing "
                          "silence)",
        f"cut_hit_rate_{w}": f"share of scene cuts with a music onset (librosa onset_detect defaults) within ±{w}",
        f"cut_hit_rate_{w}_chance": f"share of the clip within ±{w} of a music onset: the hit rate of random cuts",
        f"beat_align_sigma{s}": f"BeatAlign (Bailando code's direction): mean over music beats of "
                                f"exp(-d^2 / 2 sigma^2), d = distance to the nearest visual beat, sigma = {s}",
        f"beat_align_symmetric_sigma{s}": f"mean of BeatAlign music->visual and visual->music, sigma = {s}",
    }
    for ref, what in (("visual", "the video's visual beats"), ("reference", "onsets of the reference music")):
        out.update({
            f"bcs_d2m_vs_{ref}": f"D2M-GAN Beats Coverage Score, 1-s bins: #music onset bins / #bins of {what}",
            f"bhs_d2m_vs_{ref}": f"D2M-GAN Beats Hit Score, 1-s bins: #shared bins / #bins of {what}",
            f"bcs_loris_vs_{ref}": f"LORIS BCS (precision-like), 1-s bins: #shared bins / #music onset bins; "
                                   f"reference = {what}",
            f"bhs_loris_vs_{ref}": f"LORIS BHS (recall-like), 1-s bins: #shared bins / #bins of {what}",
            f"f1_loris_vs_{ref}": "harmonic mean of bcs_loris and bhs_loris of this clip",
        })
    return out


def sigma_tag(sigma: float) -> str:
    """``0.05`` -> ``"50ms"``: the part of a BeatAlign key that names its sigma."""
    return f"{round(seconds('sigma', sigma) * 1000):d}ms"


def evaluate(video_beats, cuts, audio, *, sr: int, duration: float, reference_audio=None,
             cut_window: float = CUT_WINDOW, sigma: float = BEAT_ALIGN_SIGMA) -> dict[str, float]:
    """All rhythm metrics of one clip.

    Parameters
    ----------
    video_beats, cuts : visual beat and scene cut times (s) from the video
    audio : the music, ``[n]`` or ``[n, channels]``, starting with the first video frame
    sr : sample rate of ``audio`` (and of ``reference_audio``)
    duration : the video's duration (s); music events after it are ignored
    reference_audio : optional ground-truth music, for the papers' BCS/BHS setting
    cut_window : cut hit tolerance (s)
    sigma : BeatAlign sigma (s)

    Returns
    -------
    dict with keys (W = cut window, S = sigma, both in ms):
        ``visual_beat_f1`` (reference: visual beats; estimate: music beats; ±70 ms, untrimmed),
        ``cut_hit_rate_Wms`` and ``cut_hit_rate_Wms_chance`` (librosa-default onsets),
        ``beat_align_sigmaS`` (music beats -> nearest visual beat) and
        ``beat_align_symmetric_sigmaS``,
        ``bcs_d2m_vs_visual``, ``bhs_d2m_vs_visual`` (D2M onsets vs visual beats),
        ``bcs_loris_vs_visual``, ``bhs_loris_vs_visual``, ``f1_loris_vs_visual``
        (LORIS onsets vs visual beats), and with ``reference_audio`` the same five
        ending in ``_vs_reference`` (onsets of the same variant in the reference music).
    """
    duration = _duration(duration)
    video_beats = validate_events("video_beats", video_beats)
    cuts = validate_events("cuts", cuts)
    cut_window = seconds("cut_window", cut_window)
    tag = sigma_tag(sigma)
    cut_tag = f"{round(cut_window * 1000):d}ms"

    def inside(times: np.ndarray) -> np.ndarray:
        return times[times < duration]

    beats = inside(music_beats(audio, sr=sr))
    onsets = {v: inside(music_onsets(audio, sr=sr, variant=v)) for v in ONSET_VARIANTS}
    out = {
        "visual_beat_f1": visual_beat_f1(video_beats, beats),
        f"cut_hit_rate_{cut_tag}": cut_hit_rate(cuts, onsets["librosa"], window=cut_window),
        f"cut_hit_rate_{cut_tag}_chance": cut_hit_chance(onsets["librosa"], duration=duration, window=cut_window),
        f"beat_align_sigma{tag}": beat_align(beats, video_beats, sigma=sigma),
        f"beat_align_symmetric_sigma{tag}": beat_align(beats, video_beats, sigma=sigma, symmetric=True),
    }
    references = {"visual": {"d2m": video_beats, "loris": video_beats}}
    if reference_audio is not None:
        references["reference"] = {v: inside(music_onsets(reference_audio, sr=sr, variant=v)) for v in ("d2m", "loris")}
    for ref_name, ref in references.items():
        d2m = bcs_bhs_d2m(ref["d2m"], onsets["d2m"], duration=duration)
        loris = bcs_bhs_loris(ref["loris"], onsets["loris"], duration=duration)
        out.update({f"bcs_d2m_vs_{ref_name}": d2m["bcs"], f"bhs_d2m_vs_{ref_name}": d2m["bhs"],
                    f"bcs_loris_vs_{ref_name}": loris["bcs"], f"bhs_loris_vs_{ref_name}": loris["bhs"],
                    f"f1_loris_vs_{ref_name}": loris["f1"]})
    return out
