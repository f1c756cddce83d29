"""One musical plan for the whole video: key, mode, sections and their chord progressions.

A long video is scored as ONE piece, so the key and a small set of progressions are
chosen once here and every later stage (arrangement, windowed generation) reads them,
instead of inventing new material for every window.

Scale degrees are 0-based (0 = tonic, 4 = dominant); a chord is the diatonic triad built
on its degree, so every chord tone stays in the key.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cuecraft import checks
from cuecraft.controls.keys import MODES, key_from_melody
from cuecraft.controls.resample import beat_count, sample_hold, sample_linear, time_base
from cuecraft.controls.schema import Controls
from cuecraft.errors import ParameterError

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),  # natural minor
}
# Common progressions (scale degrees, one chord per bar). A plan draws a few of these.
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 3), (0, 3, 0, 4), (1, 4, 0, 0)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4), (0, 3, 6, 2), (5, 6, 0, 0)),
}
# Section i uses progression FORM[i % len(FORM)] (clipped to how many were drawn): the
# first one returns often, like a chorus, and neighbours always differ when possible.
_FORM = (0, 1, 0, 2)
MIN_SECTION_BARS = 2.0
_FALLBACK_BAR_SECONDS = 2.0  # 4/4 at 120 BPM, used only when there is no beat control
_SAMPLE_RATE = 20.0  # Hz, for averaging controls over the whole video


@dataclass(frozen=True)
class Plan:
    """Key, mode, sections and per-section chord progressions for a whole video.

    Parameters
    ----------
    key_root : int
        Pitch class of the tonic, 0 (C) to 11 (B).
    mode : str
        ``"major"`` or ``"minor"`` (natural minor).
    sections : tuple of float
        Section start times in seconds; the first is 0.0, strictly increasing.
    progressions : tuple of tuple of int
        For each section, the 0-based scale degrees of its chord roots, one per bar, cycled.
    """

    key_root: int
    mode: str
    sections: tuple[float, ...]
    progressions: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if isinstance(self.key_root, bool) or not isinstance(self.key_root, (int, np.integer)) \
                or not 0 <= self.key_root <= 11:
            raise ParameterError(f"key_root = {self.key_root!r}: must be an integer pitch class 0-11")
        if self.mode not in MODES:
            raise ParameterError(f"mode = {self.mode!r}: must be one of {', '.join(MODES)}")
        if not self.sections or self.sections[0] != 0.0:
            raise ParameterError(f"sections = {self.sections!r}: must start with 0.0")
        for i in range(1, len(self.sections)):
            if not math.isfinite(self.sections[i]) or self.sections[i] <= self.sections[i - 1]:
                raise ParameterError(f"sections[{i}] = {self.sections[i]!r}: must be finite and increasing")
        if len(self.progressions) != len(self.sections):
            raise ParameterError(f"progressions has {len(self.progressions)} entries for "
                                 f"{len(self.sections)} sections; need one per section")
        for i, prog in enumerate(self.progressions):
            if not prog or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= d <= 6
                               for d in prog):
                raise ParameterError(f"progressions[{i}] = {prog!r}: must be a non-empty tuple of degrees 0-6")

    @property
    def scale(self) -> tuple[int, ...]:
        """Pitch classes of the key's scale, tonic first."""
        return tuple((self.key_root + step) % 12 for step in SCALES[self.mode])

    def chord(self, degree: int) -> tuple[int, int, int]:
        """Pitch classes (root, third, fifth) of the diatonic triad on a 0-based scale degree."""
        if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or not 0 <= degree <= 6:
            raise ParameterError(f"degree = {degree!r}: must be an integer 0-6")
        scale = self.scale
        return scale[degree], scale[(degree + 2) % 7], scale[(degree + 4) % 7]

    def section_index(self, t: float) -> int:
        """Index of the section that contains time ``t`` (seconds)."""
        return max(0, int(np.searchsorted(self.sections, t, side="right")) - 1)


def _downbeats(controls: Controls) -> np.ndarray:
    beat = controls.beat
    return beat[beat[:, 1] == 0, 0] if beat is not None else np.empty(0)


def _bars_at(controls: Controls, times: np.ndarray) -> np.ndarray:
    """Continuous bar count at ``times``, for measuring section lengths in bars."""
    if controls.beat is None:
        return np.asarray(times, dtype=float) / _FALLBACK_BAR_SECONDS
    return beat_count(controls.beat, np.asarray(times, dtype=float)) / controls.beats_per_bar


def _section_starts(controls: Controls, cuts: np.ndarray, duration: float) -> tuple[float, ...]:
    downbeats = _downbeats(controls)
    starts = [0.0]
    last_bar = float(_bars_at(controls, np.array([0.0]))[0])
    for cut in np.sort(cuts[(cuts > 0) & (cuts < duration)]):
        t = float(cut)
        if len(downbeats):
            t = float(downbeats[np.argmin(np.abs(downbeats - t))])
        if t <= starts[-1] or t >= duration:
            continue
        bar = float(_bars_at(controls, np.array([t]))[0])
        # A cut this close to the previous section start is a quick edit, not a new section.
        if bar - last_bar < MIN_SECTION_BARS - 1e-6:
            continue
        starts.append(t)
        last_bar = bar
    return tuple(starts)


def make_plan(controls: Controls, *, cuts: Sequence[float], duration: float, seed: int) -> Plan:
    """Plan key, mode, sections and progressions for the whole video.

    Parameters
    ----------
    controls : Controls
        ``emotion`` sets the mode (mean valence >= 0 is major; major without emotion unless
        a melody decides it); ``melody`` sets the key (best Krumhansl-Kessler fit of its
        time-weighted pitch-class histogram); ``beat`` gives the downbeats that section
        starts snap to.
    cuts : sequence of float
        Scene-cut times in seconds. Cuts at or after ``duration`` are ignored.
    duration : float
        Length of the video in seconds, > 0.
    seed : int
        Chooses the key when there is no melody, and the progressions.

    Returns
    -------
    Plan
        Sections start at 0.0 and at cuts snapped to the nearest downbeat; a cut less
        than two bars after the previous section start opens no section.

    Raises
    ------
    ParameterError
        For a bad duration, cut or seed.
    """
    if not isinstance(controls, Controls):
        raise ParameterError(f"controls = {controls!r}: must be a Controls object")
    duration, seed = checks.seconds("duration", duration), checks.seed(seed)
    cuts_arr = np.asarray(list(cuts), dtype=float).reshape(-1)
    bad = cuts_arr[~np.isfinite(cuts_arr) | (cuts_arr < 0)]
    if bad.size:
        raise ParameterError(f"cuts contains {float(bad[0])!r}: cut times must be finite seconds >= 0")

    rng = np.random.default_rng(seed)
    # Midpoints of short frames: their mean is the time-weighted mean over [0, duration).
    times = np.minimum(time_base(duration=float(duration), rate=_SAMPLE_RATE) + 0.5 / _SAMPLE_RATE, duration)
    mode = None
    if controls.emotion is not None:
        mode = "major" if float(np.mean(sample_linear(controls.emotion, times)[:, 0])) >= 0 else "minor"
    seeded_root = int(rng.integers(12))  # drawn always, so the progressions below do not depend on the melody
    key_root = None
    if controls.melody is not None:
        pcs = sample_hold(controls.melody, times)
        pcs = pcs[np.isfinite(pcs)].astype(int)
        if pcs.size:
            key_root, mode = key_from_melody(np.bincount(pcs, minlength=12).astype(float), mode=mode)
    if key_root is None:
        key_root = seeded_root
    mode = mode or "major"

    sections = _section_starts(controls, cuts_arr, float(duration))
    library = PROGRESSIONS[mode]
    n_distinct = min(3, len(sections))
    chosen = [library[i] for i in rng.permutation(len(library))[:n_distinct]]
    progressions = tuple(chosen[min(_FORM[i % len(_FORM)], n_distinct - 1)] for i in range(len(sections)))
    return Plan(key_root=key_root, mode=mode, sections=sections, progressions=progressions)
