import numpy as np
import pytest
import torch

from cuecraft.config import ModelConfig
from cuecraft.controls.schema import Controls
from cuecraft.errors import ParameterError
from cuecraft.generate.piece import music_bars
from cuecraft.generate.sample import Sampler, SamplingConfig, generate_tokens, tokens_to_midi
from cuecraft.models.builders import build_symbolic_lm
from cuecraft.models.tokenizer import MusicTokenizer
from media import beat_grid as grid


@pytest.fixture(scope="module")
def tokenizer():
    return MusicTokenizer()


@pytest.fixture(scope="module", params=[False, True], ids=["events", "compound"])
def model(tokenizer, request):
    """A random tiny model: one event token per step, or compound steps (a note per step)."""
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, max_len=96, guidance_every=2, patch_len=4,
                      compound=request.param)
    return build_symbolic_lm(cfg, vocab_size=tokenizer.vocab_size).eval()


def test_generation_is_deterministic_valid_and_on_the_grid(model, tokenizer):
    beat = grid(26, cuts=(13,))  # a 1-beat bar and a cut
    controls = Controls(beat=beat, intensity=[[0, -30.0], [13, -6.0]], melody=[[0, 4], [6, 9]])
    ids, track = generate_tokens(model, tokenizer, controls, seed=5)
    again, _ = generate_tokens(model, tokenizer, controls, seed=5)
    other, _ = generate_tokens(model, tokenizer, controls, seed=6)
    assert np.array_equal(ids, again) and not np.array_equal(ids, other)
    grammar = tokenizer.grammar()
    for token in ids[:-1]:  # every token was allowed (the last is the closing EOS)
        assert grammar.mask()[token]
        grammar.update(int(token))
    _, bars = music_bars(beat)
    times, _, bar_len = tokenizer.timeline(ids)
    is_bar = tokenizer.is_type["Bar"][ids]
    assert is_bar.sum() == len(bars)
    # Bars start on the video's beats, and on every downbeat but those of lone-beat bars (12, 25).
    bar_seconds = track.seconds(times[is_bar])
    assert np.all(np.min(np.abs(bar_seconds[:, None] - beat[None, :, 0]), axis=1) < 1e-9)
    downbeats = [t for i, (t, pos) in enumerate(beat) if pos == 0 and i not in (12, 25)]
    assert all(np.min(np.abs(bar_seconds - d)) < 1e-9 for d in downbeats)
    pm = tokens_to_midi(tokenizer, ids, track, melody_program=73, harmony_program=0, duration=13.0)
    onsets = np.array([n.start for inst in pm.instruments for n in inst.notes])
    sixteenths = np.concatenate([track.seconds(np.arange(0, 26, 0.25))])
    assert len(onsets) and np.all(np.min(np.abs(onsets[:, None] - sixteenths[None]), axis=1) < 1e-6)
    assert onsets.max() < 13.0


def test_harmony_opening_and_the_melody_on_top(model, tokenizer):
    controls = Controls(beat=grid(32), melody=[[0, 4], [6, 9]])
    ids, track = generate_tokens(model, tokenizer, controls, seed=3)
    plain, _ = generate_tokens(model, tokenizer, controls, seed=3, config=SamplingConfig(harmony=False))
    program = tokenizer.token_id("Program_0")
    first_duration = int(np.flatnonzero(tokenizer.is_type["Duration"][ids])[0])
    assert ids[first_duration + 1] == program  # the forced harmony voice under the first melody note
    assert not np.array_equal(ids, plain)  # harmony=False leaves the choice to the model
    pm = tokens_to_midi(tokenizer, ids, track, melody_program=73, harmony_program=0, duration=16.0)
    melody, harmony = pm.instruments
    assert harmony.notes
    for note in harmony.notes:  # never above a melody note sounding at its onset
        above = [m.pitch for m in melody.notes if m.start <= note.start + 1e-9 < m.end]
        assert all(note.pitch <= pitch for pitch in above)


def test_melody_on_top_grammar_caps_the_harmony(tokenizer):
    t = tokenizer.token_id
    tokens = [tokenizer.bos_id, t("Bar_None"), t("TimeSig_4/4"), t("Position_0"), t("Program_73"), t("Pitch_67"),
              t("Velocity_95"), t("Duration_1.2.4"), t("Position_4"), t("Program_0")]
    strict, free = tokenizer.grammar(melody_on_top=True), tokenizer.grammar()
    for token in tokens:
        strict.update(token)
        free.update(token)
    pitches = tokenizer.is_type["Pitch"]
    # The melody's G4 (67) still sounds at beat 1: the harmony may double it but not go above.
    assert strict.mask()[t("Pitch_67")] and not strict.mask()[t("Pitch_68")]
    assert free.mask()[t("Pitch_68")] and strict.mask()[pitches].sum() < free.mask()[pitches].sum()
    for token in (t("Pitch_60"), t("Velocity_79"), t("Duration_1.0.4"), t("Position_8")):
        strict.update(token)  # beat 2: the melody note has ended; while it rests, its last note caps
    strict.update(t("Program_0"))
    assert strict.mask()[t("Pitch_67")] and not strict.mask()[t("Pitch_68")]
    for token in (t("Pitch_64"), t("Velocity_79"), t("Duration_1.0.4"), t("Position_12"), t("Program_73"),
                  t("Pitch_72"), t("Velocity_95"), t("Duration_0.2.4"), t("Position_14"), t("Program_0")):
        assert strict.mask()[token]
        strict.update(token)  # a new melody note (C5, an eighth) ends before beat 3.5: its pitch caps
    assert strict.mask()[t("Pitch_72")] and not strict.mask()[t("Pitch_73")]


def test_long_piece_continues_window_by_window(model, tokenizer):
    beat = grid(240)  # 60 bars: many times the 96-token context
    ids, track = generate_tokens(model, tokenizer, Controls(beat=beat), seed=1, config=SamplingConfig(carry=40))
    assert tokenizer.is_type["Bar"][ids].sum() == 60
    assert len(ids) > 3 * 96
    assert len(tokenizer.notes(ids)) > 0  # the whole sequence still decodes


def test_windows_stop_at_the_trained_length(model, tokenizer, monkeypatch):
    sizes = []
    new_cache = model.new_cache

    def recording(batch, max_len):
        sizes.append(max_len)
        return new_cache(batch, max_len)

    monkeypatch.setattr(model, "new_cache", recording)
    monkeypatch.setattr(model, "trained_length", 48)  # below max_len = 96
    ids, _ = generate_tokens(model, tokenizer, Controls(beat=grid(64)), seed=1)
    assert len(ids) > 2 * 48 and len(sizes) > 2 and set(sizes) == {48}


def test_sampling_config_checks():
    with pytest.raises(ParameterError, match="temperature"):
        SamplingConfig(temperature=0)
    with pytest.raises(ParameterError, match="top_p"):
        SamplingConfig(top_p=1.5)


def test_sampler_filters_the_grammar_then_top_k_then_top_p():
    logits = np.log(np.array([0.05, 0.4, 0.3, 0.15, 0.1, 0.0001]))
    allowed = np.array([True, True, True, True, True, False])
    ids, p = Sampler(SamplingConfig(temperature=1.0, top_p=1.0), seed=0).probabilities(logits, allowed)
    assert list(ids) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(p, [0.05, 0.4, 0.3, 0.15, 0.1])
    # top_p 0.8: the smallest set reaching it is 0.4 + 0.3 + 0.15
    ids, p = Sampler(SamplingConfig(temperature=1.0, top_p=0.8), seed=0).probabilities(logits, allowed)
    np.testing.assert_allclose(p, np.array([0, 0.4, 0.3, 0.15, 0]) / 0.85)
    ids, p = Sampler(SamplingConfig(temperature=1.0, top_k=2, top_p=1.0), seed=0).probabilities(logits, allowed)
    np.testing.assert_allclose(p, np.array([0, 0.4, 0.3, 0, 0]) / 0.7)
    # a lower temperature sharpens
    _, cold = Sampler(SamplingConfig(temperature=0.5, top_p=1.0), seed=0).probabilities(logits, allowed)
    assert cold[1] > 0.4 and cold[0] < 0.05


def test_sampler_draws_with_the_filtered_probabilities_and_repeats_with_its_seed():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05, 0.2]))
    allowed = np.array([True, True, True, True, False])
    config = SamplingConfig(temperature=1.0, top_p=0.9)  # 0.5 + 0.3 + 0.15 = 0.95 of the allowed mass kept
    draws = [Sampler(config, seed=3).draw(logits, allowed) for _ in range(2)]
    assert draws[0] == draws[1]
    sampler = Sampler(config, seed=1)
    counts = np.bincount([sampler.draw(logits, allowed) for _ in range(20000)], minlength=5)
    assert counts[3] == 0 and counts[4] == 0  # cut by top-p; not allowed
    np.testing.assert_allclose(counts[:3] / 20000, np.array([0.5, 0.3, 0.15]) / 0.95, atol=0.015)


def test_sampler_refuses_a_step_with_nothing_allowed_or_non_finite_logits():
    with pytest.raises(ValueError, match="allows no token"):
        Sampler(SamplingConfig(), seed=0).draw(torch.zeros(4), np.zeros(4, dtype=bool))
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="not finite"):
            Sampler(SamplingConfig(), seed=0).draw(torch.tensor([0.0, bad, 1.0]), np.ones(3, dtype=bool))


@pytest.mark.parametrize("cfg_scale", [1.0, 2.5])
def test_compound_decoder_feeds_whole_steps_with_their_controls(tokenizer, cfg_scale, monkeypatch):
    from cuecraft.models.compound import group, step_starts

    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, max_len=512, guidance_every=2, patch_len=4, compound=True)
    model = build_symbolic_lm(cfg, vocab_size=tokenizer.vocab_size).eval()
    fed_tokens, fed_controls = [], []
    hidden = model.hidden

    def recording(tokens, *, controls, presence, cache):
        fed_tokens.append(tokens[0].numpy().copy())
        fed_controls.append(controls[0].numpy().copy())
        assert tokens.shape[0] == (2 if cfg_scale != 1.0 else 1)
        return hidden(tokens, controls=controls, presence=presence, cache=cache)

    monkeypatch.setattr(model, "hidden", recording)
    controls = Controls(beat=grid(24), intensity=[[0, -30.0], [10, -6.0]], melody=[[0, 4], [6, 9]])
    config = SamplingConfig(cfg_scale=cfg_scale)
    ids, track = generate_tokens(model, tokenizer, controls, seed=2, config=config)
    events = ids[:-1]  # the closing EOS is never fed
    assert np.array_equal(np.concatenate(fed_tokens, axis=1), group(events, tokenizer))
    beats, position, bar_length = tokenizer.timeline(events)
    starts = step_starts(events, tokenizer)
    expected = np.stack([track.token_features(beats[i], position[i], int(bar_length[i])) for i in starts])
    np.testing.assert_array_equal(np.concatenate(fed_controls), expected)
    assert np.array_equal(ids, generate_tokens(model, tokenizer, controls, seed=2, config=config)[0])


def test_a_model_that_has_generated_can_still_train(tokenizer):
    # Decoding runs under torch.inference_mode; what it leaves on the model (the rotary table)
    # must not be an inference tensor, or the next training step's backward fails.
    from cuecraft.controls.features import N_FEATURES
    from cuecraft.training.loop import lm_loss

    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, max_len=96, guidance_every=2, patch_len=4)
    model = build_symbolic_lm(cfg, vocab_size=tokenizer.vocab_size).eval()
    ids, _ = generate_tokens(model, tokenizer, Controls(beat=grid(8)), seed=0)
    model.train()
    tokens = torch.from_numpy(ids[None, :48].astype(np.int64))
    batch = {"tokens": tokens, "controls": torch.zeros(1, tokens.shape[1], N_FEATURES), "presence": torch.zeros(1, 4)}
    loss = lm_loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
