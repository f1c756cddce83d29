"""``cuecraft evaluate`` on the command line: outputs, exit codes, one-line errors, no partial output."""
import json

import numpy as np
import pytest

from cuecraft.cli import main
from cuecraft.io.audio import write_wav
from cuecraft.io.synthetic import SyntheticEvents, write_synthetic_video

SR = 22050
IMPACTS = tuple(0.5 * k for k in range(1, 8))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """One (video, music) pair with clicks on the ball's impacts, and one silent pair."""
    path = tmp_path_factory.mktemp("cli_results")
    events = SyntheticEvents(cuts=(2.0,), impacts=IMPACTS)
    write_synthetic_video(path / "a.mp4", duration=4.0, fps=24, width=160, height=96, events=events)
    y = np.zeros(4 * SR, np.float32)
    for t in IMPACTS:
        i = int(t * SR)
        y[i:i + 441] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(441) / SR) * np.exp(-np.arange(441) / 200)
    write_wav(path / "a.wav", y, sr=SR)
    silent = tmp_path_factory.mktemp("cli_silent")
    write_synthetic_video(silent / "s.mp4", duration=2.0, fps=24, width=64, height=48, events=SyntheticEvents())
    write_wav(silent / "s.wav", np.zeros(2 * SR, np.float32), sr=SR)
    return {"ok": path, "silent": silent}


def run(args, capsys):
    code = main(["evaluate", *map(str, args), "-q"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code, err, needle):
    lines = err.strip().splitlines()
    return (code == 2 and len(lines) == 1 and lines[0].startswith("cuecraft: error:") and needle in lines[0]
            and "Traceback" not in err)


def files_in(path):
    return sorted(p.name for p in path.rglob("*") if p.is_file())


def test_help_lists_options(capsys):
    code = main(["evaluate", "--help"])
    out = capsys.readouterr().out
    assert code == 0
    for option in ("--output", "--overwrite", "--metrics", "--beat-align-sigma", "--cut-window", "--quiet",
                   "evaluation.json", "unpaired", "bhs", "--relevance-weights", "--relevance-batch",
                   "--train-relevance", "--steps", "--width", "relevance_global_bB", "relevance_local"):
        assert option in out


def test_writes_json_and_markdown_then_needs_overwrite(folder, tmp_path, capsys):
    out = tmp_path / "report.json"
    code, stdout, err = run([folder["ok"], "-o", out], capsys)
    assert code == 0, err
    assert stdout.split() == [str(out), str(tmp_path / "report.md")]
    report = json.loads(out.read_text())
    assert report["counts"]["evaluated"] == 1 and report["metric_groups"] == ["rhythm", "controls", "symbolic"]
    assert report["clips"][0]["metrics"]["visual_beat_f1"] >= 0.8
    assert (tmp_path / "report.md").read_text().startswith("# cuecraft evaluation")

    stamp = out.read_bytes()
    code, _, err = run([folder["ok"], "-o", out], capsys)
    assert one_line_error(code, err, "--overwrite") and out.read_bytes() == stamp
    code, _, err = run([folder["ok"], "-o", out, "--overwrite", "--metrics", "rhythm", "--beat-align-sigma", "0.03"],
                       capsys)
    assert code == 0, err
    assert "beat_align_sigma30ms" in json.loads(out.read_text())["aggregate"]


def test_default_output_in_the_current_folder(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run([folder["ok"]], capsys)
    assert code == 0, err
    assert files_in(tmp_path) == ["evaluation.json", "evaluation.md"]


BAD = {
    "missing path": (lambda f, tmp: [tmp / "nope", "-o", tmp / "r.json"], "nope"),
    "empty folder": (lambda f, tmp: [tmp / "empty", "-o", tmp / "r.json"], "nothing to evaluate"),
    "only silent music": (lambda f, tmp: [f["silent"], "-o", tmp / "r.json"], "silent"),
    "unknown metric": (lambda f, tmp: [f["ok"], "-o", tmp / "r.json", "--metrics", "rhythm,fad"], "'fad'"),
    "not json": (lambda f, tmp: [f["ok"], "-o", tmp / "r.txt"], ".json"),
    "missing output dir": (lambda f, tmp: [f["ok"], "-o", tmp / "no" / "r.json"], "does not exist"),
    "bad sigma": (lambda f, tmp: [f["ok"], "-o", tmp / "r.json", "--beat-align-sigma", "0"], "beat_align_sigma"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_exit_2_nothing_written(case, folder, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    make, needle = BAD[case]
    before = {name: None for name in files_in(tmp_path)}
    code, _, err = run(make(folder, tmp_path), capsys)
    assert one_line_error(code, err, needle), err
    assert files_in(tmp_path) == sorted(before)  # no report, no temporary file left behind
    assert files_in(folder["ok"]) == ["a.mp4", "a.wav"]  # inputs untouched


def test_usage_error_exit_2(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["evaluate"])
    assert one_line_error(code, capsys.readouterr().err, "no PATH given") and files_in(tmp_path) == []
    assert main(["evaluate", "--bogus"]) == 2


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Three scored MP4s (clicks muxed on different ball rhythms), for the relevance model."""
    from cuecraft.io.mux import mux_music

    folder = tmp_path_factory.mktemp("cli_scored")
    work = tmp_path_factory.mktemp("cli_scored_sources")
    for k, step in enumerate((0.5, 0.7, 0.9)):
        impacts = tuple(np.arange(step, 3.8, step))
        write_synthetic_video(work / f"c{k}.mp4", duration=4.0, fps=24, width=160, height=96,
                              events=SyntheticEvents(impacts=impacts))
        y = np.zeros(4 * SR, np.float32)
        for t in impacts:
            i = int(t * SR)
            y[i:i + 441] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(441) / SR) * np.exp(-np.arange(441) / 200)
        mux_music(work / f"c{k}.mp4", y, folder / f"c{k}.scored.mp4", sr=SR)
    return folder


@pytest.fixture(scope="module")
def relevance_run(scored, tmp_path_factory):
    """``--train-relevance`` for a few steps with a tiny width; returns (run folder, stdout)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("relevance_run") / "run"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["evaluate", "--train-relevance", str(scored), "-o", str(out), "--steps", "3", "--width", "8",
                     "-q"])
    assert code == 0
    return out, stdout.getvalue()


def test_train_relevance_prints_the_weights(relevance_run):
    out, stdout = relevance_run
    assert stdout.split() == [str(out / "model.safetensors")]
    assert (out / "model.safetensors").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["train_pairs"], summary["steps"], summary["video_features"]) == (3, 3, "embedded")


def test_evaluate_with_relevance(scored, relevance_run, tmp_path, capsys):
    import torch

    from cuecraft.evaluation.relevance import load_relevance, music_features, relevance_metrics, video_features
    from cuecraft.io.audio import load_audio
    from cuecraft.io.video import probe
    from cuecraft.models.visual import build_visual_encoder

    weights = relevance_run[0] / "model.safetensors"
    out = tmp_path / "r.json"
    code, _, err = run([scored, "-o", out, "--metrics", "relevance", "--relevance-weights", weights], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["metric_groups"] == ["relevance"] and report["counts"]["evaluated"] == 3
    assert report["settings"]["relevance"]["batch_size"] == 3  # min(16, clips)
    for clip in report["clips"]:
        assert set(clip["metrics"]) == {"relevance_global_b3", "relevance_local"}
        assert all(0.0 <= v <= 1.0 for v in clip["metrics"].values())
    assert set(report["definitions"]) == {"relevance_global_b3", "relevance_local"}
    # The aggregate mean over clips is GVMGen's batch score over the same clips.
    encoder, model = build_visual_encoder("embedded"), load_relevance(weights)
    video, music = [], []
    for clip in report["clips"]:
        duration = probe(clip["video"]).duration
        audio = load_audio(clip["music"], sr=22050, mono=True, max_duration=duration)
        audio = np.pad(audio, (0, max(0, round(duration * 22050) - len(audio))))[:round(duration * 22050)]
        video.append(video_features(encoder.encode(clip["video"])))
        music.append(torch.from_numpy(music_features(audio, sr=22050)))
    expected = relevance_metrics(model, video, music, batch_size=16)
    for key, value in expected.items():
        assert report["aggregate"][key]["mean"] == pytest.approx(value, abs=1e-5)

    # A smaller candidate set is named in the key; the run folder works as --relevance-weights too.
    code, _, err = run([scored, "-o", out, "--overwrite", "--relevance-weights", relevance_run[0],
                        "--relevance-batch", "2", "--metrics", "rhythm,relevance"], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert {"relevance_global_b2", "relevance_local", "visual_beat_f1"} <= set(report["aggregate"])
    assert "relevance_global_b3" not in report["aggregate"]
    # A single clip has no other music to choose from: only the local score.
    one = sorted(scored.iterdir())[0]
    code, _, err = run([one, "-o", out, "--overwrite", "--relevance-weights", weights, "--metrics", "relevance"],
                       capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert set(report["clips"][0]["metrics"]) == {"relevance_local"}
    assert report["settings"]["relevance"]["batch_size"] is None


def test_relevance_bad_weights_one_line_exit_2(scored, relevance_run, tmp_path, capsys):
    from torch import nn

    from cuecraft.evaluation.relevance_train import FeaturePair, train_relevance
    from cuecraft.training.checkpoints import save_weights

    out = tmp_path / "r.json"
    missing = tmp_path / "nope.safetensors"
    other = tmp_path / "other.safetensors"
    save_weights(other, nn.Linear(2, 2), metadata={"model": "something-else"})
    pairs = [FeaturePair(name=str(i), video=np.random.rand(6, 55), music=np.random.rand(6, 130),
                         video_kind="clip+videomae") for i in range(2)]
    train_relevance(pairs, steps=1, out_dir=tmp_path / "clip_run", batch_size=2, width=8, n_blocks=1, max_seconds=6)
    clip_weights = tmp_path / "clip_run" / "model.safetensors"
    cases = [(["--relevance-weights", missing], "nope.safetensors': no such file"),
             (["--relevance-weights", other], "other.safetensors': not a relevance model"),
             (["--relevance-weights", clip_weights], "would need local CLIP and VideoMAE folders"),
             (["--metrics", "rhythm,relevance"], "relevance needs --relevance-weights"),
             (["--relevance-weights", relevance_run[0], "--relevance-batch", "1"], "relevance batch size = 1"),
             (["--steps", "5"], "--steps applies to --train-relevance only")]
    for extra, needle in cases:
        code, _, err = run([scored, "-o", out, *extra], capsys)
        assert one_line_error(code, err, needle), (extra, err)
        assert not out.exists() and not list(tmp_path.glob(".r.*"))
    for args, needle in ((["--train-relevance", scored], "needs -o DIR"),
                         (["--train-relevance", tmp_path / "none", "-o", tmp_path / "x"], "none"),
                         (["--train-relevance", scored, scored, "-o", tmp_path / "x"], "is not used")):
        code, _, err = run(args, capsys)
        assert one_line_error(code, err, needle), (args, err)
