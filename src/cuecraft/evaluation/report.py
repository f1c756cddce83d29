"""The ``cuecraft evaluate`` report: aggregation over clips, and the JSON and Markdown files.

Aggregation never hides an undefined value. Each metric's cell holds the mean and sample
standard deviation (ddof=1) of its *finite* per-clip values (``n`` of them), how many clips
had it NaN (``nan``), and how many clips do not have it at all (``missing``, e.g. no side
file). JSON has no NaN, so NaN is written as ``null``; the counts say how many there were.
"""
from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import numpy as np

from cuecraft.errors import ParameterError
from cuecraft.evaluation.rhythm import harmonic_mean

DERIVED_DEFINITIONS = {
    "f1_loris_vs_visual_of_means": "F1 of the mean bcs_loris_vs_visual and mean bhs_loris_vs_visual over clips, "
                                   "as LORIS reports it",
    "f1_loris_vs_reference_of_means": "the same against reference music",
}


def is_finite(value) -> bool:
    """True for a finite int or float (False for NaN, inf, None and anything else)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def aggregate(clips: list[dict]) -> dict[str, dict]:
    """Mean and sample std (ddof=1) of each metric over clips; NaN and missing values counted apart.

    Parameters
    ----------
    clips : report entries, each with a ``"metrics"`` dict

    Returns
    -------
    dict: metric key (in first-seen order) -> ``{"mean", "std", "n", "nan", "missing"}``.
    ``mean`` is NaN without finite values, ``std`` with fewer than two.
    """
    out = {}
    for key in dict.fromkeys(k for c in clips for k in c["metrics"]):  # first-seen order, as defined
        values = [c["metrics"][key] for c in clips if key in c["metrics"]]
        finite = [float(v) for v in values if is_finite(v)]
        out[key] = {"mean": float(np.mean(finite)) if finite else float("nan"),
                    "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan"),
                    "n": len(finite), "nan": len(values) - len(finite), "missing": len(clips) - len(values)}
    return out


def derived(table: dict[str, dict]) -> dict[str, float]:
    """Values computed from the aggregate rather than per clip (see :data:`DERIVED_DEFINITIONS`)."""
    # LORIS reports F1 of the mean BCS and mean BHS, not the mean of per-clip F1s.
    pairs = {r: (table.get(f"bcs_loris_vs_{r}"), table.get(f"bhs_loris_vs_{r}")) for r in ("visual", "reference")}
    return {f"f1_loris_vs_{ref}_of_means": harmonic_mean(bcs["mean"], bhs["mean"])
            for ref, (bcs, bhs) in pairs.items() if bcs and bhs}


def versions() -> dict[str, str]:
    """Versions of what the numbers depend on, for the report."""
    import av
    import librosa
    import mir_eval

    from cuecraft import __version__

    return {"cuecraft": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "librosa": librosa.__version__, "mir_eval": mir_eval.__version__, "av": av.__version__}


def jsonable(value):
    """``value`` with every non-finite float replaced by None, recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(report: dict) -> str:
    """The report as JSON text (NaN as ``null``)."""
    return json.dumps(jsonable(report), indent=1, allow_nan=False, ensure_ascii=False) + "\n"


def _cell(value) -> str:
    return f"{value:.3f}" if is_finite(value) else "NaN"


def _mean_std(entry: dict) -> str:
    """``mean ± std``; the std is left out where it is undefined (fewer than two finite values, see n)."""
    if not is_finite(entry["mean"]):
        return "NaN"
    return f"{entry['mean']:.3f} ± {entry['std']:.3f}" if is_finite(entry["std"]) else f"{entry['mean']:.3f}"


def _row(*cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def markdown(report: dict) -> str:
    """The report as Markdown: counts, the aggregate table, one row per clip, skips, definitions."""
    c, keys = report["counts"], list(report["aggregate"])
    lines = ["# cuecraft evaluation", "",
             (f"{c['evaluated']} clips evaluated, {c['skipped']} skipped, {c['audio_short']} with music shorter "
              f"than the video, {c['ignored_files']} non-media files ignored. "
              f"Groups: {', '.join(report['metric_groups'])}."),
             "", "## Aggregate", "", _row("metric", "mean ± std", "n", "NaN", "missing"), "|---|---|---|---|---|"]
    lines += [_row(f"`{k}`", _mean_std(v), v["n"], v["nan"], v["missing"])
              for k, v in report["aggregate"].items()]
    lines += [_row(f"`{k}`", _cell(v), "", "", "") for k, v in report["aggregate_derived"].items()]
    lines += ["", "## Per clip", "", _row("clip", "flags", *(f"`{k}`" for k in keys)),
              "|---" * (len(keys) + 2) + "|"]
    lines += [_row(clip["name"], ", ".join(clip["flags"]),
                   *(_cell(clip["metrics"][k]) if k in clip["metrics"] else "" for k in keys))
              for clip in report["clips"]]
    if report["skipped"]:
        lines += ["", "## Skipped", "", _row("file", "reason", "detail"), "|---|---|---|"]
        lines += [_row(s["path"], s["reason"], s["detail"]) for s in report["skipped"]]
    lines += ["", "## Definitions", ""] + [f"- `{k}`: {v}" for k, v in report["definitions"].items()]
    return "\n".join(lines) + "\n"


def report_paths(out: str | os.PathLike) -> dict[str, Path]:
    """The JSON report and the Markdown beside it (``report.json`` -> ``report.md``)."""
    out = Path(out)
    if out.suffix.lower() != ".json":
        raise ParameterError(f"-o {str(out)!r}: the report must end in .json (the Markdown goes beside it)")
    return {"json": out, "markdown": out.with_suffix(".md")}


def write(report: dict, outputs) -> dict[str, Path]:
    """Write both reports into ``outputs`` (a :class:`cuecraft.io.files.OutputSet` over
    :func:`report_paths`) and commit them together; returns the paths written."""
    outputs.temp("json").write_text(to_json(report), encoding="utf-8")
    outputs.temp("markdown").write_text(markdown(report), encoding="utf-8")
    return outputs.commit()
