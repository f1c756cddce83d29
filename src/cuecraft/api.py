"""The public API: :func:`analyze` and :func:`score`. The CLI is a thin layer over these."""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cuecraft.controls.schema import Controls, dumps_controls, load_controls
from cuecraft.errors import OutputError, ParameterError
from cuecraft.io.files import OutputSet
from cuecraft.io.video import VideoInfo, probe
from cuecraft.parallel import start, stream

ANALYSIS_FPS = 24.0      # enough for ±21 ms visual-beat timing, cheap enough for >30x real time
SAMPLE_RATE = 44100
LONG_VIDEO = 30.0        # seconds; from here the timeline is drawn, and the AAC encoded, in a child even when warm
SIDE_FILES = {"midi": ".mid", "wav": ".wav", "controls": ".controls.json", "timeline": ".timeline.png"}


@dataclass(frozen=True)
class VideoAnalysis:
    """A probed and analysed video, and the controls its picture implies."""

    info: VideoInfo
    visual: object          # cuecraft.analysis.VisualAnalysis
    controls: Controls


def _progress(total: int | None, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="frame" if total else "step", disable=not enabled, leave=False,
                dynamic_ncols=True)


def analyze_video(video: str | os.PathLike, *, progress: bool = False, info: VideoInfo | None = None) -> VideoAnalysis:
    """Probe and analyse ``video`` in one streaming pass; derive its controls.

    Raises
    ------
    MediaError
        If the video is missing, unreadable or unusable.
    """
    info = info or probe(video)
    return finish_analysis(scan_video(video, progress=progress, info=info), info)


def scan_video(video: str | os.PathLike, *, progress: bool = False, info: VideoInfo | None = None):
    """The per-frame pass of :func:`analyze_video`: its :class:`~cuecraft.analysis.visual.FrameCurves`
    (module-level and free of scipy, so that a child process runs it without that import)."""
    import math

    from cuecraft.analysis.visual import ANALYSIS_WIDTH, FrameAnalyzer
    from cuecraft.io.video import iter_frames

    info = info or probe(video)
    analyzer = FrameAnalyzer(fps=ANALYSIS_FPS)
    total = max(1, math.ceil(info.duration * ANALYSIS_FPS - 1e-9))
    with _progress(total, "analysing video", progress) as bar:
        for t, rgb in iter_frames(info.path, fps=ANALYSIS_FPS, max_width=ANALYSIS_WIDTH, info=info):
            analyzer.update(t, rgb)
            bar.update(1)
    return analyzer.curves()


def finish_analysis(curves, info: VideoInfo) -> VideoAnalysis:
    """Visual beats, tempo and the controls from :func:`scan_video`'s curves."""
    from cuecraft.controls.from_video import controls_from_analysis

    visual = curves.finish(duration=info.duration)
    return VideoAnalysis(info=info, visual=visual, controls=controls_from_analysis(visual))


def default_controls_path(video: str | os.PathLike) -> Path:
    video = Path(video)
    return video.with_name(f"{video.stem}.controls.json")


def analyze(video: str | os.PathLike, *, out: str | os.PathLike | None = None, overwrite: bool = False,
            progress: bool = False) -> Path:
    """Write the controls that ``video`` implies to ``out`` (default ``VIDEO_STEM.controls.json``)."""
    out = Path(out) if out is not None else default_controls_path(video)
    with OutputSet({"controls": out}, overwrite=overwrite) as outputs:
        result = analyze_video(video, progress=progress)
        outputs.temp("controls").write_text(dumps_controls(result.controls), encoding="utf-8")
        return outputs.commit()["controls"]


def output_paths(video: str | os.PathLike, out: str | os.PathLike | None) -> dict[str, Path]:
    """The scored video and its side files, which sit next to it."""
    video = Path(video)
    scored = Path(out) if out is not None else video.with_name(f"{video.stem}.scored.mp4")
    if scored.suffix.lower() not in (".mp4", ".m4v", ".mov", ".mkv"):
        raise ParameterError(f"-o {str(scored)!r}: the scored video must end in .mp4, .m4v, .mov or .mkv")
    stem = scored.name[: -len(scored.suffix)]
    if stem.endswith(".scored"):
        stem = stem[: -len(".scored")]
    paths = {"video": scored}
    paths.update({key: scored.with_name(stem + suffix) for key, suffix in SIDE_FILES.items()})
    return paths


def resolve_controls(video: VideoAnalysis, *, controls: str | os.PathLike | Controls | None = None,
                     reference: str | os.PathLike | None = None) -> Controls:
    """Controls for scoring: the file's controls first, then the reference's, then the video's."""
    from cuecraft.controls.reference import load_reference

    chosen = video.controls
    if reference is not None:
        ref = load_reference(reference, max_duration=video.info.duration)
        covered = _covered_until(ref)
        chosen = ref.spliced_with(video.controls, until=covered)
    if controls is not None:
        given = controls if isinstance(controls, Controls) else load_controls(controls)
        chosen = given.filled_from(chosen)
    return chosen


def _covered_until(controls: Controls) -> float:
    if controls.duration is not None:
        return float(controls.duration)
    ends = [getattr(controls, n)[-1, 0] for n in controls.present]
    return float(max(ends)) if ends else 0.0


def score(video: str | os.PathLike, *, out: str | os.PathLike | None = None,
          controls: str | os.PathLike | Controls | None = None, reference: str | os.PathLike | None = None,
          seed: int = 0, overwrite: bool = False, keep_audio: bool = False, soundfont: str | None = None,
          backbone: str = "symbolic", weights: str | os.PathLike | None = None,
          guidance: float | None = None, melody_only: bool = False, progress: bool = False) -> dict[str, Path]:
    """Score ``video``: write the scored video and its MIDI, WAV, controls and timeline files.

    Parameters
    ----------
    video : input video file (never modified)
    out : the scored video's path (default ``VIDEO_STEM.scored.mp4`` next to the input)
    controls : a controls JSON file (or a :class:`Controls`); controls it lacks come from the video
    reference : an audio or MIDI file; its controls apply from its start, one second per second,
        and the video's controls take over where it ends
    seed : random seed; the same inputs and seed give the same music
    overwrite : replace existing outputs
    keep_audio : mix the video's own audio under the music instead of replacing it
    backbone : "symbolic" (the shipped model writes melody and harmony over the drum/bass
        arrangement), "arrangement" (drums and bass only) or "codec" (a trained codec
        checkpoint writes audio directly; needs ``weights``)
    weights : symbolic model weights to use instead of the shipped ones, or the codec
        checkpoint folder (``cuecraft train`` with a codec config)
    guidance : classifier-free guidance scale over the controls (>= 1; 1 = none; None = the
        backbone's default: 1 for "symbolic", 3 for "codec"); not for "arrangement"
    melody_only : "symbolic": the model writes its melody without opening a harmony voice

    Returns
    -------
    dict of output name -> path: ``video``, ``midi`` (not for "codec"), ``wav``, ``controls``,
    ``timeline``. All appear together, or none does.
    """
    import io as _io

    from cuecraft.checks import seed as check_seed
    from cuecraft.generate.compose import BACKBONES

    check_seed(seed)
    if guidance is not None:
        if backbone == "arrangement":
            raise ParameterError("--guidance: the arrangement backbone has no model to guide")
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance) \
                or guidance < 1:
            raise ParameterError(f"--guidance {guidance!r}: must be a number >= 1 (1 = no guidance)")
    if backbone not in (*BACKBONES, "codec"):
        raise ParameterError(f"--backbone {backbone!r}: must be one of {', '.join((*BACKBONES, 'codec'))}")
    if backbone == "codec" and weights is None:
        raise ParameterError("--backbone codec needs --weights DIR: a codec checkpoint folder from 'cuecraft train'")
    paths = output_paths(video, out)
    if backbone == "codec":
        del paths["midi"]  # the codec backbone writes audio, not notes
    inputs = [Path(p) for p in (video, controls, reference) if isinstance(p, (str, os.PathLike))]
    for path in paths.values():
        if any(path.resolve() == i.resolve() for i in inputs):
            raise OutputError(f"'{path}': an output would overwrite an input; choose another -o")
    with OutputSet(paths, overwrite=overwrite) as outputs:
        info = probe(video)  # fail on a bad video before slower work
        if controls is not None and not isinstance(controls, Controls):
            load_controls(controls)  # fail on a bad file before analysing
        if backbone == "codec":
            return _score_codec(video, outputs, info=info, controls=controls, reference=reference, seed=seed,
                                keep_audio=keep_audio, weights=weights, guidance=guidance, progress=progress)
        analysed = _analyse_while_loading(video, info=info, backbone=backbone, weights=weights, progress=progress)
        # Imported only now (while the child analysed, on a cold start): the child starts 0.2 s sooner.
        from cuecraft.generate.compose import compose
        from cuecraft.generate.plan import make_plan
        from cuecraft.io.audio import write_wav_blocks
        from cuecraft.io.mux import mux_music, mux_streamed
        from cuecraft.render.synth import render_blocks

        final = resolve_controls(analysed, controls=controls, reference=reference)
        duration = analysed.info.duration
        plan = make_plan(final, cuts=analysed.visual.cuts, duration=duration, seed=seed)
        # Side work starts before the music is written, on the core generation leaves free: the
        # timeline is drawn in a child (about 1 s a minute of video, plus 0.7 s for the child's
        # start and matplotlib's import, which a process that has drawn before does not pay), and
        # for a longer video a second child starts, to encode the music as AAC block by block while
        # it is synthesised (encoding runs at about 100x real time; a child takes 0.3 s to start).
        beside = "matplotlib.backends.backend_agg" not in sys.modules or duration >= LONG_VIDEO
        timeline = _write_side_files(outputs, analysed, final, in_child=beside)
        muxer = stream(mux_streamed, analysed.info.path, outputs.temp("video"), sr=SAMPLE_RATE,
                       keep_audio=keep_audio, info=analysed.info) if duration >= LONG_VIDEO else None
        try:
            with _progress(None, "composing", progress) as bar:
                def advance(done: int, total: int) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                midi = compose(final, plan, duration=duration, seed=seed, backbone=backbone,
                               weights=None if weights is None else str(weights), guidance=guidance or 1.0,
                               harmony=not melody_only, progress=advance)
            with _progress(4, "rendering", progress) as bar:
                buffer = _io.BytesIO()
                midi.write(buffer)
                outputs.temp("midi").write_bytes(buffer.getvalue())
                bar.update(1)
                music = render_blocks(midi, sample_rate=SAMPLE_RATE, soundfont=soundfont, duration=duration)
                if muxer is not None:
                    write_wav_blocks(outputs.temp("wav"), muxer.send_all(music), sr=SAMPLE_RATE)
                    bar.update(1)
                    muxer.result()
                else:
                    write_wav_blocks(outputs.temp("wav"), music, sr=SAMPLE_RATE)
                    bar.update(1)
                    mux_music(analysed.info.path, outputs.temp("wav"), outputs.temp("video"), sr=SAMPLE_RATE,
                              keep_audio=keep_audio, info=analysed.info)
                bar.update(2)
                timeline.result()
                bar.update(1)
        finally:
            timeline.cancel()
            if muxer is not None:
                muxer.cancel()
        return outputs.commit()


def _analyse_while_loading(video, *, info: VideoInfo, backbone: str, weights, progress: bool) -> VideoAnalysis:
    """The video's analysis. A process that has not loaded the symbolic model yet analyses the
    video in a child while it imports torch and loads the weights (about 1.5 s on a cold start);
    a bad checkpoint still fails before the analysis result is used."""
    if backbone != "symbolic":
        return analyze_video(video, progress=progress, info=info)
    from cuecraft.models.backbones.symbolic import is_loaded, load_symbolic

    scan = start(scan_video, video, progress=progress, info=info, in_child=not is_loaded(weights))
    try:
        load_symbolic(weights)
        # The child takes longer than the model: import what scoring needs next while it works
        # (scipy.ndimage alone is 0.2 s), rather than after the music is written. The child only
        # scans the frames; the curves are finished here, where scipy is imported anyway.
        import cuecraft.generate.compose, cuecraft.generate.sample, cuecraft.render.synth  # noqa: F401, E401
        import cuecraft.generate.plan, cuecraft.io.audio, cuecraft.io.mux, cuecraft.render.arrange  # noqa: F401, E401
        import cuecraft.analysis.motion, cuecraft.controls.from_video, scipy.ndimage  # noqa: F401, E401
        curves = scan.result()
    finally:
        scan.cancel()
    return finish_analysis(curves, info)


def plot_analysis(path: Path, analysed: VideoAnalysis, final: Controls) -> None:
    """The timeline PNG of ``analysed`` and the controls used, written in place to ``path``, an
    :class:`OutputSet` temp (module-level: a child runs it, which is killed if scoring fails)."""
    from cuecraft.render.timeline import plot_timeline

    visual = analysed.visual
    plot_timeline(path, duration=analysed.info.duration, cuts=visual.cuts, visual_beats=visual.visual_beats,
                  beat_strengths=visual.beat_strengths, curve_times=visual.times, motion=visual.motion,
                  controls=final, in_place=True)


def _write_side_files(outputs: OutputSet, analysed: VideoAnalysis, final: Controls, *, in_child: bool = False):
    """Write the controls file and start the timeline plot; returns the plot's handle
    (:func:`cuecraft.parallel.start`), whose ``result()`` finishes it."""
    outputs.temp("controls").write_text(dumps_controls(final), encoding="utf-8")
    return start(plot_analysis, outputs.temp("timeline"), analysed, final, in_child=in_child)


def _score_codec(video, outputs: OutputSet, *, info: VideoInfo, controls, reference, seed: int, keep_audio: bool,
                 weights, guidance: float | None, progress: bool) -> dict[str, Path]:
    """The codec backbone's half of :func:`score`: visual tokens -> codes -> EnCodec audio -> mux."""
    from cuecraft.generate.video_music import CodecSampling, compose_codec, load_codec_checkpoint
    from cuecraft.io.audio import write_wav
    from cuecraft.io.mux import mux_music
    from cuecraft.models.visual import build_visual_encoder

    checkpoint = load_codec_checkpoint(weights)  # fails before the slower work
    model, codec, config = checkpoint.model, checkpoint.codec, checkpoint.config
    encoder = build_visual_encoder(config.visual.encoder, clip_dir=config.visual.clip_dir or None,
                                   videomae_dir=config.visual.videomae_dir or None)
    analysed = analyze_video(video, progress=progress, info=info)
    final = resolve_controls(analysed, controls=controls, reference=reference)
    features = encoder.encode(analysed.info.path, progress=progress)
    if features.dims != checkpoint.dims:
        raise ParameterError(f"visual encoder '{config.visual.encoder}' gives tokens of sizes {features.dims}, "
                             f"the checkpoint was trained on {checkpoint.dims}")
    duration = analysed.info.duration
    with _progress(None, "generating", progress) as bar:
        def advance(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        sampling = CodecSampling() if guidance is None else CodecSampling(cfg_scale=float(guidance))
        audio = compose_codec(model, codec, features, final, duration=duration, seed=seed, sampling=sampling,
                              progress=advance)
    write_wav(outputs.temp("wav"), audio, sr=codec.sampling_rate)
    _write_side_files(outputs, analysed, final).result()
    mux_music(analysed.info.path, outputs.temp("wav"), outputs.temp("video"), sr=codec.sampling_rate,
              keep_audio=keep_audio, info=analysed.info)
    return outputs.commit()

