"""``cuecraft evaluate``: find (video, music) clips, measure each, write a JSON and a Markdown report.

Inputs and pairing
------------------
- A **file** named on the command line is self-contained: its video stream is the video and its
  first audio stream the music (a cuecraft ``*.scored.mp4`` or another system's muxed output).
- A **folder** is scanned (not recursively). ``X.scored.<video>`` is a cuecraft output, taken
  as self-contained; ``X.<video>`` (its source) and ``X.<audio>`` (the same music) belong to it.
  Otherwise ``X.<video>`` + ``X.<audio>`` (same stem) is a pair: picture from the video, music
  from the audio file. Any other video, audio, MIDI or controls file is skipped as
  ``unpaired`` (or ``ambiguous``: two candidate partners) and counted; non-media files
  (``.png``, ``.json``, ...) are ignored and counted. Extensions: :data:`VIDEO_EXTS`, :data:`AUDIO_EXTS`.
- Beside any clip, ``X.mid`` adds the symbolic metrics and ``X.controls.json`` the control
  adherence metrics (where ``cuecraft score`` writes them, :func:`cuecraft.api.output_paths`).

Bad input
---------
- Unreadable media or no audio stream: the clip is skipped with the reader's message.
- Silent music (peak below -80 dBFS within the video's span): skipped, reason ``silent``.
- Music shorter than the video by more than 0.1 s: the missing end is silence, as it is in a
  scored video, so metrics still cover the whole video; the clip is flagged ``audio_short``
  and counted. Longer music is cut at the video's end. Music starts with the first frame.
- Sample rates never need to match: all music is decoded and resampled to 22050 Hz.
- A bad MIDI or controls side file costs only its metric group, with a warning on the clip.
- NaN: an undefined metric is NaN in its clip (``null`` in JSON). The aggregate counts NaN
  values apart (``nan``) and averages the finite ones only (``n``); clips without a metric
  (no side file) count as ``missing``.
"""
from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cuecraft.checks import seconds
from cuecraft.errors import ControlsError, MediaError, OutputError, ParameterError
from cuecraft.evaluation import rhythm

VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus")
SIDE_SUFFIXES = {"midi": (".mid", ".midi"), "controls": (".controls.json",)}
METRIC_GROUPS = ("rhythm", "controls", "symbolic")  # "relevance" joins when the relevance model lands
SR = rhythm.ONSET_SR
SHORT_TOLERANCE = 0.1     # seconds: AAC priming and padding move a stream's end by a few frames
REPORT_VERSION = 1


class Skip(Exception):
    """A clip that cannot be evaluated: ``reason`` is a short category, the message says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Clip:
    """One result: ``video`` gives the picture, ``music`` the music (the same file if self-contained)."""

    name: str
    video: Path
    music: Path
    kind: str                   # "self-contained" or "pair"
    midi: Path | None = None
    controls: Path | None = None


@dataclass
class Collection:
    """What :func:`collect` found: clips, skipped files (path, reason, detail) and ignored files."""

    clips: list[Clip]
    skipped: list[dict]
    ignored: int


def _stem(path: Path) -> str:
    return path.name.removesuffix(path.suffix).removesuffix(".scored")


def _with_sides(clip: Clip) -> Clip:
    def side(kind: str) -> Path | None:
        found = [clip.video.parent / f"{clip.name}{s}" for s in SIDE_SUFFIXES[kind]]
        return next((p for p in found if p.is_file()), None)

    return Clip(clip.name, clip.video, clip.music, clip.kind, side("midi"), side("controls"))


def _kind(path: Path) -> str:
    if path.name.lower().endswith(SIDE_SUFFIXES["controls"]):
        return "controls"
    suffix = path.suffix.lower()
    kinds = {"video": VIDEO_EXTS, "audio": AUDIO_EXTS, "midi": SIDE_SUFFIXES["midi"]}
    return next((k for k, exts in kinds.items() if suffix in exts), "other")


def _skip(path: Path, reason: str, detail: str) -> dict:
    return {"path": str(path), "reason": reason, "detail": detail}


def collect(paths) -> Collection:
    """Clips to evaluate from files and folders, by the pairing rules in the module docstring.

    Raises
    ------
    MediaError
        If a path does not exist, naming it.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ParameterError("no PATH given: name scored videos or folders of results")
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise MediaError(f"'{missing[0]}': no such file or folder")
    out = Collection([], [], 0)
    for path in paths:
        found = _scan(path) if path.is_dir() else Collection([Clip(_stem(path), path, path, "self-contained")], [], 0)
        out.clips.extend(_with_sides(c) for c in found.clips)
        out.skipped.extend(found.skipped)
        out.ignored += found.ignored
    return out


def _scan(folder: Path) -> Collection:
    files: dict[str, list[Path]] = {"video": [], "audio": [], "midi": [], "controls": [], "other": []}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        files[_kind(path)].append(path)
    used: set[Path] = set()
    clips, skipped = [], []

    def plain(kind: str, stem: str) -> list[Path]:
        return [p for p in files[kind] if p not in used and _stem(p) == stem and not p.stem.endswith(".scored")]

    for scored in (p for p in files["video"] if p.stem.endswith(".scored")):
        used.update([scored, *plain("video", _stem(scored)), *plain("audio", _stem(scored))])
        clips.append(Clip(_stem(scored), scored, scored, "self-contained"))
    for video in [p for p in files["video"] if p not in used]:
        partners = plain("audio", _stem(video))
        if partners:
            used.update([video, *partners])
        if len(partners) == 1:
            clips.append(Clip(_stem(video), video, partners[0], "pair"))
        elif partners:
            names = ", ".join(p.name for p in partners)
            skipped.append(_skip(video, "ambiguous", f"'{video}': several music files pair with it ({names})"))
    used.update(p for c in map(_with_sides, clips) for p in (c.midi, c.controls) if p is not None)
    for kind in ("video", "audio", "midi", "controls"):
        partner = "music" if kind == "video" else "video"
        skipped += [_skip(p, "unpaired", f"'{p}': no matching {partner}") for p in files[kind] if p not in used]
    return Collection(clips, skipped, len(files["other"]))


@dataclass(frozen=True)
class ClipData:
    """Everything a metric group may use for one clip."""

    clip: Clip
    analysis: object            # cuecraft.api.VideoAnalysis
    audio: np.ndarray           # [n] float32 at SR, exactly the video's duration long
    duration: float
    controls: object | None     # Controls from the side file, if any


def load_clip(clip: Clip) -> tuple[ClipData, list[str], float]:
    """Analyse the video and decode the music: the data, its flags and the seconds of music found.

    Raises
    ------
    Skip
        If the video or the music is unreadable, there is no music, or it is silent.
    """
    from cuecraft.api import analyze_video
    from cuecraft.controls.from_audio import SILENCE_PEAK
    from cuecraft.io.audio import load_audio
    from cuecraft.io.video import probe

    try:
        info = probe(clip.video)
        duration = float(info.duration)
        audio = load_audio(clip.music, sr=SR, mono=True, max_duration=duration)
        # Silence is known before the slower video analysis, which it makes pointless.
        if float(np.max(np.abs(audio))) < SILENCE_PEAK:
            raise Skip("silent", f"'{clip.music}': the music is silent (peak below -80 dBFS)")
        analysis = analyze_video(clip.video, info=info)
    except MediaError as exc:
        raise Skip("no audio" if "no audio stream" in str(exc) else "unreadable", str(exc)) from None
    found, target = len(audio) / SR, round(duration * SR)
    flags = ["audio_short"] if found < duration - SHORT_TOLERANCE else []
    audio = np.pad(audio, (0, max(0, target - len(audio))))[:target]
    return ClipData(clip, analysis, audio, duration, None), flags, found


def _rhythm(data: ClipData, settings: dict) -> dict[str, float]:
    visual = data.analysis.visual
    return rhythm.evaluate(visual.visual_beats, visual.cuts, data.audio, sr=SR, duration=data.duration,
                           cut_window=settings["cut_window"], sigma=settings["beat_align_sigma"])


def _controls(data: ClipData, settings: dict) -> dict[str, float]:
    from cuecraft.controls.from_audio import controls_from_audio
    from cuecraft.controls.resample import sample_linear
    from cuecraft.evaluation import adherence

    wanted, out = data.controls, {}
    if wanted is None:
        return out
    # What the music does is read off its audio, so other systems' results are measured alike.
    produced = controls_from_audio(data.audio, sr=SR, beats_per_bar=wanted.beats_per_bar)
    if wanted.intensity is not None:
        out["control_intensity_r"] = adherence.intensity_correlation(*wanted.intensity.T, data.audio, sr=SR)
    if wanted.melody is not None:
        out["control_melody_chroma_accuracy"] = adherence.melody_accuracy(*wanted.melody.T, *produced.melody.T)
    if wanted.beat is not None:
        out["control_beat_f1"] = adherence.beat_f_measure(wanted.beat[:, 0], rhythm.music_beats(data.audio, sr=SR))
    if wanted.emotion is not None:
        got = sample_linear(produced.emotion, wanted.emotion[:, 0])
        out.update({f"control_{k}": v for k, v in adherence.emotion_agreement(wanted.emotion[:, 1:], got).items()})
    return out


def _symbolic(data: ClipData, settings: dict) -> dict[str, float]:
    from cuecraft.controls.from_midi import read_midi
    from cuecraft.controls.keys import key_from_melody
    from cuecraft.evaluation import symbolic

    if data.clip.midi is None:
        return {}
    pm = read_midi(data.clip.midi)
    beat = None if data.controls is None else data.controls.beat
    downbeats = beat[beat[:, 1] == 0, 0] if beat is not None else np.asarray(pm.get_downbeats())
    nan, bars = float("nan"), len(downbeats) >= 2
    weights = np.zeros(12)  # time per pitch class, for the key estimate
    for note in (n for inst in pm.instruments if not inst.is_drum for n in inst.notes):
        weights[note.pitch % 12] += note.end - note.start
    root, mode = key_from_melody(weights) if weights.sum() > 0 else (0, "major")
    return {"pche_1bar": symbolic.pitch_class_entropy(pm, downbeats) if bars else nan,
            "gps_16pos": symbolic.grooving_similarity(pm, downbeats) if bars else nan,
            "in_scale_ratio_estimated_key": symbolic.in_scale_ratio(pm, key_root=root, mode=mode),
            "note_density_onsets_per_s": symbolic.note_density(pm, duration=data.duration)}


# Per-clip metric groups. A group that needs the whole batch (relevance) can gather each
# clip's ClipData here and add its own keys to the clips after the loop in evaluate().
GROUPS = {"rhythm": _rhythm, "controls": _controls, "symbolic": _symbolic}
_AUDIO = "estimated from the music audio (cuecraft.controls.from_audio)"
DEFINITIONS = {
    "control_intensity_r": "Pearson r of the requested intensity (dB) and the music's RMS dB at the same times",
    "control_melody_chroma_accuracy": f"share of requested melody frames (10 Hz) whose pitch class is the music's "
                                      f"top-1 chroma, {_AUDIO}",
    "control_beat_f1": "mir_eval beat F-measure, ±70 ms, untrimmed: requested beats vs beats tracked in the music",
    "control_valence_sign_agreement": f"share of requested emotion points whose valence sign the music's has, {_AUDIO}",
    "control_arousal_sign_agreement": f"the same for arousal, {_AUDIO}",
    "pche_1bar": "pitch-class histogram entropy (bits) per bar, averaged; bars from the controls file's downbeats, "
                 "else the MIDI's own",
    "gps_16pos": "grooving pattern similarity over all bar pairs, 16 onset positions per bar",
    "in_scale_ratio_estimated_key": "share of pitched MIDI notes in the scale of the key estimated "
                                    "(Krumhansl-Kessler) from the same notes",
    "note_density_onsets_per_s": "pitched MIDI note onsets per second of video",
    "f1_loris_vs_visual_of_means": "F1 of the mean bcs_loris_vs_visual and mean bhs_loris_vs_visual over clips, "
                                   "as LORIS reports it",
    "f1_loris_vs_reference_of_means": "the same against reference music",
}


def definitions(settings: dict) -> dict[str, str]:
    """What every metric key means: its definition, variant and reference."""
    return {**rhythm.definitions(cut_window=settings["cut_window"], sigma=settings["beat_align_sigma"]),
            **DEFINITIONS}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def aggregate(clips: list[dict]) -> dict[str, dict]:
    """Mean and sample std (ddof=1) of each metric over clips; NaN and missing values counted apart."""
    out = {}
    for key in dict.fromkeys(k for c in clips for k in c["metrics"]):  # first-seen order, as defined
        values = [c["metrics"][key] for c in clips if key in c["metrics"]]
        finite = [float(v) for v in values if _finite(v)]
        out[key] = {"mean": float(np.mean(finite)) if finite else float("nan"),
                    "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan"),
                    "n": len(finite), "nan": len(values) - len(finite), "missing": len(clips) - len(values)}
    return out


def _derived(table: dict[str, dict]) -> dict[str, float]:
    # LORIS reports F1 of the mean BCS and mean BHS, not the mean of per-clip F1s.
    pairs = {r: (table.get(f"bcs_loris_vs_{r}"), table.get(f"bhs_loris_vs_{r}")) for r in ("visual", "reference")}
    return {f"f1_loris_vs_{ref}_of_means": rhythm.harmonic_mean(bcs["mean"], bhs["mean"])
            for ref, (bcs, bhs) in pairs.items() if bcs and bhs}


def parse_metrics(metrics) -> tuple[str, ...]:
    """``"rhythm,controls"`` or a sequence of names -> a tuple of known group names."""
    names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    for name in names or [""]:
        if name not in GROUPS:
            raise ParameterError(f"--metrics {name!r}: must be among {', '.join(GROUPS)}")
    return tuple(dict.fromkeys(names))


def _settings(cut_window: float, beat_align_sigma: float) -> dict:
    return {"sample_rate": SR, "cut_window": seconds("cut_window", cut_window),
            "beat_align_sigma": seconds("beat_align_sigma", beat_align_sigma),
            "beat_window": rhythm.BEAT_WINDOW, "short_audio_tolerance": SHORT_TOLERANCE}


def evaluate_clip(clip: Clip, *, groups=METRIC_GROUPS, settings: dict | None = None) -> dict:
    """The report entry of one clip: its files, flags, warnings, counts and metrics.

    Raises
    ------
    Skip
        If the clip cannot be evaluated at all (see :func:`load_clip`).
    """
    from cuecraft.controls.schema import load_controls

    settings = settings or _settings(rhythm.CUT_WINDOW, rhythm.BEAT_ALIGN_SIGMA)
    data, flags, audio_seconds = load_clip(clip)
    warnings, values = [], {}
    if clip.controls is not None:
        try:
            data = ClipData(clip, data.analysis, data.audio, data.duration, load_controls(clip.controls))
        except ControlsError as exc:
            warnings.append(str(exc))
    for group in groups:
        try:
            values.update(GROUPS[group](data, settings))
        except (MediaError, ParameterError, ControlsError) as exc:  # a bad side file costs its group only
            warnings.append(f"{group}: {exc}")
    visual = data.analysis.visual
    return {"name": clip.name, "video": str(clip.video), "music": str(clip.music), "kind": clip.kind,
            "midi": None if clip.midi is None else str(clip.midi),
            "controls": None if clip.controls is None else str(clip.controls),
            "duration": data.duration, "audio_seconds": audio_seconds, "flags": flags, "warnings": warnings,
            "visual_beats": len(visual.visual_beats), "cuts": len(visual.cuts), "metrics": values}


def evaluate(paths, *, metrics=METRIC_GROUPS, cut_window: float = rhythm.CUT_WINDOW,
             beat_align_sigma: float = rhythm.BEAT_ALIGN_SIGMA, progress: bool = False) -> dict:
    """Evaluate every clip under ``paths``; the report that :func:`run` writes.

    Raises
    ------
    MediaError
        If a path is missing, or no clip could be evaluated (naming the first reason).
    """
    from tqdm.auto import tqdm

    groups, settings = parse_metrics(metrics), _settings(cut_window, beat_align_sigma)
    found = collect(paths)
    if not found.clips and not found.skipped:
        raise MediaError(f"nothing to evaluate in {', '.join(repr(str(p)) for p in paths)}: no media files")
    results, skipped = [], list(found.skipped)
    for clip in tqdm(found.clips, desc="evaluating", unit="clip", disable=not progress, dynamic_ncols=True):
        try:
            results.append(evaluate_clip(clip, groups=groups, settings=settings))
        except Skip as exc:
            skipped.append(_skip(clip.video, exc.reason, str(exc)))
    if not results:
        raise MediaError(f"no clip could be evaluated ({len(skipped)} skipped; first: {skipped[0]['detail']})")
    table, reasons = aggregate(results), {}
    for item in skipped:
        reasons[item["reason"]] = reasons.get(item["reason"], 0) + 1
    derived = _derived(table)
    return {
        "report_version": REPORT_VERSION, "tool": "cuecraft evaluate", "versions": _versions(),
        "inputs": [str(p) for p in paths], "metric_groups": list(groups), "settings": settings,
        "counts": {"clips_found": len(found.clips), "evaluated": len(results), "skipped": len(skipped),
                   "skipped_by_reason": reasons, "audio_short": sum("audio_short" in r["flags"] for r in results),
                   "with_warnings": sum(bool(r["warnings"]) for r in results), "ignored_files": found.ignored},
        "aggregate": table, "aggregate_derived": derived, "clips": results, "skipped": skipped,
        "definitions": {k: v for k, v in definitions(settings).items() if k in table or k in derived},
    }


def _versions() -> dict[str, str]:
    import av
    import librosa
    import mir_eval

    from cuecraft import __version__

    return {"cuecraft": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "librosa": librosa.__version__, "mir_eval": mir_eval.__version__, "av": av.__version__}


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; the aggregate's "nan" counts say how many there were
    return value


def _cell(value) -> str:
    return f"{value:.3f}" if _finite(value) else "NaN"


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
    lines += [_row(f"`{k}`", f"{_cell(v['mean'])} ± {_cell(v['std'])}", v["n"], v["nan"], v["missing"])
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


def run(paths, *, out: str | os.PathLike = "evaluation.json", overwrite: bool = False, metrics=METRIC_GROUPS,
        cut_window: float = rhythm.CUT_WINDOW, beat_align_sigma: float = rhythm.BEAT_ALIGN_SIGMA,
        progress: bool = False) -> dict[str, Path]:
    """Evaluate ``paths`` and write the JSON and Markdown reports atomically (both or neither).

    Returns
    -------
    dict with the paths written: ``json`` and ``markdown``.

    Raises
    ------
    ParameterError, MediaError
        For bad options or inputs, before any output is written.
    OutputError
        If a report exists and ``overwrite`` is false, or its folder is not writable (checked
        before any work), or a report would replace an input.
    """
    from cuecraft.io.files import OutputSet

    targets = report_paths(out)
    parse_metrics(metrics)
    _settings(cut_window, beat_align_sigma)
    inputs = {Path(p).resolve() for p in paths}
    for path in targets.values():
        if path.resolve() in inputs:
            raise OutputError(f"'{path}': the report would overwrite an input; choose another -o")
    with OutputSet(targets, overwrite=overwrite) as outputs:
        report = evaluate(paths, metrics=metrics, cut_window=cut_window, beat_align_sigma=beat_align_sigma,
                          progress=progress)
        text = json.dumps(_jsonable(report), indent=1, allow_nan=False, ensure_ascii=False)
        outputs.temp("json").write_text(text + "\n", encoding="utf-8")
        outputs.temp("markdown").write_text(markdown(report), encoding="utf-8")
        return outputs.commit()
