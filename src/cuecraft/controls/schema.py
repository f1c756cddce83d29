"""The four time-varying controls (beat, melody, intensity, emotion) and their versioned JSON file.

Every series carries explicit times in seconds, so a file written for one video can be
edited by hand and read back without any hidden time base. File format (version 1)::

    {
      "version": 1,
      "duration": 12.0,                       # optional, seconds
      "beats_per_bar": 4,                     # optional, default 4
      "beat": [[t, position_in_bar], ...],    # position 0 is a downbeat
      "melody": [[t, pitch_class | null], ...],  # 0 = C ... 11 = B, null = no melody from t on
      "intensity": [[t, dB], ...],            # loudness in dBFS, [-80, 0]
      "emotion": [[t, valence, arousal], ...] # each in [-1, 1]
    }

Every control is optional. Internally each series is a float array ``[N, 1 + width]`` whose
first column is time; a melody rest is NaN.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cuecraft.errors import ControlsError

SCHEMA_VERSION = 1
CONTROL_NAMES = ("beat", "melody", "intensity", "emotion")
INTENSITY_RANGE_DB = (-80.0, 0.0)
# Number of values per point after the time, and their names (used in error messages).
_COLUMNS = {
    "beat": ("position_in_bar",),
    "melody": ("pitch_class",),
    "intensity": ("dB",),
    "emotion": ("valence", "arousal"),
}
_KNOWN_KEYS = {"version", "duration", "beats_per_bar", "source", *CONTROL_NAMES}


def _check_value(name: str, column: str, index: int, value: float, *, beats_per_bar: int, where: str) -> None:
    bad = None
    if column == "pitch_class":
        if not (math.isnan(value) or (value == int(value) and 0 <= value <= 11)):
            bad = "must be an integer 0-11 or null"
    elif not math.isfinite(value):
        bad = "must be a finite number"
    elif column == "position_in_bar":
        if not (value == int(value) and 0 <= value < beats_per_bar):
            bad = f"must be an integer in [0, {beats_per_bar})"
    elif column == "dB":
        lo, hi = INTENSITY_RANGE_DB
        if not lo <= value <= hi:
            bad = f"must be in [{lo:g}, {hi:g}] dB"
    elif not -1.0 <= value <= 1.0:
        bad = "must be in [-1, 1]"
    if bad:
        shown = "null" if math.isnan(value) else repr(value)
        raise ControlsError(f"{where}{name}[{index}].{column} = {shown}: {bad}")


def validate_series(name: str, series: np.ndarray, *, beats_per_bar: int = 4,
                    duration: float | None = None, where: str = "") -> np.ndarray:
    """Check one control series and return it as a float array ``[N, 1 + width]``.

    Raises
    ------
    ControlsError
        Naming the field, the index and the bad value.
    """
    if name not in _COLUMNS:
        raise ControlsError(f"{where}unknown control {name!r}; expected one of {', '.join(CONTROL_NAMES)}")
    columns = _COLUMNS[name]
    arr = np.asarray(series, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 1 + len(columns):
        raise ControlsError(
            f"{where}{name} must be a list of [t, {', '.join(columns)}] points, got shape {arr.shape}")
    if len(arr) == 0:
        raise ControlsError(f"{where}{name} is empty; omit the control instead")
    rows = arr.tolist()  # Python floats, so messages show 2.0 rather than np.float64(2.0)
    for i, (t, *values) in enumerate(rows):
        if not math.isfinite(t) or t < 0:
            raise ControlsError(f"{where}{name}[{i}].t = {t!r}: times must be finite seconds >= 0")
        if duration is not None and t > duration + 1e-6:
            raise ControlsError(f"{where}{name}[{i}].t = {t!r}: after the duration {duration!r} s")
        if i and t <= rows[i - 1][0]:
            raise ControlsError(
                f"{where}{name}[{i}].t = {t!r}: times must increase strictly (previous {rows[i - 1][0]!r})")
        for column, value in zip(columns, values):
            _check_value(name, column, i, value, beats_per_bar=beats_per_bar, where=where)
    return arr


@dataclass(frozen=True, eq=False)
class Controls:
    """Time-varying controls. Each is ``None`` (not given) or an array ``[N, 1 + width]``.

    Parameters
    ----------
    beat : [N, 2] (t, position_in_bar); position 0 is a downbeat.
    melody : [N, 2] (t, pitch_class); NaN is a rest. The value holds until the next point.
    intensity : [N, 2] (t, dB). Interpolated linearly between points.
    emotion : [N, 3] (t, valence, arousal). Interpolated linearly between points.
    beats_per_bar : int
    duration : float or None, seconds
    source : dict of control name -> where it came from ("video", "reference", "file", ...)
    """

    beat: np.ndarray | None = None
    melody: np.ndarray | None = None
    intensity: np.ndarray | None = None
    emotion: np.ndarray | None = None
    beats_per_bar: int = 4
    duration: float | None = None
    source: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.beats_per_bar, (int, np.integer)) or not 1 <= self.beats_per_bar <= 16:
            raise ControlsError(f"beats_per_bar = {self.beats_per_bar!r}: must be an integer in [1, 16]")
        if self.duration is not None and (not math.isfinite(self.duration) or self.duration <= 0):
            raise ControlsError(f"duration = {self.duration!r}: must be a finite number of seconds > 0")
        for name in CONTROL_NAMES:
            series = getattr(self, name)
            if series is not None:
                arr = validate_series(name, series, beats_per_bar=int(self.beats_per_bar), duration=self.duration)
                arr.setflags(write=False)
                object.__setattr__(self, name, arr)

    @property
    def present(self) -> tuple[str, ...]:
        """Names of the controls that are given."""
        return tuple(n for n in CONTROL_NAMES if getattr(self, n) is not None)

    def filled_from(self, fallback: "Controls") -> "Controls":
        """Return these controls with every missing control taken from ``fallback``."""
        taken = {n: getattr(fallback, n) for n in CONTROL_NAMES if getattr(self, n) is None}
        source = {**{n: fallback.source.get(n, "fallback") for n in taken if taken[n] is not None}, **self.source}
        bpb = self.beats_per_bar if self.beat is not None or fallback.beat is None else fallback.beats_per_bar
        return replace(self, **taken, beats_per_bar=bpb, duration=self.duration or fallback.duration, source=source)

    def spliced_with(self, fallback: "Controls", *, until: float) -> "Controls":
        """Use these controls before ``until`` seconds and ``fallback`` from then on.

        For a reference piece shorter than the video: each control present here covers
        ``[0, until)`` and the fallback's points continue after it. Beats of the fallback
        closer than half a beat to the last kept beat are dropped so the grid has no stutter.
        """
        if not math.isfinite(until) or until < 0:
            raise ControlsError(f"until = {until!r}: must be finite seconds >= 0")
        merged = {}
        for name in CONTROL_NAMES:
            mine, theirs = getattr(self, name), getattr(fallback, name)
            if mine is None or theirs is None:
                merged[name] = mine if mine is not None else theirs
                continue
            head = mine[mine[:, 0] < until]
            if len(head) == 0:
                merged[name] = theirs
                continue
            start = until
            if name == "beat" and len(head) >= 2:
                start = max(until, head[-1, 0] + 0.5 * (head[-1, 0] - head[-2, 0]))
            tail = theirs[theirs[:, 0] > max(start, head[-1, 0])]
            merged[name] = np.concatenate([head, tail]) if len(tail) else head
        source = {n: f"{self.source.get(n, 'primary')} until {until:.2f}s, then {fallback.source.get(n, 'fallback')}"
                  if getattr(self, n) is not None and getattr(fallback, n) is not None else
                  (self.source.get(n) or fallback.source.get(n)) for n in CONTROL_NAMES if merged[n] is not None}
        return Controls(**merged, beats_per_bar=self.beats_per_bar, duration=fallback.duration or self.duration,
                        source={k: v for k, v in source.items() if v})

    def to_json_dict(self) -> dict:
        """A JSON-serialisable dict in the file format (version 1)."""
        out: dict = {"version": SCHEMA_VERSION}
        if self.duration is not None:
            out["duration"] = round(float(self.duration), 4)
        out["beats_per_bar"] = int(self.beats_per_bar)
        if self.source:
            out["source"] = dict(self.source)
        for name in CONTROL_NAMES:
            series = getattr(self, name)
            if series is None:
                continue
            rows = []
            for t, *values in series:
                row = [round(float(t), 4)]
                for column, v in zip(_COLUMNS[name], values):
                    if column in ("position_in_bar", "pitch_class"):
                        row.append(None if math.isnan(v) else int(v))
                    else:
                        row.append(round(float(v), 4))
                rows.append(row)
            out[name] = rows
        return out

    @classmethod
    def from_json_dict(cls, data: object, *, where: str = "") -> "Controls":
        """Build Controls from a parsed file; ``where`` prefixes error messages (e.g. the path)."""
        if not isinstance(data, dict):
            raise ControlsError(f"{where}top level must be a JSON object, got {type(data).__name__}")
        version = data.get("version")
        if version != SCHEMA_VERSION:
            raise ControlsError(f"{where}version = {version!r}: this cuecraft reads controls version {SCHEMA_VERSION}")
        unknown = sorted(set(data) - _KNOWN_KEYS)
        if unknown:
            raise ControlsError(f"{where}unknown field {unknown[0]!r}; known fields: {', '.join(sorted(_KNOWN_KEYS))}")
        bpb = data.get("beats_per_bar", 4)
        if isinstance(bpb, bool) or not isinstance(bpb, int) or not 1 <= bpb <= 16:
            raise ControlsError(f"{where}beats_per_bar = {bpb!r}: must be an integer in [1, 16]")
        duration = data.get("duration")
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                     or not math.isfinite(duration) or duration <= 0):
            raise ControlsError(f"{where}duration = {duration!r}: must be a number of seconds > 0")
        series = {}
        for name in CONTROL_NAMES:
            if data.get(name) is None:
                continue
            series[name] = validate_series(name, _rows_to_array(name, data[name], where), beats_per_bar=bpb,
                                           duration=duration, where=where)
        source = data.get("source") if isinstance(data.get("source"), dict) else {}
        return cls(**series, beats_per_bar=bpb, duration=duration, source=source)


def _rows_to_array(name: str, rows: object, where: str) -> np.ndarray:
    width = 1 + len(_COLUMNS[name])
    if not isinstance(rows, list):
        raise ControlsError(f"{where}{name} must be a list of points, got {type(rows).__name__}")
    out = np.empty((len(rows), width))
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise ControlsError(f"{where}{name}[{i}] = {row!r}: expected [t, {', '.join(_COLUMNS[name])}]")
        for j, v in enumerate(row):
            if v is None and name == "melody" and j == 1:
                out[i, j] = math.nan
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                column = "t" if j == 0 else _COLUMNS[name][j - 1]
                raise ControlsError(f"{where}{name}[{i}].{column} = {v!r}: must be a number")
            else:
                out[i, j] = v
    return out


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not allowed (not valid JSON)")


def load_controls(path: str | os.PathLike) -> Controls:
    """Read and validate a controls JSON file.

    Raises
    ------
    ControlsError
        For a missing file, bad JSON, NaN/Infinity, a wrong version or a bad value,
        naming the file, the field, the index and the value.
    """
    path = Path(path)
    where = f"controls file '{path}': "
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ControlsError(f"{where}no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ControlsError(f"{where}cannot read it ({exc})") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ControlsError(f"{where}bad JSON: {exc}") from None
    return Controls.from_json_dict(data, where=where)


def dumps_controls(controls: Controls) -> str:
    """The controls as JSON text: one point per line, so that a person can edit it."""
    data = controls.to_json_dict()
    lines = ["{"]
    items = list(data.items())
    for k, (key, value) in enumerate(items):
        comma = "," if k < len(items) - 1 else ""
        if key in CONTROL_NAMES:
            body = ",\n".join(f"    {json.dumps(row)}" for row in value)
            lines.append(f'  "{key}": [\n{body}\n  ]{comma}')
        else:
            lines.append(f'  "{key}": {json.dumps(value)}{comma}')
    lines.append("}")
    return "\n".join(lines) + "\n"
