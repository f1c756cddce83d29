"""cuecraft evaluate end to end on cheap synthetic results: pairing, keys, skips, NaN, reports."""
import json

import numpy as np
import pretty_midi
import pytest

from cuecraft.errors import MediaError, OutputError, ParameterError
from cuecraft.evaluation.evaluate import collect, evaluate, run
from cuecraft.io.audio import write_wav
from cuecraft.io.mux import mux_music
from cuecraft.io.synthetic import SyntheticEvents, write_synthetic_video

SR = 44100
IMPACTS = tuple(0.5 * k for k in range(1, 12))
WITH_CUTS = SyntheticEvents(cuts=(2.0, 4.1), impacts=IMPACTS)
NO_CUTS = SyntheticEvents(impacts=IMPACTS)
RHYTHM_KEYS = {"visual_beat_f1", "cut_hit_rate_100ms", "cut_hit_rate_100ms_chance", "beat_align_sigma50ms",
               "beat_align_symmetric_sigma50ms", "bcs_d2m_vs_visual", "bhs_d2m_vs_visual", "bcs_loris_vs_visual",
               "bhs_loris_vs_visual", "f1_loris_vs_visual"}


def clicks(times, seconds, sr=SR):
    y = np.zeros(int(seconds * sr), np.float32)
    n = int(0.05 * sr)
    blip = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(n) / sr) * np.exp(-np.arange(n) / (0.01 * sr))
    for t in times:
        i = round(t * sr)
        y[i:i + n] += blip[:len(y) - i].astype(np.float32)
    return y


def video(path, events=WITH_CUTS):
    write_synthetic_video(path, duration=6.0, fps=24, width=160, height=96, events=events)
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A folder of pairs and bad cases, and a scored MP4 with its MIDI and controls; reported once."""
    root = tmp_path_factory.mktemp("results")
    folder = root / "pairs"
    folder.mkdir()
    video(folder / "aligned.mp4")
    write_wav(folder / "aligned.wav", clicks(IMPACTS, 6.0), sr=SR)
    video(folder / "shifted.mp4", NO_CUTS)  # no cuts: its cut hit rate is undefined (NaN)
    write_wav(folder / "shifted.flac", clicks(np.add(IMPACTS, 0.25), 6.0, sr=48000), sr=48000)  # other rate
    video(folder / "short.mp4")
    write_wav(folder / "short.mp3", clicks(IMPACTS[:5], 3.0), sr=SR)  # half the video
    video(folder / "quiet.mp4")
    write_wav(folder / "quiet.wav", np.zeros(6 * SR, np.float32), sr=SR)
    write_wav(folder / "lonely.wav", clicks(IMPACTS, 6.0), sr=SR)
    (folder / "notes.txt").write_text("not media")

    scored = root / "clip.scored.mp4"
    mux_music(video(root / "clip.mp4"), clicks(IMPACTS, 6.0), scored, sr=SR)
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    piano = pretty_midi.Instrument(program=0)
    piano.notes += [pretty_midi.Note(velocity=90, pitch=(60, 64, 67, 72)[k % 4], start=t, end=t + 0.4)
                    for k, t in enumerate(IMPACTS)]
    pm.instruments.append(piano)
    pm.write(str(root / "clip.mid"))
    beat = [[0.5 * k, k % 4] for k in range(12)]
    (root / "clip.controls.json").write_text(json.dumps(
        {"version": 1, "beat": beat, "intensity": [[0.0, -20.0], [3.0, -10.0], [5.9, -20.0]],
         "melody": [[0.0, 0], [3.0, 4]], "emotion": [[0.0, 0.5, 0.5], [5.0, 0.5, 0.5]]}))
    out = root / "report" / "eval.json"
    out.parent.mkdir()
    written = run([folder, scored], out=out)
    return {"root": root, "folder": folder, "scored": scored, "written": written,
            "report": json.loads(out.read_text()), "markdown": out.with_suffix(".md").read_text()}


def by_name(report):
    return {c["name"]: c for c in report["clips"]}


def test_reports_written_with_their_layout(results):
    report, written = results["report"], results["written"]
    assert written["json"].name == "eval.json" and written["markdown"].name == "eval.md"
    assert {"report_version", "versions", "inputs", "metric_groups", "settings", "counts", "aggregate",
            "aggregate_derived", "clips", "skipped", "definitions"} <= set(report)
    assert {"cuecraft", "librosa", "mir_eval", "numpy"} <= set(report["versions"])
    assert set(report["definitions"]) == set(report["aggregate"]) | set(report["aggregate_derived"])
    for cell in report["aggregate"].values():
        assert set(cell) == {"mean", "std", "n", "nan", "missing"}
    assert "## Aggregate" in results["markdown"] and "`visual_beat_f1`" in results["markdown"]
    assert "lonely.wav" in results["markdown"] and "| aligned |" in results["markdown"]


def test_pairs_and_scored_clip_keys(results):
    clips = by_name(results["report"])
    assert set(clips) == {"aligned", "shifted", "short", "clip"}
    assert clips["aligned"]["kind"] == "pair" and clips["clip"]["kind"] == "self-contained"
    for name in ("aligned", "shifted", "short"):
        assert set(clips[name]["metrics"]) == RHYTHM_KEYS  # no side files: rhythm only
    scored = clips["clip"]
    assert set(scored["metrics"]) == RHYTHM_KEYS | {
        "control_intensity_r", "control_melody_chroma_accuracy", "control_beat_f1",
        "control_valence_sign_agreement", "control_arousal_sign_agreement",
        "pche_1bar", "gps_16pos", "in_scale_ratio_estimated_key", "note_density_onsets_per_s"}
    assert scored["warnings"] == []
    m = scored["metrics"]
    assert m["note_density_onsets_per_s"] == pytest.approx(11 / 6)
    assert m["in_scale_ratio_estimated_key"] == 1.0  # a C major arpeggio
    assert m["control_beat_f1"] >= 0.8  # the requested beats are the clicks


def test_aligned_clicks_beat_shifted_clicks(results):
    clips = by_name(results["report"])
    aligned, shifted, scored = (clips[n]["metrics"] for n in ("aligned", "shifted", "clip"))
    # No beats are tracked in the silence before the first and after the last click.
    assert aligned["visual_beat_f1"] >= 0.95 and scored["visual_beat_f1"] >= 0.95  # muxed AAC keeps the timing
    assert shifted["visual_beat_f1"] <= 0.2
    assert aligned["beat_align_sigma50ms"] > shifted["beat_align_sigma50ms"] + 0.4


def test_skips_flags_and_nan_counted(results):
    report = results["report"]
    counts = report["counts"]
    assert counts["clips_found"] == 5 and counts["evaluated"] == 4 and counts["ignored_files"] == 1
    assert counts["skipped"] == 2 and counts["skipped_by_reason"] == {"unpaired": 1, "silent": 1}
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in report["skipped"]}
    assert reasons == {"lonely.wav": "unpaired", "quiet.mp4": "silent"}
    assert counts["audio_short"] == 1 and by_name(report)["short"]["flags"] == ["audio_short"]
    assert by_name(report)["short"]["audio_seconds"] == pytest.approx(3.0, abs=0.1)
    # The clip without cuts has an undefined cut hit rate: null in its entry, counted as NaN.
    assert by_name(report)["shifted"]["metrics"]["cut_hit_rate_100ms"] is None
    cell = report["aggregate"]["cut_hit_rate_100ms"]
    assert cell["nan"] == 1 and cell["n"] == 3 and cell["missing"] == 0
    finite = [c["metrics"]["cut_hit_rate_100ms"] for c in report["clips"] if c["name"] != "shifted"]
    assert cell["mean"] == pytest.approx(np.mean(finite))
    control = report["aggregate"]["control_beat_f1"]
    assert control["n"] == 1 and control["missing"] == 3 and control["std"] is None


def test_pairing_rules(tmp_path):
    names = ["X.scored.mp4", "X.mp4", "X.wav", "X.mid", "X.controls.json", "X.timeline.png",
             "Y.mov", "Y.flac", "Z.mp4", "Z.wav", "Z.mp3", "lonely.wav", "orphan.mid", "novideo.mkv", "readme.md"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    found = collect([tmp_path])
    clips = {c.name: c for c in found.clips}
    assert set(clips) == {"X", "Y"}
    x = clips["X"]
    assert x.video == x.music == tmp_path / "X.scored.mp4" and x.kind == "self-contained"
    assert x.midi == tmp_path / "X.mid" and x.controls == tmp_path / "X.controls.json"
    assert (clips["Y"].video.name, clips["Y"].music.name, clips["Y"].kind) == ("Y.mov", "Y.flac", "pair")
    skipped = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in found.skipped}
    assert skipped == {"Z.mp4": "ambiguous", "lonely.wav": "unpaired", "orphan.mid": "unpaired",
                       "novideo.mkv": "unpaired"}
    assert found.ignored == 2  # the timeline PNG and the readme
    # A file named on the command line is self-contained, whatever its name.
    single = collect([tmp_path / "Z.mp4"]).clips
    assert len(single) == 1 and single[0].music == tmp_path / "Z.mp4"


def test_bad_input(tmp_path, results):
    with pytest.raises(MediaError, match="nope"):
        collect([tmp_path / "nope"])
    with pytest.raises(MediaError, match="nothing to evaluate"):
        evaluate([tmp_path])
    quiet = results["folder"] / "quiet.mp4"
    with pytest.raises(MediaError, match="no clip could be evaluated.*no audio stream"):
        evaluate([quiet])  # named alone, it is self-contained, and it has no audio stream
    with pytest.raises(ParameterError, match="relevance needs --relevance-weights"):
        evaluate([quiet], metrics="rhythm,relevance")
    with pytest.raises(ParameterError, match="'rhythm' has no relevance"):
        evaluate([quiet], metrics="rhythm", relevance_weights=tmp_path / "w.safetensors")
    with pytest.raises(MediaError, match=r"relevance weights: .*w\.safetensors': no such file"):
        evaluate([quiet], relevance_weights=tmp_path / "w.safetensors")
    with pytest.raises(ParameterError, match=r"\.json"):
        run([quiet], out=tmp_path / "report.txt")
    existing = tmp_path / "report.json"
    existing.write_text("keep")
    with pytest.raises(OutputError, match="--overwrite"):
        run([quiet], out=existing)
    assert existing.read_text() == "keep" and not (tmp_path / "report.md").exists()


def test_bad_side_file_costs_only_its_group(results, tmp_path):
    scored = tmp_path / "clip.scored.mp4"
    scored.write_bytes(results["scored"].read_bytes())
    (tmp_path / "clip.controls.json").write_text('{"version": 1, "intensity": [[0, 5]]}')  # 5 dB is out of range
    (tmp_path / "clip.mid").write_text("not midi")
    report = evaluate([scored], metrics=["rhythm", "controls", "symbolic"])
    clip = report["clips"][0]
    assert set(clip["metrics"]) == RHYTHM_KEYS
    assert len(clip["warnings"]) == 2 and "intensity[0].dB = 5.0" in clip["warnings"][0]
    assert clip["warnings"][1].startswith("symbolic:") and "clip.mid" in clip["warnings"][1]
    assert report["counts"]["with_warnings"] == 1
