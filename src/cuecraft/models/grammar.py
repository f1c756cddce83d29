"""The token grammar: which token may come next, so sampled sequences decode to valid MIDI."""
from __future__ import annotations

import numpy as np

from cuecraft.models.tokenizer import TYPE_INDEX, HARMONY_PROGRAM, MELODY_PROGRAM, PITCH_RANGE, POSITIONS_PER_BEAT


class Grammar:
    """Which token may come next, so that every sampled sequence decodes to valid MIDI.

    ``BOS Bar``, then each ``Bar`` is followed by one ``TimeSig``; a ``Position`` (strictly
    increasing within the bar, inside the bar's length) opens at least one note; a note is
    ``Program Pitch Velocity Duration``, melody notes before harmony notes at a position,
    pitches strictly ascending within a role there; an optional harmony ``Program Chord``
    pair comes before the harmony notes of a position; ``EOS`` (only after at least one
    note, at a bar or note boundary) is followed by ``PAD`` only. A sequence that does not
    start with ``BOS`` (a carried prompt) is followed from its first token.

    With ``melody_on_top``, harmony notes also stay at or below every melody note still
    sounding, and while the melody rests at or below its last note, so the melody is the top
    voice, as the melody control defines it (without the rest rule, harmony written while the
    melody paused could climb unchecked, and in some generated pieces it ran up to the top of
    the range in dense chords). Real pieces sometimes cross (an alto above the soprano), so
    this is for generation only.
    """

    def __init__(self, tokenizer, *, melody_on_top: bool = False) -> None:
        self._tk = tokenizer
        self.melody_on_top = bool(melody_on_top)
        self.last = -1           # type of the last token; -1 before the first
        self.bar_positions = 4 * POSITIONS_PER_BEAT
        self.pos = -1            # last Position index in this bar
        self.program = -1        # program of the last Program token
        self.top = {MELODY_PROGRAM: -1, HARMONY_PROGRAM: -1}  # highest pitch per role at this position
        self.chord = False       # a Chord at this position already
        self.notes = 0
        self.bar_start = None    # the bar's first position, counted from the first bar
        self.pitch = -1          # pitch of the note being written
        self.melody: list[tuple[float, int]] = []  # (end position, pitch) of melody notes that may sound
        self.last_melody = -1    # pitch of the latest melody note (sounding or not); -1 before any

    def update(self, token: int) -> None:
        """Advance the state by one token id."""
        kind, value = int(self._tk.types[token]), float(self._tk.values[token])
        if kind == TYPE_INDEX["Bar"]:
            self.bar_start = 0 if self.bar_start is None else self.bar_start + self.bar_positions
            self.pos = -1
            self._new_position()
        elif kind == TYPE_INDEX["TimeSig"]:
            self.bar_positions = int(round(value * POSITIONS_PER_BEAT))
        elif kind == TYPE_INDEX["Position"]:
            self.pos = int(value)
            self._new_position()
        elif kind == TYPE_INDEX["Program"]:
            self.program = int(value)
        elif kind == TYPE_INDEX["Chord"]:
            self.chord = True
        elif kind == TYPE_INDEX["Pitch"]:
            self.top[self.program] = max(self.top.get(self.program, -1), int(value))
            self.pitch = int(value)
            self.notes += 1
        elif kind == TYPE_INDEX["Duration"] and self.program == MELODY_PROGRAM:
            self.melody.append((self._now() + value * POSITIONS_PER_BEAT, self.pitch))
            self.last_melody = self.pitch
        self.last = kind

    def _new_position(self) -> None:
        self.top = {MELODY_PROGRAM: -1, HARMONY_PROGRAM: -1}
        self.chord = False
        now = self._now()
        self.melody = [(end, pitch) for end, pitch in self.melody if end > now]

    def _now(self) -> float:
        return (self.bar_start or 0) + max(self.pos, 0)

    def _harmony_ceiling(self) -> int:
        """The highest pitch a harmony note may take now: no higher than any sounding melody note,
        or than the latest melody note while the melody rests."""
        if not self.melody_on_top:
            return PITCH_RANGE[1]
        now = self._now()
        sounding = [pitch for end, pitch in self.melody if end > now]
        if not sounding and self.last_melody >= 0:
            sounding = [self.last_melody]
        return min([PITCH_RANGE[1], *sounding])

    def mask(self) -> np.ndarray:
        """``[vocab]`` bool of the allowed next tokens (never all False)."""
        tk, last, is_ = self._tk, self.last, self._tk.is_type
        allowed = np.zeros(tk.vocab_size, dtype=bool)
        position_ok = is_["Position"] & (tk.values > self.pos) & (tk.values < self.bar_positions)
        may_end = self.notes > 0
        if last == -1:
            allowed[tk.bos_id] = True
        elif last == TYPE_INDEX["BOS"]:
            allowed |= is_["Bar"]
        elif last == TYPE_INDEX["Bar"]:
            allowed |= is_["TimeSig"]
        elif last == TYPE_INDEX["TimeSig"]:
            allowed |= position_ok | is_["Bar"]
            allowed[tk.eos_id] = may_end
        elif last in (TYPE_INDEX["Position"], TYPE_INDEX["Duration"]):
            allowed |= self._program_mask()
            if last == TYPE_INDEX["Duration"]:
                allowed |= position_ok | is_["Bar"]
                allowed[tk.eos_id] = may_end
        elif last == TYPE_INDEX["Program"]:
            allowed |= is_["Pitch"] & (tk.values > self.top.get(self.program, -1))
            if self.program == HARMONY_PROGRAM:
                allowed &= ~is_["Pitch"] | (tk.values <= self._harmony_ceiling())
            if self.program == HARMONY_PROGRAM and not self.chord and self.top[HARMONY_PROGRAM] < 0:
                allowed |= is_["Chord"]
        elif last == TYPE_INDEX["Chord"]:
            allowed[tk.harmony_id] = True
        elif last == TYPE_INDEX["Pitch"]:
            allowed |= is_["Velocity"]
        elif last == TYPE_INDEX["Velocity"]:
            allowed |= is_["Duration"]
        else:  # EOS, PAD
            allowed[tk.pad_id] = True
        return allowed

    def _program_mask(self) -> np.ndarray:
        tk = self._tk
        out = np.zeros(tk.vocab_size, dtype=bool)
        # A role can add a note while a higher pitch is left; the melody only before any harmony.
        out[tk.harmony_id] = max(self.top[HARMONY_PROGRAM], PITCH_RANGE[0] - 1) < self._harmony_ceiling()
        out[tk.melody_id] = self.top[HARMONY_PROGRAM] < 0 and self.top[MELODY_PROGRAM] < PITCH_RANGE[1]
        return out
