"""Teacher-forced sensitivity: how far the model's next-token distributions move with each control."""
import numpy as np
import pytest
import torch
from torch import nn

from cuecraft.config import ModelConfig
from cuecraft.controls.features import CONTROL_ORDER
from cuecraft.evaluation import sensitivity as sens
from cuecraft.models.builders import build_symbolic_lm
from cuecraft.models.compound import SLOTS, group, step_starts
from cuecraft.models.tokenizer import MusicTokenizer
from cuecraft.training.piece_controls import piece_controls

from .test_symbolic_report import reference_piece

CONFIG = ModelConfig(d_model=32, n_layers=2, n_heads=2, max_len=128, guidance_every=2, patch_len=4, compound=True)


@pytest.fixture(scope="module")
def tokenizer():
    return MusicTokenizer()


@pytest.fixture(scope="module")
def batch(tokenizer):
    """Two crops of a real tokenised piece, as compound steps with their controls."""
    pm = reference_piece(seconds=16.0)
    ids = tokenizer.encode(pm)
    controls, presence = piece_controls(pm, ids, tokenizer=tokenizer)
    steps, controls = group(ids, tokenizer), controls[step_starts(ids, tokenizer)]
    crops = [slice(0, 60), slice(20, 80)]
    return {"tokens": torch.stack([torch.from_numpy(steps[:, c]) for c in crops]),
            "controls": torch.stack([torch.from_numpy(controls[c]).float() for c in crops]),
            "presence": torch.from_numpy(np.stack([presence, presence])).float()}


def test_a_fresh_guidance_branch_reads_no_control_and_a_trained_one_does(tokenizer, batch):
    torch.manual_seed(0)
    model = build_symbolic_lm(CONFIG, vocab_size=tokenizer.vocab_size).eval()
    fresh = sens.sensitivity(model, tokenizer, batch)
    # CGD's zero-initialised layers: the controls cannot reach the logits yet.
    assert set(fresh) == {f"{n} dropped" for n in CONTROL_ORDER} | {"intensity +6 dB", "intensity -6 dB",
                                                                   "velocity change, intensity +6 dB"}
    for row, cells in fresh.items():
        assert cells and all(abs(v) < 1e-6 for v in cells.values()), (row, cells)
    assert {"Pitch", "Velocity", "Duration", "Position"} <= set(fresh["melody dropped"])
    with torch.no_grad():
        for layer in (*model.guidance.zero_in, *model.guidance.zero_out):
            layer.weight.normal_(0.0, 0.5)
    trained = sens.sensitivity(model, tokenizer, batch)
    for row in ("intensity dropped", "melody dropped", "intensity +6 dB", "intensity -6 dB"):
        assert max(trained[row].values()) > 1e-3, (row, trained[row])
    assert all(0.0 <= v <= 1.0 for row in trained if "velocity" not in row for v in trained[row].values())


class VelocityFromIntensity(nn.Module):
    """A stand-in LM whose velocity head picks the velocity bin of the requested intensity: one bin
    (16 velocity) per 6 dB, so raising the intensity 6 dB must read as +16 wherever no bin clips."""

    n_codebooks = SLOTS

    def __init__(self, tokenizer, *, follow: bool):
        super().__init__()
        self.velocity_ids = torch.from_numpy(np.flatnonzero(tokenizer.is_type["Velocity"]))
        self.vocab, self.follow = tokenizer.vocab_size, follow

    def forward(self, tokens, *, controls, presence, first):
        B, K, T = tokens.shape
        logits = torch.zeros(B, K, T, self.vocab)
        db = (controls[..., sens.INTENSITY] - 1.0) * sens.DB_PER_FEATURE  # [B, T]
        bins = (3 + torch.round(db / 6.0) if self.follow else torch.full_like(db, 3.0)).long().clamp(0, 5)
        logits[:, 2] = -50.0
        logits[:, 2].scatter_(-1, self.velocity_ids[bins][..., None], 50.0)
        return logits


def test_velocity_response_reads_the_expected_velocity_of_the_next_note(tokenizer, batch):
    # The piece's intensity sits between -18 and 0 dB: bins 0..3, so +6 dB never clips at bin 5.
    db = (batch["controls"][..., sens.INTENSITY] - 1.0) * sens.DB_PER_FEATURE
    assert db.max() <= 0.0 and db.min() > -20.0
    follows = sens.sensitivity(VelocityFromIntensity(tokenizer, follow=True), tokenizer, batch)
    response = follows["velocity change, intensity +6 dB"]
    assert response["all notes"] == pytest.approx(16.0, abs=0.01)
    assert response["first note"] == pytest.approx(16.0, abs=0.01)
    assert follows["intensity +6 dB"]["Velocity"] == pytest.approx(1.0, abs=1e-6)  # a different bin: TV 1
    ignores = sens.sensitivity(VelocityFromIntensity(tokenizer, follow=False), tokenizer, batch)
    assert ignores["velocity change, intensity +6 dB"] == {"all notes": 0.0, "first note": 0.0}


def test_shifted_intensity_keeps_silence_and_the_range():
    controls = torch.zeros(1, 3, 49)
    controls[0, :, sens.INTENSITY] = torch.tensor([-1.0, 0.5, 0.95])  # -80 dB (silence), -20 dB, -2 dB
    louder = sens.shifted_intensity(controls, 6.0)[0, :, sens.INTENSITY]
    assert louder.tolist() == pytest.approx([-1.0, 0.65, 1.0])
    softer = sens.shifted_intensity(controls, -6.0)[0, :, sens.INTENSITY]
    assert softer.tolist() == pytest.approx([-1.0, 0.35, 0.8])
    assert controls[0, 1, sens.INTENSITY] == 0.5  # the input is left alone


def test_tables_average_batches_and_print_every_column():
    rows = [{"a": {"Pitch": 0.1, "Velocity": 0.3}}, {"a": {"Pitch": 0.3, "Velocity": float("nan")}}]
    table = sens.mean_of(rows)
    assert table == {"a": {"Pitch": pytest.approx(0.2), "Velocity": pytest.approx(0.3)}}
    text = sens.markdown(table)
    assert text.splitlines()[0] == "| change | Pitch | Velocity |" and "| a | 0.2000 | 0.3000 |" in text
