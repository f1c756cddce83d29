"""The piece being written: its bars on the video's beat grid, its controls at any musical
time, and the tokens so far with the grammar that keeps them valid.

Both decoders (one event token per step, or compound steps) write through :class:`PieceState`,
so the rules that tie the music to the video (the video's bar lengths, the end of the grid,
the opening harmony voice) are the same for both.
"""
from __future__ import annotations

import numpy as np

from cuecraft.controls.features import (CONTROL_ORDER, beat_features, melody_changes_in_beats, sampled_features,
                                        stack_features)
from cuecraft.controls.resample import beat_count
from cuecraft.controls.schema import Controls
from cuecraft.errors import ParameterError
from cuecraft.models.tokenizer import HARMONY_PROGRAM, POSITIONS_PER_BEAT


def music_bars(beat: np.ndarray, *, meters: tuple[int, ...] = (2, 3, 4)) -> tuple[int, list[int]]:
    """The grid index of the first downbeat and the bar lengths (in beats) from there on.

    Bars between the video's downbeats that no meter spells are split (e.g. 5 -> 3 + 2,
    6 -> 4 + 2) or, for a single beat, merged into the bar before, so the total number of
    beats and every downbeat of a spelled bar are kept.
    """
    downbeats = np.flatnonzero(beat[:, 1] == 0)
    if len(downbeats) == 0:
        raise ParameterError("the beat control has no downbeat (position 0)")
    first = int(downbeats[0])
    ends = np.append(downbeats[1:], len(beat))
    lengths: list[int] = []
    for start, end in zip(downbeats, ends):
        lengths.extend(_spell(int(end - start), meters))
    while 1 in lengths:  # a lone beat joins its neighbour, and the pair is spelled again
        i = lengths.index(1)
        j = i - 1 if i > 0 else i + 1
        if j >= len(lengths):
            lengths = [max(meters)] if len(lengths) == 1 else lengths[:i]
            break
        joined = lengths[min(i, j)] + lengths[max(i, j)]
        lengths[min(i, j):max(i, j) + 1] = _spell(joined, meters)
    return first, lengths


def _spell(n: int, meters: tuple[int, ...]) -> list[int]:
    if n in meters or n == 1:
        return [n]
    big = max(meters)
    out = []
    while n > big + 1:
        out.append(big)
        n -= big
    return out + ([n] if n in meters else [n - min(meters), min(meters)])


class ControlTrack:
    """The controls at any musical time of the piece, as the model's feature vector."""

    def __init__(self, controls: Controls, *, first_downbeat: int) -> None:
        if controls.beat is None:
            raise ParameterError("generation needs a beat control (the time base)")
        self.controls = controls
        self.grid = controls.beat[:, 0]
        self.first = first_downbeat
        self.presence = np.array([0.0 if getattr(controls, n) is None else 1.0 for n in CONTROL_ORDER],
                                 dtype=np.float32)
        # The melody's changes on the model's 16th grid, once: every token reads them.
        self.melody = None if controls.melody is None else \
            melody_changes_in_beats(controls.melody, beats_at=self.beats, snap=POSITIONS_PER_BEAT)
        self._rows: dict[tuple[float, float, int], np.ndarray] = {}

    def seconds(self, beats: np.ndarray) -> np.ndarray:
        """Seconds of musical times (beats from the first downbeat), extrapolated past the grid."""
        index = np.asarray(beats, dtype=float) + self.first
        k = np.arange(len(self.grid), dtype=float)
        out = np.interp(index, k, self.grid)
        step_last = self.grid[-1] - self.grid[-2] if len(self.grid) > 1 else 0.5
        after = index > k[-1]
        out[after] = self.grid[-1] + (index[after] - k[-1]) * step_last
        return out

    def beats(self, seconds: np.ndarray) -> np.ndarray:
        """Musical times (beats from the first downbeat) of ``seconds``: the inverse of :meth:`seconds`."""
        return beat_count(self.controls.beat, np.asarray(seconds, dtype=float)) - self.first

    def features(self, beats: np.ndarray, position: np.ndarray, bar_length: np.ndarray) -> np.ndarray:
        """``[T, 49]`` features of tokens at ``beats`` with their bar position and bar length."""
        seconds = self.seconds(beats)
        feats = {"beat": np.concatenate([beat_features(position[i:i + 1], beats_per_bar=int(bar_length[i]))
                                         for i in range(len(beats))])}
        feats.update(sampled_features(self.controls, seconds, beats_at=self.beats, melody_in_beats=self.melody))
        return stack_features(feats, length=len(beats))[0]

    def token_features(self, beat: float, position: float, bar_length: int) -> np.ndarray:
        """One token's feature row (read-only); the tokens of one position share it, so it is kept."""
        key = (beat, position, bar_length)
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = self.features(np.array([beat]), np.array([position]), np.array([bar_length]))[0]
            row.flags.writeable = False
        return row


class PieceState:
    """The tokens written so far, each token's control features, and what may come next.

    ``BOS`` is written on creation. :meth:`allowed` is the grammar's mask narrowed by the
    video: after a ``Bar`` only the ``TimeSig`` of the video's bar, ``EOS`` only in the last
    bar, and (with ``harmony``) a harmony voice forced once, after the first note.
    """

    def __init__(self, tokenizer, controls: Controls, *, harmony: bool) -> None:
        self.tokenizer = tokenizer
        first, self.bars = music_bars(controls.beat)
        self.track = ControlTrack(controls, first_downbeat=first)
        self.grammar = tokenizer.grammar(melody_on_top=harmony)
        self.harmony = harmony
        self.ids: list[int] = []
        self.feats: list[np.ndarray] = []
        self.bar, self._bar_start, self._position = -1, 0.0, 0.0
        self._harmonised = False
        is_timesig = tokenizer.is_type["TimeSig"]
        self._timesig_of = {int(v): int(i) for i, v in zip(np.flatnonzero(is_timesig), tokenizer.values[is_timesig])}
        self._harmony_program = tokenizer.tokens.index(f"Program_{HARMONY_PROGRAM}")
        self.append(tokenizer.bos_id)

    def allowed(self) -> np.ndarray:
        """``[vocab]`` bool: the tokens that may come next."""
        tk = self.tokenizer
        allowed = self.grammar.mask()
        last = self.ids[-1]
        if tk.is_type["Bar"][last]:
            allowed = np.zeros_like(allowed)
            allowed[self._timesig_of[self.bars[self.bar]]] = True  # the video's bar length
        allowed[tk.eos_id] &= self.bar >= len(self.bars) - 1
        if self.harmony and not self._harmonised and tk.is_type["Duration"][last] and allowed[self._harmony_program]:
            allowed = np.zeros_like(allowed)
            allowed[self._harmony_program] = True
            self._harmonised = True
        return allowed

    def ends_with(self, token: int) -> bool:
        """Whether ``token`` ends the piece (``EOS``, or a bar past the video's last one)."""
        return token == self.tokenizer.eos_id or bool(self.tokenizer.is_type["Bar"][token]) \
            and self.bar + 1 >= len(self.bars)

    def append(self, token: int) -> None:
        """Write ``token``, with the control features at its musical time."""
        tk = self.tokenizer
        if tk.is_type["Bar"][token]:
            self.bar += 1
            self._bar_start = float(sum(self.bars[:self.bar]))
            self._position = 0.0
        elif tk.is_type["Position"][token]:
            self._position = float(tk.values[token]) / POSITIONS_PER_BEAT
        length = self.bars[min(max(self.bar, 0), len(self.bars) - 1)]
        self.ids.append(token)
        self.feats.append(self.track.token_features(self._bar_start + self._position, self._position, length))
        self.grammar.update(token)
