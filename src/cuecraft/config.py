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
    # One model step per note (``models/compound.py``): 4 token slots, 4 heads. A note costs
    # one step instead of four, so decoding is about three times faster.
    compound: bool = False


@dataclass(frozen=True)
class DataConfig:
    """The symbolic training corpus."""

    corpus_dir: str = ".cache/corpus"
    collections: tuple[str, ...] = ("bach", "ryansMammoth", "essenFolksong", "oneills1850", "nottingham-dataset")
    limit: int | None = None       # pieces per collection (None = all); tiny presets use a few
    seq_len: int = 512
    transpose: bool = True
    # Augmented dynamics: the chance, at each bar, that the crop's velocity level steps one bin up or
    # down (0 = one level per crop). The corpus has almost no dynamics; this teaches the model to
    # follow an intensity that changes within a piece with velocity, not only with density.
    velocity_walk: float = 0.0
    # The most bins a step of that walk moves (each step moves 1..this many, at random): a walk of
    # single bins leaves a crop's velocities within about 1 dB (std), far less than a video asks.
    velocity_walk_step: int = 1
    # Augmented texture: the chance that a crop with a harmony voice loses it over stretches of bars
    # (training/texture.py), so that its intensity moves with its texture.
    texture_thin: float = 0.0
    # Crops of pieces with a harmony voice (the chorales, about 9% of the corpus) are drawn this many
    # times as often in training, so that more crops carry the texture changes above.
    harmony_repeat: int = 1


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
    ema: float = 0.0               # EMA decay of the trainable weights (0 = off); the result holds the EMA
    mixed_precision: str = "no"    # "no", "fp16" or "bf16" (accelerate; fp16 only on a GPU)
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


@dataclass(frozen=True)
class CodecLMConfig:
    """The codec backbone's token LM (MusicGen architecture)."""

    init_from: str = ""            # a facebook/musicgen-small-style HF folder; "" = random init, sizes below
    d_model: int = 1024
    n_layers: int = 24
    n_heads: int = 16
    mlp_ratio: int = 4
    n_codebooks: int = 4
    codebook_size: int = 2048
    max_positions: int = 2048
    dropout: float = 0.1


@dataclass(frozen=True)
class ConditioningConfig:
    """How the video reaches the LM: GVMGen's Q-Former or MTCV2M's VFA + FGFS + PTAA."""

    kind: str = "mtcv2m"           # "mtcv2m" or "gvmgen"
    width: int = 768               # FGFS / Q-Former width
    n_blocks: int = 4              # FGFS blocks (MTCV2M stage 1: 4) or Q-Former layers (GVMGen: 6)
    n_heads: int = 8
    n_queries: int = 16            # GVMGen Q-Former queries
    windows: tuple[int, ...] = (0, 5, 3, 2)  # PTAA window per layer index mod 4 (0 = full)
    p_drop_condition: float = 0.3  # training only: the whole visual condition replaced by the null one
    p_drop_time: float = 0.1       # training only: keep only a random time span of the condition


@dataclass(frozen=True)
class GuidanceConfig:
    """Stage 2: control projections, DCF and CGD (``models/guidance.py``)."""

    guidance_every: int = 4
    patch_len: int = 50            # DCF patch: 1 s at 50 Hz
    p_drop_global: float = 0.4
    p_drop_control: float = 0.45


@dataclass(frozen=True)
class VisualConfig:
    """Which visual encoder makes the per-second tokens (``models/visual``)."""

    encoder: str = "embedded"      # "embedded", "clip" or "clip+videomae"
    clip_dir: str = ""             # local HF folders, never downloaded
    videomae_dir: str = ""


@dataclass(frozen=True)
class PairsConfig:
    """(video, music) pair shards for the codec backbone (``training/pairs.py``)."""

    pairs_dir: str = "data/pairs"
    codec_dir: str = ""            # HF EnCodec (or MusicGen) folder: music <-> tokens
    seconds: int = 30              # training crop length


def _stage(**changes) -> "TrainConfig":
    return dataclasses.replace(TrainConfig(), **changes)


@dataclass(frozen=True)
class CodecConfig:
    """The codec backbone and its two-stage training (MTCV2M)."""

    name: str = "codec"
    lm: CodecLMConfig = field(default_factory=CodecLMConfig)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    visual: VisualConfig = field(default_factory=VisualConfig)
    data: PairsConfig = field(default_factory=PairsConfig)
    stage1: TrainConfig = field(default_factory=lambda: _stage(lr=1e-5, batch_size=4, warmup=4000, ema=0.999,
                                                               out_dir="runs/codec"))
    stage2: TrainConfig = field(default_factory=lambda: _stage(lr=1e-4, batch_size=6, warmup=4000, ema=0.999,
                                                               out_dir="runs/codec"))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def model_json(self) -> str:
        """The parts that fix the model's shape (stored in its weights, compared on load)."""
        return json.dumps({k: dataclasses.asdict(getattr(self, k)) for k in ("lm", "conditioning", "guidance",
                                                                             "visual")}, sort_keys=True)


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
_CODEC_SECTIONS = {"lm": CodecLMConfig, "conditioning": ConditioningConfig, "guidance": GuidanceConfig,
                   "visual": VisualConfig, "data": PairsConfig, "stage1": TrainConfig, "stage2": TrainConfig}



def _coerce(section: str, cls, values: dict, where: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for key, value in values.items():
        if key not in known:
            raise ParameterError(f"{where}[{section}].{key}: unknown setting; known: {', '.join(known)}")
        default = getattr(cls(), key)
        if isinstance(default, tuple):
            kind = type(default[0]) if default else str
            if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
                raise ParameterError(f"{where}[{section}].{key} = {value!r}: must be a list of {kind.__name__}s")
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
        elif default is None and value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ParameterError(f"{where}[{section}].{key} = {value!r}: must be an integer")
        out[key] = value
    return cls(**out)


def config_from_dict(data: dict, *, where: str = "") -> Config | CodecConfig:
    """Build a Config (or a CodecConfig when ``backbone = "codec"``) from parsed TOML, naming the
    section, key and value of any error."""
    backbone = data.get("backbone", "symbolic")
    if backbone not in ("symbolic", "codec"):
        raise ParameterError(f"{where}backbone = {backbone!r}: must be 'symbolic' or 'codec'")
    sections = _CODEC_SECTIONS if backbone == "codec" else _SECTIONS
    unknown = sorted(set(data) - {"name", "backbone", *sections})
    if unknown:
        raise ParameterError(f"{where}[{unknown[0]}]: unknown section; known: name, backbone, {', '.join(sections)}")
    parts = {}
    for section, cls in sections.items():
        values = data.get(section, {})
        if not isinstance(values, dict):
            raise ParameterError(f"{where}{section} must be a table")
        parts[section] = _coerce(section, cls, values, where)
    name = data.get("name", backbone)
    if not isinstance(name, str):
        raise ParameterError(f"{where}name = {name!r}: must be a string")
    if backbone == "codec":
        defaults = CodecConfig()
        for stage in ("stage1", "stage2"):  # unset keys keep the paper's per-stage defaults, not TrainConfig's
            given = data.get(stage, {})
            parts[stage] = dataclasses.replace(getattr(defaults, stage), **{k: getattr(parts[stage], k) for k in given})
        return CodecConfig(name=name, **parts)
    return Config(name=name, **parts)


def load_config(path: str | os.PathLike) -> Config | CodecConfig:
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
