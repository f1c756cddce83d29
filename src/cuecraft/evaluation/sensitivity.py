"""Which controls does the symbolic model read, and for which tokens? Teacher-forced sensitivity.

    .venv/bin/python -m cuecraft.evaluation.sensitivity [--weights FILE] [--batches 4] [-o report.json]

A model can follow a control in what it writes only if its next-token distributions move when
the control does. On held-out crops of the corpus (the test split, never trained on), fed with
their true tokens, this measures how far the distributions move:

- for each control, dropped (presence 0) against given: the total variation distance between
  the two next-token distributions, averaged over the targets of each token type (``Pitch``,
  ``Velocity``, ``Position``...);
- the intensity raised and lowered by ``--db`` dB at every step (the pieces' own curve moved);
- the velocity response: how much the expected velocity of the next note moves (in MIDI
  velocity) when the intensity is raised by ``--db`` dB, over every note, and over the first
  note of each crop, where no earlier note's velocity can be copied.

The adherence report (``symbolic_report``) says whether the music follows a request; this says
through which tokens the model could, and which controls it ignores.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from cuecraft.controls.features import CONTROL_ORDER, CONTROL_SLICES
from cuecraft.models.tokenizer import TYPE_INDEX

INTENSITY = CONTROL_SLICES["intensity"].start
DB_PER_FEATURE = 40.0  # controls/features.intensity_features: feature = dB / 40 + 1, in [-1, 1]


def shifted_intensity(controls: torch.Tensor, db: float) -> torch.Tensor:
    """``controls [B, T, C]`` with the intensity feature moved by ``db`` dB, kept within -80..0 dB.
    Steps that ask for silence (-80 dB) stay silent: louder silence is not a request."""
    out = controls.clone()
    column = out[..., INTENSITY]
    silent = column <= -1.0
    out[..., INTENSITY] = torch.where(silent, column, (column + db / DB_PER_FEATURE).clamp(-1.0, 1.0))
    return out


def next_token_probabilities(model, batch: dict, *, controls: torch.Tensor | None = None,
                             presence: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, K, T-1, V]`` probabilities of each next token, fed the batch's true tokens (the
    later slots of a compound step read its true first token, as in training)."""
    tokens = batch["tokens"]
    if tokens.dim() == 2:
        tokens = tokens[:, None]
    controls = batch["controls"] if controls is None else controls
    presence = batch["presence"] if presence is None else presence
    first = tokens[:, 0, 1:] if tokens.shape[1] > 1 else None
    with torch.inference_mode():
        logits = model(tokens[..., :-1], controls=controls[:, :-1], presence=presence, first=first)
    return torch.softmax(logits.float(), dim=-1)


def _targets(batch: dict) -> torch.Tensor:
    tokens = batch["tokens"]
    return (tokens[:, None] if tokens.dim() == 2 else tokens)[..., 1:]  # [B, K, T-1]


def shift_by_type(tokenizer, batch: dict, base: torch.Tensor, changed: torch.Tensor) -> dict[str, float]:
    """Mean total variation distance between ``base`` and ``changed`` next-token distributions
    per type of the true next token (padding left out)."""
    tv = 0.5 * (base - changed).abs().sum(-1).numpy()  # [B, K, T-1]
    types = tokenizer.types[_targets(batch).numpy()]
    return {name: float(tv[types == index].mean()) for name, index in TYPE_INDEX.items()
            if name != "PAD" and (types == index).any()}


def expected_velocity(tokenizer, probabilities: torch.Tensor) -> torch.Tensor:
    """``[...]`` the mean MIDI velocity of ``probabilities [..., V]`` over the Velocity tokens alone."""
    ids = np.flatnonzero(tokenizer.is_type["Velocity"])
    p = probabilities[..., torch.from_numpy(ids)]
    values = torch.from_numpy(tokenizer.values[ids]).to(p.dtype)
    return (p * values).sum(-1) / p.sum(-1).clamp_min(1e-12)


def velocity_response(tokenizer, batch: dict, base: torch.Tensor, louder: torch.Tensor) -> dict[str, float]:
    """How far the expected velocity of the next note moves (MIDI velocity) from the ``base``
    next-token probabilities to the ``louder`` ones (:func:`next_token_probabilities` with the
    intensity raised): over every note ("all notes") and over each crop's first ("first note")."""
    moved = (expected_velocity(tokenizer, louder) - expected_velocity(tokenizer, base)).numpy()  # [B, K, T-1]
    is_velocity = tokenizer.is_type["Velocity"][_targets(batch).numpy()]
    if not is_velocity.any():
        return {"all notes": float("nan"), "first note": float("nan")}
    firsts = []
    for row in range(is_velocity.shape[0]):
        k, t = np.nonzero(is_velocity[row])
        if len(t):
            at = int(np.argmin(t))
            firsts.append(moved[row, k[at], t[at]])
    return {"all notes": float(moved[is_velocity].mean()), "first note": float(np.mean(firsts))}


def sensitivity(model, tokenizer, batch: dict, *, db: float = 6.0) -> dict[str, dict[str, float]]:
    """The distribution shifts of one batch (``tokens``, ``controls``, ``presence`` as the training
    batches): each control dropped, the intensity moved by +-``db`` dB, and the velocity response."""
    base = next_token_probabilities(model, batch)
    out = {}
    for i, name in enumerate(CONTROL_ORDER):
        presence = batch["presence"].clone()
        presence[:, i] = 0.0
        out[f"{name} dropped"] = shift_by_type(tokenizer, batch, base,
                                               next_token_probabilities(model, batch, presence=presence))
    moved = {}
    for sign in (1, -1):
        moved[sign] = next_token_probabilities(model, batch, controls=shifted_intensity(batch["controls"], sign * db))
        out[f"intensity {sign * db:+g} dB"] = shift_by_type(tokenizer, batch, base, moved[sign])
    out[f"velocity change, intensity {db:+g} dB"] = velocity_response(tokenizer, batch, base, moved[1])
    return out


def mean_of(results: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Every entry averaged over batches (NaN left out)."""
    out: dict[str, dict[str, float]] = {}
    for row in results[0]:
        out[row] = {}
        for column in sorted({c for r in results for c in r[row]}):
            values = [r[row][column] for r in results if column in r[row] and np.isfinite(r[row][column])]
            out[row][column] = float(np.mean(values)) if values else float("nan")
    return out


def markdown(table: dict[str, dict[str, float]]) -> str:
    columns = sorted({c for row in table.values() for c in row},
                     key=lambda c: (c not in TYPE_INDEX, TYPE_INDEX.get(c, 0), c))
    lines = ["| change | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row, cells in table.items():
        lines.append(f"| {row} | " + " | ".join(f"{cells[c]:.4f}" if c in cells else "" for c in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from cuecraft.models.backbones.symbolic import load_symbolic
    from cuecraft.training.token_dataset import TokenDataset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="model weights (default: the shipped ones)")
    parser.add_argument("--corpus", default=".cache/corpus", help="built corpus (cuecraft train builds it)")
    parser.add_argument("--split", default="test", choices=("test", "validation"))
    parser.add_argument("--batches", type=int, default=4, help="batches of crops to average over")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--db", type=float, default=6.0, help="how far the intensity is moved, in dB")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", help="write the JSON report here")
    args = parser.parse_args(argv)
    model, tokenizer = load_symbolic(args.weights)
    dataset = TokenDataset(args.corpus, split=args.split, seq_len=model.trained_length, seed=args.seed,
                           augment=False, compound=model.n_codebooks > 1, tokenizer=tokenizer)
    rng = np.random.default_rng(args.seed)
    results = [sensitivity(model, tokenizer, dataset.sample(rng, batch_size=args.batch_size), db=args.db)
               for _ in range(args.batches)]
    table = mean_of(results)
    print(markdown(table))
    if args.output:
        Path(args.output).write_text(json.dumps({"settings": vars(args), "table": table}, indent=1) + "\n")


if __name__ == "__main__":
    main()
