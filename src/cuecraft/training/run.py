"""``cuecraft train``: build (or reuse) the corpus, then train the symbolic model on it."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from cuecraft.config import Config, load_config


def run_training(config: Config | str | os.PathLike, *, out_dir: str | os.PathLike | None = None,
                 steps: int | None = None, seed: int | None = None, progress: bool = True,
                 log: Callable[[str], None] = print):
    """Train the model a config describes; returns the loop's :class:`TrainResult`.

    The run folder gets ``model.safetensors`` (weights; metadata: config, tokenizer
    fingerprint, corpus content hash, validation loss), ``log.jsonl`` (loss and validation
    loss) and ``summary.json``; ``checkpoints/`` lets a killed run resume.
    """
    import dataclasses

    from cuecraft.models.tokenizer import MusicTokenizer
    from cuecraft.training.corpus import build_corpus
    from cuecraft.training.loop import train
    from cuecraft.training.token_dataset import TokenDataset

    if not isinstance(config, Config):
        config = load_config(config)
    try:
        import music21  # noqa: F401  (the corpus ships in its wheel)
    except ImportError:
        from cuecraft.errors import ParameterError

        raise ParameterError("cuecraft train needs music21 for its corpus: pip install -e '.[train]'") from None
    if steps is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=steps))
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            from cuecraft.errors import ParameterError

            raise ParameterError(f"seed = {seed!r}: must be an integer >= 0")
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed))
    data = config.data
    manifest = build_corpus(data.corpus_dir, collections=data.collections, limit=data.limit, progress=progress)
    tokenizer = MusicTokenizer()
    datasets = {split: TokenDataset(data.corpus_dir, split=split, seq_len=data.seq_len, seed=config.train.seed,
                                    augment=data.transpose and split == "train", tokenizer=tokenizer,
                                    velocity_walk=data.velocity_walk, velocity_walk_step=data.velocity_walk_step,
                                    texture_thin=data.texture_thin, compound=config.model.compound,
                                    harmony_repeat=data.harmony_repeat if split == "train" else 1)
                for split in ("train", "validation")}
    for split, dataset in datasets.items():
        if len(dataset) == 0:
            from cuecraft.errors import ParameterError

            raise ParameterError(f"the corpus in '{data.corpus_dir}' has no {split} pieces; "
                                 f"raise [data].limit (now {data.limit}) or add collections")
    batch = config.train.batch_size

    def sample_batch(rng, split):
        return datasets[split].sample(rng, batch_size=batch)

    metadata = {"tokenizer": tokenizer.fingerprint, "corpus": manifest.content_hash, "format": "cuecraft-symbolic-1"}
    result = train(config, vocab_size=tokenizer.vocab_size, sample_batch=sample_batch, metadata=metadata,
                   out_dir=out_dir, progress=progress, log=log, ignore_index=tokenizer.pad_id)
    summary = {"config": json.loads(config.to_json()), "steps": result.step, "train_loss": result.train_loss,
               "val_loss": result.val_loss, "corpus_hash": manifest.content_hash,
               "tokenizer": tokenizer.fingerprint, "train_items": len(datasets["train"]),
               "validation_items": len(datasets["validation"])}
    (Path(result.weights).parent / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return result
