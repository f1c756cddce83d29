"""Configuration: frozen dataclasses, read from TOML presets (``configs/*.toml``).

``models/builders.py`` is the one place that turns these into objects.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from cuecraft.errors import ParameterError


@dataclass(frozen=True)
class ModelConfig:
    """The token LM and its control guidance."""

    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.1
    max_len: int = 1024
    guidance: str = "cgd"          # "cgd" (DCF fusion + zero-init guidance blocks) or "concat"
    guidance_every: int = 4
    patch_len: int = 16            # DCF patch length in tokens
    p_drop_global: float = 0.4     # attribute dropout (training only)
    p_drop_control: float = 0.45


@dataclass(frozen=True)
class DataConfig:
    """The symbolic training corpus."""

    corpus_dir: str = ".cache/corpus"
    collections: tuple[str, ...] = ("bach", "ryansMammoth", "essenFolksong", "oneills1850", "nottingham-dataset")
    limit: int | None = None       # pieces per collection (None = all); tiny presets use a few
    seq_len: int = 512
    transpose: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation schedule."""

    steps: int = 3000
    batch_size: int = 16
    lr: float = 3e-4
    warmup: int = 200
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_batches: int = 8
    ckpt_every: int = 250
    seed: int = 0
    threads: int = 2
    out_dir: str = "runs/symbolic"


@dataclass(frozen=True)
class Config:
    name: str = "symbolic"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): stored in checkpoints and compared on load."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def _coerce(section: str, cls, values: dict, where: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for key, value in values.items():
        if key not in known:
            raise ParameterError(f"{where}[{section}].{key}: unknown setting; known: {', '.join(known)}")
        default = getattr(cls(), key)
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ParameterError(f"{where}[{section}].{key} = {value!r}: must be a list of strings")
            value = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ParameterError(f"{where}[{section}].{key} = {value!r}: must be true or false")
        elif isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParameterError(f"{where}[{section}].{key} = {value!r}: must be an integer")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParameterError(f"{where}[{section}].{key} = {value!r}: must be a number")
            value = float(value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise ParameterError(f"{where}[{section}].{key} = {value!r}: must be a string")
        elif default is None and not isinstance(value, int):
            raise ParameterError(f"{where}[{section}].{key} = {value!r}: must be an integer")
        out[key] = value
    return cls(**out)


def config_from_dict(data: dict, *, where: str = "") -> Config:
    """Build a Config from parsed TOML, naming the section, key and value of any error."""
    unknown = sorted(set(data) - {"name", *_SECTIONS})
    if unknown:
        raise ParameterError(f"{where}[{unknown[0]}]: unknown section; known: name, {', '.join(_SECTIONS)}")
    parts = {}
    for section, cls in _SECTIONS.items():
        values = data.get(section, {})
        if not isinstance(values, dict):
            raise ParameterError(f"{where}{section} must be a table")
        parts[section] = _coerce(section, cls, values, where)
    name = data.get("name", "symbolic")
    if not isinstance(name, str):
        raise ParameterError(f"{where}name = {name!r}: must be a string")
    return Config(name=name, **parts)


def load_config(path: str | os.PathLike) -> Config:
    """Read a TOML preset such as ``configs/symbolic-small.toml``."""
    path = Path(path)
    where = f"config '{path}': "
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParameterError(f"{where}no such file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ParameterError(f"{where}cannot read it ({exc})") from None
    return config_from_dict(data, where=where)
