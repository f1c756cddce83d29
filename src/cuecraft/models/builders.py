"""The one place where configuration becomes objects (model, guidance, optimizer, schedule)."""
from __future__ import annotations

import math

import torch

from cuecraft.config import ModelConfig, TrainConfig


def build_symbolic_lm(config: ModelConfig, *, vocab_size: int) -> torch.nn.Module:
    """The symbolic backbone: a :class:`TokenLM` with control guidance, over event tokens (one
    stream) or, with ``compound``, over steps of up to four event tokens (one head per slot)."""
    from cuecraft.models.compound import SLOTS
    from cuecraft.models.guidance import ControlGuidance
    from cuecraft.models.lm import TokenLM

    guidance = ControlGuidance(d_model=config.d_model, mode=config.guidance, patch_len=config.patch_len,
                               guidance_every=config.guidance_every, p_global=config.p_drop_global,
                               p_each=config.p_drop_control)
    return TokenLM(vocab_size=vocab_size, d_model=config.d_model, n_layers=config.n_layers, n_heads=config.n_heads,
                   n_codebooks=SLOTS if config.compound else 1, mlp_ratio=float(config.mlp_ratio),
                   dropout=config.dropout, positions="rotary", max_positions=config.max_len, guidance=guidance,
                   first_conditioned=config.compound)


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, weight decay on matrices only (not norms, biases, embeddings)."""
    decay, plain = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 and "embed" not in name else plain).append(param)
    if not decay and not plain:
        from cuecraft.errors import ParameterError

        raise ParameterError("the model has no trainable parameters")
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95))


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak at ``config.steps``."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = min(1.0, (step - config.warmup) / max(1, config.steps - config.warmup))
    return config.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def resolve_codec_lm(config):
    """``config`` with its LM shape read from the config of ``lm.init_from`` (a MusicGen folder), if one
    is named; the weights are loaded once, by :func:`build_codec_model`."""
    import dataclasses

    if not config.lm.init_from:
        return config
    from cuecraft.errors import MediaError
    from cuecraft.models.backbones.codec import decoder_shape

    shape = decoder_shape(config.lm.init_from)
    ffn = shape.pop("ffn_dim")
    if ffn % shape["d_model"]:
        raise MediaError(f"'{config.lm.init_from}': ffn_dim = {ffn} is not a whole multiple of the width "
                         f"{shape['d_model']}")
    shape["mlp_ratio"] = ffn // shape["d_model"]
    return dataclasses.replace(config, lm=dataclasses.replace(config.lm, **shape))


def build_codec_model(config, *, dims, frame_rate: int, load_init: bool = True) -> torch.nn.Module:
    """The codec backbone (:class:`~cuecraft.models.v2m.VideoMusicLM`) for a ``CodecConfig``.

    Parameters
    ----------
    config : CodecConfig
        With the LM shape resolved (:func:`resolve_codec_lm`).
    dims : VisualDims
        Token sizes of the visual encoder the config names.
    frame_rate : int
        Codec frames per second.
    load_init : bool
        Copy the MusicGen weights of ``lm.init_from`` into the LM (training start only).
    """
    from cuecraft.models.conditioning import VideoConditioner
    from cuecraft.models.guidance import ControlGuidance
    from cuecraft.models.lm import TokenLM
    from cuecraft.models.v2m import VideoMusicLM

    lm_cfg, cond_cfg, guide_cfg = config.lm, config.conditioning, config.guidance
    guidance = ControlGuidance(d_model=lm_cfg.d_model, mode="cgd", patch_len=guide_cfg.patch_len,
                               guidance_every=guide_cfg.guidance_every, p_global=guide_cfg.p_drop_global,
                               p_each=guide_cfg.p_drop_control)
    ffn = lm_cfg.mlp_ratio * lm_cfg.d_model
    lm = TokenLM(vocab_size=lm_cfg.codebook_size, input_vocab_size=lm_cfg.codebook_size + 1, d_model=lm_cfg.d_model,
                 n_layers=lm_cfg.n_layers, n_heads=lm_cfg.n_heads, n_codebooks=lm_cfg.n_codebooks,
                 mlp_ratio=ffn / lm_cfg.d_model, dropout=lm_cfg.dropout, positions="sinusoidal",
                 max_positions=lm_cfg.max_positions, bias=False, cross_attention=True, guidance=guidance)
    if load_init and lm_cfg.init_from:
        from cuecraft.models.backbones.codec import load_musicgen_lm

        pretrained, _ = load_musicgen_lm(lm_cfg.init_from)
        missing, unexpected = lm.load_state_dict(pretrained.state_dict(), strict=False)
        if unexpected or any(not k.startswith("guidance.") for k in missing):
            from cuecraft.errors import MediaError

            raise MediaError(f"'{lm_cfg.init_from}': MusicGen weights do not fit the codec LM "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    conditioner = VideoConditioner(kind=cond_cfg.kind, patch_dim=dims.patch, frame_dim=dims.frame,
                                   context_dim=dims.context, d_model=lm_cfg.d_model, width=cond_cfg.width,
                                   n_heads=cond_cfg.n_heads, n_layers=cond_cfg.n_blocks, n_queries=cond_cfg.n_queries,
                                   windows=cond_cfg.windows, p_drop=cond_cfg.p_drop_condition,
                                   p_time=cond_cfg.p_drop_time)
    return VideoMusicLM(lm=lm, conditioner=conditioner, frame_rate=frame_rate, pad_id=lm_cfg.codebook_size)
