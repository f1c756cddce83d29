import numpy as np
import pretty_midi
import pytest
import torch

from cuecraft.config import ModelConfig
from cuecraft.controls.schema import Controls
from cuecraft.evaluation.symbolic_report import (CONDITIONS, METRICS, VARIED_DB, evaluate_piece, markdown, summarise,
                                                 varied_intensity)
from cuecraft.models.builders import build_symbolic_lm
from cuecraft.models.tokenizer import HARMONY_PROGRAM, MELODY_PROGRAM, MusicTokenizer

CONFIG = ModelConfig(d_model=32, n_layers=2, n_heads=2, max_len=128, guidance_every=2, patch_len=4)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    tokenizer = MusicTokenizer()
    return build_symbolic_lm(CONFIG, vocab_size=tokenizer.vocab_size).eval(), tokenizer


def reference_piece(seconds=12.0):
    """A tune at 120 bpm in 4/4: a C-major melody in quarter notes, softer then louder, over held triads."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    melody = pretty_midi.Instrument(program=MELODY_PROGRAM)
    harmony = pretty_midi.Instrument(program=HARMONY_PROGRAM)
    scale = [72, 74, 76, 77, 79, 77, 76, 74]
    for i, t in enumerate(np.arange(0.0, seconds, 0.5)):
        velocity = 60 if t < seconds / 2 else 110
        melody.notes.append(pretty_midi.Note(velocity=velocity, pitch=scale[i % 8], start=t, end=t + 0.45))
    for bar, t in enumerate(np.arange(0.0, seconds, 2.0)):
        root = (60, 65, 67, 60)[bar % 4]
        velocity = 50 if t < seconds / 2 else 100
        harmony.notes += [pretty_midi.Note(velocity=velocity, pitch=root - 12 + k, start=t, end=t + 1.9)
                          for k in (0, 4, 7)]
    pm.instruments += [melody, harmony]
    return pm


def test_evaluate_piece_measures_every_condition_and_the_reference_is_the_ceiling(tiny_model):
    model, tokenizer = tiny_model
    result = evaluate_piece(model, tokenizer, reference_piece(), seconds=10.0, seed=0)
    assert set(result) == set(CONDITIONS)
    for condition in CONDITIONS:  # the varied request also measures the dropped music against it (chance)
        extra = {"intensity_r_without_controls"} if condition == "varied" else set()
        assert set(result[condition]) | {"intensity_r_without_controls"} == set(METRICS) | extra
        assert ("intensity_r_without_controls" in result[condition]) == (condition == "varied")
    reference = result["reference"]
    # The requested controls were read off the reference itself: its melody and emotion agree fully,
    # and its loudness follows its own intensity curve.
    assert reference["melody_accuracy"] == pytest.approx(1.0)
    assert reference["valence_sign_agreement"] == 1.0 and reference["arousal_sign_agreement"] == 1.0
    assert reference["intensity_r"] > 0.6
    # As scored, the arrangement's drums play the requested beat grid: the tracker finds it.
    assert result["scored"]["beat_f1"] > 0.8
    # An untrained model does not write the requested melody.
    assert result["controls"]["melody_accuracy"] < 0.6
    # The arrangement's drums and bass follow the swinging intensity whatever the model writes.
    assert result["varied_scored"]["intensity_r"] > result["varied"]["intensity_r"] + 0.2


def test_varied_intensity_swings_around_the_sounding_level():
    times = np.arange(0.0, 16.0, 0.1)
    db = np.where(times < 1.0, -80.0, -14.0 + 0.5 * np.sin(times))  # a silent lead-in, then almost flat
    controls = Controls(beat=np.stack([np.arange(0, 16, 0.5), np.arange(32) % 4], 1),
                        intensity=np.stack([times, db], 1), melody=[[0.0, 4]], duration=16.0)
    varied = varied_intensity(controls)
    swing = varied.intensity[:, 1]
    assert np.array_equal(varied.intensity[:, 0], times) and np.array_equal(varied.melody, controls.melody)
    assert np.median(swing) == pytest.approx(-14.0, abs=0.3)  # around the level asked where it sounds
    assert swing.max() == pytest.approx(-14.0 + VARIED_DB, abs=0.6)
    assert swing.min() == pytest.approx(-14.0 - VARIED_DB, abs=0.6)
    assert swing[times < 1.0].min() > -80.0  # no silent lead-in


def test_summary_and_markdown_have_a_column_per_condition():
    row = {metric: 0.5 for metric in METRICS}
    results = [{c: dict(row) for c in CONDITIONS}, {c: {**row, "beat_f1": float("nan")} for c in CONDITIONS}]
    table = summarise(results)
    assert table["scored"]["beat_f1"] == {"mean": 0.5, "std": 0.0, "n": 1, "nan": 1}
    text = markdown(table)
    assert "reference pieces (ceiling)" in text and "as scored" in text
    assert text.splitlines()[2].count("|") == len(CONDITIONS) + 2
