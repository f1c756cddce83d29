"""Codec backbone decoding: KV-cached sampling of EnCodec codes over MusicGen's delay pattern.

At step ``s`` the LM reads one column of the delayed sequence (a start column first) and
predicts column ``s``: codebook ``k`` of frame ``s - k``. Cells outside the clip are forced
to the pad id, exactly where ``models.patterns.valid_mask`` says, so the model always sees
the layout it was trained on. After ``n_frames + K - 1`` steps the delayed codes are
undelayed to ``[K, n_frames]``.

Classifier-free guidance runs one forward over a doubled batch: row 0 conditional, row 1
unconditional (``uncond_memory`` / ``uncond_prefix`` from the caller, zeros by default,
controls with all presence 0). The doubled inputs are built once, so the cross-attention
keys/values of the memory are computed once and kept in the cache.
"""
from __future__ import annotations

import math

import torch

from cuecraft.errors import ParameterError
from cuecraft.models.patterns import undelay, valid_mask


def sample_top_k(logits: torch.Tensor, *, top_k: int, temperature: float,
                 generator: torch.Generator) -> torch.Tensor:
    """One id per row of ``logits`` ``[N, V]``: ``[N]``. ``top_k`` 1 is the argmax, 0 keeps all."""
    if top_k == 1:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # [N, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _batch1(x: torch.Tensor | None, name: str, d_model: int) -> torch.Tensor | None:
    """``x`` as ``[1, L, D]`` (a ``[L, D]`` tensor gets the batch axis)."""
    if x is None:
        return None
    if not isinstance(x, torch.Tensor):
        raise ParameterError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3 or x.shape[0] != 1 or x.shape[2] != d_model:
        raise ParameterError(f"{name} must be [1, L, {d_model}] or [L, {d_model}], got {tuple(x.shape)}")
    return x


def _pair(cond: torch.Tensor | None, uncond: torch.Tensor | None, name: str) -> torch.Tensor | None:
    """Conditional and unconditional rows stacked ``[2, L, D]`` (unconditional: zeros if not given)."""
    if cond is None:
        return None
    if uncond is None:
        uncond = torch.zeros_like(cond)
    if uncond.shape != cond.shape:
        raise ParameterError(f"uncond_{name} must have the shape of {name} {tuple(cond.shape)}, "
                             f"got {tuple(uncond.shape)}")
    return torch.cat([cond, uncond.to(cond.dtype)])


def _double_mask(mask):
    """A memory mask (or per-layer list) for the doubled batch; masks without batch rows broadcast."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        return [_double_mask(m) for m in mask]
    return torch.cat([mask, mask]) if mask.dim() == 4 and mask.shape[0] == 1 else mask


def _check_prompt(prompt, *, K: int, V: int, n_frames: int) -> int:
    """Frames in ``prompt`` (0 if None), after checking it is ``[K, P < n_frames]`` codes in ``[0, V)``."""
    if prompt is None:
        return 0
    if not isinstance(prompt, torch.Tensor) or prompt.dim() != 2 or prompt.shape[0] != K:
        shape = tuple(prompt.shape) if isinstance(prompt, torch.Tensor) else type(prompt).__name__
        raise ParameterError(f"prompt must be a [{K}, P] tensor of codes, got {shape}")
    if prompt.dtype.is_floating_point or prompt.dtype == torch.bool:
        raise ParameterError(f"prompt must hold integer codes, got {prompt.dtype}")
    if prompt.shape[1] >= n_frames:
        raise ParameterError(f"prompt has {prompt.shape[1]} frames; it must be shorter than n_frames = {n_frames}")
    if prompt.numel() and (int(prompt.min()) < 0 or int(prompt.max()) >= V):
        bad = int(prompt.min()) if int(prompt.min()) < 0 else int(prompt.max())
        raise ParameterError(f"prompt code {bad} is outside [0, {V})")
    return int(prompt.shape[1])


@torch.no_grad()
def generate_codes(lm, *, n_frames: int, memory: torch.Tensor | None = None, prefix: torch.Tensor | None = None,
                   memory_mask=None, controls: torch.Tensor | None = None, presence: torch.Tensor | None = None,
                   uncond_memory: torch.Tensor | None = None, uncond_prefix: torch.Tensor | None = None,
                   cfg_scale: float = 3.0, top_k: int = 250, temperature: float = 1.0, seed: int = 0,
                   pad_id: int | None = None, start_id: int | None = None, prompt: torch.Tensor | None = None,
                   progress=False) -> torch.Tensor:
    """Sample ``n_frames`` frames of codes from a codec :class:`TokenLM`.

    Parameters
    ----------
    lm : TokenLM
        With ``n_codebooks`` streams; its ``input_vocab_size`` must hold the pad id.
    n_frames : int
        Frames to generate (EnCodec 32 kHz: 50 per second).
    memory : Tensor ``[1, S, D]`` or ``[S, D]``, optional
        Cross-attention memory (e.g. the visual tokens).
    prefix : Tensor ``[1, P, D]`` or ``[P, D]``, optional
        Embeddings placed before the first step (e.g. a global video token).
    memory_mask : Tensor or per-layer sequence, optional
        As :meth:`TokenLM.forward`; rows are absolute positions, prefix included (``P + n_frames + K - 1``).
    controls : Tensor ``[1, n_frames + K - 1, C]`` or ``[1, n_frames, C]``, optional
        Per-step control features (needs ``lm.guidance``); step ``s`` predicts frame ``s`` of
        codebook 0. A per-frame series is held at its last value for the final ``K - 1`` steps.
    presence : Tensor ``[1, n_controls]``, optional
        Which controls are given (default: all, when ``controls`` is given).
    uncond_memory, uncond_prefix : Tensor, optional
        The unconditional branch's memory / prefix for CFG (default: zeros of the same shape).
    cfg_scale : float
        Guidance scale; 1 decodes the conditional branch alone (one forward per step).
    top_k : int
        Sample among the ``top_k`` most likely codes (0: all; 1: greedy).
    temperature : float
        Softmax temperature (> 0).
    seed : int
        Seed of the sampler; the same seed gives the same codes.
    pad_id, start_id : int, optional
        Id forced into delay-pattern pads, and of the start column (default: ``lm.vocab_size``,
        MusicGen's 2048 for both).
    prompt : LongTensor ``[K, P]``, optional
        Codes of the first ``P < n_frames`` frames, kept as they are (a window continued from
        music already written). The steps they fill completely are fed in one forward.
    progress : bool or callable
        True shows a progress bar; a callable is called as ``progress(done, total)`` over the
        sampled steps.

    Returns
    -------
    codes : LongTensor ``[K, n_frames]``, each in ``[0, lm.vocab_size)``; ``prompt`` first.
    """
    K, V, D = lm.n_codebooks, lm.vocab_size, lm.d_model
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
        raise ParameterError(f"n_frames must be a positive integer, got {n_frames!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ParameterError(f"top_k must be an integer >= 0, got {top_k!r}")
    if not (isinstance(temperature, (int, float)) and temperature > 0 and math.isfinite(temperature)):
        raise ParameterError(f"temperature must be a finite number > 0, got {temperature!r}")
    if not (isinstance(cfg_scale, (int, float)) and math.isfinite(cfg_scale)):
        raise ParameterError(f"cfg_scale must be a finite number, got {cfg_scale!r}")
    pad_id = V if pad_id is None else pad_id
    start_id = pad_id if start_id is None else start_id
    for name, value in (("pad_id", pad_id), ("start_id", start_id)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < lm.input_vocab_size:
            raise ParameterError(f"{name} = {value!r} is outside the LM's input ids [0, {lm.input_vocab_size})")
    n_prompt = _check_prompt(prompt, K=K, V=V, n_frames=n_frames)
    memory, prefix = _batch1(memory, "memory", D), _batch1(prefix, "prefix", D)
    uncond_memory = _batch1(uncond_memory, "uncond_memory", D)
    uncond_prefix = _batch1(uncond_prefix, "uncond_prefix", D)
    for name, cond, uncond in (("memory", memory, uncond_memory), ("prefix", prefix, uncond_prefix)):
        if uncond is not None and cond is None:
            raise ParameterError(f"uncond_{name} given without {name}")
    steps = n_frames + K - 1
    n_prefix = 0 if prefix is None else prefix.shape[1]
    if lm.positions != "rotary" and n_prefix + steps > lm.max_positions:
        raise ParameterError(f"n_frames = {n_frames} needs {n_prefix + steps} positions (prefix and {K - 1} delay "
                             f"steps included), more than the LM's max_positions = {lm.max_positions}")
    if controls is not None:
        if controls.dim() != 3 or controls.shape[0] != 1 or controls.shape[1] not in (n_frames, steps):
            raise ParameterError(f"controls must be [1, {steps} or {n_frames}, C], got {tuple(controls.shape)}")
        if controls.shape[1] == n_frames and steps > n_frames:
            controls = torch.cat([controls, controls[:, -1:].expand(-1, steps - n_frames, -1)], dim=1)
        if presence is None and lm.guidance is not None:
            presence = controls.new_ones(1, lm.guidance.n_controls)
    guided = cfg_scale != 1.0 and (memory is not None or prefix is not None or controls is not None)
    if guided:
        memory, prefix = _pair(memory, uncond_memory, "memory"), _pair(prefix, uncond_prefix, "prefix")
        memory_mask = _double_mask(memory_mask)
        if controls is not None:
            controls = torch.cat([controls, controls])  # [2, steps, C]
            presence = torch.cat([presence, torch.zeros_like(presence)])  # unconditional: no control present
    B = 2 if guided else 1
    generator = torch.Generator().manual_seed(int(seed))
    valid = valid_mask(K, n_frames)  # [K, steps]
    delayed = torch.full((1, K, steps), pad_id, dtype=torch.long)
    fixed = torch.zeros(K, steps, dtype=torch.bool)  # cells the prompt fills
    for k in range(K if n_prompt else 0):
        delayed[0, k, k:k + n_prompt] = prompt[k].long()
        fixed[k, k:k + n_prompt] = True
    # Steps 0 .. P are all known (start column, then columns the prompt fills or pads): one forward.
    inputs = torch.cat([torch.full((1, K, 1), start_id, dtype=torch.long), delayed[:, :, :n_prompt]], dim=2)
    cache = lm.new_cache(B, n_prefix + steps)
    total = steps - n_prompt
    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="step", desc="codec decoding")
    was_training = lm.training
    lm.eval()  # dropout, and attribute dropout of controls, must never act while decoding
    try:
        for s in range(n_prompt, steps):  # inputs hold the steps first .. s; sample column s
            first = s - inputs.shape[2] + 1
            logits, _ = lm(inputs.expand(B, -1, -1), memory=memory, memory_mask=memory_mask,
                           prefix=prefix if first == 0 else None,
                           controls=None if controls is None else controls[:, first:s + 1], presence=presence,
                           cache=cache)
            logits = logits[:, :, -1]  # [B, K, V]
            if guided:
                logits = logits[1:] + cfg_scale * (logits[:1] - logits[1:])  # [1, K, V]
            codes = sample_top_k(logits[0], top_k=top_k, temperature=temperature, generator=generator)  # [K]
            codes = torch.where(valid[:, s], codes, torch.full_like(codes, pad_id))
            codes = torch.where(fixed[:, s], delayed[0, :, s], codes)
            delayed[0, :, s] = codes
            inputs = codes.view(1, K, 1)
            if bar is not None:
                bar.update(1)
            elif callable(progress):
                progress(s + 1 - n_prompt, total)
    finally:
        lm.train(was_training)
        if bar is not None:
            bar.close()
    return undelay(delayed)[0]  # [K, n_frames]
