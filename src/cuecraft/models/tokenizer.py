"""The symbolic event vocabulary: miditok REMI with one fixed configuration.

One token stream holds two roles, each a MIDI program: ``MELODY_PROGRAM`` (flute) and
``HARMONY_PROGRAM`` (piano). Time is musical, in beats (quarter notes): a bar is
``Bar TimeSig``, then for each onset ``Position`` (1/16-note grid) followed by its notes,
each ``Program Pitch Velocity Duration``; melody notes come first, pitches ascend within a
role, and a harmony ``Program Chord`` pair (miditok's chord detection) may open the harmony
notes of a position. There are no tempo tokens: the tempo comes from the video's beat grid.
The vocabulary never changes, and :attr:`MusicTokenizer.fingerprint` lets a checkpoint
check that it was trained with the same one.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from cuecraft.checks import positive
from cuecraft.errors import MediaError, ParameterError

MELODY_PROGRAM = 73
HARMONY_PROGRAM = 0
POSITIONS_PER_BEAT = 4
PITCH_RANGE = (21, 108)
METERS = (2, 3, 4)  # beats per bar, all in quarter notes (x/4)
# Durations in beats: 1/4-beat steps up to 2 beats, 1/2 up to 4, whole beats up to 8.
BEAT_RES = {(0, 1): 4, (1, 2): 4, (2, 4): 2, (4, 8): 1}
NUM_VELOCITIES = 8
# miditok's chord qualities without the ninths, which two-role textures never spell out.
CHORD_QUALITIES = ("min", "maj", "dim", "aug", "sus2", "sus4", "7dom", "7min", "7maj", "7halfdim", "7dim", "7aug")
FORMAT = "cuecraft-tokenizer"
TYPES = ("PAD", "BOS", "EOS", "Bar", "TimeSig", "Position", "Program", "Chord", "Pitch", "Velocity", "Duration")
TYPE_INDEX = {name: i for i, name in enumerate(TYPES)}
_ROOTS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def meter_beats(numerator: int, denominator: int) -> int | None:
    """Beats per bar (2, 3 or 4 quarter notes) that spell a time signature, or None.

    A bar of ``L = 4 * numerator / denominator`` quarter notes keeps its length when
    ``L`` is 2, 3 or 4; longer bars are split (6/8, 6/4 -> 3; 4/2, 12/4 -> 4) and shorter
    ones grouped (3/8 -> 3). Meters such as 5/4, 7/8 or 9/8 have no spelling.
    """
    if numerator <= 0 or denominator <= 0:
        return None
    length = 4.0 * numerator / denominator
    for beats in METERS:
        if abs(length - beats) < 1e-9:
            return beats

    def whole(x: float) -> bool:
        return abs(x - round(x)) < 1e-9

    for beats in (4, 3, 2):
        if whole(length / beats) or whole(beats / length):
            return beats
    return None


def _miditok_config():
    import miditok

    return miditok.TokenizerConfig(
        pitch_range=PITCH_RANGE, beat_res=dict(BEAT_RES), num_velocities=NUM_VELOCITIES,
        special_tokens=["PAD", "BOS", "EOS"], use_velocities=True, use_chords=True, use_rests=False,
        use_tempos=False, use_time_signatures=True, time_signature_range={4: list(METERS)},
        use_programs=True, programs=[MELODY_PROGRAM, HARMONY_PROGRAM], one_token_stream_for_programs=True,
        program_changes=False, chord_tokens_with_root_note=True, chord_unknown=None,
        chord_maps={q: miditok.constants.CHORD_MAPS[q] for q in CHORD_QUALITIES},
        use_pitchdrum_tokens=False, remove_duplicated_notes=True)


class MusicTokenizer:
    """MIDI <-> token ids, token times in beats, and the grammar that keeps samples valid.

    Attributes
    ----------
    vocab_size : int
    tokens : tuple of str, the token of each id
    pad_id, bos_id, eos_id : int
    melody_id, harmony_id : int, the two Program tokens
    types : [vocab] int8, each token's index in ``TYPES``
    values : [vocab] float, each token's value (Position index, Pitch, Velocity, Program,
        TimeSig beats per bar, Duration in beats, Chord root pitch class; 0 otherwise)
    is_type : dict type name -> [vocab] bool
    fingerprint : str, sha256 of the configuration and the vocabulary
    """

    def __init__(self) -> None:
        import miditok

        self._tok = miditok.REMI(_miditok_config())
        vocab = self._tok.vocab
        self.tokens = tuple(sorted(vocab, key=vocab.get))
        if [vocab[t] for t in self.tokens] != list(range(len(self.tokens))):
            raise AssertionError("miditok ids are not 0..V-1")
        self.vocab_size = len(self.tokens)
        self._id = dict(vocab)
        self.pad_id, self.bos_id, self.eos_id = (self._id[f"{t}_None"] for t in ("PAD", "BOS", "EOS"))
        kind, value = [], []
        for tok in self.tokens:
            name, _, raw = tok.partition("_")
            kind.append(TYPE_INDEX[name])
            value.append(_token_value(name, raw))
        self.types = np.asarray(kind, dtype=np.int8)
        self.values = np.asarray(value, dtype=float)
        self.is_type = {name: self.types == i for name, i in TYPE_INDEX.items()}
        self.melody_id = self._id[f"Program_{MELODY_PROGRAM}"]
        self.harmony_id = self._id[f"Program_{HARMONY_PROGRAM}"]
        spec = {"tokenization": "REMI", "melody_program": MELODY_PROGRAM, "harmony_program": HARMONY_PROGRAM,
                "positions_per_beat": POSITIONS_PER_BEAT, "pitch_range": list(PITCH_RANGE), "meters": list(METERS),
                "beat_res": [[a, b, r] for (a, b), r in BEAT_RES.items()], "num_velocities": NUM_VELOCITIES,
                "chord_qualities": list(CHORD_QUALITIES)}
        self.spec = spec
        blob = json.dumps({"spec": spec, "vocab": list(self.tokens)}, sort_keys=True).encode()
        self.fingerprint = hashlib.sha256(blob).hexdigest()

    def token_id(self, token: str) -> int:
        """The id of a token string such as ``"Pitch_60"``."""
        if token not in self._id:
            raise ParameterError(f"token {token!r} is not in the vocabulary")
        return self._id[token]

    # -- MIDI <-> ids -------------------------------------------------------------------
    def encode(self, music) -> np.ndarray:
        """Token ids of a piece, framed by BOS and EOS.

        Parameters
        ----------
        music : symusic.Score, pretty_midi.PrettyMIDI, or path to a MIDI file
            Tracks with programs ``MELODY_PROGRAM`` / ``HARMONY_PROGRAM`` keep their role;
            otherwise the pitched track with the highest mean pitch is the melody and the
            others the harmony. Drums, tempo and notes outside ``PITCH_RANGE`` are dropped;
            onsets snap to 1/16 notes.

        Returns
        -------
        [N] int64 ids (``[BOS, EOS]`` for a piece without notes).

        Raises
        ------
        ParameterError
            For a time signature with no spelling in ``METERS`` (see :func:`meter_beats`).
        MediaError
            For an unreadable MIDI file.
        """
        from cuecraft.models.score_input import to_score, two_roles

        score = two_roles(to_score(music))
        ids = self._tok.encode(score).ids if any(len(t.notes) for t in score.tracks) else []
        ids = np.asarray(ids, dtype=np.int64)
        # Chords of the melody role are double stops, not harmony: drop them with their Program.
        chord = np.flatnonzero(self.is_type["Chord"][ids])
        melodic = chord[(chord > 0) & (ids[np.maximum(chord - 1, 0)] == self.melody_id)]
        ids = np.delete(ids, np.concatenate([melodic, melodic - 1]))
        return np.concatenate([[self.bos_id], ids, [self.eos_id]]).astype(np.int64)

    def _check_ids(self, ids) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise ParameterError(f"ids must be a 1-D integer array, got shape {arr.shape} dtype {arr.dtype}")
        bad = (arr < 0) | (arr >= self.vocab_size)
        if np.any(bad):
            raise ParameterError(f"ids[{int(np.flatnonzero(bad)[0])}] = {int(arr[bad][0])}: "
                                 f"not in the vocabulary [0, {self.vocab_size})")
        return arr.astype(np.int64)

    def notes(self, ids) -> np.ndarray:
        """The notes of a token sequence in beats.

        Returns
        -------
        structured [N] array with fields ``program``, ``pitch``, ``velocity`` (int) and
        ``start``, ``duration`` (float beats), sorted by start then program order.
        """
        ids = self._check_ids(ids)
        score = self._decode_score(ids)
        rows = [(t.program, n.pitch, n.velocity, n.time / score.tpq, n.duration / score.tpq)
                for t in score.tracks for n in t.notes]
        dtype = [("program", "i2"), ("pitch", "i2"), ("velocity", "i2"), ("start", "f8"), ("duration", "f8")]
        out = np.array(rows, dtype=dtype)
        return out[np.argsort(out["start"], kind="stable")]

    def _decode_score(self, ids: np.ndarray):
        body = ids[~(self.is_type["PAD"] | self.is_type["BOS"] | self.is_type["EOS"])[ids]]
        if len(body) == 0:
            import symusic

            return symusic.Score(POSITIONS_PER_BEAT)
        try:
            return self._tok.decode(body.tolist())
        except Exception as exc:  # noqa: BLE001 - miditok raises assorted errors on ill-formed input
            raise ParameterError(f"ids do not decode as REMI tokens ({type(exc).__name__}: {exc})") from None

    def decode(self, ids, *, bpm: float = 120.0, output: str = "pretty_midi"):
        """MIDI of a token sequence at a constant tempo.

        Parameters
        ----------
        ids : [N] int token ids (PAD/BOS/EOS are ignored)
        bpm : quarter notes per minute
        output : ``"pretty_midi"`` (a ``pretty_midi.PrettyMIDI`` with a ``melody`` and a
            ``harmony`` instrument and the time signatures) or ``"score"`` (a
            ``symusic.Score`` in ticks, 480 per quarter)
        """
        bpm = positive("bpm", bpm)
        if output not in ("pretty_midi", "score"):
            raise ParameterError(f"output = {output!r}: must be 'pretty_midi' or 'score'")
        ids = self._check_ids(ids)
        score = self._decode_score(ids)
        if output == "score":
            import symusic

            score = score.resample(480)
            score.tempos = [symusic.Tempo(0, qpm=bpm)]
            return score
        import pretty_midi

        seconds = 60.0 / bpm / score.tpq
        pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=bpm)
        for program, name in ((MELODY_PROGRAM, "melody"), (HARMONY_PROGRAM, "harmony")):
            inst = pretty_midi.Instrument(program=program, name=name)
            for track in score.tracks:
                if track.program == program:
                    inst.notes.extend(pretty_midi.Note(velocity=int(n.velocity), pitch=int(n.pitch),
                                                       start=n.time * seconds, end=(n.time + n.duration) * seconds)
                                      for n in track.notes)
            inst.notes.sort(key=lambda n: (n.start, n.pitch))
            pm.instruments.append(inst)
        pm.time_signature_changes = [pretty_midi.TimeSignature(ts.numerator, ts.denominator, ts.time * seconds)
                                     for ts in score.time_signatures]
        return pm

    # -- time ---------------------------------------------------------------------------
    def timeline(self, ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(time in beats, position in bar in beats, beats per bar) of every token.

        The first ``Bar`` starts at beat 0; each later ``Bar`` starts where the previous bar
        (of its ``TimeSig``'s length; 4 before any) ends. Other tokens take the time of the
        last ``Bar``/``Position``.
        """
        ids = self._check_ids(ids)
        types, values = self.types[ids], self.values[ids]
        times, pos_out, bpb_out = np.zeros(len(ids)), np.zeros(len(ids)), np.zeros(len(ids), dtype=np.int64)
        # ``started``: a Bar or Position was seen, so the next Bar starts a new bar.
        bar_start, bar_len, pos, started = 0.0, 4, 0.0, False
        bar, timesig, position = TYPE_INDEX["Bar"], TYPE_INDEX["TimeSig"], TYPE_INDEX["Position"]
        for i, (kind, value) in enumerate(zip(types.tolist(), values.tolist())):
            if kind == bar:
                if started:
                    bar_start += bar_len
                started, pos = True, 0.0
            elif kind == timesig:
                bar_len = int(value)
            elif kind == position:
                started, pos = True, value / POSITIONS_PER_BEAT
            times[i], pos_out[i], bpb_out[i] = bar_start + pos, pos, bar_len
        return times, pos_out, bpb_out

    def token_times_in_beats(self, ids) -> np.ndarray:
        """``[N]`` float: each token's musical time in beats from the first bar."""
        return self.timeline(ids)[0]

    def bar_position(self, ids) -> np.ndarray:
        """``[N]`` float: each token's position in its bar, in beats (0 on the downbeat)."""
        return self.timeline(ids)[1]

    def beats_per_bar(self, ids) -> np.ndarray:
        """``[N]`` int: beats in the bar each token belongs to (from the last TimeSig)."""
        return self.timeline(ids)[2]

    # -- grammar ------------------------------------------------------------------------
    def grammar(self, *, melody_on_top: bool = False):
        """A fresh incremental :class:`cuecraft.models.grammar.Grammar` (``update`` per sampled
        token, ``mask`` for the allowed next ones); ``melody_on_top`` keeps harmony notes at or
        below the sounding melody (for generation: real pieces sometimes cross)."""
        from cuecraft.models.grammar import Grammar

        return Grammar(self, melody_on_top=melody_on_top)

    def grammar_mask(self, ids_so_far) -> np.ndarray:
        """``[vocab]`` bool: the tokens that may follow ``ids_so_far`` (see :meth:`grammar`)."""
        state = self.grammar()
        for token in self._check_ids(ids_so_far).tolist():
            state.update(token)
        return state.mask()

    # -- augmentation -------------------------------------------------------------------
    def transpose_table(self, shift: int) -> np.ndarray:
        """``[vocab]`` int: the id each id becomes when transposed by ``shift`` semitones.

        Pitch tokens move (``-1`` where the result leaves ``PITCH_RANGE``); chord roots
        rotate; every other token maps to itself.
        """
        table = np.arange(self.vocab_size)
        for i, tok in enumerate(self.tokens):
            name, _, raw = tok.partition("_")
            if name == "Pitch":
                table[i] = self._id.get(f"Pitch_{int(raw) + shift}", -1)
            elif name == "Chord":
                root, quality = raw.split(":")
                table[i] = self._id[f"Chord_{_ROOTS[(_ROOTS.index(root) + shift) % 12]}:{quality}"]
        return table

    def velocity_table(self, shift: int) -> np.ndarray:
        """``[vocab]`` int: each Velocity id moved by ``shift`` bins (clipped); others unchanged."""
        table = np.arange(self.vocab_size)
        vel = np.flatnonzero(self.is_type["Velocity"])
        table[vel] = vel[np.clip(np.arange(len(vel)) + shift, 0, len(vel) - 1)]
        return table

    # -- persistence --------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the configuration, vocabulary and fingerprint as JSON (atomically)."""
        from cuecraft.io.files import atomic_path

        path = Path(path)
        data = {"format": FORMAT, "version": 1, "fingerprint": self.fingerprint, "spec": self.spec,
                "vocab": list(self.tokens)}
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MusicTokenizer":
        """The tokenizer described by a :meth:`save` file, refused unless it matches this one.

        Raises
        ------
        MediaError
            For a missing or unreadable file, or one whose vocabulary or configuration
            differs from this cuecraft's (naming the first difference).
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MediaError(f"tokenizer file '{path}': cannot read it ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise MediaError(f"tokenizer file '{path}': not a {FORMAT} file")
        tok = cls()
        if data.get("spec") != tok.spec:
            key = next((k for k in tok.spec if (data.get("spec") or {}).get(k) != tok.spec[k]), "spec")
            raise MediaError(f"tokenizer file '{path}': spec.{key} = {(data.get('spec') or {}).get(key)!r} "
                             f"does not match this tokenizer's {tok.spec.get(key)!r}")
        vocab = data.get("vocab") or []
        if list(vocab) != list(tok.tokens):
            i = next((i for i, (a, b) in enumerate(zip(vocab, tok.tokens)) if a != b), min(len(vocab), tok.vocab_size))
            raise MediaError(f"tokenizer file '{path}': vocab[{i}] = {vocab[i] if i < len(vocab) else None!r} "
                             f"does not match this tokenizer's {tok.tokens[i] if i < tok.vocab_size else None!r}")
        if data.get("fingerprint") != tok.fingerprint:
            raise MediaError(f"tokenizer file '{path}': fingerprint {data.get('fingerprint')!r} "
                             f"does not match {tok.fingerprint!r}")
        return tok


def _token_value(name: str, raw: str) -> float:
    """Numeric value of a token: Position index, Pitch, Velocity, Program, TimeSig beats,
    Duration in beats, Chord root pitch class; 0 otherwise."""
    if name in ("Position", "Pitch", "Velocity", "Program"):
        return float(raw)
    if name == "TimeSig":
        num, den = raw.split("/")
        return 4.0 * int(num) / int(den)
    if name == "Duration":
        beats, frac, res = (int(x) for x in raw.split("."))
        return beats + frac / res
    if name == "Chord":
        return float(_ROOTS.index(raw.split(":")[0]))
    return 0.0
