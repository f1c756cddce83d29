"""Scoring with the codec backbone: a trained checkpoint, the video's tokens, the controls -> audio.

A checkpoint folder (``cuecraft train`` with a codec config writes it) holds
``model.safetensors`` (metadata: the model config, the visual token sizes, the frame rate)
and ``codec/`` (the EnCodec folder that turns codes into audio).

**Whole videos, one piece.** A video longer than the LM's context is generated in windows
(MusicGen's ``extend_stride`` scheme): each window after the first starts from the last
``prompt_seconds`` of music already written, fed as a prompt, so key, tempo and timbre carry
over. Every window reads the video seconds and the controls under *its own* time span: the
visual tokens are sliced at the window's start and the PTAA masks shifted by the same
offset (MTCV2M reused unshifted conditions for every window).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cuecraft.errors import MediaError, ParameterError

FORMAT = "cuecraft-codec-1"
CODEC_FOLDER = "codec"
WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class CodecSampling:
    """Sampling settings of the codec backbone (MusicGen / GVMGen / MTCV2M defaults)."""

    cfg_scale: float = 3.0
    top_k: int = 250
    temperature: float = 1.0
    prompt_seconds: float = 10.0   # music carried into the next window of a long video


@dataclass(frozen=True)
class CodecCheckpoint:
    """A loaded codec checkpoint: the model (eval mode), its EnCodec, config and visual token sizes."""

    model: object        # VideoMusicLM
    codec: object        # EncodecCodec
    config: object       # CodecConfig (model parts)
    dims: object         # VisualDims the model was trained on


def load_codec_checkpoint(folder: str | os.PathLike) -> CodecCheckpoint:
    """Load a codec checkpoint folder strictly.

    Raises
    ------
    MediaError
        A missing folder or file, a file that is not a codec checkpoint, tensors that do not
        fit (all listed), or an EnCodec folder that disagrees with the model.
    """
    from cuecraft.config import CodecConfig, CodecLMConfig, ConditioningConfig, GuidanceConfig, VisualConfig
    from cuecraft.models.backbones.codec import EncodecCodec
    from cuecraft.models.builders import build_codec_model
    from cuecraft.models.visual.base import VisualDims
    from cuecraft.training.checkpoints import load_weights, read_metadata

    folder = Path(folder)
    layout = f"expected {WEIGHTS} and {CODEC_FOLDER}/ (a run folder of 'cuecraft train' with a codec config)"
    if not folder.is_dir():
        raise MediaError(f"--weights '{folder}': no such folder; {layout}")
    if not (folder / WEIGHTS).is_file() or not (folder / CODEC_FOLDER).is_dir():
        raise MediaError(f"--weights '{folder}': {layout}")
    metadata = read_metadata(folder / WEIGHTS)
    if metadata.get("format") != FORMAT:
        raise MediaError(f"'{folder / WEIGHTS}': not a codec checkpoint (format {metadata.get('format')!r}, "
                         f"expected {FORMAT!r})")
    try:
        shape = json.loads(metadata["model_config"])
        cond = dict(shape["conditioning"], windows=tuple(shape["conditioning"]["windows"]))
        config = CodecConfig(lm=CodecLMConfig(**shape["lm"]), conditioning=ConditioningConfig(**cond),
                             guidance=GuidanceConfig(**shape["guidance"]), visual=VisualConfig(**shape["visual"]))
        dims, frame_rate = VisualDims(**shape["visual_dims"]), int(shape["frame_rate"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MediaError(f"'{folder / WEIGHTS}': unusable model_config metadata ({exc})") from None
    model = build_codec_model(config, dims=dims, frame_rate=frame_rate, load_init=False)
    load_weights(folder / WEIGHTS, model, expect={"model_config": metadata["model_config"]})
    model.eval()
    codec = EncodecCodec.from_folder(folder / CODEC_FOLDER)
    lm = model.lm
    if (abs(codec.frame_rate - frame_rate) > 1e-6 or codec.n_codebooks != lm.n_codebooks
            or codec.codebook_size != lm.vocab_size):
        raise MediaError(f"'{folder / CODEC_FOLDER}': EnCodec gives {codec.n_codebooks} codebooks of "
                         f"{codec.codebook_size} at {codec.frame_rate} Hz; the model wants {lm.n_codebooks} of "
                         f"{lm.vocab_size} at {frame_rate} Hz")
    return CodecCheckpoint(model=model, codec=codec, config=config, dims=dims)


def window_plan(n_frames: int, *, max_frames: int, prompt_frames: int) -> list[tuple[int, int, int]]:
    """Windows ``(start, stop, prompt)`` in frames covering ``[0, n_frames)``.

    Each window after the first begins ``prompt`` frames before the previous one's end; its
    first ``prompt`` frames are the music already written (a prompt, not regenerated).
    """
    if max_frames < 2 or not 0 <= prompt_frames < max_frames:
        raise ParameterError(f"windows of {max_frames} frames with a {prompt_frames}-frame prompt cannot advance")
    windows, start = [], 0
    while True:
        stop = min(n_frames, start + max_frames)
        windows.append((start, stop, 0 if start == 0 else prompt_frames))
        if stop >= n_frames:
            return windows
        start = stop - prompt_frames


@torch.no_grad()
def compose_codec(model, codec, features, controls, *, duration: float, seed: int,
                  sampling: CodecSampling = CodecSampling(), progress=None) -> np.ndarray:
    """Mono audio at ``codec.sampling_rate`` for ``duration`` seconds of video.

    Parameters
    ----------
    model : VideoMusicLM
    codec : EncodecCodec
    features : VisualFeatures of the video (one token per second)
    controls : Controls (any subset); sampled at every codec frame
    progress : callable ``(done, total)`` over frames, or None
    """
    from cuecraft.controls.features import features_at
    from cuecraft.generate.codec import generate_codes
    from cuecraft.models.attention import aligned_seconds

    lm, rate, K = model.lm, model.frame_rate, model.lm.n_codebooks
    n_frames = max(1, math.ceil(duration * rate - 1e-9))
    n_prefix = 1 if model.conditioner.kind == "mtcv2m" else 0
    max_frames = lm.max_positions - n_prefix - (K - 1)
    prompt = min(int(round(sampling.prompt_seconds * rate)), max_frames // 2)
    feats, presence = features_at(controls, np.arange(n_frames) / rate)
    feats_t, presence_t = torch.as_tensor(feats)[None], torch.as_tensor(presence)[None]
    S = features.seconds
    codes = torch.zeros(K, n_frames, dtype=torch.long)
    windows = window_plan(n_frames, max_frames=max_frames, prompt_frames=prompt)
    done = 0
    for index, (start, stop, carried) in enumerate(windows):
        first, last, offset = aligned_seconds(start_time=start / rate, duration=(stop - start) / rate, n_seconds=S)
        cond = model.conditioner(features.patch[None, first:last], features.frame[None, first:last],
                                 features.context[None, first:last])
        null = model.conditioner.null(1, last - first)
        n = stop - start
        masks = model.masks(cond, n_steps=n + K - 1, time_offset=offset)

        def report(step, total, _base=done, _n=n - carried):
            if progress is not None:
                progress(min(_base + int(step / total * _n), n_frames), n_frames)

        window_codes = generate_codes(
            lm, n_frames=n, memory=cond.memory, prefix=cond.prefix, memory_mask=masks,
            controls=feats_t[:, start:stop], presence=presence_t, uncond_memory=null.memory,
            uncond_prefix=null.prefix, cfg_scale=sampling.cfg_scale, top_k=sampling.top_k,
            temperature=sampling.temperature, seed=seed + index,
            prompt=codes[:, start:start + carried] if carried else None, progress=report)
        codes[:, start:stop] = window_codes
        done += n - carried
    audio = codec.decode(codes)
    want = int(round(duration * codec.sampling_rate))
    if len(audio) < want:
        audio = np.pad(audio, (0, want - len(audio)))
    return np.asarray(audio[:want], dtype=np.float32)
