"""The embedded symbolic backbone: the shipped weights, loaded strictly, with their tokenizer."""
from __future__ import annotations

import json
import os
from pathlib import Path

from cuecraft.errors import MediaError

SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "symbolic-small" / "model.safetensors"


def load_symbolic(path: str | os.PathLike | None = None):
    """``(model, tokenizer)`` from a weights file (default: the shipped one), in eval mode.

    The model's shape comes from the file's own ``model_config`` metadata; the file must
    also name this tokenizer's fingerprint, so weights trained on another vocabulary are
    refused with a clear error instead of producing noise.
    """
    key = _key(path)
    if key not in _LOADED:
        if len(_LOADED) >= KEEP_LOADED:
            del _LOADED[next(iter(_LOADED))]  # the oldest
        _LOADED[key] = _load(key)
    return _LOADED[key]


def is_loaded(path: str | os.PathLike | None = None) -> bool:
    """Whether :func:`load_symbolic` holds these weights already (a warm process)."""
    return _key(path) in _LOADED


def _key(path: str | os.PathLike | None) -> str:
    return str(Path(path) if path is not None else SHIPPED)


KEEP_LOADED = 2  # weights files kept in memory
_LOADED: dict[str, tuple] = {}


def _load(path: str):
    import torch

    from cuecraft.config import ModelConfig
    from cuecraft.models.builders import build_symbolic_lm
    from cuecraft.models.decoding import use_decoding_weights
    from cuecraft.models.tokenizer import MusicTokenizer
    from cuecraft.training.checkpoints import load_weights, read_metadata

    metadata = read_metadata(path)
    try:
        config = ModelConfig(**json.loads(metadata["model_config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise MediaError(f"checkpoint '{path}': no usable model_config metadata ({exc})") from None
    tokenizer = MusicTokenizer()
    model = build_symbolic_lm(config, vocab_size=tokenizer.vocab_size)
    _check_control_layout(path, model)
    load_weights(path, model, expect={"tokenizer": tokenizer.fingerprint, "model_config": metadata["model_config"]})
    use_decoding_weights(model.eval())  # int8 where this CPU has the kernel (models/decoding.py)
    model.trained_length = min(model.max_positions, _trained_length(path, metadata) or model.max_positions)
    # Leave a core free. On an idle 2-core machine 2 threads decoded 11% faster than 1 (3.44 vs
    # 3.85 ms a token), but with one other busy process they were 4x slower (14.6 vs 3.6 ms).
    torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) - 1)))
    return model, tokenizer


def _trained_length(path: str, metadata: dict) -> int | None:
    """The training crops' length (``[data].seq_len`` of the run's config in the metadata).

    Weights saved without their run's config (not by ``cuecraft train``) keep their ``max_len``.
    """
    if "config" not in metadata:
        return None
    try:
        length = json.loads(metadata["config"])["data"]["seq_len"]
    except (KeyError, TypeError, ValueError) as exc:
        raise MediaError(f"checkpoint '{path}': no training config (data.seq_len) in its metadata ({exc})") from None
    if isinstance(length, bool) or not isinstance(length, int) or length < 16:
        raise MediaError(f"checkpoint '{path}': data.seq_len = {length!r} in its metadata is not a length >= 16")
    return length


def _check_control_layout(path: str, model) -> None:
    """Refuse weights trained on another control feature layout, naming both layouts."""
    from safetensors import safe_open

    from cuecraft.controls.features import CONTROL_ORDER

    if model.guidance is None:
        return
    own = model.guidance.project.control_dims
    try:
        with safe_open(path, framework="pt") as f:
            keys = set(f.keys())
            names = [f"guidance.project.proj.{i}.weight" for i in range(len(own))]
            if not all(n in keys for n in names):
                return  # load_weights names the missing tensors
            theirs = tuple(int(f.get_slice(n).get_shape()[1]) for n in names)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise MediaError(f"checkpoint '{path}': not a readable safetensors file ({exc})") from None
    if theirs != own:
        def spell(dims):
            return ", ".join(f"{n} {d}" for n, d in zip(CONTROL_ORDER, dims))

        raise MediaError(f"checkpoint '{path}': trained on control features ({spell(theirs)}), but this "
                         f"cuecraft reads ({spell(own)}); use weights from this version or retrain")
