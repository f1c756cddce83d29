import numpy as np
import pytest
import torch

from cuecraft.config import Config, ModelConfig, TrainConfig
from cuecraft.controls.features import N_FEATURES
from cuecraft.training.loop import latest_checkpoint, train

VOCAB = 16


def config(tmp_path, steps):
    return Config(model=ModelConfig(d_model=32, n_layers=2, n_heads=2, max_len=64, guidance_every=2, patch_len=4,
                                    dropout=0.1, guidance="concat", p_drop_global=0.1, p_drop_control=0.1),
                  train=TrainConfig(steps=steps, batch_size=8, lr=1e-2, warmup=5, eval_every=10, eval_batches=2,
                                    ckpt_every=10, threads=1, out_dir=str(tmp_path / "run")))


def sample_batch(rng: np.random.Generator, split: str):
    """A task the controls solve: each next token is the melody control's pitch class."""
    batch, length = 8, 24
    pcs = rng.integers(0, 12, size=(batch, length))
    tokens = np.concatenate([np.full((batch, 1), 12), pcs[:, :-1]], axis=1)  # token t+1 = pc at t
    controls = np.zeros((batch, length, N_FEATURES), np.float32)
    controls[np.arange(batch)[:, None], np.arange(length)[None, :], 3 + pcs] = 1.0
    presence = np.tile(np.array([0, 1, 0, 0], np.float32), (batch, 1))
    return {"tokens": torch.as_tensor(tokens, dtype=torch.long), "controls": torch.as_tensor(controls),
            "presence": torch.as_tensor(presence)}


def test_loss_falls_and_checkpoints_resume_exactly(tmp_path):
    straight = train(config(tmp_path / "a", 30), vocab_size=VOCAB, sample_batch=sample_batch, metadata={},
                     progress=False, log=lambda s: None)
    assert straight.step == 30 and straight.val_loss < 0.7 * np.log(VOCAB)  # chance is log(VOCAB)
    lines = (tmp_path / "a" / "run" / "log.jsonl").read_text().splitlines()
    assert len(lines) == 3 and "val_loss" in lines[0]

    cfg_b = config(tmp_path / "b", 30)
    calls = {"train": 0}

    def killed_at_step_25(rng, split):
        calls[split] = calls.get(split, 0) + 1
        if split == "train" and calls["train"] > 25:
            raise KeyboardInterrupt  # the process is killed after the step-20 checkpoint
        return sample_batch(rng, split)

    with pytest.raises(KeyboardInterrupt):
        train(cfg_b, vocab_size=VOCAB, sample_batch=killed_at_step_25, metadata={}, progress=False,
              log=lambda s: None)
    torch.manual_seed(1234)  # whatever the RNG did in between must not matter
    assert latest_checkpoint(tmp_path / "b" / "run").name == "step-0000020"
    resumed = train(cfg_b, vocab_size=VOCAB, sample_batch=sample_batch, metadata={}, progress=False,
                    log=lambda s: None)
    assert resumed.step == 30
    from safetensors.torch import load_file

    a, b = load_file(str(straight.weights)), load_file(str(resumed.weights))
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert len(list((tmp_path / "b" / "run" / "checkpoints").glob("step-*"))) == 2
