"""Command line: ``cuecraft score`` and ``cuecraft analyze``.

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
    p.add_argument("--backbone", choices=("symbolic", "arrangement"), default="symbolic",
                   help="symbolic (default): the shipped model writes melody and harmony over the drum/bass "
                        "arrangement; arrangement: drums and bass only")
    p.add_argument("--weights", metavar="FILE.safetensors",
                   help="symbolic model weights to use instead of the shipped ones (e.g. from 'cuecraft train')")
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
        "train", help="train the symbolic model (builds the corpus from music21 the first time)",
        description="Build (or reuse) the tokenised corpus, then train the control-guided symbolic LM described "
                    "by a TOML config. A killed run resumes from its last checkpoint when started again. Needs "
                    "the 'train' extra (music21): pip install 'cuecraft[train]'.")
    p.add_argument("--config", required=True, metavar="FILE.toml", help="a preset such as configs/symbolic-small.toml")
    p.add_argument("--out", metavar="DIR", help="run folder (default: the config's train.out_dir)")
    p.add_argument("--steps", type=int, metavar="N", help="override the config's number of steps")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cuecraft", description="Score video with music that follows the picture, offline on a CPU.")
    parser.add_argument("--version", action="version", version=f"cuecraft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_score(sub)
    _add_analyze(sub)
    _add_train(sub)
    return parser


def _run(args: argparse.Namespace) -> None:
    from cuecraft import api

    progress = not args.quiet and sys.stderr.isatty()
    if args.command == "score":
        written = api.score(args.video, out=args.output, controls=args.controls, reference=args.reference,
                            seed=args.seed, overwrite=args.overwrite, keep_audio=args.keep_audio,
                            soundfont=args.soundfont, backbone=args.backbone, weights=args.weights,
                            progress=progress)
        for path in written.values():
            print(path)
    elif args.command == "analyze":
        print(api.analyze(args.video, out=args.output, overwrite=args.overwrite, progress=progress))
    elif args.command == "train":
        from cuecraft.training.run import run_training

        result = run_training(args.config, out_dir=args.out, steps=args.steps, progress=progress)
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
