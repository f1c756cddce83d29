"""Command line: ``cuecraft score``, ``analyze``, ``train``, ``dataset`` and ``evaluate``.

Exit codes: 0 success, 2 bad input or usage (a one-line message, no traceback),
130 interrupted. Anything else is a bug.
"""
from __future__ import annotations

import argparse
import sys

from cuecraft import __version__
from cuecraft.errors import CuecraftError

EXIT_BAD_INPUT = 2


def _add_score(sub) -> None:
    p = sub.add_parser(
        "score", help="score a video: write VIDEO.scored.mp4 and its .mid, .wav, .controls.json, .timeline.png",
        description="Analyse the video (cuts, visual beats, motion, colour), derive the controls it implies, "
                    "write music that follows them, and mux the music into a copy of the video. The video "
                    "stream is copied, not re-encoded. The side files (.mid, .wav, .controls.json, "
                    ".timeline.png) are written next to the output.")
    p.add_argument("video", help="input video file (MP4, MOV, MKV, AVI, ...); it is never modified")
    p.add_argument("-o", "--output", metavar="OUT.mp4",
                   help="scored video to write (default: VIDEO_STEM.scored.mp4 next to the input)")
    p.add_argument("--controls", metavar="FILE.json",
                   help="a controls file (e.g. written by 'cuecraft analyze' and edited); controls it does "
                        "not contain are taken from the video")
    p.add_argument("--reference", metavar="AUDIO_OR_MIDI",
                   help="take beat, melody, intensity and emotion from this audio or MIDI file, from its "
                        "start, one second per second of video; after it ends the video's controls apply. "
                        "Controls in --controls take precedence")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="random seed; the same inputs and seed give the same music (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    p.add_argument("--keep-audio", action="store_true",
                   help="mix the video's own audio under the music (default: replace it)")
    p.add_argument("--soundfont", metavar="FILE.sf2",
                   help="General MIDI SoundFont to render with (default: $CUECRAFT_SOUNDFONT, else Debian's "
                        "FluidR3_GM if installed, else the TimGM6mb bundled with pretty_midi)")
    p.add_argument("--backbone", choices=("symbolic", "arrangement", "codec"), default="symbolic",
                   help="symbolic (default): the shipped model writes melody and harmony over the drum/bass "
                        "arrangement; arrangement: drums and bass only; codec: a MusicGen-architecture model "
                        "you trained ('cuecraft train' with a codec config) writes EnCodec audio, needs --weights "
                        "DIR and the 'codec' extra")
    p.add_argument("--weights", metavar="PATH",
                   help="symbolic: model weights (.safetensors) to use instead of the shipped ones; codec: the "
                        "checkpoint folder (model.safetensors + codec/) written by 'cuecraft train'")
    p.add_argument("--guidance", type=float, metavar="S",
                   help="classifier-free guidance over the controls: how tightly the model follows them. "
                        "1 = none; higher follows more tightly and doubles the generation time (default: 1 "
                        "for symbolic, 3 for codec, MusicGen's)")
    p.add_argument("--melody-only", action="store_true",
                   help="symbolic: the model writes a melody without its harmony voice (about half the "
                        "generation time; the arrangement's bass and drums stay)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _add_analyze(sub) -> None:
    p = sub.add_parser(
        "analyze", help="write the controls a video implies (edit them, then 'score --controls')",
        description="Analyse the video and write the beat, intensity and emotion controls its picture "
                    "implies, as an editable JSON file (see the README for the format).")
    p.add_argument("video", help="input video file")
    p.add_argument("-o", "--output", metavar="FILE.controls.json",
                   help="controls file to write (default: VIDEO_STEM.controls.json next to the input)")
    p.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train the symbolic model, or the codec model on (video, music) pairs",
        description="Symbolic config (e.g. configs/symbolic-small-dynamics.toml, the shipped model): build "
                    "(or reuse) the tokenised corpus, then train the control-guided symbolic LM; needs the "
                    "'train' extra (music21). Codec config (backbone = \"codec\", e.g. configs/codec-tiny.toml): "
                    "MTCV2M's two stages on pair shards from 'cuecraft dataset build' - stage 1 trains the LM "
                    "and the video conditioning, stage 2 only the control guidance; needs the 'codec' and "
                    "'train' extras. A killed run resumes from its last checkpoint when started again. Runs on a "
                    "CPU as is, and on GPUs or nodes under 'accelerate launch -m cuecraft train ...' or torchrun.")
    p.add_argument("--config", required=True, metavar="FILE.toml",
                   help="a preset such as configs/symbolic-small-dynamics.toml")
    p.add_argument("--out", metavar="DIR", help="run folder (default: the config's out_dir)")
    p.add_argument("--steps", type=int, metavar="N", help="symbolic only: override the config's number of steps")
    p.add_argument("--seed", type=int, metavar="N",
                   help="symbolic only: override the config's [train].seed (init, batches, augmentation), "
                        "e.g. to repeat an ablation with another seed")
    p.add_argument("--stage", type=int, choices=(1, 2), help="codec only: run just this stage (default: both)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _add_dataset(sub) -> None:
    p = sub.add_parser(
        "dataset", help="build (video, music) pair shards for training the codec model",
        description="'cuecraft dataset build VIDEOS -o SHARDS --codec DIR': for every video in VIDEOS whose audio "
                    "track is its music, extract the per-second visual tokens, the music's EnCodec codes and "
                    "the controls of the music, into one SHARDS/NAME.pair.safetensors each. Existing shards are "
                    "kept, so an interrupted build resumes; videos that fail are skipped and counted.")
    p.add_argument("action", choices=("build",), help="what to do (build)")
    p.add_argument("videos", help="folder of videos with their music as the audio track")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the shards")
    p.add_argument("--codec", required=True, metavar="DIR",
                   help="local EnCodec or MusicGen folder in Hugging Face format (e.g. a copy of "
                        "facebook/encodec_32khz); nothing is downloaded")
    p.add_argument("--encoder", choices=("embedded", "clip", "clip+videomae"), default="embedded",
                   help="visual encoder (default: embedded, needs no weights)")
    p.add_argument("--clip-dir", metavar="DIR", help="local CLIP ViT-L/14@336 folder (for --encoder clip...)")
    p.add_argument("--videomae-dir", metavar="DIR", help="local VideoMAE V2 folder (for --encoder clip+videomae)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="measure how well music follows its video: rhythm, control adherence, symbolic "
                         "statistics, relevance",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s PATH [PATH ...] [-o REPORT.json] [options]\n"
              "       %(prog)s --train-relevance PAIRS -o DIR [--steps N] [--width N]",
        description="Evaluate scored videos, or folders of results, and write a JSON report and, beside it,\n"
                    "a Markdown table: every metric per clip and as mean ± std over clips.\n\n"
                    "With --train-relevance PAIRS, train the relevance model instead, on a folder of\n"
                    "(video, music) pairs paired as below, and print where the weights went.",
        epilog="inputs:\n"
               "  a file          self-contained: its video stream is the video, its audio stream the music\n"
               "                  (a cuecraft X.scored.mp4, or any other system's muxed output)\n"
               "  a folder        X.scored.mp4 files, and pairs X.mp4 + X.wav/.flac/.mp3/... with the same stem;\n"
               "                  other media files are skipped as unpaired and counted in the report\n"
               "  side files      X.controls.json adds control adherence, X.mid the symbolic metrics\n\n"
               "metric groups:\n"
               "  rhythm          visual_beat_f1, cut_hit_rate_100ms (+ _chance), beat_align_sigma50ms (+ symmetric),\n"
               "                  bcs/bhs in the D2M-GAN and LORIS variants against the video's visual beats\n"
               "  controls        intensity r, melody chroma accuracy, beat F1, valence/arousal sign agreement\n"
               "  symbolic        PCHE, GPS, in-scale ratio, note density (needs X.mid)\n"
               "  relevance       GVMGen's evaluation model (needs --relevance-weights): relevance_local, the\n"
               "                  clip's attention-diagonal alignment, and relevance_global_bB, the probability\n"
               "                  that its video picks its own music among B clips evaluated together (chance\n"
               "                  1/B; B is min(--relevance-batch, clips), so the score depends on the clip set)\n\n"
               "relevance model:\n"
               "  cuecraft evaluate --train-relevance PAIRS -o DIR   trains it (embedded video features, no\n"
               "                  download; a run in DIR resumes), writes DIR/model.safetensors and\n"
               "                  DIR/summary.json; then: cuecraft evaluate OUTPUTS --relevance-weights\n"
               "                  DIR/model.safetensors\n\n"
               "Clips whose music is silent or unreadable are skipped with a reason; music shorter than the video\n"
               "is evaluated as silence at the end and flagged audio_short. Undefined values are null in the\n"
               "JSON and counted apart (never averaged).")
    p.add_argument("paths", nargs="*", metavar="PATH", help="scored video files and/or folders of results")
    p.add_argument("-o", "--output", metavar="REPORT.json",
                   help="JSON report to write; the Markdown table goes beside it as REPORT.md "
                        "(default: evaluation.json in the current folder). With --train-relevance: the run "
                        "folder (required)")
    p.add_argument("--overwrite", action="store_true", help="replace the reports if they exist")
    p.add_argument("--metrics", metavar="GROUPS",
                   help="comma-separated metric groups among rhythm, controls, symbolic, relevance "
                        "(default: rhythm, controls and symbolic, plus relevance with --relevance-weights; "
                        "controls and symbolic apply only where their side files exist)")
    p.add_argument("--beat-align-sigma", type=float, default=0.05, metavar="SECONDS",
                   help="sigma of the BeatAlign score (default: 0.05, Bailando's 3 frames at 60 fps)")
    p.add_argument("--cut-window", type=float, default=0.1, metavar="SECONDS",
                   help="a cut counts as hit if a music onset is within this many seconds (default: 0.1)")
    p.add_argument("--relevance-weights", metavar="FILE",
                   help="relevance model (DIR/model.safetensors written by --train-relevance, or DIR)")
    p.add_argument("--relevance-batch", type=int, default=16, metavar="N",
                   help="clips each video chooses its music among for relevance_global_bN, and the "
                        "contrastive batch when training (default: 16, GVMGen's)")
    p.add_argument("--train-relevance", metavar="PAIRS",
                   help="train the relevance model on the (video, music) pairs of this folder, into -o DIR")
    p.add_argument("--steps", type=int, metavar="N", help="with --train-relevance: training steps (default: 3000)")
    p.add_argument("--width", type=int, metavar="N",
                   help="with --train-relevance: model width (default: 512, GVMGen's; a multiple of 4)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _evaluate(args: argparse.Namespace, *, progress: bool) -> None:
    from cuecraft.errors import ParameterError

    if args.train_relevance is None:
        from cuecraft.evaluation.evaluate import run as run_evaluation

        for flag, value in (("--steps", args.steps), ("--width", args.width)):
            if value is not None:
                raise ParameterError(f"{flag} applies to --train-relevance only")
        if not args.paths:
            raise ParameterError("no PATH given: name scored videos or folders of results "
                                 "(or --train-relevance PAIRS)")
        written = run_evaluation(args.paths, out=args.output or "evaluation.json", overwrite=args.overwrite,
                                 metrics=args.metrics, cut_window=args.cut_window,
                                 beat_align_sigma=args.beat_align_sigma, relevance_weights=args.relevance_weights,
                                 relevance_batch=args.relevance_batch, progress=progress)
        for path in written.values():
            print(path)
        return
    from cuecraft.evaluation.relevance_train import train_relevance_command

    if args.paths:
        raise ParameterError(f"--train-relevance trains on its PAIRS folder; PATH '{args.paths[0]}' is not used")
    for flag, value in (("--metrics", args.metrics), ("--relevance-weights", args.relevance_weights)):
        if value is not None:
            raise ParameterError(f"{flag} applies to evaluation, not to --train-relevance")
    if args.output is None:
        raise ParameterError("--train-relevance needs -o DIR, the run folder for the weights")
    summary = train_relevance_command(args.train_relevance, out=args.output,
                                      steps=3000 if args.steps is None else args.steps,
                                      width=512 if args.width is None else args.width,
                                      batch_size=args.relevance_batch, progress=progress)
    print(summary["weights"])


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cuecraft", description="Score video with music that follows the picture, offline on a CPU.")
    parser.add_argument("--version", action="version", version=f"cuecraft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_score(sub)
    _add_analyze(sub)
    _add_train(sub)
    _add_dataset(sub)
    _add_evaluate(sub)
    return parser


def _run(args: argparse.Namespace) -> None:
    from cuecraft import api

    progress = not args.quiet and sys.stderr.isatty()
    if args.command == "score":
        written = api.score(args.video, out=args.output, controls=args.controls, reference=args.reference,
                            seed=args.seed, overwrite=args.overwrite, keep_audio=args.keep_audio,
                            soundfont=args.soundfont, backbone=args.backbone, weights=args.weights,
                            guidance=args.guidance, melody_only=args.melody_only, progress=progress)
        for path in written.values():
            print(path)
    elif args.command == "analyze":
        print(api.analyze(args.video, out=args.output, overwrite=args.overwrite, progress=progress))
    elif args.command == "train":
        _train(args, progress=progress)
    elif args.command == "dataset":
        from cuecraft.models.backbones.codec import EncodecCodec
        from cuecraft.models.visual import build_visual_encoder
        from cuecraft.training.pairs import build_pairs

        encoder = build_visual_encoder(args.encoder, clip_dir=args.clip_dir, videomae_dir=args.videomae_dir)
        counts = build_pairs(args.videos, args.output, encoder=encoder, codec=EncodecCodec.from_folder(args.codec),
                             progress=progress, log=lambda m: print(m, file=sys.stderr))
        print(f"{args.output}: {counts['written']} written, {counts['kept']} kept, {counts['skipped']} skipped")
    elif args.command == "evaluate":
        _evaluate(args, progress=progress)


def _train(args: argparse.Namespace, *, progress: bool) -> None:
    from cuecraft.config import CodecConfig, load_config
    from cuecraft.errors import ParameterError

    config = load_config(args.config)
    if isinstance(config, CodecConfig):
        if args.steps is not None or args.seed is not None:
            raise ParameterError("--steps and --seed apply to symbolic configs; set them in [stage1] / [stage2]")
        from cuecraft.training.codec_run import run_codec_training

        stages = (args.stage,) if args.stage else (1, 2)
        results = run_codec_training(config, out_dir=args.out, stages=stages, progress=progress)
        for stage, result in results.items():
            print(f"stage {stage}: {result.weights} (val loss {result.val_loss:.4f})")
        return
    if args.stage is not None:
        raise ParameterError("--stage applies to codec configs only")
    from cuecraft.training.run import run_training

    result = run_training(config, out_dir=args.out, steps=args.steps, seed=args.seed, progress=progress)
    print(result.weights)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = get_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help/--version exit 0
        return int(exc.code or 0)
    try:
        _run(args)
    except CuecraftError as exc:
        print(f"cuecraft: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("cuecraft: interrupted", file=sys.stderr)
        return 130
    return 0


def run() -> None:
    """The ``cuecraft`` command and ``python -m cuecraft``: :func:`main`, then exit."""
    import gc

    code = main()
    # The process ends here: keep the final garbage collection from walking torch's objects
    # (0.2 s of every run that imported torch). Not in main(), which tests call in-process.
    gc.freeze()
    sys.exit(code)

