"""Pieces of music21's bundled corpus as two-role scores (melody + harmony).

music21's corpus ships in its wheel, so this training music installs offline. Each piece
becomes a ``symusic.Score`` with a melody track (the part with the highest mean pitch:
Bach's soprano, Palestrina's top voice, a folk tune's only line) and a harmony track (the
other parts, or a folk tune's chord symbols realised as block chords re-struck at each bar
line). Time signatures are spelled in the tokenizer's meters, and a pickup is padded so
bar lines fall where the score puts them.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cuecraft.models.tokenizer import HARMONY_PROGRAM, MELODY_PROGRAM, meter_beats

# Collections that parse cleanly, in a stable order (see ``build_corpus``).
DEFAULT_COLLECTIONS = ("bach", "ryansMammoth", "essenFolksong", "oneills1850", "nottingham-dataset", "airdsAirs",
                       "miscFolk", "palestrina", "monteverdi", "josquin")
EXTENSIONS = (".mxl", ".xml", ".musicxml", ".krn", ".abc")
TPQ = 480
DEFAULT_BPM = 100.0  # the corpus rarely marks a tempo
MELODY_VELOCITY, HARMONY_VELOCITY = 95, 79  # the corpus has no dynamics; the melody stands out
CHORD_BASE = 48  # realised chord roots sit in [C3 - 5, C3 + 6]


class SkipPiece(Exception):
    """A piece that cannot become training music; ``args[0]`` is the reason."""


@dataclass(frozen=True)
class Piece:
    """One converted piece: its two-role score, tempo and where it came from."""

    score: object  # symusic.Score, ticks at TPQ per quarter
    bpm: float
    chord_symbols: int


def corpus_root() -> Path:
    """music21's corpus folder inside its installed package."""
    from music21 import corpus

    return Path(corpus.__file__).parent


def source_files(collection: str) -> list[Path]:
    """The score files of one corpus collection (a top-level folder), sorted."""
    folder = corpus_root() / collection
    if not folder.is_dir():
        known = sorted(p.name for p in corpus_root().iterdir() if p.is_dir() and not p.name.startswith("_"))
        raise FileNotFoundError(f"collection {collection!r}: no such music21 corpus folder; known: {', '.join(known)}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def parse_file(path: Path) -> list:
    """The scores in a file: one, or each score of an Opus (large ABC files hold many tunes)."""
    from music21 import converter, stream

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # music21 warns about every odd ABC header
        parsed = converter.parse(str(path), forceSource=True, storePickle=False)
    if isinstance(parsed, stream.Opus):
        return list(parsed.scores)
    return [parsed]


def _events(part) -> tuple[list, list]:
    """(notes as (offset, duration, pitches, velocity|None), chord symbols as (offset, cs))."""
    from music21 import harmony

    notes, symbols = [], []
    for el in part.stripTies(inPlace=False).flatten().notes:
        if isinstance(el, harmony.ChordSymbol):
            symbols.append((float(el.offset), el))
            continue
        dur = float(el.duration.quarterLength)
        pitches = [p.midi for p in getattr(el, "pitches", ())]
        if dur <= 0 or el.duration.isGrace or not pitches:
            continue
        velocity = el.volume.velocity if el.hasVolumeInformation() else None
        notes.append((float(el.offset), dur, pitches, velocity))
    return notes, symbols


def _meters(part, end: float) -> tuple[list[tuple[float, int]], float]:
    """([(offset, beats per bar)], pickup shift) from the part's time signatures."""
    from music21 import meter, stream

    changes = []
    for ts in part.flatten().getElementsByClass(meter.TimeSignature):
        beats = meter_beats(ts.numerator, ts.denominator)
        if beats is None:
            raise SkipPiece("meter")
        offset = float(ts.offset)
        if changes and abs(changes[-1][0] - offset) < 1e-6:
            changes[-1] = (offset, beats)
        elif not changes or changes[-1][1] != beats:
            changes.append((offset, beats))
    if not changes or changes[0][0] > 1e-6:
        changes.insert(0, (0.0, changes[0][1] if changes else 4))
    shift = 0.0
    measures = list(part.getElementsByClass(stream.Measure))
    if measures:
        first = measures[0]
        bar, have = float(first.barDuration.quarterLength), float(first.duration.quarterLength)
        if 0 < have < bar - 1e-6:
            shift = (bar - have) % changes[0][1]
    shifted = [0.0] + [at + shift for at, _ in changes[1:]]
    # Each change must fall on a bar line of the meter before it, as the tokens spell bars.
    for (prev, at), (_, beats) in zip(zip(shifted, shifted[1:]), changes):
        if abs((at - prev) / beats - round((at - prev) / beats)) > 1e-6:
            raise SkipPiece("meter")
    return [(at, beats) for at, (_, beats) in zip(shifted, changes)], shift


def _bar_lines(meters: list[tuple[float, int]], end: float) -> np.ndarray:
    lines = []
    for i, (at, beats) in enumerate(meters):
        stop = meters[i + 1][0] if i + 1 < len(meters) else end
        lines.extend(np.arange(at, stop, beats))
    return np.asarray(lines + [end])


def _realise(symbols: list, bar_lines: np.ndarray, end: float, shift: float) -> list:
    """Block chords (offset, duration, pitches) for chord symbols, re-struck at bar lines."""
    out = []
    for k, (offset, cs) in enumerate(symbols):
        try:
            pcs = [p.pitchClass for p in cs.pitches]
            root = cs.root().pitchClass if pcs else None
        except Exception:  # noqa: BLE001 - music21 fails on unusual chord figures; skip that symbol
            continue
        if not pcs:  # "N.C.": silence until the next symbol
            continue
        base = CHORD_BASE + root - (12 if root > 6 else 0)
        pitches = sorted({base + (pc - root) % 12 for pc in pcs})
        start = offset + shift
        stop = min(symbols[k + 1][0] + shift if k + 1 < len(symbols) else end, end)
        cuts = [start] + [b for b in bar_lines if start + 1e-6 < b < stop - 1e-6] + [stop]
        out.extend((a, b - a, pitches) for a, b in zip(cuts, cuts[1:]) if b - a > 1e-6)
    return out


def _bpm(m21score) -> float:
    from music21 import tempo

    for mark in m21score.recurse().getElementsByClass(tempo.MetronomeMark):
        try:
            bpm = float(mark.getQuarterBPM())
        except Exception:  # noqa: BLE001 - marks without a number
            continue
        if math.isfinite(bpm) and bpm > 0:
            return float(np.clip(bpm, 40.0, 240.0))
    return DEFAULT_BPM


def to_piece(m21score) -> Piece:
    """The two-role score of a music21 Score.

    Raises
    ------
    SkipPiece
        ``"empty"`` without pitched notes, ``"meter"`` for a time signature with no
        spelling in the tokenizer's meters or a change off the bar grid.
    """
    import symusic

    parts = list(m21score.parts) or [m21score]
    events = [_events(p) for p in parts]
    voiced = [i for i, (notes, _) in enumerate(events) if notes]
    if not voiced:
        raise SkipPiece("empty")
    mean_pitch = [np.mean([np.mean(p) for _, _, p, _ in events[i][0]]) for i in voiced]
    melody = voiced[int(np.argmax(mean_pitch))]
    end = max(o + d for i in voiced for o, d, _, _ in events[i][0])
    meters, shift = _meters(parts[melody], end)
    end += shift

    tracks = {}
    for program, name in ((MELODY_PROGRAM, "melody"), (HARMONY_PROGRAM, "harmony")):
        tracks[program] = symusic.Track(program=program, name=name)
    for i in voiced:
        program = MELODY_PROGRAM if i == melody else HARMONY_PROGRAM
        default = MELODY_VELOCITY if i == melody else HARMONY_VELOCITY
        for offset, dur, pitches, velocity in events[i][0]:
            for pitch in pitches:
                tracks[program].notes.append(symusic.Note(round((offset + shift) * TPQ), max(1, round(dur * TPQ)),
                                                          int(pitch), int(velocity or default)))
    symbols = sorted((s for _, syms in events for s in syms), key=lambda s: s[0])
    if symbols and len(voiced) == 1:
        for offset, dur, pitches in _realise(symbols, _bar_lines(meters, end), end, shift):
            for pitch in pitches:
                tracks[HARMONY_PROGRAM].notes.append(symusic.Note(round(offset * TPQ), max(1, round(dur * TPQ)),
                                                                  int(pitch), HARMONY_VELOCITY))
    score = symusic.Score(TPQ)
    bpm = _bpm(m21score)
    score.tempos.append(symusic.Tempo(0, qpm=bpm))
    for at, beats in meters:
        score.time_signatures.append(symusic.TimeSignature(round(at * TPQ), beats, 4))
    for program in (MELODY_PROGRAM, HARMONY_PROGRAM):  # melody first: the tokens write it first
        if len(tracks[program].notes):
            tracks[program].notes.sort()
            score.tracks.append(tracks[program])
    return Piece(score=score, bpm=bpm, chord_symbols=len(symbols))
