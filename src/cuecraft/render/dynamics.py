"""Dynamics for the model's notes: the intensity control's rise and fall, played by rule.

The training corpus has no dynamics (a piece stays within about 1 dB of one level once it
sounds), so the symbolic model learns the *level* of a request, through its velocity tokens
and its texture, but hardly its changes within a piece. A performer would shape them; this
layer does, as the arrangement does for drums and bass: each note's velocity moves by the
intensity's distance from its median over the sounding part, at the arrangement's slope.
The model's own choice of level and texture stays; only the changes around it are added.
Where the request is silence, the notes fade to the quietest velocity.
"""
from __future__ import annotations

import numpy as np
import pretty_midi

from cuecraft.controls.resample import sample_linear
from cuecraft.render.arrange import VELOCITY_DB_SLOPE

SOUNDING_DB = -60.0     # intensity below this is a request for silence, not a level to play around
MAX_BOOST_DB = 12.0     # the most a note is raised above the model's level, in control dB


def follow_intensity(instruments: list[pretty_midi.Instrument], intensity: np.ndarray | None) -> None:
    """Scale the velocities of ``instruments``' notes, in place, by the ``intensity`` control
    (``[T, 2]`` seconds, dB) at each note's start relative to its median where it sounds.

    No change without an intensity control or where it never sounds.
    """
    if intensity is None or len(intensity) == 0:
        return
    span = np.arange(intensity[0, 0], intensity[-1, 0] + 0.05, 0.1)  # evenly, however it was sampled
    levels = sample_linear(intensity, span)[:, 0]
    sounding = levels[levels > SOUNDING_DB]
    if len(sounding) == 0:
        return
    median = float(np.median(sounding))
    for instrument in instruments:
        if not instrument.notes:
            continue
        starts = np.array([note.start for note in instrument.notes])
        change = np.minimum(sample_linear(intensity, starts)[:, 0] - median, MAX_BOOST_DB)
        gains = 10.0 ** (VELOCITY_DB_SLOPE * change / 20.0)
        for note, gain in zip(instrument.notes, gains):
            note.velocity = int(np.clip(round(note.velocity * gain), 1, 127))
