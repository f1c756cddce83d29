"""The visual-encoder interface: three levels of per-second visual tokens.

Every encoder (embedded, CLIP, VideoMAE, or a combination) returns :class:`VisualFeatures`,
one token per second of video at each level, so the conditioning modules (GVMGen's
Q-Former, MTCV2M's VFA/FGFS) never know which encoder made them:

- ``patch``   ``[T, P, Dp]``: spatial tokens of the frame at each second's centre;
- ``frame``   ``[T, Df]``: one whole-frame token per second;
- ``context`` ``[T, Dc]``: one token per second summarising a few seconds of motion.

Second ``i`` covers ``[i, i + 1)`` seconds; ``T = ceil(duration)`` (a final partial second
counts). Frames are sampled at second centres ``i + 0.5`` (clamped to the video).

Sampling is exact: encoders decode with :func:`cuecraft.io.video.iter_frames` at an *even*
integer rate ``fps`` (2 for CLIP and VideoMAE, 8 for the embedded encoder), so sample
``k = i * fps + fps / 2`` is exactly at ``i + 0.5``. When the video ends before ``i + 0.5``
(only possible in the final partial second), the last decoded sample stands in for it.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cuecraft.errors import MediaError, ParameterError
from cuecraft.io.video import iter_frames, probe

__all__ = ["VisualFeatures", "VisualDims", "VisualEncoder", "n_seconds", "n_samples", "check_sample_fps",
           "decode_samples", "checked_samples", "second_centres", "check_model_folder", "load_pretrained",
           "processor_output_size", "processor_short_side", "require_transformers"]


@dataclass(frozen=True)
class VisualFeatures:
    """Per-second visual tokens of one video (float32 tensors on the CPU)."""

    patch: torch.Tensor    # [T, P, Dp]
    frame: torch.Tensor    # [T, Df]
    context: torch.Tensor  # [T, Dc]
    duration: float        # seconds of video the tokens cover
    encoder: str           # which encoder made them, e.g. "embedded" or "clip+videomae"

    def __post_init__(self):
        T = self.frame.shape[0]
        if self.patch.dim() != 3 or self.frame.dim() != 2 or self.context.dim() != 2:
            raise ParameterError(f"visual features must be patch [T, P, D], frame [T, D], context [T, D]; got "
                                 f"{tuple(self.patch.shape)}, {tuple(self.frame.shape)}, {tuple(self.context.shape)}")
        if self.patch.shape[0] != T or self.context.shape[0] != T:
            raise ParameterError(f"visual features disagree on the number of seconds: patch {self.patch.shape[0]}, "
                                 f"frame {T}, context {self.context.shape[0]}")
        for name in ("patch", "frame", "context"):
            if not bool(torch.isfinite(getattr(self, name)).all()):
                raise ParameterError(f"visual features '{name}' contain NaN or infinity")

    @property
    def seconds(self) -> int:
        """Number of per-second tokens ``T``."""
        return int(self.frame.shape[0])

    @property
    def dims(self) -> VisualDims:
        return VisualDims(n_patches=int(self.patch.shape[1]), patch=int(self.patch.shape[2]),
                          frame=int(self.frame.shape[1]), context=int(self.context.shape[1]))

    def check_dims(self, expected: VisualDims) -> VisualFeatures:
        """Return ``self`` if its token sizes are ``expected``, else raise :class:`ParameterError`.

        A model built for one encoder (say CLIP, 1024-d patches) fed features of another
        (the embedded encoder, 12-d) would otherwise fail deep inside a matrix product.
        """
        got = self.dims
        for name in ("n_patches", "patch", "frame", "context"):
            if getattr(got, name) != getattr(expected, name):
                raise ParameterError(f"visual features '{name}' size = {getattr(got, name)} (encoder "
                                     f"'{self.encoder}'), but the model expects {getattr(expected, name)}")
        return self


@dataclass(frozen=True)
class VisualDims:
    """Token sizes of an encoder, used to size the conditioning modules."""

    n_patches: int
    patch: int
    frame: int
    context: int


def n_seconds(duration: float) -> int:
    """Tokens for a video of ``duration`` seconds: ``ceil(duration)``, at least 1."""
    if not math.isfinite(duration) or duration <= 0:
        raise ParameterError(f"duration = {duration!r}: must be a finite number of seconds > 0")
    return max(1, math.ceil(duration - 1e-6))


class VisualEncoder:
    """Interface: ``encode(path)`` gives :class:`VisualFeatures`; ``dims`` gives their sizes."""

    name = "encoder"

    @property
    def dims(self) -> VisualDims:
        raise NotImplementedError

    def encode(self, path, *, progress: bool = False) -> VisualFeatures:
        raise NotImplementedError


# --- exact sampling -------------------------------------------------------------------------

def check_sample_fps(fps: object) -> int:
    """``fps`` as an int if it is an even integer >= 2 (so ``i + 0.5`` is a sample), else ParameterError."""
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps < 2 or fps % 2:
        raise ParameterError(f"fps = {fps!r}: must be an even integer >= 2 so that second centres are samples")
    return int(fps)


def n_samples(duration: float, fps: int) -> int:
    """Frames :func:`~cuecraft.io.video.iter_frames` yields for ``duration`` at ``fps`` (same rounding)."""
    return max(1, int(math.ceil(duration * fps - 1e-9)))


def decode_samples(path: str | os.PathLike, *, fps: int, max_width: int | None = None,
                   short_side: int | None = None, progress: bool = False,
                   desc: str = "frames") -> tuple[float, Iterator[tuple[float, np.ndarray]]]:
    """Probe ``path`` and stream its frames at exactly ``fps``.

    Parameters
    ----------
    path : video file
    fps : even integer sampling rate
    max_width : decode at most this wide; or
    short_side : decode so the shorter displayed side is at least this (when the video is
        that large), which is what a model's processor resizes to; upscaling is left to it.
    progress : show a tqdm bar over the decoded frames
    desc : label of the bar

    Returns
    -------
    duration : float, seconds
    frames : iterator of ``(t, rgb)``, ``rgb`` uint8 ``[H, W, 3]``

    Raises
    ------
    MediaError
        For a missing or unreadable video (from :func:`~cuecraft.io.video.probe`).
    """
    fps = check_sample_fps(fps)
    info = probe(path)
    if max_width is None:
        side = int(short_side or 256)
        long_ratio = info.width / max(1, min(info.width, info.height))
        # +2: analysis_size rounds to even sizes and may land one pixel short.
        max_width = int(math.ceil(side * long_ratio)) + 2
    frames = iter_frames(info.path, fps=fps, max_width=max_width, info=info)
    if progress:
        frames = _with_progress(frames, total=n_samples(info.duration, fps), desc=desc)
    return info.duration, frames


def _with_progress(frames: Iterator, *, total: int, desc: str) -> Iterator:
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True) as bar:
        for item in frames:
            yield item
            bar.update(1)


def checked_samples(frames: Iterable[tuple[float, np.ndarray]], *, fps: int,
                    duration: float) -> Iterator[tuple[int, int, np.ndarray]]:
    """Check a stream of ``(t, rgb)`` samples and yield ``(k, second, rgb)``.

    Sample ``k`` must be at ``t = k / fps``. Samples past ``T * fps`` (within the
    ``n_seconds`` rounding tolerance of the end) are dropped; every second must get at
    least one sample.

    Raises
    ------
    ParameterError
        For a wrong timestamp, a frame that is not uint8 ``[H, W, 3]``, more samples than
        ``duration`` allows, or too few samples to cover every second.
    """
    fps = check_sample_fps(fps)
    T = n_seconds(duration)
    limit = n_samples(duration, fps)
    k = -1
    for k, (t, rgb) in enumerate(frames):
        if abs(float(t) - k / fps) > 1e-6:
            raise ParameterError(f"frames[{k}] is at t = {t!r} s, expected {k / fps} s (exactly {fps} fps from 0)")
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            shape = getattr(rgb, "shape", type(rgb).__name__)
            raise ParameterError(f"frames[{k}] must be a uint8 [H, W, 3] array, got {shape} "
                                 f"{getattr(rgb, 'dtype', '')}".rstrip())
        if k >= limit:
            raise ParameterError(f"frames[{k}] at t = {t!r} s is past the end of a {duration!r} s video")
        if k < T * fps:
            yield k, k // fps, rgb
    if k < (T - 1) * fps:
        raise ParameterError(f"frames cover {(k + 1) / fps} s at {fps} fps, but duration = {duration!r} s "
                             f"needs at least {(T - 1) * fps + 1} frames")


def second_centres(frames: Iterable[tuple[float, np.ndarray]], *, fps: int,
                   duration: float) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(i, rgb)`` for each second: the sample at ``i + 0.5``, or the last sample if the video ends first."""
    T = n_seconds(duration)
    half = check_sample_fps(fps) // 2
    done, last = 0, None
    for k, i, rgb in checked_samples(frames, fps=fps, duration=duration):
        last = rgb
        if k == i * fps + half:
            yield i, rgb
            done = i + 1
    if done < T:  # only the final partial second can lack its centre (checked_samples covers the rest)
        yield T - 1, last


# --- pretrained weights from a local folder -------------------------------------------------

def require_transformers():
    """Import ``transformers``, or raise ParameterError with the install hint."""
    try:
        import transformers
    except ImportError:
        raise ParameterError("pretrained visual encoders need transformers: pip install 'cuecraft[codec]'") from None
    return transformers


def check_model_folder(folder: str | os.PathLike | None, *, what: str, model_types: tuple[str, ...],
                       arg: str) -> tuple[Path, dict]:
    """Check a local Hugging Face folder's layout before anything is loaded from it.

    The layout is ``config.json`` (with ``model_type`` one of ``model_types``),
    ``model.safetensors`` (or ``model.safetensors.index.json`` and its shards) and
    ``preprocessor_config.json``. Weights are only ever read from safetensors.

    Returns
    -------
    folder : Path
    config : dict, the parsed ``config.json``

    Raises
    ------
    ParameterError
        If ``folder`` is not a path.
    MediaError
        For a missing folder or file, unreadable JSON or the wrong ``model_type``; the
        message names the folder and the expected layout.
    """
    if folder is None or isinstance(folder, bool) or not isinstance(folder, (str, os.PathLike)) or not str(folder):
        raise ParameterError(f"{arg} = {folder!r}: must be the path of a local {what} weights folder")
    folder = Path(folder).expanduser()
    types = " or ".join(repr(t) for t in model_types)
    layout = (f"expected config.json (model_type {types}), model.safetensors and preprocessor_config.json "
              f"in Hugging Face format")
    if not folder.exists():
        raise MediaError(f"{what} weights folder '{folder}' does not exist; {layout}")
    if not folder.is_dir():
        raise MediaError(f"{what} weights folder '{folder}' is a file, not a folder; {layout}")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise MediaError(f"{what} weights folder '{folder}' has no config.json; {layout}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MediaError(f"'{config_path}': not readable JSON ({exc}); {layout}") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in model_types:
        raise MediaError(f"'{config_path}': model_type = {model_type!r} is not a {what} model; {layout}")
    if not ((folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()):
        raise MediaError(f"{what} weights folder '{folder}' has no model.safetensors (pickled .bin/.pt "
                         f"weights are never loaded); {layout}")
    if not (folder / "preprocessor_config.json").is_file():
        raise MediaError(f"{what} weights folder '{folder}' has no preprocessor_config.json; {layout}")
    return folder, config


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' load report and bars; :func:`load_pretrained` checks the keys itself."""
    from transformers.utils import logging as tf_logging

    verbosity, bars = tf_logging.get_verbosity(), tf_logging.is_progress_bar_enabled()
    tf_logging.set_verbosity_error()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        tf_logging.set_verbosity(verbosity)
        if bars:
            tf_logging.enable_progress_bar()


def load_pretrained(model_class, folder: Path, *, what: str, config=None):
    """``model_class.from_pretrained`` from a local folder, safetensors only, every weight checked.

    Unused tensors are fine (a full CLIP checkpoint holds a text tower); a model tensor missing
    from the checkpoint or of another shape is a :class:`MediaError`, because a silently
    random-initialised layer would make features that look valid and mean nothing.
    """
    with _quiet_transformers():
        try:
            model, info = model_class.from_pretrained(str(folder), config=config, local_files_only=True,
                                                      use_safetensors=True, output_loading_info=True,
                                                      ignore_mismatched_sizes=True)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise MediaError(f"{what} weights folder '{folder}': cannot load the model ({reason})") from None
    mismatched = list(info.get("mismatched_keys") or [])
    if mismatched:
        first = mismatched[0][0] if isinstance(mismatched[0], (tuple, list)) else mismatched[0]
        raise MediaError(f"{what} weights folder '{folder}': {len(mismatched)} tensors do not match config.json "
                         f"in shape, e.g. {first!r}")
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise MediaError(f"{what} weights folder '{folder}': model.safetensors lacks {len(missing)} tensors the "
                         f"model needs, e.g. {missing[0]!r}")
    return model.eval()


def processor_output_size(processor, *, what: str, folder: Path) -> tuple[int, int]:
    """``(height, width)`` of the images an HF image processor produces, from its crop or fixed size."""
    crop = getattr(processor, "crop_size", None)
    size = getattr(processor, "size", None)
    source = crop if getattr(processor, "do_center_crop", False) else size
    if isinstance(source, dict):   # processors of older transformers versions keep plain dicts
        height, width = source.get("height"), source.get("width")
    else:
        height, width = getattr(source, "height", None), getattr(source, "width", None)
    if not height or not width:
        raise MediaError(f"'{folder / 'preprocessor_config.json'}': gives no fixed {what} input size "
                         f"(crop_size or size with height and width)")
    return int(height), int(width)


def processor_short_side(processor) -> int:
    """The shorter side an HF image processor resizes to (frames are decoded at least this large)."""
    size = getattr(processor, "size", None)
    get = size.get if isinstance(size, dict) else (lambda key: getattr(size, key, None))
    if get("shortest_edge"):
        return int(get("shortest_edge"))
    sides = [get("height"), get("width")]
    return int(min(s for s in sides if s)) if any(sides) else 224
