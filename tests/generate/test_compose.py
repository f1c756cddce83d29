import json

import numpy as np
import pytest
import torch

from cuecraft.config import ModelConfig
from cuecraft.controls.schema import Controls
from cuecraft.errors import MediaError, ParameterError
from cuecraft.generate.compose import chords_from_music, compose, in_key_of
from cuecraft.generate.plan import make_plan
from cuecraft.models.backbones.symbolic import load_symbolic
from cuecraft.models.builders import build_symbolic_lm
from cuecraft.models.tokenizer import MusicTokenizer
from cuecraft.training.checkpoints import save_weights

CONFIG = ModelConfig(d_model=32, n_layers=2, n_heads=2, max_len=96, guidance_every=2, patch_len=4)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = MusicTokenizer()
    model = build_symbolic_lm(CONFIG, vocab_size=tokenizer.vocab_size)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    import dataclasses

    meta = {"model_config": json.dumps(dataclasses.asdict(CONFIG), sort_keys=True),
            "tokenizer": tokenizer.fingerprint}
    return save_weights(path, model, metadata=meta)


def controls(seconds=8.0):
    beats = np.arange(0.0, seconds, 0.5)
    return Controls(beat=np.stack([beats, np.arange(len(beats)) % 4], axis=1),
                    intensity=[[0.0, -20.0], [seconds - 0.5, -8.0]], duration=seconds)


def test_symbolic_compose_adds_model_parts_and_bass_follows_them(weights):
    c = controls()
    plan = make_plan(c, cuts=[], duration=8.0, seed=0)
    pm = compose(c, plan, duration=8.0, seed=2, weights=str(weights))
    names = [i.name for i in pm.instruments]
    assert names[:2] == ["drums (arrangement)", "bass (arrangement)"]
    assert "melody (symbolic model)" in names and "harmony (symbolic model)" in names
    assert all(n.end <= 8.0 + 1e-9 for i in pm.instruments for n in i.notes)
    melody, harmony = (pm.instruments[names.index(f"{part} (symbolic model)")] for part in ("melody", "harmony"))
    chords = chords_from_music(melody.notes, harmony.notes, in_key_of(plan, melody.notes + harmony.notes),
                               c.beat[:, 0], c.beat[:, 1])
    on_beat = 0  # the bass plays a tone of the chord read off the model's notes on each beat
    for note in pm.instruments[1].notes:
        k = int(np.argmin(np.abs(c.beat[:, 0] - note.start)))
        if chords[k] is not None and abs(c.beat[k, 0] - note.start) < 1e-6:
            assert note.pitch % 12 in chords[k]
            on_beat += 1
    assert on_beat > 0
    again = compose(c, plan, duration=8.0, seed=2, weights=str(weights))
    assert [(n.start, n.pitch) for i in again.instruments for n in i.notes] == \
        [(n.start, n.pitch) for i in pm.instruments for n in i.notes]


def test_guidance_changes_the_music_and_stays_seeded(tmp_path):
    import dataclasses

    torch.manual_seed(0)
    tokenizer = MusicTokenizer()
    model = build_symbolic_lm(CONFIG, vocab_size=tokenizer.vocab_size)
    with torch.no_grad():  # a "trained" guidance path: its zero-initialised layers no longer zero
        for layer in (*model.guidance.zero_in, *model.guidance.zero_out):
            layer.weight.normal_(std=0.5)
    meta = {"model_config": json.dumps(dataclasses.asdict(CONFIG), sort_keys=True),
            "tokenizer": tokenizer.fingerprint}
    weights = save_weights(tmp_path / "guided.safetensors", model, metadata=meta)
    c = controls()
    plan = make_plan(c, cuts=[], duration=8.0, seed=0)

    def notes(guidance):
        pm = compose(c, plan, duration=8.0, seed=2, weights=str(weights), guidance=guidance)
        return [(n.start, n.pitch, n.velocity) for i in pm.instruments if "model" in i.name for n in i.notes]

    plain, guided = notes(1.0), notes(3.0)
    assert guided == notes(3.0)
    assert guided != plain


def test_melody_only_passes_to_the_sampler(weights):
    from cuecraft.generate.sample import SamplingConfig, generate_tokens, tokens_to_midi
    from cuecraft.models.backbones.symbolic import load_symbolic

    c = controls()
    plan = make_plan(c, cuts=[], duration=8.0, seed=0)
    model, tokenizer = load_symbolic(str(weights))
    for harmony in (True, False):
        pm = compose(c, plan, duration=8.0, seed=2, weights=str(weights), harmony=harmony)
        ids, track = generate_tokens(model, tokenizer, c, seed=2, config=SamplingConfig(harmony=harmony))
        alone = tokens_to_midi(tokenizer, ids, track, melody_program=73, harmony_program=0, duration=8.0)
        got = [(n.start, n.pitch) for i in pm.instruments if "model" in i.name for n in i.notes]
        assert got == [(n.start, n.pitch) for i in alone.instruments for n in i.notes]


def test_arrangement_backbone_needs_no_model():
    c = controls()
    pm = compose(c, make_plan(c, cuts=[], duration=8.0, seed=0), duration=8.0, seed=0, backbone="arrangement")
    assert [i.name for i in pm.instruments] == ["drums (arrangement)", "bass (arrangement)"]
    with pytest.raises(ParameterError, match="backbone"):
        compose(c, make_plan(c, cuts=[], duration=8.0, seed=0), duration=8.0, seed=0, backbone="codec")


def _notes(*spec):
    import pretty_midi

    return [pretty_midi.Note(velocity=80, pitch=p, start=a, end=b) for p, a, b in spec]


def test_chords_from_music_hand_worked():
    from cuecraft.generate.plan import Plan

    g_major = Plan(key_root=7, mode="major", sections=(0.0,), progressions=((0,),))
    times, positions = np.arange(12) * 0.5, np.arange(12) % 4  # three bars of 4/4 at 120 BPM
    melody = _notes((67, 0.0, 0.5), (71, 0.5, 1.0), (74, 1.0, 2.0),  # bar 1: G B D
                    (72, 2.0, 3.0), (76, 3.0, 4.0))                   # bar 2: C E (IV, not vi: primary first)
    chords = chords_from_music(melody, [], g_major, times, positions)
    assert chords[:4] == [(7, 11, 2)] * 4 and chords[4:8] == [(0, 4, 7)] * 4
    assert chords[8:] == [None] * 4  # bar 3 is silent: no chord is carried into it
    # Harmony notes outweigh a melody that passes: A C E held under a melody on B.
    harmony = _notes((57, 0.0, 2.0), (60, 0.0, 2.0), (64, 0.0, 2.0))
    assert chords_from_music(_notes((71, 0.0, 2.0)), harmony, g_major, times[:4], positions[:4]) == [(9, 0, 4)] * 4
    # The bar's second half keeps the chord unless another explains clearly more of it.
    passing = _notes((67, 0.0, 1.0), (71, 1.0, 1.5), (69, 1.5, 2.0))   # G | B A: G still fits
    assert chords_from_music(passing, [], g_major, times[:4], positions[:4]) == [(7, 11, 2)] * 4
    moving = _notes((67, 0.0, 1.0), (74, 1.0, 1.5), (66, 1.5, 2.0))    # G | D F#: the dominant
    assert chords_from_music(moving, [], g_major, times[:4], positions[:4])[2:] == [(2, 6, 9)] * 2
    # A minor key offers the major dominant: G# B in A minor.
    a_minor = Plan(key_root=9, mode="minor", sections=(0.0,), progressions=((0,),))
    cadence = _notes((68, 0.0, 1.0), (71, 1.0, 2.0))
    assert chords_from_music(cadence, [], a_minor, times[:4], positions[:4]) == [(4, 8, 11)] * 4
    # 3/4: one chord per bar.
    waltz = chords_from_music(_notes((67, 0.0, 0.5), (74, 0.5, 1.0), (66, 1.0, 1.5)), [], g_major,
                              times[:3], np.arange(3))
    assert len(set(waltz)) == 1


def test_weights_for_another_tokenizer_or_shape_are_refused(weights, tmp_path):
    tokenizer = MusicTokenizer()
    model = build_symbolic_lm(CONFIG, vocab_size=tokenizer.vocab_size)
    import dataclasses

    bad = save_weights(tmp_path / "other.safetensors", model,
                       metadata={"model_config": json.dumps(dataclasses.asdict(CONFIG), sort_keys=True),
                                 "tokenizer": "0" * 64})
    with pytest.raises(MediaError, match="tokenizer does not match"):
        load_symbolic(bad)
    with pytest.raises(MediaError, match="no such file"):
        load_symbolic(tmp_path / "missing.safetensors")
    # Weights from before the melody look-ahead (13 melody features): the error names both layouts.
    from cuecraft.models.guidance import ControlGuidance
    from cuecraft.models.lm import TokenLM

    old = TokenLM(vocab_size=tokenizer.vocab_size, d_model=CONFIG.d_model, n_layers=CONFIG.n_layers,
                  n_heads=CONFIG.n_heads, n_codebooks=1, mlp_ratio=float(CONFIG.mlp_ratio), positions="rotary",
                  max_positions=CONFIG.max_len, guidance=ControlGuidance(d_model=CONFIG.d_model, patch_len=CONFIG.patch_len,
                                                                          guidance_every=CONFIG.guidance_every,
                                                                          control_dims=(3, 13, 1, 2)))
    stale = save_weights(tmp_path / "stale.safetensors", old,
                         metadata={"model_config": json.dumps(dataclasses.asdict(CONFIG), sort_keys=True),
                                   "tokenizer": tokenizer.fingerprint})
    with pytest.raises(MediaError, match=r"melody 13.*reads \(beat 3, melody 43"):
        load_symbolic(stale)


def test_plan_moves_to_the_key_the_model_wrote_in():
    import pretty_midi

    from cuecraft.generate.compose import in_key_of

    c = controls()
    plan = make_plan(c, cuts=[], duration=8.0, seed=0)
    notes = [pretty_midi.Note(velocity=80, pitch=p, start=i * 0.5, end=i * 0.5 + w)
             for i, (p, w) in enumerate([(67, 1.0), (71, 0.4), (74, 0.8), (66, 0.3), (67, 1.0), (69, 0.4),
                                         (72, 0.4), (74, 0.8), (79, 1.0)])]  # G major
    moved = in_key_of(plan, notes)
    assert (moved.key_root, moved.mode) == (7, "major") and moved.progressions == plan.progressions
    assert in_key_of(plan, []) == plan


def test_the_scored_piece_plays_the_intensity_on_the_models_notes_and_leaves_its_music_alone():
    import pretty_midi

    from cuecraft.generate.compose import with_arrangement

    c = controls()  # intensity rises from -20 to -8 dB
    music = pretty_midi.PrettyMIDI(initial_tempo=120)
    for name in ("melody (symbolic model)", "harmony (symbolic model)"):
        part = pretty_midi.Instrument(program=0, name=name)
        part.notes = [pretty_midi.Note(velocity=50, pitch=60 + 12 * (name[0] == "m"), start=t, end=t + 0.4)
                      for t in np.arange(0.0, 8.0, 0.5)]
        music.instruments.append(part)
    scored = with_arrangement(music, c, make_plan(c, cuts=[], duration=8.0, seed=0), duration=8.0, seed=0)
    melody = next(i for i in scored.instruments if i.name.startswith("melody"))
    velocities = [n.velocity for n in melody.notes]
    # At the request's level (match_level) and rising with it (follow_intensity, then the ride).
    assert velocities == sorted(velocities) and velocities[-1] >= 1.5 * velocities[0]
    assert {n.velocity for i in music.instruments for n in i.notes} == {50}  # the model's music is untouched


def test_a_calm_request_thins_the_kit_until_the_scored_piece_reads_calm():
    import pretty_midi

    from cuecraft.controls.from_midi import estimate_emotion
    from cuecraft.generate.compose import with_arrangement

    beats = np.arange(0.0, 16.0, 0.5)
    music = pretty_midi.PrettyMIDI(initial_tempo=120)
    for name, pitch in (("melody (symbolic model)", 72), ("harmony (symbolic model)", 60)):
        part = pretty_midi.Instrument(program=0, name=name)
        part.notes = [pretty_midi.Note(velocity=60, pitch=pitch, start=t, end=t + 0.45) for t in beats]
        music.instruments.append(part)
    loud = dict(beat=np.stack([beats, np.arange(len(beats)) % 4], axis=1), intensity=[[0.0, -14.0], [16.0, -14.0]],
                duration=16.0)
    calm = Controls(**loud, emotion=[[0.0, 0.2, -0.4], [16.0, 0.2, -0.4]])
    plan = make_plan(calm, cuts=[], duration=16.0, seed=0)
    plain = with_arrangement(music, Controls(**loud), plan, duration=16.0, seed=0)
    scored = with_arrangement(music, calm, plan, duration=16.0, seed=0)
    probe = np.arange(2.0, 14.0, 0.5)
    assert (estimate_emotion(plain, probe)[:, 1] > 0).mean() > 0.8  # the kit alone makes it read aroused
    assert (estimate_emotion(scored, probe)[:, 1] < 0).mean() > 0.8
    assert len(scored.instruments[0].notes) < len(plain.instruments[0].notes) / 2


def test_the_model_reads_the_intensity_at_its_own_level_with_every_change_kept():
    from cuecraft.generate.compose import MODEL_LEVEL_DB, at_model_level

    c = Controls(intensity=[[0.0, -80.0], [1.0, -80.0], [1.5, -30.0], [5.0, -20.0], [9.0, -26.0], [10.0, -80.0]],
                 duration=10.0)
    moved = at_model_level(c).intensity
    sounding = c.intensity[:, 1] > -60.0
    assert np.array_equal(moved[~sounding], c.intensity[~sounding])  # silence stays silence
    shift = moved[sounding, 1] - c.intensity[sounding, 1]
    assert np.allclose(shift, shift[0]) and shift[0] > 0  # one shift: the changes are kept
    from cuecraft.controls.resample import sample_linear
    levels = sample_linear(moved, np.arange(0.0, 10.05, 0.1))[:, 0]
    assert abs(np.median(levels[levels > -60.0]) - MODEL_LEVEL_DB) < 0.3
    assert at_model_level(Controls(duration=4.0)).intensity is None


def test_compose_hands_the_model_the_intensity_at_its_level(monkeypatch, weights):
    import dataclasses

    from cuecraft.generate import sample
    from cuecraft.generate.compose import MODEL_LEVEL_DB

    seen = {}
    real = sample.generate_tokens

    def spy(model, tokenizer, controls, **kwargs):
        seen["intensity"] = controls.intensity.copy()
        return real(model, tokenizer, controls, **kwargs)

    monkeypatch.setattr(sample, "generate_tokens", spy)
    c = dataclasses.replace(controls(), intensity=np.array([[0.0, -34.0], [8.0, -22.0]]))
    compose(c, make_plan(c, cuts=[], duration=8.0, seed=0), duration=8.0, seed=0, weights=str(weights))
    shift = MODEL_LEVEL_DB - (-28.0)  # the request's median over time
    assert np.allclose(seen["intensity"][:, 1], [-34.0 + shift, -22.0 + shift], atol=0.3)


def test_the_scored_piece_rests_where_the_intensity_asks_for_silence(weights):
    from cuecraft.render.dynamics import silent_spans

    c = controls()
    c = Controls(beat=c.beat, intensity=np.array([[0.0, -20.0], [3.9, -20.0], [4.0, -80.0], [4.4, -80.0],
                                                  [4.5, -20.0], [8.0, -20.0]]), duration=8.0)
    (start, end), = silent_spans(c.intensity)
    plan = make_plan(c, cuts=[], duration=8.0, seed=0)
    for backbone in ("symbolic", "arrangement"):
        pm = compose(c, plan, duration=8.0, seed=0, backbone=backbone, weights=str(weights))
        notes = [n for i in pm.instruments for n in i.notes]
        assert notes and not [n for n in notes if n.end > start and n.start < end]
        assert [n for n in notes if n.start >= end] and [n for n in notes if n.end <= start]
