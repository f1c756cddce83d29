"""Texture augmentation: a crop's harmony voices dropped over stretches of bars.

The corpus has no dynamics (a piece's level stays within about 1 dB once it sounds), so a model
trained on it never sees intensity change inside a piece and does not follow a video's
intensity. Dropping the harmony voices in some bars of a harmonised crop, and re-reading the
controls off the thinned music with the same extractors, gives crops whose intensity moves with
their texture: a bar with four voices is about 5 dB louder than the melody alone.
"""
from __future__ import annotations

import numpy as np

from cuecraft.models.tokenizer import TYPE_INDEX
from cuecraft.training.piece_controls import REST, piece_control_values, token_melody_changes

TEXTURE_SWITCH = 0.35  # chance at each bar that a thinned stretch ends or a full one begins
DECODE_BPM = 100.0     # tempo the controls' changes are re-read at (the crop's own tempo is not kept)


def thin_harmony(ids: np.ndarray, *, tokenizer, rng: np.random.Generator,
                 switch: float = TEXTURE_SWITCH) -> np.ndarray | None:
    """Indices of the tokens of ``ids`` kept when the harmony voice is dropped in some bars.

    Bars alternate between full and thinned stretches: the first bar is thinned with chance
    1/2 and each later ``Bar`` switches with chance ``switch``. A thinned bar loses every
    harmony ``Program`` token with what it opens (a note's Pitch/Velocity/Duration or a Chord),
    and any ``Position`` left without a note. ``None`` when the crop has no harmony to drop or
    no bar was thinned.
    """
    ids = np.asarray(ids)
    types = tokenizer.types[ids]
    is_harmony = ids == tokenizer.harmony_id
    if not is_harmony.any():
        return None
    is_bar = types == TYPE_INDEX["Bar"]
    bar = np.cumsum(is_bar)  # [T] bars opened so far (0 before the first)
    states = np.empty(int(bar[-1]) + 1, dtype=bool)
    states[0] = thinned = rng.random() < 0.5
    for i in range(1, len(states)):
        if rng.random() < switch:
            thinned = not thinned
        states[i] = thinned
    # A Program opens a group that lasts until the next Program, Position, Bar or EOS.
    opener = np.isin(types, [TYPE_INDEX[t] for t in ("Program", "Position", "Bar", "EOS", "BOS", "PAD")])
    group = np.cumsum(opener)  # [T] the group each token belongs to
    drop_group = np.zeros(int(group[-1]) + 1, dtype=bool)
    drop_group[group[is_harmony & states[bar]]] = True
    keep = ~drop_group[group] | ~np.isin(types, [TYPE_INDEX[t] for t in ("Program", "Chord", "Pitch",
                                                                        "Velocity", "Duration")])
    if keep.all():
        return None
    kept = np.flatnonzero(keep)
    # A Position must be followed by a Program (a note or chord at that position).
    kept_types = types[kept]
    follows = np.append(kept_types[1:], TYPE_INDEX["EOS"])
    orphan = (kept_types == TYPE_INDEX["Position"]) & (follows != TYPE_INDEX["Program"])
    return kept[~orphan]


def thinned_controls(ids: np.ndarray, kept: np.ndarray, *, tokenizer, pitch_class: np.ndarray,
                     intensity: np.ndarray, emotion: np.ndarray, beats: np.ndarray,
                     changes: tuple[np.ndarray, np.ndarray]):
    """The stored controls of a crop, moved to its thinned tokens ``ids[kept]``.

    Intensity and emotion move by what the extractors (:func:`piece_control_values`) read
    on the thinned crop minus what they read on the whole crop, so the crop's edges (whose
    windows reach outside it) keep their stored values; the top voice is re-read where the
    thinning changed it. ``beats`` are the crop's token times in the piece and ``changes``
    the piece's melody changes: inside the crop they are re-read off the thinned tokens.

    Returns ``(pitch_class, intensity, emotion, changes)`` for the kept tokens, with
    ``pitch_class`` coded as stored (``REST`` where nothing sounds).
    """
    before = piece_control_values(tokenizer.decode(ids, bpm=DECODE_BPM), ids, tokenizer=tokenizer)
    thin_ids = ids[kept]
    after = piece_control_values(tokenizer.decode(thin_ids, bpm=DECODE_BPM), thin_ids, tokenizer=tokenizer)
    pc = pitch_class[kept].copy()
    moved = ~((after.pitch_class == before.pitch_class[kept])
              | (np.isnan(after.pitch_class) & np.isnan(before.pitch_class[kept])))
    pc[moved] = np.where(np.isnan(after.pitch_class[moved]), REST, after.pitch_class[moved])
    level = intensity[kept] + after.intensity_db - before.intensity_db[kept]
    silent = (intensity[kept] <= -80.0) | (after.intensity_db <= -80.0)
    level = np.where(silent, -80.0, np.clip(level, -80.0, 0.0))
    mood = np.clip(emotion[kept] + after.emotion - before.emotion[kept], -1.0, 1.0)
    end = beats[kept[-1]]
    inside_t, inside_pc = token_melody_changes(thin_ids, tokenizer=tokenizer, beats=beats[kept])
    piece_t, piece_pc = changes
    crop = (inside_t <= end)
    later = piece_t > end
    merged = (np.concatenate([inside_t[crop], piece_t[later]]), np.concatenate([inside_pc[crop], piece_pc[later]]))
    return pc, level, mood, merged
