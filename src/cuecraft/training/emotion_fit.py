"""Fit the audio emotion map (``controls/audio_emotion.py``) to the note-level emotion definition.

    .venv/bin/python -m cuecraft.training.emotion_fit [--pieces 300] [--test-pieces 100] [-o runs/audio-emotion]

The model's emotion controls are defined on notes (``controls/from_midi.estimate_emotion``);
reading them from audio (a reference track, ``cuecraft evaluate``) has to land on the same scale.
Each piece from the corpus's train split is decoded at a random tempo (60-160 BPM) with its
velocities scaled by a random gain (-12 to +6 dB), each part on a random instrument
(``PROGRAMS``), laid over the drum/bass arrangement half of
the time (the music ``score`` writes has drums; the corpus has none), rendered with the default
SoundFont, and read both ways every 0.5 s: the audio features
(``controls/from_audio.emotion_features``) and the note-level valence and arousal. The map is the
ridge least-squares fit of the second on the first. It is then measured on pieces of the test
split, made the same way, against the hand-set rule used before (``audio_emotion.HAND_SET``).

Writes ``OUT/map.safetensors`` and ``OUT/summary.json`` (the held-out figures). The same
arguments give the same map: the pieces, tempi, gains and arrangements come from ``--seed``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cuecraft.controls.audio_emotion import FEATURES, HAND_SET, EmotionMap, save_emotion_map
from cuecraft.io.files import OutputSet

SR = 22050
MAX_SECONDS = 30.0
MIN_SECONDS = 8.0
RIDGE = 1e-3  # per example; the features are all of order 1
# Each part is played by one of these General MIDI programs (0-based), drawn per piece and part, so
# that the map does not learn one timbre's brightness and level: fitted on the model's own flute
# and piano alone, it read a plain piano piece's arousal as -0.69 where its notes give -0.13.
PROGRAMS = (0, 4, 19, 24, 40, 48, 56, 68, 71, 73)  # pianos, organ, guitar, violin, strings, trumpet, oboe, clarinet, flute


def piece_examples(tokenizer, ids: np.ndarray, rng: np.random.Generator, *,
                   programs: tuple[int, ...] | None = PROGRAMS) -> tuple[np.ndarray, np.ndarray] | None:
    """``(features [T, F], note-level emotion [T, 2])`` of one corpus piece made as the module
    docstring says, or None if it is shorter than ``MIN_SECONDS``. ``programs=None`` keeps the
    instruments the model's music is played on (``tokenizer.decode``'s)."""
    from cuecraft.controls.from_audio import emotion_features
    from cuecraft.controls.from_midi import controls_from_midi, estimate_emotion
    from cuecraft.render.synth import DEFAULT_SOUNDFONT, render_midi

    pm = tokenizer.decode(ids, bpm=float(rng.uniform(60.0, 160.0)))
    end = pm.get_end_time()
    if end < MIN_SECONDS:
        return None
    duration = min(MAX_SECONDS, end)
    gain = 10.0 ** (rng.uniform(-12.0, 6.0) / 20.0)
    for instrument in pm.instruments:
        if programs is not None:
            instrument.program = int(rng.choice(programs))
        for note in instrument.notes:
            note.velocity = int(np.clip(round(note.velocity * gain), 1, 127))
    arranged = bool(rng.random() < 0.5)
    if arranged:
        from cuecraft.generate.compose import with_arrangement
        from cuecraft.generate.plan import make_plan

        controls = controls_from_midi(pm)
        seed = int(rng.integers(2 ** 31))
        pm = with_arrangement(pm, controls, make_plan(controls, cuts=[], duration=duration, seed=seed),
                              duration=duration, seed=seed)
    audio = render_midi(pm, sample_rate=SR, soundfont=DEFAULT_SOUNDFONT, duration=duration)
    times, features = emotion_features(audio.mean(axis=1) if audio.ndim == 2 else audio, sr=SR)
    # Past MAX_SECONDS the notes go on but the audio stops: the two windows would differ there.
    keep = times + 2.0 <= duration if end > duration else np.ones(len(times), dtype=bool)
    return features[keep], estimate_emotion(pm, times[keep])


def examples(tokenizer, pieces: list[np.ndarray], *, seed: int, progress: bool = True, desc: str = "pieces",
             programs: tuple[int, ...] | None = PROGRAMS) -> tuple[np.ndarray, np.ndarray, int]:
    """Stacked ``(features, targets, pieces used)`` of ``pieces`` (token arrays); ``programs`` as in
    :func:`piece_examples`."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for ids in tqdm(pieces, desc=desc, disable=not progress):
        made = piece_examples(tokenizer, ids, rng, programs=programs)
        if made is not None and len(made[0]):
            xs.append(made[0])
            ys.append(made[1])
    if not xs:
        return np.zeros((0, len(FEATURES))), np.zeros((0, 2)), 0
    return np.concatenate(xs), np.concatenate(ys), len(xs)


def fit(features: np.ndarray, targets: np.ndarray, *, ridge: float = RIDGE) -> EmotionMap:
    """The ridge least-squares map from ``features [N, F]`` to ``targets [N, 2]`` (the bias unpenalised)."""
    if len(features) < features.shape[1] + 1:
        raise ValueError(f"{len(features)} examples cannot fit {features.shape[1]} features and a bias")
    x = np.column_stack([features, np.ones(len(features))])
    penalty = ridge * len(features) * np.diag(np.append(np.ones(features.shape[1]), 0.0))
    solution = np.linalg.solve(x.T @ x + penalty, x.T @ targets)  # [F + 1, 2]
    return EmotionMap(weights=solution[:-1].T.copy(), bias=solution[-1].copy())


def agreement(emotion_map: EmotionMap, features: np.ndarray, targets: np.ndarray) -> dict[str, dict[str, float]]:
    """Per dimension: Pearson r, mean difference (map minus notes), mean absolute error and sign
    agreement of the map's reading against the note-level definition."""
    got = emotion_map(features)
    out = {}
    for column, name in enumerate(("valence", "arousal")):
        a, b = got[:, column], targets[:, column]
        out[name] = {"r": float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan"),
                     "bias": float(np.mean(a - b)), "mae": float(np.mean(np.abs(a - b))),
                     "sign_agreement": float(np.mean(np.sign(a) == np.sign(b)))}
    return out


def _split_pieces(corpus: str, split: str, count: int, seed: int) -> list[np.ndarray]:
    from cuecraft.training.corpus import load_manifest

    with np.load(load_manifest(corpus).shard(split), allow_pickle=False) as z:
        tokens, offsets = z["tokens"], z["offsets"]
    order = np.random.default_rng(seed).permutation(len(offsets) - 1)[:count]
    return [tokens[offsets[i]:offsets[i + 1]].astype(np.int64) for i in order]


def main(argv: list[str] | None = None) -> None:
    from cuecraft.models.tokenizer import MusicTokenizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=".cache/corpus", help="built corpus (cuecraft train builds it)")
    parser.add_argument("--pieces", type=int, default=300, help="train-split pieces to fit on")
    parser.add_argument("--test-pieces", type=int, default=100, help="test-split pieces to measure on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", default="runs/audio-emotion", help="folder for map.safetensors and summary.json")
    args = parser.parse_args(argv)
    tokenizer = MusicTokenizer()
    x, y, used = examples(tokenizer, _split_pieces(args.corpus, "train", args.pieces, args.seed), seed=args.seed,
                          desc="train pieces")
    tx, ty, test_used = examples(tokenizer, _split_pieces(args.corpus, "test", args.test_pieces, args.seed),
                                 seed=args.seed + 1, desc="test pieces")
    if not test_used or len(x) < len(FEATURES) + 1:
        raise SystemExit(f"emotion_fit: corpus '{args.corpus}' gave {used} train and {test_used} test pieces of "
                         f"{MIN_SECONDS:.0f} s or more: too few to fit and measure a map")
    emotion_map = fit(x, y)
    summary = {"settings": vars(args), "features": list(FEATURES), "train": {"pieces": used, "windows": len(x)},
               "test": {"pieces": test_used, "windows": len(tx)},
               "held_out": {"fitted": agreement(emotion_map, tx, ty), "hand_set": agreement(HAND_SET, tx, ty)},
               "train_fit": agreement(emotion_map, x, y),
               "weights": {"valence": dict(zip(FEATURES, emotion_map.weights[0].round(4).tolist())),
                           "arousal": dict(zip(FEATURES, emotion_map.weights[1].round(4).tolist())),
                           "bias": emotion_map.bias.round(4).tolist()}}
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    # The map and the figures that describe it land together or not at all.
    with OutputSet({"map": out / "map.safetensors", "summary": out / "summary.json"}, overwrite=True) as outputs:
        save_emotion_map(emotion_map, outputs.temp("map"), metadata={"fit": summary["held_out"]["fitted"]})
        outputs.temp("summary").write_text(json.dumps(summary, indent=1) + "\n")
        outputs.commit()
    print(json.dumps(summary["held_out"], indent=1))


if __name__ == "__main__":
    main()
