"""`cuecraft train` on the tiny preset: real chorales, a few steps, the loss falls."""
import dataclasses
import json
import math

from cuecraft.cli import main
from cuecraft.config import load_config
from cuecraft.models.tokenizer import MusicTokenizer
from cuecraft.training.checkpoints import read_metadata
from cuecraft.training.run import run_training


def test_tiny_training_learns_and_records_provenance(tmp_path, capsys):
    config = load_config("configs/symbolic-tiny.toml")
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, corpus_dir=str(tmp_path / "corpus")))
    result = run_training(config, out_dir=tmp_path / "run", progress=False, log=lambda s: None)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [20, 40]
    vocab = MusicTokenizer().vocab_size
    assert log[-1]["val_loss"] < log[0]["val_loss"] < math.log(vocab)  # learning, and better than chance
    meta = read_metadata(result.weights)
    manifest = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    assert meta["corpus"] == manifest["content_hash"] and meta["tokenizer"] == MusicTokenizer().fingerprint
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 40 and summary["corpus_hash"] == manifest["content_hash"]
    # Started again, the run resumes at its last checkpoint: nothing left to do, same weights.
    from safetensors.torch import load_file

    before = load_file(str(result.weights))
    again = run_training(config, out_dir=tmp_path / "run", progress=False, log=lambda s: None)
    after = load_file(str(again.weights))
    assert again.step == 40 and before.keys() == after.keys()
    assert all(bool((before[k] == after[k]).all()) for k in before)
    assert read_metadata(again.weights) == meta


def test_tiny_compound_training_learns_and_its_weights_write_music(tmp_path):
    """One step per note: the same corpus in steps, the loss per event token falls, and the
    weights load and generate through the same entry points as the one-stream model."""
    import numpy as np

    from cuecraft.controls.schema import Controls
    from cuecraft.generate.sample import generate_tokens
    from cuecraft.models.backbones.symbolic import load_symbolic

    config = load_config("configs/symbolic-tiny.toml")
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, corpus_dir=str(tmp_path / "corpus")),
                                 model=dataclasses.replace(config.model, compound=True))
    result = run_training(config, out_dir=tmp_path / "run", progress=False, log=lambda s: None)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["val_loss"] < log[0]["val_loss"] < math.log(MusicTokenizer().vocab_size)
    model, tokenizer = load_symbolic(result.weights)
    assert model.n_codebooks == 4 and model.first is not None
    beats = np.arange(32) * 0.5
    ids, _ = generate_tokens(model, tokenizer, Controls(beat=np.stack([beats, np.arange(32) % 4], 1)), seed=0)
    assert tokenizer.is_type["Bar"][ids].sum() == 8 and len(tokenizer.notes(ids)) > 0


def test_train_cli_rejects_a_bad_config(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nd_model = 'wide'\n")
    assert main(["train", "--config", str(bad), "-q"]) == 2
    err = capsys.readouterr().err
    assert "[model].d_model = 'wide'" in err and len(err.strip().splitlines()) == 1


def test_train_cli_seed_override_changes_the_run_and_is_recorded(tmp_path):
    config = load_config("configs/symbolic-tiny.toml")
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, corpus_dir=str(tmp_path / "corpus")))
    base = run_training(config, out_dir=tmp_path / "a", steps=2, progress=False, log=lambda s: None)
    other = run_training(config, out_dir=tmp_path / "b", steps=2, seed=7, progress=False, log=lambda s: None)
    assert json.loads(read_metadata(other.weights)["config"])["train"]["seed"] == 7
    from safetensors.torch import load_file

    a, b = load_file(str(base.weights)), load_file(str(other.weights))
    assert any(not bool((a[k] == b[k]).all()) for k in a)  # another seed: other initial weights and batches


def test_train_cli_rejects_a_negative_seed(capsys):
    assert main(["train", "--config", "configs/symbolic-tiny.toml", "--seed", "-1", "-q"]) == 2
    assert "seed = -1" in capsys.readouterr().err
