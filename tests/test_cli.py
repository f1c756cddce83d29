"""The command line end to end: outputs, controls round trip, reference, bad input, fuzz."""
import json
import shutil
import signal
import subprocess
import sys

import av
import media
import mir_eval
import numpy as np
import pytest

from cuecraft.cli import main

OUTPUT_SUFFIXES = (".scored.mp4", ".mid", ".wav", ".controls.json", ".timeline.png")


@pytest.fixture
def clip(small_video, tmp_path):
    path = tmp_path / "my clip ü.mp4"  # spaces and unicode on purpose
    shutil.copy(small_video, path)
    return path


def outputs_of(clip):
    stem = clip.name[: -len(clip.suffix)]
    return [clip.with_name(stem + s) for s in OUTPUT_SUFFIXES]


def run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_explains_every_option(capsys):
    for command, options in (("score", ["--output", "--controls", "--reference", "--seed", "--overwrite",
                                        "--keep-audio", "--soundfont", "--quiet"]),
                             ("analyze", ["--output", "--overwrite", "--quiet"])):
        code, out, _ = run([command, "--help"], capsys)
        assert code == 0
        for option in options:
            assert option in out


def test_score_writes_everything_in_sync(clip, small_events, capsys):
    before = clip.read_bytes()
    code, out, err = run(["score", clip, "-q"], capsys)
    assert code == 0, err
    files = outputs_of(clip)
    assert all(p.exists() and p.stat().st_size > 0 for p in files)
    assert clip.read_bytes() == before
    scored, midi, wav, controls_path, timeline = files
    with av.open(str(scored)) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.audio[0].codec_context.name == "aac"
    assert timeline.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    controls = json.loads(controls_path.read_text())
    beats = np.array([b[0] for b in controls["beat"]])
    impacts = np.array(small_events.impacts)
    assert mir_eval.beat.f_measure(mir_eval.beat.trim_beats(impacts, 0.4),
                                   mir_eval.beat.trim_beats(beats, 0.4)) >= 0.85
    downbeats = beats[np.array([b[1] for b in controls["beat"]]) == 0]
    for cut in small_events.cuts:
        assert np.min(np.abs(downbeats - cut)) < 0.05
    # The music's onsets sit on the beat grid: the audio follows the picture.
    import librosa

    y, sr = librosa.load(str(wav), sr=22050)
    onsets = librosa.onset.onset_detect(y=y, sr=sr, units="time", backtrack=False)
    hit = [np.min(np.abs(onsets - b)) < 0.07 for b in beats if 0.3 < b < 5.7]
    assert np.mean(hit) >= 0.9


def test_same_seed_same_midi(clip, tmp_path, capsys):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    assert run(["score", clip, "-o", a, "--seed", 3, "-q"], capsys)[0] == 0
    assert run(["score", clip, "-o", b, "--seed", 3, "-q"], capsys)[0] == 0
    assert (tmp_path / "a.mid").read_bytes() == (tmp_path / "b.mid").read_bytes()


def test_analyze_edit_and_score_with_controls(clip, tmp_path, capsys):
    path = tmp_path / "mine.json"
    assert run(["analyze", clip, "-o", path, "-q"], capsys)[0] == 0
    data = json.loads(path.read_text())
    assert data["version"] == 1 and {"beat", "intensity", "emotion"} <= set(data)
    data["intensity"] = [[0.0, -12.5], [5.0, -12.5]]
    del data["beat"]  # missing controls come from the video
    path.write_text(json.dumps(data))
    out = tmp_path / "edited.mp4"
    code, _, err = run(["score", clip, "--controls", path, "-o", out, "-q"], capsys)
    assert code == 0, err
    used = json.loads((tmp_path / "edited.controls.json").read_text())
    assert used["intensity"] == [[0.0, -12.5], [5.0, -12.5]] and len(used["beat"]) > 8


def test_reference_midi_then_video(clip, tmp_path, capsys):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=90)
    piano = pretty_midi.Instrument(program=0)
    for k in range(6):  # 4 s of quarter notes at 90 BPM
        piano.notes.append(pretty_midi.Note(velocity=90, pitch=60 + 2 * k, start=k * 2 / 3, end=k * 2 / 3 + 0.6))
    pm.instruments.append(piano)
    ref = tmp_path / "theme.mid"
    pm.write(str(ref))
    out = tmp_path / "ref.mp4"
    code, _, err = run(["score", clip, "--reference", ref, "-o", out, "-q"], capsys)
    assert code == 0, err
    beats = np.array(json.loads((tmp_path / "ref.controls.json").read_text())["beat"])[:, 0]
    early = np.diff(beats[beats < 3.5])
    assert np.allclose(early, 2 / 3, atol=0.02)  # the reference's tempo first ...
    assert beats[-1] > 5.0  # ... then the video's grid to the end


def _bad_controls(tmp_path, text):
    path = tmp_path / "bad.controls.json"
    path.write_text(text)
    return ["--controls", path]


BAD_CASES = {
    "missing file": (lambda clip, tmp: ["score", tmp / "nope.mp4"], "no such"),
    "empty file": (lambda clip, tmp: (clip.write_bytes(b""), ["score", clip])[1], "empty"),
    "text as video": (lambda clip, tmp: (clip.write_text("not a video"), ["score", clip])[1], "not a readable"),
    "truncated": (lambda clip, tmp: (clip.write_bytes(clip.read_bytes()[:20000]), ["score", clip])[1], "mp4"),
    "audio only": (lambda clip, tmp: (media.audio_only(clip), ["score", clip])[1], "audio only"),
    "still image": (lambda clip, tmp: (media.still_png(clip), ["score", clip])[1], "still image"),
    "zero duration": (lambda clip, tmp: (media.no_frames(clip), ["score", clip])[1], "no video stream"),
    "bad json": (lambda clip, tmp: ["score", clip, *_bad_controls(tmp, "{oops")], "bad JSON"),
    "wrong version": (lambda clip, tmp: ["score", clip, *_bad_controls(tmp, '{"version": 9}')], "version = 9"),
    "nan": (lambda clip, tmp: ["score", clip, *_bad_controls(tmp, '{"version": 1, "intensity": [[0, NaN]]}')], "NaN"),
    "out of range": (lambda clip, tmp: ["score", clip, *_bad_controls(
        tmp, '{"version": 1, "emotion": [[0, 0, 3]]}')], "emotion[0].arousal = 3"),
    "unsorted": (lambda clip, tmp: ["score", clip, *_bad_controls(
        tmp, '{"version": 1, "beat": [[1, 0], [0.5, 1]]}')], "beat[1].t = 0.5"),
    "unwritable dir": (lambda clip, tmp: ["score", clip, "-o", "/proc/out.mp4"], "not writable"),
    "missing dir": (lambda clip, tmp: ["score", clip, "-o", tmp / "no" / "out.mp4"], "does not exist"),
    "bad output type": (lambda clip, tmp: ["score", clip, "-o", tmp / "out.avi"], ".avi"),
    "bad reference": (lambda clip, tmp: ((tmp / "r.wav").write_text("x"), ["score", clip, "--reference",
                                                                          tmp / "r.wav"])[1], "r.wav"),
    "output over input": (lambda clip, tmp: ((tmp / "x.controls.json").write_text('{"version": 1}'),
                                             ["score", clip, "--controls", tmp / "x.controls.json", "-o",
                                              tmp / "x.mp4", "--overwrite"])[1], "overwrite an input"),
    "bad seed": (lambda clip, tmp: ["score", clip, "--seed", "-1"], "seed"),
    "guidance below 1": (lambda clip, tmp: ["score", clip, "--guidance", "0.5"], "--guidance 0.5"),
    "guidance nan": (lambda clip, tmp: ["score", clip, "--guidance", "nan"], "--guidance nan"),
    "corrupt weights": (lambda clip, tmp: ((tmp / "w.safetensors").write_bytes(b"\x08" + bytes(40)),
                                           ["score", clip, "--weights", tmp / "w.safetensors"])[1], "w.safetensors"),
    "missing weights": (lambda clip, tmp: ["score", clip, "--weights", tmp / "none.safetensors"], "none.safetensors"),
    "guidance without a model": (lambda clip, tmp: ["score", clip, "--backbone", "arrangement", "--guidance", "2"],
                                 "no model to guide"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_one_line_exit_2_nothing_written(case, clip, tmp_path, capsys):
    make, needle = BAD_CASES[case]
    args = make(clip, tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, out, err = run(args + ["-q"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cuecraft: error:") and needle in lines[0], err
    assert "Traceback" not in err
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written, inputs untouched


def test_existing_output_needs_overwrite(clip, capsys):
    assert run(["analyze", clip, "-q"], capsys)[0] == 0
    written = clip.with_name(clip.stem + ".controls.json")
    stamp = written.read_bytes()
    code, _, err = run(["analyze", clip, "-q"], capsys)
    assert code == 2 and "--overwrite" in err and written.read_bytes() == stamp
    assert run(["analyze", clip, "--overwrite", "-q"], capsys)[0] == 0


def test_usage_error_exit_2(capsys):
    assert run(["score"], capsys)[0] == 2
    assert run(["frobnicate"], capsys)[0] == 2


def test_python_m_entry_point(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cuecraft", "analyze", tmp_path / "missing.mp4"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "missing.mp4" in result.stderr and "Traceback" not in result.stderr


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang


def test_fuzzed_video_never_crashes_or_hangs(small_video, tmp_path, capsys):
    data = bytearray(small_video.read_bytes())
    rng = np.random.default_rng(0)
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for trial in range(12):
            mutated = bytearray(data)
            for pos in rng.integers(0, len(mutated), size=int(rng.integers(1, 64))):
                mutated[pos] = int(rng.integers(0, 256))
            if trial % 3 == 0:
                mutated = mutated[: int(rng.integers(100, len(mutated)))]
            path = tmp_path / f"fuzz{trial}.mp4"
            path.write_bytes(bytes(mutated))
            command = "score" if trial < 2 else "analyze"
            signal.alarm(60)
            try:
                code, _, err = run([command, path, "-q"], capsys)
            finally:
                signal.alarm(0)
            assert code in (0, 2), err
            if code == 2:
                assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
                assert not list(tmp_path.glob(f"fuzz{trial}.*.*"))  # no partial outputs
    finally:
        signal.signal(signal.SIGALRM, old)
