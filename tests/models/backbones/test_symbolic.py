"""The shipped symbolic weights: loadable, and the record of the run that made them."""
import dataclasses
import json
from pathlib import Path

from cuecraft.config import ModelConfig, config_from_dict, load_config
from cuecraft.models.backbones.symbolic import SHIPPED, load_symbolic
from cuecraft.training.checkpoints import read_metadata

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "symbolic-small-dynamics.toml"


def test_shipped_weights_are_what_the_shipped_config_trains():
    config = load_config(CONFIG)
    metadata = read_metadata(SHIPPED)
    # Fields added since the run hold their defaults (the behaviour the weights were trained with).
    assert ModelConfig(**json.loads(metadata["model_config"])) == config.model
    summary = json.loads((SHIPPED.parent / "summary.json").read_text())
    # The run's name and folder say where it was written, not what it trained.
    run = config_from_dict(summary["config"])
    assert run == dataclasses.replace(config, name=run.name, train=dataclasses.replace(config.train,
                                                                                        out_dir=run.train.out_dir))
    assert summary["corpus_hash"] == metadata["corpus"] and summary["tokenizer"] == metadata["tokenizer"]
    # The training log ends at the summary's step and validation loss.
    last = json.loads((SHIPPED.parent / "training-log.jsonl").read_text().splitlines()[-1])
    assert last["step"] == summary["steps"] == config.train.steps
    assert abs(last["val_loss"] - summary["val_loss"]) < 1e-3
    assert SHIPPED.stat().st_size <= 30 * 1024 * 1024


def test_shipped_weights_load_with_this_feature_layout():
    model, tokenizer = load_symbolic()
    assert model.guidance is not None and not model.training
    assert model.guidance.project.control_dims == (3, 43, 1, 2)
    # Decoding windows stop at the training crops' length, not at the larger max_len.
    config = load_config(CONFIG)
    assert model.trained_length == config.data.seq_len < model.max_positions


def test_loaded_model_decodes_through_its_decoding_weights():
    import torch

    from cuecraft.models.decoding import default_precision

    model, _ = load_symbolic()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert any(type(m) is not torch.nn.Linear for m in linears)  # guidance's zero-initialised ones too
    assert linears and all("forward" in m.__dict__ for m in linears)
    assert model.decoding_precision == default_precision()
    if default_precision() == "int8":  # every large layer; the narrow control projections keep fp32
        assert all(m._int8 for m in linears if m.in_features >= 256)


def test_int8_decoding_keeps_the_shipped_models_next_token_distributions():
    import pytest
    import torch

    from cuecraft.models.decoding import default_precision, use_decoding_weights

    if default_precision() != "int8":
        pytest.skip("no fast int8 kernel on this CPU")
    model, tokenizer = load_symbolic()
    torch.manual_seed(0)
    steps = torch.randint(1, tokenizer.vocab_size, (2, model.n_codebooks, 48))
    controls = torch.randn(2, 48, sum(model.guidance.project.control_dims))
    presence = torch.ones(2, 4)
    probs = {}
    try:
        for precision in ("fp32", "int8"):
            use_decoding_weights(model, precision)
            with torch.inference_mode():
                probs[precision] = model(steps, controls=controls, presence=presence, first=steps[:, 0]).softmax(-1)
    finally:
        use_decoding_weights(model)
    distance = 0.5 * (probs["int8"] - probs["fp32"]).abs().sum(-1)  # total variation per position and head
    assert float(distance.mean()) < 0.01 and float(distance.max()) < 0.1
    assert not torch.equal(probs["int8"], probs["fp32"])
