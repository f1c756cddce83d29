"""The whole piece: the symbolic model's melody and harmony over the drum/bass arrangement."""
from __future__ import annotations

import numpy as np
import pretty_midi

from cuecraft.controls.schema import Controls
from cuecraft.errors import ParameterError
from cuecraft.generate.plan import Plan

BACKBONES = ("symbolic", "arrangement")
MELODY_PROGRAM = 73   # flute
HARMONY_PROGRAM = 0   # piano


HARMONY_WEIGHT = 2.0   # a harmony note says more about the chord than a melody note, which may pass
ONSET_WEIGHT = 1.0     # extra weight, in beats, of a note sounding as its span starts (a strong beat)
CHANGE_MARGIN = 0.25   # within a bar, the chord changes only if another explains this share more
AROUSAL_ROUNDS = 4     # arrangements tried while a bar's arousal reads against the request
# The corpus's intensity where it sounds: the median of nearly every training piece (5-95% of the
# pieces' medians: -14.56 to -13.26 dB; augmentation spreads it by about -11 to +2.5 dB).
MODEL_LEVEL_DB = -14.56
_PREFERENCE = {0: 0.12, 4: 0.09, 3: 0.08, 5: 0.02}  # the primary triads first (degree -> bonus)


def candidate_chords(plan: Plan) -> list[tuple[tuple[int, int, int], float]]:
    """The key's diatonic triads with their tie-break bonus; a minor key adds the major dominant
    (harmonic minor's raised seventh, which minor folk tunes use at cadences)."""
    out = [(plan.chord(d), _PREFERENCE.get(d, 0.0)) for d in range(7)]
    if plan.mode == "minor":
        root = (plan.key_root + 7) % 12
        out.append(((root, (root + 4) % 12, (root + 7) % 12), 0.07))
    return out


def chords_from_music(melody: list, harmony: list, plan: Plan, times: np.ndarray,
                      positions: np.ndarray) -> list[tuple[int, int, int] | None]:
    """One chord per beat read off the model's notes: for each half bar (a whole bar of 2 or 3
    beats) the triad of ``plan``'s key whose tones sound longest in it (harmony notes count
    ``HARMONY_WEIGHT`` times, notes sounding at the span's start an extra ``ONSET_WEIGHT``
    beats). The second half keeps the first's chord unless another explains ``CHANGE_MARGIN``
    more of it. None for beats of a span where nothing sounds (the arrangement then plays the
    plan's chord). ``times``: beat times; ``positions``: their positions in the bar (0 = downbeat)."""
    times = np.asarray(times, dtype=float)
    positions = np.asarray(positions, dtype=int)
    if len(times) == 0:
        return []
    notes = [(n.start, n.end, n.pitch % 12, 1.0) for n in melody] + \
            [(n.start, n.end, n.pitch % 12, HARMONY_WEIGHT) for n in harmony]
    starts, ends, classes, weights = (np.array([n[i] for n in notes], dtype=float).reshape(-1) for i in range(4))
    beat = float(np.median(np.diff(times))) if len(times) > 1 else 0.5
    bpb = int(positions.max()) + 1
    split = bpb // 2 if bpb >= 4 and bpb % 2 == 0 else bpb
    span_starts = [k for k in range(len(times)) if k == 0 or positions[k] % split == 0 or positions[k] < positions[k - 1]]
    candidates = candidate_chords(plan)
    out: list[tuple[int, int, int] | None] = [None] * len(times)
    previous = None
    for i, k in enumerate(span_starts):
        stop = span_starts[i + 1] if i + 1 < len(span_starts) else len(times)
        t0 = times[k]
        t1 = times[stop] if stop < len(times) else t0 + (stop - k) * beat
        overlap = np.clip(np.minimum(ends, t1) - np.maximum(starts, t0), 0.0, None) / beat
        at_start = (starts <= t0 + 1e-3) & (ends > t0 + 1e-3)
        w = np.bincount(classes.astype(int), weights=weights * (overlap + ONSET_WEIGHT * at_start), minlength=12)
        total = float(w.sum())
        if total <= 0:
            previous = None
            continue
        scores = [sum(w[pc] for pc in chord) / total + bonus for chord, bonus in candidates]
        chord = candidates[int(np.argmax(scores))][0]
        if previous is not None and positions[k] != 0:
            kept = sum(w[pc] for pc in previous) / total + dict(candidates).get(previous, 0.0)
            if max(scores) - kept < CHANGE_MARGIN:
                chord = previous
        out[k:stop] = [chord] * (stop - k)
        previous = chord
    return out


def in_key_of(plan: Plan, notes: list) -> Plan:
    """The plan moved to the key the model wrote in (duration-weighted Krumhansl fit), so the
    arrangement's bass never fights the model's melody where the model wrote no harmony."""
    from dataclasses import replace

    from cuecraft.controls.keys import key_from_melody

    weights = np.zeros(12)
    for note in notes:
        weights[note.pitch % 12] += note.end - note.start
    if weights.sum() <= 0:
        return plan
    root, mode = key_from_melody(weights)
    return replace(plan, key_root=int(root), mode=mode)


def compose(controls: Controls, plan: Plan, *, duration: float, seed: int, backbone: str = "symbolic",
            weights: str | None = None, guidance: float = 1.0, harmony: bool = True,
            progress=None) -> pretty_midi.PrettyMIDI:
    """Melody and harmony from the symbolic model (unless ``backbone="arrangement"``), with the
    drum/bass arrangement whose bass follows the model's harmony. ``guidance``: classifier-free
    guidance scale over the controls (1 = none); ``harmony``: open the piece with a harmony voice
    (:class:`SamplingConfig`), else the model mostly writes a melody alone."""
    from cuecraft.render.arrange import arrange

    if backbone not in BACKBONES:
        raise ParameterError(f"backbone = {backbone!r}: must be one of {', '.join(BACKBONES)}")
    if backbone == "arrangement":
        from cuecraft.render.dynamics import rest_where_silent

        pm = arrange(controls, plan, duration=duration, seed=seed)
        rest_where_silent(pm, controls.intensity)
        return pm
    from cuecraft.generate.sample import SamplingConfig, generate_tokens, tokens_to_midi
    from cuecraft.models.backbones.symbolic import load_symbolic

    model, tokenizer = load_symbolic(weights)
    ids, track = generate_tokens(model, tokenizer, at_model_level(_within(controls, duration)), seed=seed,
                                 config=SamplingConfig(cfg_scale=guidance, harmony=harmony), progress=progress)
    music = tokens_to_midi(tokenizer, ids, track, melody_program=MELODY_PROGRAM, harmony_program=HARMONY_PROGRAM,
                           duration=duration)
    return with_arrangement(music, controls, plan, duration=duration, seed=seed)


def at_model_level(controls: Controls) -> Controls:
    """``controls`` with the intensity moved, where it sounds, so that its median sits at the
    corpus's level (``MODEL_LEVEL_DB``); silence stays silence and every change stays as it was.

    What the model reads of intensity is its changes: its training pieces all sit at one level,
    so a video's level (the bundled example asks for -23 dB) lies at the edge of what it saw,
    where the texture augmentation taught it to drop its harmony voice: asked for -22 dB, it wrote
    9 harmony notes a minute on average (6 seeds) against 114 for the model before it. The level
    the listener hears is set after it, by rule (``render/dynamics.match_level`` and the
    arrangement), from the request itself.
    """
    from dataclasses import replace

    from cuecraft.render.dynamics import SOUNDING_DB, sounding_median

    median = sounding_median(controls.intensity)
    if median is None:
        return controls
    times, db = controls.intensity[:, 0], controls.intensity[:, 1]
    moved = np.where(db > SOUNDING_DB, np.clip(db + MODEL_LEVEL_DB - median, SOUNDING_DB + 1.0, 0.0), db)
    return replace(controls, intensity=np.stack([times, moved], axis=1))


def with_arrangement(music: pretty_midi.PrettyMIDI, controls: Controls, plan: Plan, *, duration: float,
                     seed: int) -> pretty_midi.PrettyMIDI:
    """The model's ``music`` (melody, harmony) over the drum/bass arrangement, in the key the model
    wrote in, with the bass on the model's chords, the model's notes at the requested level and the
    intensity's changes played as dynamics on them, the whole mix's intensity ridden to the
    request, the drums thinned (or filled) where a bar's arousal reads against the request, and
    rests where the intensity asks for silence (``render/dynamics.py``): the piece ``score`` writes."""
    import copy

    from cuecraft.render.arrange import arrange
    from cuecraft.render.dynamics import (arousal_level_shift, follow_intensity, match_level, ride_intensity,
                                          rest_where_silent)

    model_parts = copy.deepcopy(music.instruments)  # the caller's music keeps its velocities
    match_level(model_parts, controls.intensity, lead=model_parts[:1])  # tokens_to_midi: melody, harmony
    follow_intensity(model_parts, controls.intensity)
    beat = controls.beat[controls.beat[:, 0] < duration]
    plan = in_key_of(plan, [note for part in model_parts for note in part.notes])
    chords = chords_from_music(model_parts[0].notes, model_parts[1].notes, plan, beat[:, 0], beat[:, 1])
    shift = np.zeros(len(beat), dtype=int)
    scored, kit = None, None
    for _ in range(AROUSAL_ROUNDS):
        pm = arrange(controls, plan, duration=duration, seed=seed, chords=chords, guide=False, level_shift=shift)
        arranged = _notes_of(pm)
        if arranged == kit:
            break  # every level asked to move was already at the end of its range: nothing changed
        kit = arranged
        pm.instruments += copy.deepcopy(model_parts)
        ride_intensity(pm, controls.intensity)
        scored = pm
        more = arousal_level_shift(pm, controls.emotion, beat[:, 0], beat[:, 1])
        if not more.any():
            break
        shift = shift + more
    rest_where_silent(scored, controls.intensity)
    return scored


def _notes_of(pm: pretty_midi.PrettyMIDI) -> list:
    return [[(n.start, n.pitch, n.velocity) for n in instrument.notes] for instrument in pm.instruments]


def _within(controls: Controls, duration: float) -> Controls:
    """The beat control cut to the video (the model writes bars only where there is picture)."""
    from dataclasses import replace

    beat = controls.beat[controls.beat[:, 0] < duration]
    if len(beat) < 2:
        raise ParameterError(f"the beat control has fewer than 2 beats before {duration:.2f} s")
    return replace(controls, beat=beat)
