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

Metric groups: ``rhythm`` (:mod:`.rhythm`), ``controls`` (:mod:`.adherence`), ``symbolic``
(:mod:`.symbolic`), each per clip, and ``relevance`` (:mod:`.relevance_group`), scored over all
clips at once with a trained model. Aggregation and the report files: :mod:`.report`.

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

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cuecraft.checks import seconds
from cuecraft.errors import ControlsError, MediaError, OutputError, ParameterError
from cuecraft.evaluation import adherence, relevance_group, report, rhythm, symbolic

VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus")
SIDE_SUFFIXES = {"midi": (".mid", ".midi"), "controls": (".controls.json",)}
METRIC_GROUPS = ("rhythm", "controls", "symbolic")  # the default; "relevance" needs a trained model
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
    return {} if data.controls is None else adherence.evaluate(data.controls, data.audio, sr=SR)


def _symbolic(data: ClipData, settings: dict) -> dict[str, float]:
    from cuecraft.controls.from_midi import read_midi

    if data.clip.midi is None:
        return {}
    beat = None if data.controls is None else data.controls.beat
    # The controls file's bars are the ones the music was asked to follow; else the MIDI's own.
    downbeats = None if beat is None else beat[beat[:, 1] == 0, 0]
    return symbolic.evaluate(read_midi(data.clip.midi), duration=data.duration, downbeats=downbeats)


# Per-clip metric groups. "relevance" needs the whole batch: RelevanceGroup collects each
# clip's features in evaluate_clip and adds its keys to the clips after the loop in evaluate().
GROUPS = {"rhythm": _rhythm, "controls": _controls, "symbolic": _symbolic}
KNOWN_GROUPS = (*GROUPS, "relevance")


def definitions(settings: dict, relevance_batch: int | None = None) -> dict[str, str]:
    """What every metric key means: its definition, variant and reference."""
    return {**rhythm.definitions(cut_window=settings["cut_window"], sigma=settings["beat_align_sigma"]),
            **adherence.definitions(), **symbolic.definitions(), **relevance_group.definitions(relevance_batch),
            **report.DERIVED_DEFINITIONS}


def parse_metrics(metrics=None, *, relevance_weights=None) -> tuple[str, ...]:
    """``"rhythm,controls"`` or a sequence of names -> a tuple of known group names.

    ``None`` means rhythm, controls and symbolic, plus relevance when ``relevance_weights`` is
    given. Relevance needs the weights, and the weights need relevance.
    """
    if metrics is None:
        return METRIC_GROUPS + (("relevance",) if relevance_weights is not None else ())
    names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    for name in names or [""]:
        if name not in KNOWN_GROUPS:
            raise ParameterError(f"--metrics {name!r}: must be among {', '.join(KNOWN_GROUPS)}")
    if "relevance" in names and relevance_weights is None:
        raise ParameterError("--metrics relevance needs --relevance-weights FILE (a model trained with "
                             "--train-relevance)")
    if "relevance" not in names and relevance_weights is not None:
        raise ParameterError(f"--relevance-weights '{relevance_weights}' is given but --metrics "
                             f"{','.join(names)!r} has no relevance")
    return tuple(dict.fromkeys(names))


def _settings(cut_window: float, beat_align_sigma: float) -> dict:
    return {"sample_rate": SR, "cut_window": seconds("cut_window", cut_window),
            "beat_align_sigma": seconds("beat_align_sigma", beat_align_sigma),
            "beat_window": rhythm.BEAT_WINDOW, "short_audio_tolerance": SHORT_TOLERANCE}


def evaluate_clip(clip: Clip, *, groups=METRIC_GROUPS, settings: dict | None = None, relevance=None) -> dict:
    """The report entry of one clip: its files, flags, warnings, counts and metrics.

    ``relevance`` (a :class:`~cuecraft.evaluation.relevance_group.RelevanceGroup`) is given the
    clip's features; its keys join the entry when the group finishes.

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
    for group in (g for g in groups if g in GROUPS):
        try:
            values.update(GROUPS[group](data, settings))
        except (MediaError, ParameterError, ControlsError) as exc:  # a bad side file costs its group only
            warnings.append(f"{group}: {exc}")
    visual = data.analysis.visual
    entry = {"name": clip.name, "video": str(clip.video), "music": str(clip.music), "kind": clip.kind,
             "midi": None if clip.midi is None else str(clip.midi),
             "controls": None if clip.controls is None else str(clip.controls),
             "duration": data.duration, "audio_seconds": audio_seconds, "flags": flags, "warnings": warnings,
             "visual_beats": len(visual.visual_beats), "cuts": len(visual.cuts), "metrics": values}
    if relevance is not None:
        try:
            relevance.add(entry, clip.video, data.audio, sr=SR)
        except (MediaError, ParameterError) as exc:
            warnings.append(f"relevance: {exc}")
    return entry


def evaluate(paths, *, metrics=None, cut_window: float = rhythm.CUT_WINDOW,
             beat_align_sigma: float = rhythm.BEAT_ALIGN_SIGMA, relevance_weights=None,
             relevance_batch: int = relevance_group.DEFAULT_BATCH, progress: bool = False) -> dict:
    """Evaluate every clip under ``paths``; the report that :func:`run` writes.

    Parameters
    ----------
    paths : scored videos and/or folders of results (see the module docstring)
    metrics : group names (``"rhythm,controls"`` or a sequence); see :func:`parse_metrics`
    cut_window, beat_align_sigma : seconds, for the rhythm group
    relevance_weights : a relevance model (``--train-relevance``) for the relevance group
    relevance_batch : candidates per video for the global relevance score

    Raises
    ------
    MediaError
        If a path or the relevance weights are missing, or no clip could be evaluated (naming the
        first reason).
    """
    from tqdm.auto import tqdm

    groups = parse_metrics(metrics, relevance_weights=relevance_weights)
    settings = _settings(cut_window, beat_align_sigma)
    relevance = None
    if "relevance" in groups:  # loaded first: a bad weights file fails before any clip is read
        relevance = relevance_group.RelevanceGroup(relevance_weights, batch_size=relevance_batch)
    found = collect(paths)
    if not found.clips and not found.skipped:
        raise MediaError(f"nothing to evaluate in {', '.join(repr(str(p)) for p in paths)}: no media files")
    results, skipped = [], list(found.skipped)
    for clip in tqdm(found.clips, desc="evaluating", unit="clip", disable=not progress, dynamic_ncols=True):
        try:
            results.append(evaluate_clip(clip, groups=groups, settings=settings, relevance=relevance))
        except Skip as exc:
            skipped.append(_skip(clip.video, exc.reason, str(exc)))
    if not results:
        raise MediaError(f"no clip could be evaluated ({len(skipped)} skipped; first: {skipped[0]['detail']})")
    if relevance is not None:
        relevance.finish()
        settings["relevance"] = relevance.settings()
    table, reasons = report.aggregate(results), {}
    for item in skipped:
        reasons[item["reason"]] = reasons.get(item["reason"], 0) + 1
    derived = report.derived(table)
    meanings = definitions(settings, None if relevance is None else relevance.batch)
    return {
        "report_version": REPORT_VERSION, "tool": "cuecraft evaluate", "versions": report.versions(),
        "inputs": [str(p) for p in paths], "metric_groups": list(groups), "settings": settings,
        "counts": {"clips_found": len(found.clips), "evaluated": len(results), "skipped": len(skipped),
                   "skipped_by_reason": reasons, "audio_short": sum("audio_short" in r["flags"] for r in results),
                   "with_warnings": sum(bool(r["warnings"]) for r in results), "ignored_files": found.ignored},
        "aggregate": table, "aggregate_derived": derived, "clips": results, "skipped": skipped,
        "definitions": {k: v for k, v in meanings.items() if k in table or k in derived},
    }


def run(paths, *, out: str | os.PathLike = "evaluation.json", overwrite: bool = False, metrics=None,
        cut_window: float = rhythm.CUT_WINDOW, beat_align_sigma: float = rhythm.BEAT_ALIGN_SIGMA,
        relevance_weights=None, relevance_batch: int = relevance_group.DEFAULT_BATCH,
        progress: bool = False) -> dict[str, Path]:
    """Evaluate ``paths`` and write the JSON and Markdown reports atomically (both or neither).

    Takes the parameters of :func:`evaluate`, and ``out`` (the JSON report; the Markdown goes
    beside it, :func:`cuecraft.evaluation.report.report_paths`) and ``overwrite``.

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

    targets = report.report_paths(out)
    parse_metrics(metrics, relevance_weights=relevance_weights)
    _settings(cut_window, beat_align_sigma)
    inputs = {Path(p).resolve() for p in paths}
    for path in targets.values():
        if path.resolve() in inputs:
            raise OutputError(f"'{path}': the report would overwrite an input; choose another -o")
    with OutputSet(targets, overwrite=overwrite) as outputs:
        result = evaluate(paths, metrics=metrics, cut_window=cut_window, beat_align_sigma=beat_align_sigma,
                          relevance_weights=relevance_weights, relevance_batch=relevance_batch, progress=progress)
        return report.write(result, outputs)
