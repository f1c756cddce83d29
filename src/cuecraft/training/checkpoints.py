"""Checkpoints: weights and optimizer state in safetensors, written atomically, loaded strictly.

A checkpoint folder holds:
  - ``model.safetensors``: the weights; its metadata carries the model config (JSON), the
    tokenizer fingerprint and the corpus manifest hash, so a mismatched file is refused;
  - ``train_state.safetensors`` + ``train_state.json``: optimizer tensors and the step,
    schedule and RNG seeds, for resuming after a kill (only while training).

Nothing is ever unpickled: safetensors holds tensors only, everything else is JSON.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from cuecraft.errors import MediaError
from cuecraft.io.files import atomic_path

WEIGHTS = "model.safetensors"
STATE_TENSORS = "train_state.safetensors"
STATE_JSON = "train_state.json"


def save_weights(path: str | os.PathLike, model: torch.nn.Module, *, metadata: dict[str, str]) -> Path:
    """Write the model's weights (float32, contiguous) with string ``metadata``, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={k: str(v) for k, v in metadata.items()})
    return path


def export_weights(src: str | os.PathLike, dst: str | os.PathLike, *, dtype: torch.dtype = torch.float16) -> Path:
    """Copy a weights file with its metadata, floating tensors stored as ``dtype`` (half the size
    in float16; :func:`load_weights` casts back to the model's dtype)."""
    from safetensors.torch import load_file, save_file

    metadata = read_metadata(src)
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in load_file(str(src)).items()}
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        save_file(tensors, str(tmp), metadata={**metadata, "stored_dtype": str(dtype).replace("torch.", "")})
    return dst


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file (no tensors are loaded)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"checkpoint '{path}': no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise MediaError(f"checkpoint '{path}': not a readable safetensors file ({exc})") from None


def load_weights(path: str | os.PathLike, model: torch.nn.Module, *, expect: dict[str, str] | None = None) -> dict:
    """Load weights into ``model`` strictly and return the file's metadata.

    Parameters
    ----------
    expect : metadata entries that must match exactly (e.g. the model config JSON, the
        tokenizer fingerprint); a mismatch is an error naming the entry and both values.

    Raises
    ------
    MediaError
        For a missing or corrupt file, a metadata mismatch, or missing / unexpected /
        wrongly shaped tensors (all of them listed): never a silent partial load.
    """
    from safetensors.torch import load_file

    path = Path(path)
    metadata = read_metadata(path)
    for key, want in (expect or {}).items():
        got = metadata.get(key)
        if got != want:
            raise MediaError(f"checkpoint '{path}': {key} does not match ({_difference(got, want)})")
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise MediaError(f"checkpoint '{path}': cannot read tensors ({exc})") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = sorted(f"{k} {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}" for k in set(own) & set(tensors)
                    if tensors[k].shape != own[k].shape)
    problems = [f"missing {', '.join(missing)}" if missing else "",
                f"unexpected {', '.join(unexpected)}" if unexpected else "",
                f"shape mismatch {', '.join(shapes)}" if shapes else ""]
    problems = [p for p in problems if p]
    if problems:
        raise MediaError(f"checkpoint '{path}' does not fit the model: {'; '.join(problems)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=True)
    return metadata


def _difference(got: str | None, want: str) -> str:
    """Where two JSON metadata values differ: the first differing key, else both values."""
    try:
        a, b = json.loads(got) if got is not None else None, json.loads(want)
    except (TypeError, ValueError):
        a = b = None
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                inner = _difference(json.dumps(a.get(key)), json.dumps(b.get(key))) if isinstance(
                    a.get(key), dict) and isinstance(b.get(key), dict) else \
                    f"file: {a.get(key)!r}, expected: {b.get(key)!r}"
                return f"{key}: {inner}"
    return f"file: {_short(got)}, expected: {_short(want)}"


def _short(value: str | None, limit: int = 160) -> str:
    if value is None:
        return "absent"
    return value if len(value) <= limit else value[:limit] + "..."


def save_train_state(folder: str | os.PathLike, optimizer: torch.optim.Optimizer, *, state: dict) -> None:
    """Optimizer tensors (safetensors) and the JSON-able training state, each written atomically.

    The JSON is written last, so a folder whose JSON names a step has all of that step's files.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    opt = optimizer.state_dict()
    tensors, layout = {}, {}
    for index, entry in opt["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().to("cpu").contiguous()
            else:
                layout[f"{index}.{name}"] = value
    # The RNG state too, so dropout and attribute dropout continue exactly as without the stop.
    tensors["rng.torch"] = torch.random.get_rng_state()
    with atomic_path(folder / STATE_TENSORS) as tmp:
        save_file(tensors, str(tmp))
    payload = {**state, "optimizer_scalars": layout, "param_groups": opt["param_groups"]}
    with atomic_path(folder / STATE_JSON) as tmp:
        tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")


def load_train_state(folder: str | os.PathLike, optimizer: torch.optim.Optimizer) -> dict | None:
    """Restore the optimizer and return the saved training state, or None if there is none."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / STATE_JSON).is_file():
        return None
    try:
        payload = json.loads((folder / STATE_JSON).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / STATE_TENSORS))
    except Exception as exc:
        raise MediaError(f"training state in '{folder}' is unreadable ({exc}); delete it to start afresh") from None
    rng = tensors.pop("rng.torch", None)
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for key, value in payload.pop("optimizer_scalars").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = payload.pop("param_groups")
    if len(groups) != len(optimizer.param_groups) or any(
            len(a["params"]) != len(b["params"]) for a, b in zip(groups, optimizer.param_groups)):
        raise MediaError(f"training state in '{folder}' was saved for a different model; delete it to start afresh")
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    if rng is not None:
        torch.random.set_rng_state(rng)
    return payload
