"""A timeline PNG: what the picture does (cuts, visual beats, motion) against the music's controls.

It lets a person check at a glance that downbeats land on cuts and that the intensity
follows the motion, before listening. Drawn with matplotlib's Agg canvas directly (no
pyplot state, no display).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from cuecraft.controls.schema import Controls
from cuecraft.checks import finite_1d
from cuecraft.io.files import atomic_path
from cuecraft.errors import OutputError, ParameterError

FIGSIZE_IN = (16.0, 6.0)
DPI = 100  # with FIGSIZE_IN: 1600 x 600 pixels


def _draw(fig, *, duration, cuts, visual_beats, beat_strengths, curve_times, motion, controls) -> None:
    from matplotlib.lines import Line2D

    ax = fig.add_subplot(1, 1, 1)
    handles = []
    ax.vlines(cuts, 0.0, 1.0, transform=ax.get_xaxis_transform(), color="tab:red", linestyle="--", linewidth=1.4,
              zorder=5)  # full height, above coinciding beats
    if len(cuts):
        handles.append(Line2D([], [], color="tab:red", linestyle="--", label="scene cut"))
    if len(visual_beats):
        ax.vlines(visual_beats, 0.0, beat_strengths, color="tab:orange", linewidth=1.5, zorder=3)
        ax.plot(visual_beats, beat_strengths, "o", color="tab:orange", markersize=4, zorder=3)
        handles.append(Line2D([], [], color="tab:orange", marker="o", label="visual beat (strength)"))
    if len(curve_times):
        # Motion units depend on the analysis; scaled to [0, 1] to share the axis with beat strengths.
        peak = float(np.max(np.abs(motion))) if len(motion) else 0.0
        shown = motion / peak if peak > 0 else motion
        (line,) = ax.plot(curve_times, shown, color="tab:blue", linewidth=1.2, label="motion (normalised)", zorder=2)
        handles.append(line)
    if controls.beat is not None:
        beats = controls.beat[controls.beat[:, 0] <= duration]
        down = beats[:, 1] == 0
        # Ticks along the bottom edge, in axes coordinates so they do not depend on the data range.
        trans = ax.get_xaxis_transform()
        ax.vlines(beats[~down, 0], 0.0, 0.04, transform=trans, color="black", linewidth=0.8, zorder=4)
        ax.vlines(beats[down, 0], 0.0, 0.09, transform=trans, color="black", linewidth=2.2, zorder=4)
        handles.append(Line2D([], [], color="black", linewidth=0.8, label="music beat"))
        handles.append(Line2D([], [], color="black", linewidth=2.2, label="music downbeat"))
    ax.set_xlim(0.0, duration)
    ax.set_ylim(-0.12, 1.35)  # headroom above 1 keeps the legend off the data
    ax.set_xlabel("time (s)")
    ax.set_ylabel("visual beat strength / motion")
    ax.grid(True, axis="x", alpha=0.3)
    if controls.intensity is not None:
        twin = ax.twinx()
        series = controls.intensity
        times, db = series[:, 0], series[:, 1]
        # Hold the end values to the plot edges, as resampling does.
        times = np.concatenate([[0.0], times, [duration]])
        db = np.concatenate([[db[0]], db, [db[-1]]])
        (line,) = twin.plot(times, db, color="tab:green", linewidth=2.0, label="intensity control (dB)")
        twin.set_ylabel("intensity (dB)")
        low, high = float(db.min()), float(db.max())
        pad = max(3.0, 0.1 * (high - low))
        twin.set_ylim(low - pad, high + 4 * pad)
        handles.append(line)
    ax.set_title("cuecraft timeline: picture events and music controls")
    if handles:
        ax.legend(handles=handles, loc="upper left", fontsize=9, ncol=len(handles), framealpha=0.9)


def plot_timeline(path: str | os.PathLike, *, duration: float, cuts: Sequence[float], visual_beats: Sequence[float],
                  beat_strengths: Sequence[float], curve_times: Sequence[float], motion: Sequence[float],
                  controls: Controls, in_place: bool = False) -> None:
    """Write a 1600x600 PNG timeline of the video's events and the music's controls.

    Parameters
    ----------
    path : str or PathLike
        Output PNG; written atomically (temp file in the same directory, then renamed).
    duration : float
        Seconds shown on the x axis, > 0.
    cuts : sequence of float
        Scene-cut times (s), drawn as dashed vertical lines.
    visual_beats, beat_strengths : sequence of float
        Visual-beat times (s) and strengths (0-1), drawn as stems.
    curve_times, motion : sequence of float
        The motion-energy curve; normalised to its peak for display.
    controls : Controls
        The intensity control is drawn on a twin dB axis, the beat control as ticks
        along the bottom (downbeats taller). Either may be absent.
    in_place : bool
        Write ``path`` itself rather than a temporary file renamed onto it: for a path that is
        already the caller's own temporary file (an ``OutputSet`` temp). A child process that
        writes it may be killed mid-write, and a temporary file of its own would then be left.

    Raises
    ------
    ParameterError
        For a bad duration or mismatched / non-finite series.
    OutputError
        If the PNG cannot be written (e.g. the directory does not exist).
    """
    if isinstance(duration, bool) or not isinstance(duration, (int, float, np.floating)) \
            or not math.isfinite(duration) or duration <= 0:
        raise ParameterError(f"duration = {duration!r}: must be finite seconds > 0")
    if not isinstance(controls, Controls):
        raise ParameterError(f"controls = {controls!r}: must be a Controls object")
    cuts_a = finite_1d("cuts", cuts)
    beats_a, strengths_a = finite_1d("visual_beats", visual_beats), finite_1d("beat_strengths", beat_strengths)
    times_a, motion_a = finite_1d("curve_times", curve_times), finite_1d("motion", motion)
    if len(beats_a) != len(strengths_a):
        raise ParameterError(f"visual_beats has {len(beats_a)} values but beat_strengths has {len(strengths_a)}")
    if len(times_a) != len(motion_a):
        raise ParameterError(f"curve_times has {len(times_a)} values but motion has {len(motion_a)}")
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"timeline '{path}': directory '{path.parent}' does not exist")

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)
    _draw(fig, duration=float(duration), cuts=cuts_a, visual_beats=beats_a, beat_strengths=strengths_a,
          curve_times=times_a, motion=motion_a, controls=controls)
    # Fixed margins (room for both axes' labels at 1600x600): tight_layout would draw the figure twice.
    fig.subplots_adjust(left=0.05, right=0.95, bottom=0.09, top=0.93)
    try:
        if in_place:
            fig.savefig(path, format="png", dpi=DPI)
        else:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png", dpi=DPI)
    except OSError as exc:
        raise OutputError(f"timeline '{path}': cannot write it ({exc})") from None
