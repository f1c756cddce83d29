"""Writing a whole video's music with the symbolic model: one piece, window by window.

The beat control is the time base. Its bars (downbeat to downbeat) become the piece's bars:
each ``Bar`` token is followed by a forced ``TimeSig`` of that bar's length, so the model's
downbeats land exactly on the video's downbeats, and a note's time in beats maps to seconds
through the beat grid. Every token is conditioned on the controls at its own time. When the
model's context is full, decoding restarts from a carried prompt (the last bars, with their
own per-token controls), so key, tempo and theme carry across any length of video.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cuecraft.controls.features import (CONTROL_ORDER, beat_features, melody_changes_in_beats, sampled_features,
                                        stack_features)
from cuecraft.controls.resample import beat_count
from cuecraft.controls.schema import Controls
from cuecraft.errors import ParameterError
from cuecraft.models.tokenizer import POSITIONS_PER_BEAT


@dataclass(frozen=True)
class SamplingConfig:
    """How tokens are drawn. ``top_k=0`` and ``top_p=1`` switch those filters off."""

    temperature: float = 0.95
    top_k: int = 0
    top_p: float = 0.95
    cfg_scale: float = 1.0    # 1 = conditional only (one forward); > 1 adds classifier-free guidance
    carry: int = 256          # tokens of carried prompt when the window is full (at most half the window)
    # Open the piece with a harmony voice under its first melody note. Most of the corpus is
    # melody-only folk song, so unprompted the model seldom harmonises; one forced harmony
    # Program token puts it in its harmonised (chorale) style, and every note is still its own.
    # The grammar then keeps the harmony at or below the melody, the voice the melody control sets.
    harmony: bool = True

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ParameterError(f"temperature = {self.temperature!r}: must be > 0")
        if not 0 < self.top_p <= 1:
            raise ParameterError(f"top_p = {self.top_p!r}: must be in (0, 1]")
        if self.top_k < 0 or self.carry < 16:
            raise ParameterError(f"top_k = {self.top_k!r} must be >= 0 and carry = {self.carry!r} >= 16")


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


def _filter(logits: torch.Tensor, allowed: np.ndarray, config: SamplingConfig) -> torch.Tensor:
    logits = logits / config.temperature
    logits = logits.masked_fill(~torch.from_numpy(allowed), float("-inf"))
    if config.top_k:
        kth = torch.topk(logits, min(config.top_k, int(allowed.sum()))).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p < 1:
        probs, order = torch.sort(torch.softmax(logits, dim=-1), descending=True)
        cut = torch.cumsum(probs, dim=-1) - probs > config.top_p  # keep the smallest set reaching top_p
        logits = logits.masked_fill(torch.zeros_like(cut).scatter(0, order, cut), float("-inf"))
    return logits


@torch.no_grad()
def generate_tokens(model, tokenizer, controls: Controls, *, seed: int, config: SamplingConfig = SamplingConfig(),
                    max_len: int | None = None, progress=None) -> tuple[np.ndarray, ControlTrack]:
    """Token ids of a piece covering every bar of the beat control.

    Returns the ids (BOS ... EOS) and the control track used (for mapping beats to seconds).
    ``max_len``: the decoding window in tokens; by default the length the model was trained on.
    """
    from cuecraft.models.tokenizer import HARMONY_PROGRAM, POSITIONS_PER_BEAT

    first, bars = music_bars(controls.beat)
    track = ControlTrack(controls, first_downbeat=first)
    presence = torch.from_numpy(track.presence)[None]  # [1, 4]
    grammar = tokenizer.grammar(melody_on_top=config.harmony)
    generator = torch.Generator().manual_seed(int(seed))
    max_len = max_len or model.trained_length
    is_bar, is_timesig, is_position = tokenizer.is_type["Bar"], tokenizer.is_type["TimeSig"], tokenizer.is_type["Position"]
    timesig_of = {int(v): int(i) for i, v in zip(np.flatnonzero(is_timesig), tokenizer.values[is_timesig])}
    ids: list[int] = []
    feats: list[np.ndarray] = []
    bar, bar_start, position = -1, 0.0, 0.0
    is_duration = tokenizer.is_type["Duration"]
    harmony_program = tokenizer.tokens.index(f"Program_{HARMONY_PROGRAM}")
    harmonised = False
    state = {"cache": None}

    def feed(new_ids: list[int], new_feats: list[np.ndarray]) -> torch.Tensor:
        tokens = torch.tensor(new_ids, dtype=torch.long)[None, None]  # [1, 1, T]
        ctrl = torch.from_numpy(np.stack(new_feats))[None]  # [1, T, C]
        if config.cfg_scale != 1.0:
            from cuecraft.models.guidance import cfg_logits

            logits, _ = cfg_logits(model, tokens, controls=ctrl, presence=presence, scale=config.cfg_scale,
                                   cache=state["cache"])
        else:
            logits = model.step(tokens, ctrl, presence, cache=state["cache"])
        return logits[0, 0, -1]  # [V]

    def restart() -> torch.Tensor:
        # Carry the last bars: start the prompt at a Bar token so the grammar state is clean.
        start = max(0, len(ids) - min(config.carry, max_len // 2))
        bars_at = [i for i in range(start, len(ids)) if is_bar[ids[i]]]
        start = bars_at[0] if bars_at else start
        state["cache"] = model.new_cache(2 if config.cfg_scale != 1.0 else 1, max_len)
        return feed(ids[start:], feats[start:])

    def append(token: int) -> None:
        nonlocal bar, bar_start, position
        if is_bar[token]:
            bar += 1
            bar_start = float(sum(bars[:bar]))
            position = 0.0
        elif is_position[token]:
            position = float(tokenizer.values[token]) / POSITIONS_PER_BEAT
        length = bars[min(max(bar, 0), len(bars) - 1)]
        ids.append(token)
        feats.append(track.token_features(bar_start + position, position, length))
        grammar.update(token)

    append(tokenizer.bos_id)
    state["cache"] = model.new_cache(2 if config.cfg_scale != 1.0 else 1, max_len)
    logits = feed(ids, feats)
    while True:
        allowed = grammar.mask()
        if is_bar[ids[-1]]:
            allowed = np.zeros_like(allowed)
            allowed[timesig_of[bars[bar]]] = True  # the video's bar length
        allowed[tokenizer.eos_id] &= bar >= len(bars) - 1
        if config.harmony and not harmonised and is_duration[ids[-1]] and allowed[harmony_program]:
            allowed = np.zeros_like(allowed)
            allowed[harmony_program] = True
            harmonised = True
        token = int(torch.multinomial(torch.softmax(_filter(logits, allowed, config), -1), 1, generator=generator))
        if token == tokenizer.eos_id or (is_bar[token] and bar + 1 >= len(bars)):
            ids.append(tokenizer.eos_id)
            break
        append(token)
        if progress is not None and is_bar[token]:
            progress(bar + 1, len(bars))
        if state["cache"].pos + 1 >= max_len:
            logits = restart()
        else:
            logits = feed([token], [feats[-1]])
    return np.asarray(ids, dtype=np.int64), track


def tokens_to_midi(tokenizer, ids: np.ndarray, track: ControlTrack, *, melody_program: int,
                   harmony_program: int, duration: float):
    """The generated melody and harmony as a PrettyMIDI in seconds (on the video's beat grid)."""
    import pretty_midi

    from cuecraft.models.tokenizer import MELODY_PROGRAM

    notes = tokenizer.notes(ids)
    start = track.seconds(notes["start"])
    end = track.seconds(notes["start"] + notes["duration"])
    pm = pretty_midi.PrettyMIDI(resolution=960)
    parts = {True: pretty_midi.Instrument(program=melody_program, name="melody (symbolic model)"),
             False: pretty_midi.Instrument(program=harmony_program, name="harmony (symbolic model)")}
    for note, s, e in zip(notes, start, end):
        if s >= duration:
            continue
        parts[bool(note["program"] == MELODY_PROGRAM)].notes.append(
            pretty_midi.Note(velocity=int(note["velocity"]), pitch=int(note["pitch"]), start=float(s),
                             end=float(min(max(e, s + 0.02), duration))))
    pm.instruments.extend(parts.values())
    return pm
