"""Dynamics and arousal of the scored piece: the intensity's rise and fall played by rule, then
the whole mix checked against intensity and arousal by the controls' own measures.

The training corpus has no dynamics (a piece stays within about 1 dB of one level once it
sounds). The model shipped before the velocity walk did not follow the requested intensity with
its velocities at all: it copied the velocity of the notes before, and drew its first whatever
the request (teacher-forced, +6 dB moved its expected velocity by 0.0015, and a crop's first by
0.17, of 127; ``evaluation/sensitivity.py``). So the level of its notes was the seed's: on the
bundled example, from 5 to 16 dB above the video's quiet request, and up to 15 dB louder than
the drums and bass, which the arrangement plays at the request. The shipped model reads the
intensity, but at the corpus's level (``generate/compose.at_model_level``): the level heard is
set here.

:func:`match_level` sets that level: one gain for all the model's notes, so that its melody's
intensity, by the controls' own measure (the definition the model's training controls are),
sits at the request's median. The melody, not melody and harmony together: the arrangement
plays at the request too, and a dense harmony set to it would have put the melody under the
bass (on the example, seed 0, its RMS 2.5 dB below the bass's; with the melody as the lead,
from 1.0 dB below to 3.6 dB above, seeds 0-3). The harmony keeps its relation to the melody,
as the model wrote it. :func:`follow_intensity` then shapes the changes, as a performer would
and as the arrangement does for drums and bass: each note's velocity moves by the intensity's
distance from its median over the sounding part, at the arrangement's slope. Where the
request is silence, the notes fade to the quietest velocity.

:func:`ride_intensity` then closes the loop over the whole mix (model, drums and bass), as
an engineer rides a fader: the mix's own intensity, measured by the very definition the
controls use (:func:`~cuecraft.controls.from_midi.note_intensity_db`, velocity and density),
is compared with the request at each note, and the note's velocity moves by the difference
(at most ``RIDE_MAX_DB``). The mix keeps its overall level; only its shape is corrected,
where the notes' density made it stray (a dense passage under a flat request, a thin one
under a rise). It is written into the MIDI, so the dynamics stay editable.

:func:`rest_where_silent` honours a request for silence (intensity at or below ``SOUNDING_DB``):
nothing starts in it and nothing sounds on into it, drums and bass included. Before it, the
music played on through a requested rest (the arrangement's drums at their quietest velocity,
the model's notes faded), and on held-out pieces with such rests a single rest decided most of
the intensity correlation.

:func:`arousal_level_shift` closes the same kind of loop for arousal: the drum kit's density
(chosen from intensity, pushed by arousal) can make a calm request sound busy, or leave an
excited one flat, once the model's notes are over it. It reads the arousal of each bar of the
finished mix with the controls' own estimator (``controls/from_midi.estimate_emotion``, the
definition the model was trained with) and asks for one density level less where a calm bar
reads as aroused, one more where an aroused bar reads as calm.
"""
from __future__ import annotations

import numpy as np
import pretty_midi

from cuecraft.controls.resample import sample_linear
from cuecraft.render.arrange import VELOCITY_DB_SLOPE

MAX_LEVEL_DB = 20.0     # the most match_level moves the model's notes; the shipped model's seeds needed 5-16 dB
SOUNDING_DB = -60.0     # intensity below this is a request for silence, not a level to play around
MAX_BOOST_DB = 12.0     # the most a note is raised above the model's level, in control dB
RIDE_WINDOW = 1.0       # seconds the mix's intensity is measured over (the controls' own window)
RIDE_MAX_DB = 6.0       # the most the fader ride moves a note; more would override the music's own accents
AROUSAL_DEADBAND = 0.05  # requests this close to neutral are not corrected
SHORTEST_NOTE = 0.05    # seconds: a note cut shorter than this by a requested silence is dropped


def match_level(instruments: list[pretty_midi.Instrument], intensity: np.ndarray | None, *,
                lead: list[pretty_midi.Instrument] | None = None, max_db: float = MAX_LEVEL_DB) -> float:
    """Scale every velocity of ``instruments``, in place, by one gain, so that the intensity of
    ``lead`` (default: all of ``instruments``; ``note_intensity_db``, over the time they sound) has
    the median of the ``intensity`` control (``[T, 2]`` seconds, dB) there. The gain is at most
    ``max_db`` either way; velocities stay in 1..127.

    Returns the gain in dB (0 without an intensity control, notes, or a sounding request).
    """
    from cuecraft.controls.from_midi import note_intensity_db

    notes = [note for instrument in instruments for note in instrument.notes]
    lead = instruments if lead is None else lead
    led = [note for instrument in lead for note in instrument.notes]
    if intensity is None or len(intensity) == 0 or not led:
        return 0.0
    begin, end = min(note.start for note in led), max(note.end for note in led)
    span = np.arange(begin, end, 0.1)
    requested = sample_linear(intensity, span)[:, 0]
    produced = note_intensity_db(pretty_midi_of(lead), span)
    sounding = (requested > SOUNDING_DB) & (produced > SOUNDING_DB)
    if not sounding.any():
        return 0.0
    gain_db = float(np.clip(np.median(requested[sounding]) - np.median(produced[sounding]), -max_db, max_db))
    gain = 10.0 ** (gain_db / 20.0)  # the measure is in power of (velocity / 127): velocity dB = measured dB
    for note in notes:
        note.velocity = int(np.clip(round(note.velocity * gain), 1, 127))
    return gain_db


def pretty_midi_of(instruments: list[pretty_midi.Instrument]) -> pretty_midi.PrettyMIDI:
    """A PrettyMIDI holding ``instruments`` (the same objects, not copies)."""
    pm = pretty_midi.PrettyMIDI()
    pm.instruments = list(instruments)
    return pm


def sounding_median(intensity: np.ndarray | None) -> float | None:
    """The median over time of the ``intensity`` control (``[T, 2]`` seconds, dB) where it asks for
    sound (above ``SOUNDING_DB``), sampled evenly however the control was; None if it never does."""
    if intensity is None or len(intensity) == 0:
        return None
    span = np.arange(intensity[0, 0], intensity[-1, 0] + 0.05, 0.1)
    levels = sample_linear(intensity, span)[:, 0]
    sounding = levels[levels > SOUNDING_DB]
    return float(np.median(sounding)) if len(sounding) else None


def follow_intensity(instruments: list[pretty_midi.Instrument], intensity: np.ndarray | None) -> None:
    """Scale the velocities of ``instruments``' notes, in place, by the ``intensity`` control
    (``[T, 2]`` seconds, dB) at each note's start relative to its median where it sounds.

    No change without an intensity control or where it never sounds.
    """
    median = sounding_median(intensity)
    if median is None:
        return
    for instrument in instruments:
        if not instrument.notes:
            continue
        starts = np.array([note.start for note in instrument.notes])
        change = np.minimum(sample_linear(intensity, starts)[:, 0] - median, MAX_BOOST_DB)
        gains = 10.0 ** (VELOCITY_DB_SLOPE * change / 20.0)
        for note, gain in zip(instrument.notes, gains):
            note.velocity = int(np.clip(round(note.velocity * gain), 1, 127))


def ride_intensity(pm: pretty_midi.PrettyMIDI, intensity: np.ndarray | None, *, max_db: float = RIDE_MAX_DB) -> None:
    """Move every note's velocity of ``pm``, in place, so its intensity follows ``intensity`` (``[T, 2]``
    seconds, dB) around the level it has.

    At each note's start the mix's intensity (``note_intensity_db``) is compared with the
    request; the velocity moves by the difference, less the median difference over the time
    the notes span (the mix's own level), clipped to ``+-max_db``. Notes where the request is
    silence or where nothing sounds are left alone. No change without an intensity control.
    """
    from cuecraft.controls.from_midi import note_intensity_db

    notes = [note for instrument in pm.instruments for note in instrument.notes]
    if intensity is None or len(intensity) == 0 or not notes:
        return
    starts = np.array([note.start for note in notes])
    begin, end = float(starts.min()), max(note.end for note in notes)

    def measured(times: np.ndarray) -> np.ndarray:
        # The measure's window reaches past the music's ends there, which reads as up to 3 dB
        # quieter: count only the part of the window inside the music.
        inside = (np.minimum(times + RIDE_WINDOW / 2, end) - np.maximum(times - RIDE_WINDOW / 2, begin)) / RIDE_WINDOW
        return note_intensity_db(pm, times, window=RIDE_WINDOW) - 10.0 * np.log10(np.clip(inside, 0.5, 1.0))

    # The mix's level: the median difference evenly over time (per note, dense passages would count most).
    span = np.arange(begin, end, 0.1)
    produced, requested = measured(span), sample_linear(intensity, span)[:, 0]
    sounding = (requested > SOUNDING_DB) & (produced > SOUNDING_DB)
    if not sounding.any():
        return
    level = float(np.median(produced[sounding] - requested[sounding]))
    produced, requested = measured(starts), sample_linear(intensity, starts)[:, 0]
    sounding = (requested > SOUNDING_DB) & (produced > SOUNDING_DB)
    change = np.where(sounding, np.clip(requested + level - produced, -max_db, max_db), 0.0)
    gains = 10.0 ** (change / 20.0)  # the measure is in power of (velocity / 127): velocity dB = measured dB
    for note, gain in zip(notes, gains):
        note.velocity = int(np.clip(round(note.velocity * gain), 1, 127))


def silent_spans(intensity: np.ndarray | None) -> np.ndarray:
    """``[K, 2]`` (start, end) seconds where the ``intensity`` control (``[T, 2]`` seconds, dB, read
    linearly between its points as everything reads it) is at or below ``SOUNDING_DB``: requests for
    silence. A span starts and ends where the curve crosses ``SOUNDING_DB``; one reaching the first
    or last point runs from -inf or to +inf (the control holds its end values).

    Read literally, not widened: intensity is a measure over a window (``note_intensity_db``, 1 s),
    so a piece's rest of 1.3 s reads as -80 dB over only its middle 0.3 s, and "silence at t" could
    be taken as "nothing within half a window of t". Widened so, the scored held-out pieces
    followed intensity worse (r 0.79 against 0.83 literally, 80 pieces): it also silenced the
    edges of the rest, where the request still asks for sound."""
    if intensity is None or len(intensity) == 0:
        return np.zeros((0, 2))
    times, db = intensity[:, 0], intensity[:, 1]
    silent = db <= SOUNDING_DB
    edges = np.diff(silent.astype(int))
    starts, ends = list(np.flatnonzero(edges == 1) + 1), list(np.flatnonzero(edges == -1))
    if silent[0]:
        starts.insert(0, 0)
    if silent[-1]:
        ends.append(len(times) - 1)

    def crossing(a: int, b: int) -> float:  # where the line from point a (sounding) to b (silent) meets the threshold
        return float(times[a] + (SOUNDING_DB - db[a]) / (db[b] - db[a]) * (times[b] - times[a]))

    spans = [(-np.inf if i == 0 else crossing(i - 1, i), np.inf if j == len(times) - 1 else crossing(j + 1, j))
             for i, j in zip(starts, ends)]
    return np.array(spans, dtype=float).reshape(-1, 2)


def rest_where_silent(pm: pretty_midi.PrettyMIDI, intensity: np.ndarray | None, *,
                      shortest: float = SHORTEST_NOTE) -> int:
    """Let ``pm`` rest, in place, where the ``intensity`` control asks for silence (:func:`silent_spans`):
    notes starting in a silent span are removed, notes sounding into one end where it starts (removed
    if less than ``shortest`` seconds would be left). Drums included. Returns how many notes were
    removed or shortened."""
    spans = silent_spans(intensity)
    if not len(spans):
        return 0
    changed = 0
    for instrument in pm.instruments:
        kept = []
        for note in instrument.notes:
            # The first span ending after the note starts is the only one it can start in or run into.
            k = int(np.searchsorted(spans[:, 1], note.start, side="right"))
            if k == len(spans) or note.end <= spans[k, 0]:
                kept.append(note)
                continue
            changed += 1
            if spans[k, 0] - note.start >= shortest:
                note.end = float(spans[k, 0])
                kept.append(note)
        instrument.notes = kept
    return changed


def arousal_level_shift(pm: pretty_midi.PrettyMIDI, emotion: np.ndarray | None, beat_times: np.ndarray,
                        positions: np.ndarray) -> np.ndarray:
    """Per beat, -1, 0 or +1 density levels: -1 through a bar whose requested arousal is calm
    (below ``-AROUSAL_DEADBAND``) but whose arousal in ``pm`` reads as positive, +1 through a bar
    asked to be aroused that reads as calm, else 0. ``emotion``: the ``[T, 3]`` control (seconds,
    valence, arousal); ``beat_times``, ``positions``: the beats the arrangement played on."""
    from cuecraft.controls.from_midi import estimate_emotion

    beat_times = np.asarray(beat_times, dtype=float)
    if emotion is None or len(emotion) == 0 or len(beat_times) == 0:
        return np.zeros(len(beat_times), dtype=int)
    bar = np.cumsum(np.asarray(positions) == 0) - 1  # a pickup before the first downbeat is bar -1
    ends = np.append(beat_times[1:], 2 * beat_times[-1] - beat_times[-2] if len(beat_times) > 1 else beat_times[-1] + 0.5)
    bars, first = np.unique(bar, return_index=True)
    last = np.append(first[1:], len(bar)) - 1
    centres = (beat_times[first] + ends[last]) / 2
    wanted = sample_linear(emotion, centres)[:, 1]
    heard = estimate_emotion(pm, centres)[:, 1]
    change = np.where((wanted < -AROUSAL_DEADBAND) & (heard > 0), -1, 0) \
        + np.where((wanted > AROUSAL_DEADBAND) & (heard < 0), 1, 0)  # [bars]
    return change[np.searchsorted(bars, bar)]
