"""Reading a local Hugging Face weights folder: config.json and safetensors tensors, never pickles.

Used by the codec backbone (``codec.py``) for MusicGen and EnCodec folders. A folder holds
``config.json`` and ``model.safetensors``, or shards listed in ``model.safetensors.index.json``.
Tensors are read one at a time with plain file reads straight into their destination, and
mismatches are reported all at once (:func:`mismatch_error`).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from cuecraft.errors import MediaError

SHOWN = 8  # problems listed by name in an error message; the rest are counted


def read_config(folder: str | os.PathLike) -> tuple[Path, dict]:
    """``(folder, config.json as a dict)``; MediaError naming the folder if either is unusable."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MediaError(f"weights folder '{folder}': no such directory")
    path = folder / "config.json"
    if not path.is_file():
        raise MediaError(f"weights folder '{folder}': no config.json")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MediaError(f"'{path}': not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        raise MediaError(f"'{path}': expected a JSON object, got {type(config).__name__}")
    return folder, config


def weight_files(folder: Path) -> list[Path]:
    """The folder's safetensors files: ``model.safetensors``, or the shards of its index."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MediaError(f"'{index}': no usable weight_map ({exc})") from None
        missing = [f for f in shards if not (folder / f).is_file()]
        if missing:
            raise MediaError(f"'{index}' names missing shard(s): {', '.join(missing)}")
        return [folder / f for f in shards]
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        raise MediaError(f"weights folder '{folder}' has only pickle weights (*.bin / *.pt), which cuecraft never "
                         "unpickles; convert them to model.safetensors first")
    raise MediaError(f"weights folder '{folder}': no model.safetensors or model.safetensors.index.json")


_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


class TensorReader:
    """Tensors of a folder's safetensors files, read one at a time straight into their destination.

    Plain file reads (no memory map) into the model's own parameter storage keep the peak
    memory of a load at about the model's size: a memory-mapped file would add every page
    it touched to the process's resident set, doubling the peak for a 1.2 GB MusicGen-small.
    The safetensors layout: 8-byte little-endian header length, JSON header, raw data.
    """

    def __init__(self, folder: Path):
        self.entries: dict[str, tuple[torch.dtype, tuple[int, ...], Path, int]] = {}
        for path in weight_files(folder):
            for key, (dtype, shape, offset) in _read_header(path).items():
                self.entries[key] = (dtype, shape, path, offset)
        self._open: dict[Path, object] = {}

    def shape(self, key: str) -> tuple[int, ...]:
        return self.entries[key][1]

    def read_into(self, key: str, out: torch.Tensor) -> None:
        """Fill ``out`` (the tensor's shape; any dtype, cast if the file's differs) with ``key``."""
        dtype, shape, path, offset = self.entries[key]
        assert tuple(out.shape) == shape, (key, tuple(out.shape), shape)
        direct = out.dtype == dtype and out.is_contiguous()
        target = out.detach() if direct else torch.empty(shape, dtype=dtype)
        view = target.reshape(-1).view(torch.uint8).numpy()  # the tensor's own bytes, writable
        if path not in self._open:
            self._open[path] = open(path, "rb")  # noqa: SIM115 (closed in close())
        f = self._open[path]
        f.seek(offset)
        if f.readinto(view) != view.nbytes:
            raise MediaError(f"'{path}': truncated data for tensor {key}")
        if not direct:
            out.detach().copy_(target)

    def get(self, key: str) -> torch.Tensor:
        dtype, shape, _, _ = self.entries[key]
        out = torch.empty(shape, dtype=dtype)
        self.read_into(key, out)
        return out

    def close(self) -> None:
        for f in self._open.values():
            f.close()
        self._open.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read_header(path: Path) -> dict[str, tuple[torch.dtype, tuple[int, ...], int]]:
    """Tensor name -> (dtype, shape, absolute byte offset), checked against the file's size."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n <= size - 8:
                raise ValueError(f"header length {n} in a file of {size} bytes")
            header = json.loads(f.read(n))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise MediaError(f"'{path}': not a readable safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise MediaError(f"'{path}': not a readable safetensors file (the header is not a JSON object)")
    out = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape = _DTYPES.get(entry["dtype"]), tuple(int(d) for d in entry["shape"])
            begin, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise MediaError(f"'{path}': unreadable header entry for tensor {key}") from None
        if dtype is None:
            raise MediaError(f"'{path}': tensor {key} has unsupported dtype {entry['dtype']!r}")
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if end - begin != nbytes or begin < 0 or 8 + n + end > size:
            raise MediaError(f"'{path}': tensor {key} has bad data offsets {begin}..{end}")
        out[key] = (dtype, shape, 8 + n + begin)
    return out


def mismatch_error(folder: Path, what: str, missing, unexpected, shapes) -> MediaError:
    """One MediaError listing every missing / unexpected / mis-shaped tensor (first few by name + counts)."""
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        items = sorted(items)
        if items:
            more = f", ... (+{len(items) - SHOWN} more)" if len(items) > SHOWN else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:SHOWN])}{more}")
    return MediaError(f"weights folder '{folder}' does not fit {what}: {'; '.join(parts)}")
