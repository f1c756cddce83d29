"""Visual analysis: cuts, impact envelope, visual beats and tempo, motion energy, colour."""

from cuecraft.analysis.colour import colour_stats
from cuecraft.analysis.cuts import CutDetector, detect_cuts
from cuecraft.analysis.motion import (
    DEFAULT_TEMPO,
    TEMPO_RANGE,
    FlowTracker,
    fold_tempo,
    impact_envelope,
    visual_beats,
    visual_tempo,
)
from cuecraft.analysis.visual import FrameAnalyzer, VisualAnalysis, analyze_frames

__all__ = [
    "VisualAnalysis",
    "FrameAnalyzer",
    "analyze_frames",
    "CutDetector",
    "detect_cuts",
    "FlowTracker",
    "impact_envelope",
    "visual_beats",
    "visual_tempo",
    "fold_tempo",
    "colour_stats",
    "TEMPO_RANGE",
    "DEFAULT_TEMPO",
]
