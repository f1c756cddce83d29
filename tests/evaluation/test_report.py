"""The evaluate report: aggregation with NaN counted apart, derived values, JSON and Markdown files."""
import json
import math

import pytest

from cuecraft.errors import OutputError, ParameterError
from cuecraft.evaluation.report import aggregate, derived, markdown, report_paths, to_json, write
from cuecraft.io.files import OutputSet

NAN = float("nan")


def test_aggregate_hand_worked():
    table = aggregate([{"metrics": {"a": 1.0, "b": NAN}}, {"metrics": {"a": 3.0}}, {"metrics": {"a": NAN, "b": 2.0}}])
    assert list(table) == ["a", "b"]  # first-seen order
    assert table["a"] == {"mean": 2.0, "std": pytest.approx(math.sqrt(2)), "n": 2, "nan": 1, "missing": 0}
    assert table["b"]["mean"] == 2.0 and math.isnan(table["b"]["std"])  # one finite value: no spread
    assert (table["b"]["n"], table["b"]["nan"], table["b"]["missing"]) == (1, 1, 1)


def test_aggregate_perfect_empty_and_all_nan():
    assert aggregate([{"metrics": {"a": 0.5}}, {"metrics": {"a": 0.5}}])["a"] == {
        "mean": 0.5, "std": 0.0, "n": 2, "nan": 0, "missing": 0}
    assert aggregate([]) == {} and aggregate([{"metrics": {}}]) == {}
    cell = aggregate([{"metrics": {"a": NAN}}, {"metrics": {"a": math.inf}}])["a"]
    assert math.isnan(cell["mean"]) and math.isnan(cell["std"]) and (cell["n"], cell["nan"]) == (0, 2)


def test_derived_is_f1_of_the_means():
    table = aggregate([{"metrics": {"bcs_loris_vs_visual": 1.0, "bhs_loris_vs_visual": 0.5}},
                       {"metrics": {"bcs_loris_vs_visual": 0.5, "bhs_loris_vs_visual": 0.5}}])
    # mean BCS 0.75, mean BHS 0.5 -> F1 = 2 * 0.375 / 1.25 = 0.6 (not the mean of per-clip F1s).
    assert derived(table) == {"f1_loris_vs_visual_of_means": pytest.approx(0.6)}
    assert derived({}) == {}


def report_of(clips):
    table = aggregate(clips)
    return {"counts": {"evaluated": len(clips), "skipped": 1, "audio_short": 0, "ignored_files": 0},
            "metric_groups": ["rhythm"], "aggregate": table, "aggregate_derived": {"x_of_means": NAN},
            "clips": clips, "skipped": [{"path": "a|b.wav", "reason": "unpaired", "detail": "no video"}],
            "definitions": {"a": "the a metric"}}


def test_json_has_null_for_nan_and_markdown_says_nan():
    report = report_of([{"name": "one", "flags": [], "metrics": {"a": 0.25}},
                        {"name": "two", "flags": ["audio_short"], "metrics": {"a": NAN}}])
    data = json.loads(to_json(report))
    assert data["clips"][1]["metrics"]["a"] is None and data["aggregate"]["a"]["nan"] == 1
    assert data["aggregate"]["a"]["std"] is None and data["aggregate_derived"]["x_of_means"] is None
    text = markdown(report)
    assert "| `a` | 0.250 | 1 | 1 | 0 |" in text  # no std from one finite value
    assert "| two | audio_short | NaN |" in text
    assert "a\\|b.wav" in text  # a pipe in a path does not break the table
    assert "- `a`: the a metric" in text


def test_report_paths_and_write_both_or_neither(tmp_path):
    assert report_paths(tmp_path / "r.json") == {"json": tmp_path / "r.json", "markdown": tmp_path / "r.md"}
    with pytest.raises(ParameterError, match=r"r\.txt.*\.json"):
        report_paths(tmp_path / "r.txt")
    report = report_of([{"name": "one", "flags": [], "metrics": {"a": 1.0}}])
    targets = report_paths(tmp_path / "r.json")
    with OutputSet(targets, overwrite=False) as outputs:
        written = write(report, outputs)
    assert written == targets and json.loads(targets["json"].read_text())["aggregate"]["a"]["mean"] == 1.0
    assert targets["markdown"].read_text().startswith("# cuecraft evaluation")
    with pytest.raises(OutputError, match="--overwrite"):
        OutputSet(targets, overwrite=False)
    bad = dict(report, clips=[{"name": "x", "flags": [], "metrics": {"a": object()}}])  # not JSON
    with pytest.raises(TypeError), OutputSet(report_paths(tmp_path / "s.json"), overwrite=False) as outputs:
        write(bad, outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md"]  # nothing of s.*, no temp file
