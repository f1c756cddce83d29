"""The codec backbone end to end on toy sizes: pair shards -> two training stages -> score a video."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from cuecraft.cli import main
from cuecraft.config import load_config
from cuecraft.controls.features import N_FEATURES
from cuecraft.io.synthetic import SyntheticEvents, write_synthetic_video
from cuecraft.training.pairs import PairShards, read_pair
from tiny_models import save_tiny_musicgen

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "codec-tiny.toml"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("codec run")
    musicgen = root / "tiny musicgen"
    save_tiny_musicgen(musicgen)
    videos = root / "videos"
    videos.mkdir()
    for i, cuts in enumerate(((1.0,), (2.0,))):
        write_synthetic_video(videos / f"clip{i}.mp4", duration=3.0, fps=12, width=96, height=64,
                              events=SyntheticEvents(cuts=cuts, impacts=(0.5, 1.5, 2.5)), audio=True, seed=i)
    (videos / "notes.txt").write_text("not a video")
    shards = root / "shards"
    assert main(["dataset", "build", str(videos), "-o", str(shards), "--codec", str(musicgen), "-q"]) == 0
    config = load_config(CONFIG)
    config = dataclasses.replace(
        config, lm=dataclasses.replace(config.lm, init_from=str(musicgen), n_layers=2),
        data=dataclasses.replace(config.data, pairs_dir=str(shards), codec_dir=str(musicgen)))
    return root, musicgen, videos, shards, config


def test_dataset_build_writes_aligned_shards(built):
    root, musicgen, videos, shards, config = built
    files = sorted(shards.glob("*.pair.safetensors"))
    assert [f.name for f in files] == ["clip0.pair.safetensors", "clip1.pair.safetensors"]
    pair = read_pair(files[0])
    assert pair.frame_rate == 50 and pair.seconds == 3
    assert pair.codes.shape == (4, 150) and int(pair.codes.max()) < 64
    assert pair.controls.shape == (150, N_FEATURES) and pair.presence.tolist() == [1, 1, 1, 1]
    assert pair.patch.shape[:2] == (3, 64)
    batch = PairShards(shards, seconds=2).sample(np.random.default_rng(0), batch_size=3)
    assert batch["codes"].shape == (3, 4, 100) and batch["patch"].shape[:2] == (3, 2) and bool(batch["valid"].all())
    # a second build keeps what exists (resume) and writes nothing new
    assert main(["dataset", "build", str(videos), "-o", str(shards), "--codec", str(musicgen), "-q"]) == 0
    assert len(list(shards.glob("*.pair.safetensors"))) == 2


def _train(config, out, **kw):
    from cuecraft.training.codec_run import run_codec_training

    return run_codec_training(config, out_dir=out, progress=False, log=lambda s: None, **kw)


def test_two_stages_train_what_they_should_and_export(built):
    root, musicgen, videos, shards, config = built
    from cuecraft.generate.video_music import load_codec_checkpoint
    from cuecraft.models.backbones.codec import load_musicgen_lm
    from safetensors.torch import load_file

    results = _train(config, root / "run")
    assert set(results) == {1, 2} and all(np.isfinite(r.val_loss) for r in results.values())
    s1 = load_file(str(root / "run" / "stage1" / "model.safetensors"))
    s2 = load_file(str(root / "run" / "model.safetensors"))
    pretrained = load_musicgen_lm(musicgen)[0].state_dict()
    # stage 1 started from MusicGen and changed the LM; stage 2 left LM and conditioner untouched
    assert not torch.equal(s1["lm.blocks.0.attn.qkv.weight"], pretrained["blocks.0.attn.qkv.weight"])
    for key in s1:
        if not key.startswith("lm.guidance."):
            assert torch.equal(s1[key], s2[key]), key
    # stage 2 trained the guidance: its zero-initialised output projections moved off zero
    assert float(s2["lm.guidance.zero_out.0.weight"].abs().sum()) > 0
    assert float(s1["lm.guidance.zero_out.0.weight"].abs().sum()) == 0
    checkpoint = load_codec_checkpoint(root / "run")
    assert checkpoint.dims.n_patches == 64 and checkpoint.model.frame_rate == 50
    summary = json.loads((root / "run" / "summary.json").read_text())
    assert summary["stage2"]["steps"] == 6


def test_resumed_stage2_keeps_its_trained_guidance(built, monkeypatch):
    """A stage 2 killed after a checkpoint and resumed ends exactly where an unbroken one does:
    the resume loads its CGD weights and does not re-copy the LM into them (MTCV2M's bug)."""
    from safetensors.torch import load_file

    root, musicgen, videos, shards, config = built
    straight = _train(config, root / "straight")
    _train(config, root / "broken", stages=(1,))
    calls = {"n": 0}
    original = PairShards.sample

    def killed(self, rng, *, batch_size):
        calls["n"] += 1
        if calls["n"] > 1 + 4:  # one validation batch, then killed at step 5 (checkpoint at 3)
            raise KeyboardInterrupt
        return original(self, rng, batch_size=batch_size)

    monkeypatch.setattr(PairShards, "sample", killed)
    with pytest.raises(KeyboardInterrupt):
        _train(config, root / "broken", stages=(2,))
    monkeypatch.setattr(PairShards, "sample", original)
    assert (root / "broken" / "stage2" / "checkpoints" / "latest").read_text() == "step-0000003"
    resumed = _train(config, root / "broken", stages=(2,))
    a, b = load_file(str(straight[2].weights)), load_file(str(resumed[2].weights))
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5


def test_score_with_the_codec_backbone(built, small_video, tmp_path):
    root, musicgen, videos, shards, config = built
    run = root / "run"
    if not (run / "model.safetensors").is_file():
        _train(config, run)
    out = tmp_path / "scored.mp4"
    args = ["score", str(small_video), "-o", str(out), "--backbone", "codec", "--weights", str(run), "-q"]
    assert main(args) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["scored.controls.json", "scored.mp4", "scored.timeline.png", "scored.wav"]
    import soundfile

    audio, sr = soundfile.read(tmp_path / "scored.wav")
    assert sr == 32000 and abs(len(audio) / sr - 6.0) < 0.05 and np.all(np.isfinite(audio))
    from cuecraft.io.video import probe

    assert probe(out).has_audio
    # the same seed gives the same music
    again = tmp_path / "again" / "scored.mp4"
    again.parent.mkdir()
    assert main(["score", str(small_video), "-o", str(again), "--backbone", "codec", "--weights", str(run), "-q"]) == 0
    assert (again.parent / "scored.wav").read_bytes() == (tmp_path / "scored.wav").read_bytes()


@pytest.mark.parametrize("weights, message", [(None, "needs --weights"), ("missing", "no such folder"),
                                              ("symbolic", "expected model.safetensors")])
def test_codec_weights_errors_are_one_line(weights, message, small_video, tmp_path, capsys):
    args = ["score", str(small_video), "-o", str(tmp_path / "o.mp4"), "--backbone", "codec", "-q"]
    if weights == "missing":
        args += ["--weights", str(tmp_path / "nowhere")]
    elif weights == "symbolic":
        folder = tmp_path / "sym"
        folder.mkdir()
        (folder / "weights.safetensors").write_bytes(b"x")
        args += ["--weights", str(folder)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert list(tmp_path.glob("o*")) == []


def test_score_refuses_visual_tokens_of_another_size(built, small_video, tmp_path, monkeypatch, capsys):
    import cuecraft.models.visual as visual

    root, musicgen, videos, shards, config = built
    run = root / "run"
    if not (run / "model.safetensors").is_file():
        _train(config, run)
    monkeypatch.setattr(visual, "build_visual_encoder", lambda *a, **k: visual.EmbeddedEncoder(grid=4))
    out = tmp_path / "o.mp4"
    assert main(["score", str(small_video), "-o", str(out), "--backbone", "codec", "--weights", str(run), "-q"]) == 2
    err = capsys.readouterr().err
    assert "n_patches=16" in err and "n_patches=64" in err and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["no videos folder", "no codec folder"])
def test_dataset_build_bad_input_is_one_line(case, built, tmp_path, capsys):
    root, musicgen, videos, shards, config = built
    src = tmp_path / "nowhere" if case == "no videos folder" else videos
    codec = tmp_path / "no codec" if case == "no codec folder" else musicgen
    out = tmp_path / "shards"
    assert main(["dataset", "build", str(src), "-o", str(out), "--codec", str(codec), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("nowhere" in err or "no codec" in err)
    assert not out.exists()
