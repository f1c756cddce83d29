"""Random crops of the built corpus with their per-token controls, for the LM."""
from __future__ import annotations

import os

import numpy as np

from cuecraft.errors import ParameterError
from cuecraft.models.compound import SLOTS, group, step_starts
from cuecraft.models.tokenizer import TYPE_INDEX
from cuecraft.training.piece_controls import REST
from cuecraft.training.texture import thin_harmony, thinned_controls

TRANSPOSE = (-5, 6)       # semitones, both ends included
VELOCITY_SHIFT = (-3, 2)  # velocity bins (of 8; the corpus uses 95 and 79), both ends included


class TokenDataset:
    """Random crops of the corpus pieces with their per-token controls, for the LM.

    A map-style dataset (``__len__``/``__getitem__``) for ``torch.utils.data.DataLoader``,
    plus :meth:`sample` for loops that draw batches from their own generator.

    Each item is a dict of tensors (``torch.utils.data.default_collate`` stacks them to
    ``[B, ...]``)::

        tokens   [T] int64    token ids; PAD (``tokenizer.pad_id``) after a piece's end
        controls [T, 49] float32  ``features.stack_features`` layout (beat 3, melody 43 with
                              its look-ahead over the whole piece, intensity 1, emotion 2);
                              ``controls[i]`` describes the music at ``tokens[i]``'s time;
                              zeros on PAD
        presence [4] float32  all ones (every corpus piece has all four controls; the
                              training loop applies attribute dropout)

    With ``compound``, ``tokens`` is ``[4, T]``: ``T`` steps of up to four event tokens
    (``models/compound.py``), cut from an event-token crop four times as long, and
    ``controls[i]`` are those of step i's first token.

    A crop of ``T = seq_len`` starts at the piece's BOS or at a ``Bar`` token (so its bar
    positions are known), chosen with a generator seeded by ``(seed, epoch, index)``:
    the same item is the same crop until :meth:`set_epoch` changes the epoch. A piece
    yields ``ceil(len / seq_len)`` items per epoch, times ``harmony_repeat`` if it has a harmony
    voice.

    Augmentation (train split by default): a transposition in ``transpose`` semitones,
    drawn among those that keep every pitch in range, moves Pitch tokens, chord roots and
    the melody pitch class; a velocity shift in ``velocity_shift`` bins moves Velocity
    tokens and the intensity by the RMS velocity ratio in dB. With ``velocity_walk`` > 0 the
    shift is a random walk over the crop's bars instead (at each ``Bar`` it steps up or down with
    that probability, by 1 to ``velocity_walk_step`` bins, staying in ``velocity_shift``), so the
    intensity changes within a crop as the velocities do. Valence's register term and arousal's
    velocity term are adjusted with the crop's mean pitch and velocity, an approximation of
    re-running the extractors. With chance ``texture_thin`` a crop that has a harmony voice loses it over
    stretches of bars (:mod:`cuecraft.training.texture`), its controls re-read with the
    extractors, so its intensity changes with its texture; this comes before the other two.
    """

    def __init__(self, root: str | os.PathLike, *, split: str = "train", seq_len: int = 512, seed: int = 0,
                 augment: bool | None = None, transpose: tuple[int, int] = TRANSPOSE,
                 velocity_shift: tuple[int, int] = VELOCITY_SHIFT, velocity_walk: float = 0.0,
                 velocity_walk_step: int = 1, texture_thin: float = 0.0, compound: bool = False, harmony_repeat: int = 1,
                 tokenizer=None) -> None:
        from cuecraft.errors import MediaError
        from cuecraft.training.corpus import ARRAYS, default_tokenizer, load_manifest

        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
            raise ParameterError(f"seq_len = {seq_len!r}: must be an integer >= 2")
        for name, pair in (("transpose", transpose), ("velocity_shift", velocity_shift)):
            if len(pair) != 2 or pair[0] > 0 or pair[1] < 0:
                raise ParameterError(f"{name} = {pair!r}: must be (low <= 0, high >= 0)")
        for name, chance in (("velocity_walk", velocity_walk), ("texture_thin", texture_thin)):
            if isinstance(chance, bool) or not isinstance(chance, (int, float)) or not 0.0 <= chance <= 1.0:
                raise ParameterError(f"{name} = {chance!r}: must be a probability in [0, 1]")
        if isinstance(velocity_walk_step, bool) or not isinstance(velocity_walk_step, int) or velocity_walk_step < 1:
            raise ParameterError(f"velocity_walk_step = {velocity_walk_step!r}: must be an integer >= 1")
        if isinstance(harmony_repeat, bool) or not isinstance(harmony_repeat, int) or harmony_repeat < 1:
            raise ParameterError(f"harmony_repeat = {harmony_repeat!r}: must be an integer >= 1")
        self.manifest = load_manifest(root)
        self.tokenizer = tokenizer or default_tokenizer()
        if self.manifest.tokenizer != self.tokenizer.fingerprint:
            raise MediaError(f"corpus '{root}': built with tokenizer {self.manifest.tokenizer[:12]}, "
                             f"not this one ({self.tokenizer.fingerprint[:12]}); rebuild it")
        with np.load(self.manifest.shard(split), allow_pickle=False) as z:
            self._arrays = {k: z[k] for k in ARRAYS}
            self.ids = [str(x) for x in z["ids"]]
        self.seq_len, self.seed, self.epoch = seq_len, seed, 0
        self.augment = split == "train" if augment is None else bool(augment)
        self.transpose, self.velocity_shift = tuple(transpose), tuple(velocity_shift)
        self.velocity_walk, self.texture_thin = float(velocity_walk), float(texture_thin)
        self.velocity_walk_step = velocity_walk_step
        self.compound = bool(compound)
        # Event tokens per crop: a step holds at most SLOTS of them, so a crop this long fills seq_len steps.
        self._crop_len = seq_len * (SLOTS if self.compound else 1)
        offsets = self._arrays["offsets"]
        crops = np.maximum(1, -(-np.diff(offsets) // self._crop_len))
        if harmony_repeat > 1:
            harmony = np.cumsum(np.concatenate([[0], self._arrays["tokens"] == self.tokenizer.harmony_id]))
            crops = np.where(harmony[offsets[1:]] > harmony[offsets[:-1]], crops * harmony_repeat, crops)
        self._piece = np.repeat(np.arange(len(offsets) - 1), crops)
        tk = self.tokenizer
        self._bars = np.flatnonzero(tk.types[self._arrays["tokens"]] == TYPE_INDEX["Bar"])
        self._shift_tables = {s: tk.transpose_table(s) for s in range(transpose[0], transpose[1] + 1)}
        self._velocity_tables = {k: tk.velocity_table(k) for k in range(velocity_shift[0], velocity_shift[1] + 1)}
        self._velocity_stack = np.stack(list(self._velocity_tables.values()))  # [shifts, vocab], lowest first
        self._melody = {}  # piece -> (token beats, melody changes), computed on first use

    def __len__(self) -> int:
        return len(self._piece)

    def set_epoch(self, epoch: int) -> None:
        """Draw new crops and augmentations for every item."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return self._item(index, np.random.default_rng([self.seed, self.epoch, index]))

    def sample(self, rng: np.random.Generator, *, batch_size: int) -> dict:
        """``batch_size`` random items (pieces weighted by length) drawn with ``rng`` alone,
        stacked: ``tokens [B, T]``, ``controls [B, T, 49]``, ``presence [B, 4]``.

        For a loop that seeds a generator per step, so a resumed run sees the same batches.
        """
        import torch

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ParameterError(f"batch_size = {batch_size!r}: must be an integer >= 1")
        items = [self._item(int(i), rng) for i in rng.integers(len(self), size=batch_size)]
        return {key: torch.stack([item[key] for item in items]) for key in items[0]}

    def _item(self, index: int, rng: np.random.Generator) -> dict:
        import torch

        from cuecraft.training.piece_controls import control_features

        p = int(self._piece[index])
        a, b = (int(x) for x in self._arrays["offsets"][p:p + 2])
        start = a
        if b - a > self._crop_len:
            # Crops start at a bar and keep at least half a window of music.
            lo, hi = np.searchsorted(self._bars, [a, b - self._crop_len // 2])
            starts = np.concatenate([[a], self._bars[lo:hi]])
            start = int(starts[rng.integers(len(starts))])
        thin = self.augment and self.texture_thin > 0.0 and rng.random() < self.texture_thin
        # Thinning removes tokens, so it starts from twice the crop and cuts after.
        stop = min(start + self._crop_len * (2 if thin else 1), b)
        tokens = self._arrays["tokens"][start:stop].astype(np.int64)
        pc = self._arrays["pitch_class"][start:stop].astype(float)
        intensity = self._arrays["intensity"][start:stop].astype(float)
        emotion = self._arrays["emotion"][start:stop].astype(float)
        beats, (change_times, change_pc) = self._piece_melody(p, a, b)
        beats = beats[start - a:stop - a]
        kept = thin_harmony(tokens, tokenizer=self.tokenizer, rng=rng) if thin else None
        if kept is not None:
            pc, intensity, emotion, (change_times, change_pc) = thinned_controls(
                tokens, kept, tokenizer=self.tokenizer, pitch_class=pc, intensity=intensity, emotion=emotion,
                beats=beats, changes=(change_times, change_pc))
            tokens, beats = tokens[kept], beats[kept]
        tokens, pc, intensity, emotion, beats = (x[:self._crop_len] for x in (tokens, pc, intensity, emotion, beats))
        shift = 0
        if self.augment:
            tokens, pc, intensity, emotion, shift = self._augmented(rng, tokens, pc, intensity, emotion)
        _, position, bpb = self.tokenizer.timeline(tokens)
        controls, presence = control_features(position_in_bar=position, beats_per_bar=bpb,
                                              pitch_class=np.where(pc == REST, np.nan, pc),
                                              intensity_db=intensity, emotion=emotion,
                                              beats=beats,
                                              melody_changes=(change_times, np.mod(change_pc + shift, 12)))
        if self.compound:
            controls = controls[step_starts(tokens, self.tokenizer)[:self.seq_len]]
            tokens = group(tokens, self.tokenizer)[:, :self.seq_len]  # [SLOTS, <= T]
        pad = self.seq_len - tokens.shape[-1]
        padding = np.full(tokens.shape[:-1] + (pad,), self.tokenizer.pad_id, dtype=np.int64)
        tokens = np.concatenate([tokens, padding], axis=-1)
        controls = np.concatenate([controls, np.zeros((pad, controls.shape[1]), np.float32)])
        return {"tokens": torch.from_numpy(tokens), "controls": torch.from_numpy(controls),
                "presence": torch.from_numpy(presence)}

    def _augmented(self, rng, tokens, pc, intensity, emotion):
        tk = self.tokenizer
        pitches = tk.values[tokens[tk.types[tokens] == TYPE_INDEX["Pitch"]]]
        allowed = [s for s, table in self._shift_tables.items() if np.all(table[tokens] >= 0)]
        shift = int(allowed[rng.integers(len(allowed))])
        tokens = self._shift_tables[shift][tokens]
        pc = np.where(pc == REST, REST, np.mod(pc + shift, 12))
        emotion = emotion.copy()
        if len(pitches):
            m = pitches.mean()
            emotion[:, 0] += 0.25 * (np.tanh((m + shift - 60.0) / 12.0) - np.tanh((m - 60.0) / 12.0))
        is_velocity = tk.types[tokens] == TYPE_INDEX["Velocity"]
        velocity_ids = tokens[is_velocity]
        before = tk.values[velocity_ids]
        low, high = self.velocity_shift
        k = int(rng.integers(low, high + 1))
        if self.velocity_walk == 0.0:
            tokens = self._velocity_tables[k][tokens]
            level = np.full(len(tokens), k)
        else:
            level = self._walk(rng, k, tokens)
            tokens = self._velocity_stack[level - low, tokens]
        if len(before):
            # Each shift's effect on the crop's velocities, in dB (intensity) and in arousal's velocity term.
            delta = np.zeros(high - low + 1)
            arousal = np.zeros(high - low + 1)
            for j in np.unique(level):
                after = tk.values[self._velocity_tables[int(j)][velocity_ids]]
                delta[j - low] = 20.0 * np.log10(np.sqrt(np.mean(after ** 2) / np.mean(before ** 2)))
                arousal[j - low] = 0.20 * (np.tanh((after.mean() - 80.0) / 30.0) - np.tanh((before.mean() - 80.0) / 30.0))
            # -80 dB means silence: it stays silent whatever the velocities.
            intensity = np.where(intensity <= -80.0, -80.0, np.clip(intensity + delta[level - low], -80.0, 0.0))
            emotion[:, 1] += arousal[level - low]
        return tokens, pc, intensity, np.clip(emotion, -1.0, 1.0), shift

    def _piece_melody(self, piece: int, a: int, b: int):
        """The piece's token times in beats and its top voice's changes, cached per piece."""
        from cuecraft.training.piece_controls import token_melody_changes

        if piece not in self._melody:
            ids = self._arrays["tokens"][a:b].astype(np.int64)
            beats = self.tokenizer.timeline(ids)[0]
            self._melody[piece] = (beats, token_melody_changes(ids, tokenizer=self.tokenizer, beats=beats))
        return self._melody[piece]

    def _walk(self, rng: np.random.Generator, start: int, tokens: np.ndarray) -> np.ndarray:
        """``[T]`` velocity shift per token: ``start``, then at each ``Bar`` a step of 1 to
        ``velocity_walk_step`` bins up or down with probability ``velocity_walk`` (reflected at the
        ends of ``velocity_shift``)."""
        low, high = self.velocity_shift
        bar = np.cumsum(self.tokenizer.types[tokens] == TYPE_INDEX["Bar"])  # [T] bars seen so far
        moves = rng.random(int(bar[-1]) + 1) < self.velocity_walk
        signs = np.where(rng.random(len(moves)) < 0.5, -1, 1)
        if self.velocity_walk_step > 1:
            signs = signs * rng.integers(1, self.velocity_walk_step + 1, size=len(moves))
        level = np.empty(len(moves), dtype=int)
        current = start
        for i in range(len(moves)):
            if i > 0 and moves[i]:
                step = signs[i] if low <= current + signs[i] <= high else -signs[i]
                current = min(high, max(low, current + step))
            level[i] = current
        return level[bar]
