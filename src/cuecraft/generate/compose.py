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


def chords_from_harmony(harmony: pretty_midi.Instrument, times: np.ndarray) -> list[tuple[int, int, int] | None]:
    """A (root, third, fifth) per beat from the model's harmony: the lowest sounding note is
    the root, the third is minor if a minor third sounds above it; None where nothing sounds."""
    starts = np.array([n.start for n in harmony.notes])
    ends = np.array([n.end for n in harmony.notes])
    pitches = np.array([n.pitch for n in harmony.notes])
    out: list[tuple[int, int, int] | None] = []
    for t in times:
        sounding = pitches[(starts <= t + 1e-3) & (ends > t + 1e-3)] if len(pitches) else pitches
        if len(sounding) == 0:
            out.append(out[-1] if out else None)
            continue
        root = int(sounding.min()) % 12
        classes = {int(p) % 12 for p in sounding}
        third = (root + 3) % 12 if (root + 3) % 12 in classes else (root + 4) % 12
        out.append((root, third, (root + 7) % 12))
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
        return arrange(controls, plan, duration=duration, seed=seed)
    from cuecraft.generate.sample import SamplingConfig, generate_tokens, tokens_to_midi
    from cuecraft.models.backbones.symbolic import load_symbolic

    model, tokenizer = load_symbolic(weights)
    ids, track = generate_tokens(model, tokenizer, _within(controls, duration), seed=seed,
                                 config=SamplingConfig(cfg_scale=guidance, harmony=harmony), progress=progress)
    music = tokens_to_midi(tokenizer, ids, track, melody_program=MELODY_PROGRAM, harmony_program=HARMONY_PROGRAM,
                           duration=duration)
    return with_arrangement(music, controls, plan, duration=duration, seed=seed)


def with_arrangement(music: pretty_midi.PrettyMIDI, controls: Controls, plan: Plan, *, duration: float,
                     seed: int) -> pretty_midi.PrettyMIDI:
    """The model's ``music`` (melody, harmony) over the drum/bass arrangement, in the key the model
    wrote in, with the bass on the model's chords, and the intensity's changes played as dynamics
    on the model's notes (``render/dynamics.py``): the piece ``score`` writes."""
    from cuecraft.render.arrange import arrange

    import copy

    from cuecraft.render.dynamics import follow_intensity

    melody, harmony = copy.deepcopy(music.instruments)  # the caller's music keeps its velocities
    follow_intensity([melody, harmony], controls.intensity)
    beats = controls.beat[controls.beat[:, 0] < duration, 0]
    plan = in_key_of(plan, melody.notes + harmony.notes)
    pm = arrange(controls, plan, duration=duration, seed=seed, chords=chords_from_harmony(harmony, beats),
                 guide=False)
    pm.instruments += [melody, harmony]
    return pm


def _within(controls: Controls, duration: float) -> Controls:
    """The beat control cut to the video (the model writes bars only where there is picture)."""
    from dataclasses import replace

    beat = controls.beat[controls.beat[:, 0] < duration]
    if len(beat) < 2:
        raise ParameterError(f"the beat control has fewer than 2 beats before {duration:.2f} s")
    return replace(controls, beat=beat)
