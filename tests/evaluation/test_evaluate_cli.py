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
                   "evaluation.json", "unpaired", "bhs"):
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


def test_usage_error_exit_2(capsys):
    assert main(["evaluate"]) == 2
