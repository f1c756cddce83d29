"""Compound steps: the event tokens of one note decoded in one model step.

A note is four event tokens (``Program Pitch Velocity Duration``), so nine tenths of a
piece's tokens are notes and decoding costs four model steps per note. Following the
Compound Word Transformer (Hsiao et al., 2021), a compound model reads and writes a whole
group of tokens per step, one token per *slot*:

- a step opens at a ``BOS``, ``EOS``, ``Bar``, ``Position`` or ``Program`` token and holds
  the tokens after it up to the next opener: ``Bar TimeSig``, ``Position``,
  ``Program Chord`` and ``Program Pitch Velocity Duration``;
- empty slots hold ``PAD``.

The vocabulary is the event vocabulary itself (every slot uses all of it; the grammar keeps
each slot to its token types), so the tokenizer, its fingerprint and everything that reads
event tokens (MIDI, controls, evaluation) are unchanged: :func:`group` and :func:`flatten`
convert losslessly. The controls of a step are those of its first token, which shares its
time with the rest of the step.
"""
from __future__ import annotations

import numpy as np

from cuecraft.errors import ParameterError
from cuecraft.models.tokenizer import TYPE_INDEX

SLOTS = 4  # the longest step: Program Pitch Velocity Duration
OPENERS = ("BOS", "EOS", "Bar", "Position", "Program")


def opens_step(tokenizer) -> np.ndarray:
    """``[vocab]`` bool: True for the token types that begin a step."""
    return np.isin(tokenizer.types, [TYPE_INDEX[name] for name in OPENERS])


def step_starts(ids: np.ndarray, tokenizer) -> np.ndarray:
    """Indices of the tokens of ``ids`` that begin a step (the first token always does)."""
    ids = np.asarray(ids, dtype=np.int64)
    starts = opens_step(tokenizer)[ids]
    if len(ids):
        starts[0] = True
    return np.flatnonzero(starts)


def group(ids, tokenizer) -> np.ndarray:
    """``[SLOTS, S]`` int64 steps of the event tokens ``ids`` (``PAD`` in empty slots).

    ``PAD`` tokens in ``ids`` (a padded crop) are dropped. Raises ParameterError if a step
    would hold more than ``SLOTS`` tokens (ids that no tokenizer output has).
    """
    ids = np.asarray(ids, dtype=np.int64)
    ids = ids[ids != tokenizer.pad_id]
    starts = step_starts(ids, tokenizer)
    steps = np.full((SLOTS, len(starts)), tokenizer.pad_id, dtype=np.int64)
    if not len(ids):
        return steps
    lengths = np.diff(np.append(starts, len(ids)))  # tokens per step
    slot = np.arange(len(ids)) - np.repeat(starts, lengths)
    if slot.max() >= SLOTS:
        at = int(np.flatnonzero(slot >= SLOTS)[0])
        raise ParameterError(f"token {at} ({tokenizer.tokens[ids[at]]}) would be slot {int(slot[at])} of a step; "
                             f"a step holds at most {SLOTS} tokens")
    steps[slot, np.repeat(np.arange(len(starts)), lengths)] = ids
    return steps


def flatten(steps, tokenizer) -> np.ndarray:
    """The event tokens of ``[SLOTS, S]`` steps, in order, without ``PAD``."""
    steps = np.asarray(steps, dtype=np.int64)
    if steps.ndim != 2 or steps.shape[0] != SLOTS:
        raise ParameterError(f"steps must be [{SLOTS}, S], got shape {steps.shape}")
    ids = steps.T.reshape(-1)
    return ids[ids != tokenizer.pad_id]
