"""The GVMGen-style relevance model: features, shapes, the trained margins, checkpoints."""
import json

import numpy as np
import pytest
import torch

from cuecraft.errors import MediaError, ParameterError
from cuecraft.evaluation.relevance import (MUSIC_DIM, RelevanceModel, load_relevance, music_features,
                                           relevance_metrics, relevance_scores, video_features)
from cuecraft.evaluation.relevance_train import (FeaturePair, find_pairs, relevance_loss, sample_windows,
                                                 synthetic_pairs, train_relevance, train_relevance_command)
from cuecraft.models.visual.base import VisualFeatures
from cuecraft.training.checkpoints import save_weights

SR = 22050
SECONDS = 16   # the model's window (max_seconds)
SHIFT = 4      # seconds the music is delayed by in the "shifted" condition
HELD_OUT = 16  # = the batch size of the global score


def clicks(times, seconds, sr=SR):
    audio = 0.01 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * sr)) / sr)
    for t in times:
        start = int(t * sr)
        audio[start:start + 200] += np.hanning(200)
    return audio.astype(np.float32)


def test_music_features_shape_finite_and_onsets_visible():
    feats = music_features(clicks([0.5, 2.3], 3.5), sr=SR)
    assert feats.shape == (4, MUSIC_DIM) and feats.dtype == np.float32  # ceil(3.5 s)
    assert np.isfinite(feats).all()
    onset_max = feats[:, -1]
    # Seconds 0 and 2 hold a click; 1 and 3 only the steady tone.
    assert min(onset_max[0], onset_max[2]) > 3 * max(onset_max[1], onset_max[3])
    stereo = np.stack([clicks([0.5], 2.0)] * 2, axis=1)
    assert music_features(stereo, sr=SR).shape == (2, MUSIC_DIM)
    # Another sample rate is resampled, so the same sound gives nearly the same features.
    other = music_features(clicks([0.5, 2.3], 3.5, sr=44100), sr=44100)
    assert np.abs(other[:, :64] - feats[:, :64]).mean() < 1.0  # dB
    for bad, match in ((np.zeros(0), "shape"), (np.full(100, np.nan), "NaN")):
        with pytest.raises(ParameterError, match=match):
            music_features(bad, sr=SR)
    with pytest.raises(ParameterError, match="sr = 100"):
        music_features(clicks([], 1.0), sr=100)


def test_video_features_concatenates_frame_and_context():
    visual = VisualFeatures(patch=torch.zeros(3, 4, 5), frame=torch.ones(3, 6), context=torch.full((3, 2), 2.0),
                            duration=2.5, encoder="test")
    out = video_features(visual)
    assert out.shape == (3, 8) and torch.equal(out[:, 6:], torch.full((3, 2), 2.0))


@torch.no_grad()
def test_forward_shapes_masks_and_attention_rows():
    torch.manual_seed(0)
    model = RelevanceModel(video_dim=5, music_dim=7, width=16, n_blocks=4, n_heads=4, max_seconds=10).eval()
    video, music = torch.randn(3, 6, 5), torch.randn(3, 6, 7)
    out = model(video, music, lengths=torch.tensor([6, 4, 1]))
    assert out.video.shape == out.music.shape == (3, 16)
    assert torch.allclose(out.video.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert out.attention.shape == (3, 6, 6)
    assert torch.allclose(out.attention.sum(dim=-1), torch.ones(3, 6), atol=1e-5)
    assert float(out.attention[1, :, 4:].abs().max()) == 0.0  # padding is never attended to
    assert torch.allclose(out.attention[2, :, 0], torch.ones(6))
    # Padding must not change a pair's result.
    short = model(video[1:2, :4], music[1:2, :4])
    assert torch.allclose(short.video, out.video[1:2], atol=1e-5)
    # similarity[i, j] is the joint encoding of video i with music j.
    sim = model.similarity(video, music)
    assert sim.shape == (3, 3)
    assert torch.allclose(sim[0, 2], model.pair_logits(model(video[:1], music[2:3]))[0], atol=1e-5)
    relevance = model.global_relevance(video, music)
    assert relevance.shape == (3,) and torch.allclose(relevance, sim.softmax(dim=-1).diagonal())
    full = model(video, music).attention  # [3, 6, 6]
    expected = torch.stack([full[b].diagonal().mean() for b in range(3)])
    assert torch.allclose(model.local_alignment(video, music), expected, atol=1e-5)
    with pytest.raises(ParameterError, match="max_seconds = 10"):
        model(torch.randn(1, 11, 5), torch.randn(1, 11, 7))
    with pytest.raises(ParameterError, match=r"\[B, T, 7\]"):
        model(video, torch.randn(3, 6, 8))


def test_loss_targets_the_true_correspondence():
    torch.manual_seed(0)
    model = RelevanceModel(video_dim=3, music_dim=3, width=8, n_blocks=1, n_heads=4, max_seconds=8)
    pairs = [FeaturePair(name=str(i), video=torch.randn(12, 3), music=torch.randn(12, 3)) for i in range(4)]
    batch = sample_windows(pairs, np.random.default_rng(0), batch_size=4, max_seconds=8, max_shift=3, negatives=2)
    assert batch["video"].shape == (4, 8, 3) and batch["offsets"].tolist()[0] == 0 and len(batch["offsets"]) == 3
    assert batch["shift"].abs().max() <= 3
    # Identical features on both sides: the music window must be the video window moved by shift.
    same = [FeaturePair(name=str(i), video=x, music=x) for i, x in enumerate(torch.randn(4, 12, 3))]
    batch = sample_windows(same, np.random.default_rng(3), batch_size=4, max_seconds=8, max_shift=3, negatives=3)
    for b, d in enumerate(batch["shift"].tolist()):
        lo, hi = max(0, d), 8 + min(0, d)
        assert torch.equal(batch["video"][b, lo:hi], batch["music"][b, lo - d:hi - d])
    assert torch.isfinite(relevance_loss(model, batch))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny relevance model trained on synthetic pairs (fixed seeds, one thread: deterministic)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train = synthetic_pairs(32, SECONDS + SHIFT, seed=1)
        held = synthetic_pairs(HELD_OUT, SECONDS + SHIFT, seed=2)
        out = tmp_path_factory.mktemp("relevance")
        model = train_relevance(train, steps=200, out_dir=out, batch_size=8, lr=2e-3, seed=0, width=32, n_blocks=4,
                                max_seconds=SECONDS, max_shift=SHIFT, negatives=3)
        yield model, held, out
    finally:
        torch.set_num_threads(threads)


def conditions(held):
    video = [p.video[:SECONDS] for p in held]
    return video, {"aligned": [p.music[:SECONDS] for p in held],
                   "shifted": [p.music[SHIFT:SHIFT + SECONDS] for p in held],  # music 4 s late
                   "mismatched": [held[(i + 1) % len(held)].music[:SECONDS] for i in range(len(held))]}


def test_trained_model_separates_aligned_shifted_and_mismatched(trained):
    model, held, _ = trained
    video, music = conditions(held)
    scores = {name: relevance_metrics(model, video, m, batch_size=HELD_OUT) for name, m in music.items()}
    g, loc = "relevance_global_b16", "relevance_local"
    print({name: {k: round(v, 3) for k, v in s.items()} for name, s in scores.items()})
    # Observed (3 training seeds): global aligned 0.46-0.54, mismatched 0.06-0.08 (chance 1/16);
    # local aligned 0.32-0.43, shifted 0.17-0.21, mismatched 0.15-0.17.
    assert scores["aligned"][g] - scores["mismatched"][g] > 0.2
    assert scores["mismatched"][g] < 0.2
    assert scores["aligned"][loc] - scores["shifted"][loc] > 0.07
    assert scores["aligned"][loc] - scores["mismatched"][loc] > 0.07


def test_checkpoint_round_trip_and_load_errors(trained, tmp_path):
    model, held, out = trained
    video, music = conditions(held)
    loaded = load_relevance(out / "model.safetensors", video_dim=16, music_dim=MUSIC_DIM)
    a = relevance_scores(model, video, music["aligned"], batch_size=HELD_OUT)
    b = relevance_scores(loaded, video, music["aligned"], batch_size=HELD_OUT)
    assert a[2] == b[2] == HELD_OUT
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    np.testing.assert_allclose(a[1], b[1], atol=1e-6)
    assert torch.equal(loaded.music_std, model.music_std)  # the input standardisation travels too
    missing = tmp_path / "nothing.safetensors"
    with pytest.raises(MediaError, match="nothing.safetensors"):
        load_relevance(missing)
    with pytest.raises(MediaError, match=r"model.safetensors.*video_dim = 16.*24"):
        load_relevance(out / "model.safetensors", video_dim=24)
    with pytest.raises(MediaError, match=r"model.safetensors.*'synthetic', not 'embedded'"):
        load_relevance(out / "model.safetensors", video_kind="embedded")
    other = tmp_path / "other.safetensors"
    save_weights(other, torch.nn.Linear(2, 2), metadata={"model": "something-else"})
    with pytest.raises(MediaError, match="other.safetensors.*not a relevance model"):
        load_relevance(other)
    # A config that does not fit the tensors is refused too (strict load).
    bent = tmp_path / "bent.safetensors"
    config = dict(model.config, width=64)
    save_weights(bent, model, metadata={"model": "cuecraft-relevance-1", "model_config": json.dumps(config)})
    with pytest.raises(MediaError, match="bent.safetensors"):
        load_relevance(bent)


def test_metrics_inputs():
    model = RelevanceModel(video_dim=4, music_dim=5, width=8, n_blocks=1, n_heads=4, max_seconds=6).eval()
    video, music = [torch.randn(9, 4), torch.randn(3, 4)], [torch.randn(8, 5), torch.randn(4, 5)]
    metrics = relevance_metrics(model, video, music, batch_size=16)
    assert set(metrics) == {"relevance_global_b2", "relevance_local"}  # B = min(16, pairs)
    assert 0.0 <= metrics["relevance_local"] <= 1.0
    assert set(relevance_metrics(model, video[:1], music[:1])) == {"relevance_local"}
    # 3 pairs in batches of 2: the last video still chooses among 2 candidates, not 1.
    g, _, B = relevance_scores(model, video + [torch.randn(5, 4)], music + [torch.randn(5, 5)], batch_size=2)
    assert B == 2 and g[2] < 1.0
    with pytest.raises(ParameterError, match="0 videos"):
        relevance_metrics(model, [], [])
    with pytest.raises(ParameterError, match="pair 1: video/music features are 3/5-d"):
        relevance_metrics(model, [torch.randn(3, 4), torch.randn(3, 3)], music)
    with pytest.raises(ParameterError, match="pair 0: features contain NaN"):
        relevance_metrics(model, [torch.full((3, 4), np.nan)], music[:1])


def test_training_resumes_and_refuses_another_model(tmp_path):
    pairs = [FeaturePair(name=str(i), video=torch.randn(8, 3), music=torch.randn(8, 4)) for i in range(4)]
    train_relevance(pairs, steps=2, out_dir=tmp_path, batch_size=4, width=8, n_blocks=1, max_seconds=6,
                    max_shift=1, negatives=1)
    train_relevance(pairs, steps=3, out_dir=tmp_path, batch_size=4, width=8, n_blocks=1, max_seconds=6,
                    max_shift=1, negatives=1)
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 3]  # the second run continued from step 2
    with pytest.raises(MediaError, match="model_config"):
        train_relevance(pairs, steps=4, out_dir=tmp_path, batch_size=4, width=16, n_blocks=1, max_seconds=6)
    with pytest.raises(ParameterError, match="at least 2 pairs"):
        train_relevance(pairs[:1], steps=1, out_dir=tmp_path / "x")


def test_find_pairs_follows_the_evaluate_rule(tmp_path):
    for name in ("a.mp4", "a.scored.mp4", "a.wav", "b.mp4", "c.mov", "c.wav", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    got = [(v.name, m.name) for v, m in find_pairs(tmp_path)]
    assert got == [("a.scored.mp4", "a.scored.mp4"), ("c.mov", "c.wav")]  # b.mp4 has no music
    with pytest.raises(MediaError, match="missing"):
        find_pairs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MediaError, match="empty.*no \\(video, music\\) pairs"):
        find_pairs(tmp_path / "empty")


def test_train_command_on_a_folder(tmp_path, small_video):
    import shutil

    from cuecraft.io.video import probe

    folder = tmp_path / "pairs"
    folder.mkdir()
    for i in range(2):
        shutil.copy(small_video, folder / f"clip{i}.scored.mp4")  # its audio track stands for the music

    def encoder(path):
        seconds = int(np.ceil(probe(path).duration - 1e-6))
        return VisualFeatures(patch=torch.zeros(seconds, 2, 3), frame=torch.randn(seconds, 4),
                              context=torch.randn(seconds, 2), duration=probe(path).duration, encoder="fake")

    summary = train_relevance_command(folder, out=tmp_path / "run", steps=2, batch_size=2, encoder=encoder,
                                      width=8, max_seconds=6, progress=False)
    assert summary["train_pairs"] == 2 and summary["video_features"] == "fake"
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == summary
    assert "held_out" not in summary  # too few pairs to hold any out
    model = load_relevance(tmp_path / "run" / "model.safetensors", video_dim=6, music_dim=MUSIC_DIM)
    assert model.config["width"] == 8


def test_train_command_holds_out_every_tenth_pair(tmp_path, monkeypatch):
    from cuecraft.evaluation import relevance_train

    pairs = [FeaturePair(name=f"p{i:02d}", video=torch.randn(8, 3), music=torch.randn(8, 4), video_kind="fake")
             for i in range(20)]
    monkeypatch.setattr(relevance_train, "load_pairs", lambda folder, encoder, progress: pairs)
    summary = train_relevance_command(tmp_path, out=tmp_path / "run", steps=2, batch_size=4, encoder=print,
                                      width=8, max_seconds=6, progress=False)
    assert (summary["train_pairs"], summary["held_out_pairs"]) == (18, 2)
    assert set(summary["held_out"]) == set(summary["held_out_mismatched"]) == {"relevance_global_b2",
                                                                               "relevance_local"}
