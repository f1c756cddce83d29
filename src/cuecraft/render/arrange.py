"""The percussion-and-bass arrangement layer, driven by the beat and intensity controls.

This is an arrangement, not a learned model: drum and bass patterns are placed on the beat
control's grid, their density and velocity follow the intensity control, and the bass
follows the plan's chord progressions. A learned model adds melody and harmony on top.

The grid is the beat control itself. Subdivisions (8ths, 16ths) are interpolated between
neighbouring beat times, so a locally warped tempo is followed exactly and every hit meant
for a beat lands on that beat's time.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pretty_midi

from cuecraft import checks
from cuecraft.controls.resample import sample_hold, sample_linear
from cuecraft.controls.schema import Controls
from cuecraft.errors import ParameterError
from cuecraft.generate.plan import Plan

# General MIDI percussion keys.
KICK, SIDE_STICK, SNARE = 36, 37, 38
CLOSED_HAT, PEDAL_HAT, OPEN_HAT = 42, 44, 46
CRASH, RIDE = 49, 51
TOMS = (50, 48, 47, 45)  # high to low, for fills
CYMBALS = (CRASH, RIDE, OPEN_HAT)
BASS_PROGRAM = 33  # Electric Bass (finger), 0-based GM
GUIDE_PROGRAM = 73  # Flute: a soft lead that states the requested melody
# Density levels 0..3 start at these dB: sparse, backbeat + 8th hats, 16ths, cymbals.
LEVEL_THRESHOLDS_DB = (-30.0, -20.0, -12.0)
AROUSAL_PUSH_DB = 12.0  # arousal +-1 counts as this much louder or quieter when choosing density
LOUDEST_DB = -6.0  # intensity at and above which velocity is 127
VELOCITY_DB_SLOPE = 0.7  # velocity (amplitude) dB per control dB; density adds the rest (~0.85 overall)
_RESOLUTION = 960  # ticks per quarter: keeps written times within ~0.5 ms of the grid


def velocity_from_db(db: np.ndarray | float) -> np.ndarray:
    """MIDI velocity (1-127, float) for an intensity in dB.

    SoundFont synths scale amplitude linearly with velocity, so the velocity is an
    amplitude: ``127 * 10 ** (VELOCITY_DB_SLOPE * (db - LOUDEST_DB) / 20)``.
    """
    db = np.asarray(db, dtype=float)
    return np.clip(127.0 * 10.0 ** (VELOCITY_DB_SLOPE * (db - LOUDEST_DB) / 20.0), 4.0, 127.0)


def density_level(db: np.ndarray | float) -> np.ndarray:
    """Density level 0 (sparse) to 3 (full, with cymbals) for an intensity in dB."""
    return np.searchsorted(np.asarray(LEVEL_THRESHOLDS_DB), np.asarray(db, dtype=float), side="right")


def _grid(controls: Controls, duration: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Beat times before ``duration``, their bar positions and the interval to the next beat."""
    beat = controls.beat
    times, positions = beat[:, 0], beat[:, 1].astype(int)
    intervals = np.diff(times)
    last = intervals[-1] if len(intervals) else 0.5
    intervals = np.append(intervals, last)
    keep = times < duration
    return times[keep], positions[keep], intervals[keep]


def _boundaries(plan: Plan, times: np.ndarray) -> list[int]:
    """Beat index of each section start after the first (nearest beat, deduplicated)."""
    out: list[int] = []
    for start in plan.sections[1:]:
        k = int(np.argmin(np.abs(times - start)))
        if k > (out[-1] if out else 0):
            out.append(k)
    return out


def _bass_tone(tone: str, chord: tuple[int, int, int]) -> int:
    root = 33 + (chord[0] - 9) % 12  # A1..G#2: low but inside a GM bass's range
    if tone == "5":
        return root + (chord[2] - chord[0]) % 12
    return root + 12 if tone == "8" else root


def _drum_pattern(level: int, pos: int, bpb: int, variant: int) -> list[tuple[int, int, float]]:
    """Hits of one ordinary beat as ``(sixteenth 0-3, key, accent)``."""
    mid = bpb // 2 if bpb >= 4 else -1
    last = bpb - 1
    backbeat = pos % 2 == 1
    hits: list[tuple[int, int, float]] = []
    if level == 0:
        if pos == 0:
            hits.append((0, KICK, 1.0))
        hits.append((0, PEDAL_HAT if variant == 1 else CLOSED_HAT, 0.55))
        if variant == 2 and backbeat:
            hits.append((0, SIDE_STICK, 0.5))
        return hits
    if pos in (0, mid):
        hits.append((0, KICK, 1.0))
    if backbeat:
        hits.append((0, SNARE, 0.95))
    if level >= 2:
        # Where the extra kicks go is what distinguishes the variants.
        extra = {0: [(mid - 1, 2)], 1: [(last, 2)], 2: [(mid - 1, 3), (last, 2)]}[variant]
        hits += [(j, KICK, 0.8) for p, j in extra if p == pos]
    if level == 3:
        if variant == 1:
            hits += [(0, CLOSED_HAT, 0.7), (2, OPEN_HAT, 0.6)]
        else:
            hits += [(0, RIDE, 0.7), (2, RIDE, 0.6)]
        hits += [(1, PEDAL_HAT, 0.3), (3, PEDAL_HAT, 0.3)]
        if variant == 2:
            hits.append((0, KICK, 0.9))  # four on the floor
    else:
        hits += [(0, CLOSED_HAT, 0.6), (2, OPEN_HAT if variant == 1 and pos == last else CLOSED_HAT, 0.45)]
        if level == 2:
            hits += [(1, CLOSED_HAT, 0.3), (3, CLOSED_HAT, 0.35)]
    return hits


def _fill_pattern(level: int, pos: int, step: int, n_steps: int) -> list[tuple[int, int, float]]:
    """Hits of beat ``step`` of an ``n_steps``-beat fill leading into a section start."""
    hits: list[tuple[int, int, float]] = [(0, KICK, 1.0)] if pos == 0 else []
    if level <= 1:
        return hits + [(0, SNARE, 0.7 + 0.1 * step), (2, SNARE, 0.8 + 0.1 * step)]
    for j in range(4):
        rise = 0.55 + 0.4 * (step * 4 + j) / (n_steps * 4 - 1)  # crescendo into the crash
        key = TOMS[min(3, (step * 4 + j) * 4 // (n_steps * 4))] if level == 3 else SNARE
        hits.append((j, key, rise))
    return hits


def _bass_pattern(level: int, pos: int, bpb: int) -> list[tuple[int, str, float]]:
    """Bass onsets of one beat as ``(sixteenth, tone, accent)``; tone is root, 5th or octave."""
    mid = bpb // 2 if bpb >= 4 else -1
    if level == 0:
        return [(0, "r", 1.0)] if pos == 0 else []
    if level == 1:
        return [(0, "r", 1.0)] if pos == 0 else [(0, "5", 0.85)] if pos == mid else []
    hits = [(0, "5" if pos == mid else "r", 1.0 if pos == 0 else 0.8)]
    if level == 3:
        hits.append((2, "8", 0.7))
    if pos == bpb - 1:
        hits.append((3, "5", 0.7))  # pickup into the next bar
    return hits


def _finish(notes: list[tuple[float, int, float, float]], *, duration: float, legato: bool) -> list[pretty_midi.Note]:
    """Turn ``(start, key, velocity, length)`` into Notes; a note never overlaps the next of its key."""
    merged: dict[tuple[float, int], tuple[float, float]] = {}
    for start, key, vel, length in notes:  # two patterns asking for one hit: keep the stronger
        old = merged.get((start, key), (0.0, 0.0))
        merged[(start, key)] = (max(old[0], vel), max(old[1], length))
    notes = [(start, key, vel, length) for (start, key), (vel, length) in sorted(merged.items())]
    out: list[pretty_midi.Note] = []
    next_start: dict[int, float] = {}
    all_starts = sorted({n[0] for n in notes})
    for start, key, vel, length in reversed(notes):
        end = min(start + length, next_start.get(key, math.inf), duration)
        if legato:  # a monophonic line: each note ends where the next one starts
            i = np.searchsorted(all_starts, start, side="right")
            if i < len(all_starts):
                end = min(end, all_starts[i])
        next_start[key] = start
        if end > start:
            out.append(pretty_midi.Note(velocity=int(np.clip(round(vel), 1, 127)), pitch=key, start=start, end=end))
    return out[::-1]


def arrange(controls: Controls, plan: Plan, *, duration: float, seed: int,
            chords: Sequence[tuple[int, int, int] | None] | None = None, guide: bool = True,
            level_shift: np.ndarray | None = None) -> pretty_midi.PrettyMIDI:
    """Drums and bass (and a melody guide) on the beat grid, following intensity and the plan.

    Parameters
    ----------
    controls : Controls
        Needs ``beat`` and ``intensity``. ``emotion``: arousal moves the density up or down;
        ``melody`` steers the bass's chord choice and is played by a guide track.
    plan : Plan
        Key and per-section progressions (one chord per bar); a crash and a new drum
        variant mark each section start, and a fill leads into it.
    duration : float
        Seconds; nothing sounds at or after it.
    seed : int
        Selects the drum variants and small velocity variations. The same inputs and
        seed always give the same MIDI.
    chords : per beat (root, third, fifth) pitch classes, or None
        Chords to follow instead of the plan's progressions (e.g. the symbolic model's
        harmony); a None entry falls back to the plan's chord for that beat.
    guide : bool
        Play the melody control with a guide voice (off when a model writes the melody).
    level_shift : per beat int, or None
        Density levels to add to those intensity and arousal choose (the result stays in
        0-3): how a caller thins or fills the kit where the whole piece needs it
        (``render/dynamics.arousal_level_shift``).

    Returns
    -------
    pretty_midi.PrettyMIDI
        Instruments: drums (``is_drum``), bass (program 33) and, with a melody control,
        a melody guide (program 73, octave 5).

    Raises
    ------
    ParameterError
        If ``beat`` or ``intensity`` is missing, or for a bad duration or seed.
    """
    if not isinstance(controls, Controls):
        raise ParameterError(f"controls = {controls!r}: must be a Controls object")
    for name in ("beat", "intensity"):
        if getattr(controls, name) is None:
            raise ParameterError(f"arrange needs the {name} control; controls has {list(controls.present)}")
    if not isinstance(plan, Plan):
        raise ParameterError(f"plan = {plan!r}: must be a Plan")
    duration, seed = checks.seconds("duration", duration), checks.seed(seed)
    duration = float(duration)
    times, positions, intervals = _grid(controls, duration)
    if len(times) == 0:
        raise ParameterError(f"no beat of the beat control lies before duration = {duration!r} "
                             f"(first beat at {float(controls.beat[0, 0])!r} s)")
    rng = np.random.default_rng(seed)
    bpb = int(controls.beats_per_bar)

    db = sample_linear(controls.intensity, times)[:, 0]
    push = np.zeros_like(db)
    if controls.emotion is not None:
        push = AROUSAL_PUSH_DB * np.clip(sample_linear(controls.emotion, times)[:, 1], -1.0, 1.0)
    levels = density_level(db + push)
    if level_shift is not None:
        level_shift = np.asarray(level_shift)
        if level_shift.shape != levels.shape:
            raise ParameterError(f"level_shift has shape {level_shift.shape}, need one per beat {levels.shape}")
        levels = np.clip(levels + level_shift.astype(int), 0, len(LEVEL_THRESHOLDS_DB))
    velocities = velocity_from_db(db)
    jitter = rng.integers(-3, 4, size=len(times))  # a little life, drawn up front so it is seed-stable

    boundaries = _boundaries(plan, times)
    section = np.searchsorted(boundaries, np.arange(len(times)), side="right")
    starts = [0] + boundaries
    variant = (section + int(rng.integers(3))) % 3  # neighbouring sections always differ
    fill: dict[int, tuple[int, int]] = {}  # beat -> (step, n_steps)
    for i, b in enumerate(boundaries):
        n = min(2 if levels[b - 1] >= 2 else 1, b - starts[i])
        for step in range(n):
            fill[b - n + step] = (step, n)
    bar = np.cumsum(positions == 0) - 1
    # Beat index of each beat's downbeat (the first beat for a pickup before any downbeat).
    bar_start = np.maximum.accumulate(np.where(positions == 0, np.arange(len(times)), 0))
    bar_in_section = np.maximum(bar - np.maximum(bar[starts][section], 0), 0)

    # Chord of each bar: the progression's, or one of its chords holding the melody's note.
    melody_pc = sample_hold(controls.melody, times) if controls.melody is not None else None
    chord_of_beat: list[tuple[int, int, int]] = []
    for k in range(len(times)):
        prog = plan.progressions[min(section[k], len(plan.progressions) - 1)]
        idx = int(bar_in_section[k]) % len(prog)
        degree = prog[idx]
        if melody_pc is not None:
            pc = melody_pc[bar_start[k]]
            if np.isfinite(pc):
                for cand in prog[idx:] + prog[:idx]:
                    if int(pc) in plan.chord(cand):
                        degree = cand
                        break
        given = chords[k] if chords is not None and k < len(chords) else None
        chord_of_beat.append(given if given is not None else plan.chord(degree))

    drums: list[tuple[float, int, float, float]] = []
    bass: list[tuple[float, int, float, float]] = []
    for k, (t, pos, dt) in enumerate(zip(times, positions, intervals)):
        level, vel = int(levels[k]), float(velocities[k]) + float(jitter[k])
        hits = _fill_pattern(level, pos, *fill[k]) if k in fill else _drum_pattern(level, pos, bpb, int(variant[k]))
        if k in starts:
            hits += [(0, CRASH, 1.0), (0, KICK, 1.0)]
        elif level == 3 and pos == 0 and bar_in_section[k] % 4 == 0:
            hits.append((0, CRASH, 0.8))
        for j, key, accent in hits:
            # j == 0 is the beat time itself, never recomputed, so it is exact.
            onset = float(t) if j == 0 else float(t + j * dt / 4.0)
            drums.append((onset, key, vel * accent, 1.5 if key in CYMBALS else 0.12))
        for j, tone, accent in _bass_pattern(level, pos, bpb):
            onset = float(t) if j == 0 else float(t + j * dt / 4.0)
            bass.append((onset, _bass_tone(tone, chord_of_beat[k]), 0.85 * vel * accent, bpb * dt))

    pm = pretty_midi.PrettyMIDI(resolution=_RESOLUTION,
                                initial_tempo=float(np.clip(round(60.0 / np.median(intervals), 2), 30, 300)))
    pm.time_signature_changes.append(pretty_midi.TimeSignature(bpb, 4, 0.0))
    pm.key_signature_changes.append(
        pretty_midi.KeySignature(plan.key_root + (12 if plan.mode == "minor" else 0), 0.0))
    drum_track = pretty_midi.Instrument(program=0, is_drum=True, name="drums (arrangement)")
    drum_track.notes = _finish(drums, duration=duration, legato=False)
    bass_track = pretty_midi.Instrument(program=BASS_PROGRAM, name="bass (arrangement)")
    bass_track.notes = _finish(bass, duration=duration, legato=True)
    pm.instruments += [drum_track, bass_track]
    if melody_pc is not None and guide:
        pm.instruments.append(_melody_guide(melody_pc, times, intervals, velocities, duration))
    return pm


def _melody_guide(pcs: np.ndarray, times: np.ndarray, intervals: np.ndarray,
                  velocities: np.ndarray, duration: float) -> pretty_midi.Instrument:
    """One note per beat at the requested pitch class (octave 5); repeats merge, rests are silent."""
    guide = pretty_midi.Instrument(program=GUIDE_PROGRAM, name="melody guide")
    previous = math.nan
    for pc, t, dt, vel in zip(pcs, times, intervals, velocities):
        end = min(float(t + dt), duration)
        if np.isfinite(pc) and pc == previous and guide.notes:
            guide.notes[-1].end = end
        elif np.isfinite(pc):
            # A floor keeps the requested melody audible even when the intensity is very low.
            velocity = int(np.clip(round(0.8 * vel), 20, 127))
            guide.notes.append(pretty_midi.Note(velocity=velocity, pitch=72 + int(pc), start=float(t), end=end))
        previous = pc
    return guide
