"""The codec backbone: MusicGen's LM loaded into our :class:`TokenLM`, and EnCodec via transformers.

A weights folder is a local Hugging Face folder (``save_pretrained`` layout), e.g. a copy of
``facebook/musicgen-small``: ``config.json`` plus ``model.safetensors`` (or shards listed in
``model.safetensors.index.json``). Nothing is downloaded and nothing is unpickled: a folder
with only ``pytorch_model.bin`` is refused.

Loading is strict. Every tensor the LM needs must be in the file with the right shape and
every ``decoder.*`` tensor in the file must be used; otherwise one :class:`MediaError`
lists all missing, unexpected and mis-shaped tensors (M2UGen's users hit silent key
mismatches that only showed up as noise).

MusicGen's decoder maps onto :class:`TokenLM` one to one: pre-norm blocks, self-attention
(q, k, v concatenated into our fused ``qkv``), cross-attention (k, v into ``kv``), GELU MLP,
sinusoidal positions, a final LayerNorm, ``vocab + 1`` input rows per codebook (the extra
row is the start/pad id ``vocab``) and one bias-free head per codebook. MusicGen
cross-attends to ``enc_to_dec_proj(T5 output)``; our memory comes already at ``d_model``
from the visual conditioner, so the projection is only returned (``MusicgenInfo``) for
callers that want text conditioning.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cuecraft.errors import MediaError, ParameterError
from cuecraft.models.backbones.hf_weights import TensorReader, mismatch_error, read_config

INSTALL_HINT = "pip install 'cuecraft[codec]'"
# MusicgenDecoderConfig's defaults (transformers), used for keys an older config.json omits.
DECODER_DEFAULTS = {"vocab_size": 2048, "max_position_embeddings": 2048, "num_hidden_layers": 24, "ffn_dim": 4096,
                    "num_attention_heads": 16, "hidden_size": 1024, "num_codebooks": 4, "audio_channels": 1,
                    "pad_token_id": 2048, "bos_token_id": 2048, "activation_function": "gelu",
                    "scale_embedding": False}


@dataclass(frozen=True)
class MusicgenInfo:
    """What a MusicGen folder says beyond the LM weights.

    ``frame_rate`` and ``sampling_rate`` are None for a decoder-only folder (no EnCodec config).
    ``enc_to_dec_proj`` maps T5 states (``text_hidden_size``) to ``d_model``; None when absent.
    """

    folder: Path
    n_codebooks: int
    vocab_size: int
    pad_id: int
    bos_id: int
    max_positions: int
    frame_rate: float | None
    sampling_rate: int | None
    text_hidden_size: int | None
    enc_to_dec_proj: nn.Linear | None = field(default=None, repr=False, compare=False)


def _decoder_config(folder: Path, config: dict) -> tuple[dict, str]:
    """The decoder sub-config and the tensor-name prefix of its weights."""
    kind = config.get("model_type")
    if kind == "musicgen":
        if not isinstance(config.get("decoder"), dict):
            raise MediaError(f"'{folder / 'config.json'}': model_type 'musicgen' without a 'decoder' section")
        return {**DECODER_DEFAULTS, **config["decoder"]}, "decoder."
    if kind == "musicgen_decoder":
        return {**DECODER_DEFAULTS, **config}, ""
    raise MediaError(f"'{folder / 'config.json'}': model_type {kind!r} is not a MusicGen model "
                     "(expected 'musicgen' or 'musicgen_decoder')")


def decoder_shape(folder: str | os.PathLike) -> dict:
    """The LM shape a MusicGen folder's config declares (no weights are read): ``d_model``,
    ``n_layers``, ``n_heads``, ``n_codebooks``, ``codebook_size``, ``max_positions``, ``ffn_dim``."""
    folder, config = read_config(folder)
    dec, _ = _decoder_config(folder, config)
    _check_supported(folder, dec)
    return dict(d_model=dec["hidden_size"], n_layers=dec["num_hidden_layers"], n_heads=dec["num_attention_heads"],
                n_codebooks=dec["num_codebooks"], codebook_size=dec["vocab_size"],
                max_positions=dec["max_position_embeddings"], ffn_dim=dec["ffn_dim"])


def _check_supported(folder: Path, dec: dict) -> None:
    path = folder / "config.json"
    for key, want in (("audio_channels", 1), ("scale_embedding", False), ("activation_function", "gelu")):
        if dec[key] != want:  # each changes the maths our LM does; refuse rather than produce noise
            raise MediaError(f"'{path}': decoder {key} = {dec[key]!r} is not supported (only {want!r})")
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "ffn_dim",
                "num_codebooks", "max_position_embeddings"):
        value = dec[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MediaError(f"'{path}': decoder {key} = {value!r} must be a positive integer")


def _expected(dec: dict, prefix: str) -> dict[str, tuple[tuple[int, ...], str | None]]:
    """HF tensor name -> (shape, our TokenLM name or None if handled separately)."""
    V, D, F = dec["vocab_size"], dec["hidden_size"], dec["ffn_dim"]
    m = prefix + "model.decoder."
    out = {}
    for k in range(dec["num_codebooks"]):
        out[f"{m}embed_tokens.{k}.weight"] = ((V + 1, D), f"embed.{k}.weight")
        out[f"{prefix}lm_heads.{k}.weight"] = ((V, D), f"heads.{k}.weight")
    for p in ("weight", "bias"):
        out[f"{m}layer_norm.{p}"] = ((D,), f"norm.{p}")
    for i in range(dec["num_hidden_layers"]):
        hf, ours = f"{m}layers.{i}.", f"blocks.{i}."
        for norm, our_norm in (("self_attn_layer_norm", "norm1"), ("encoder_attn_layer_norm", "norm_x"),
                               ("final_layer_norm", "norm2")):
            for p in ("weight", "bias"):
                out[f"{hf}{norm}.{p}"] = ((D,), f"{ours}{our_norm}.{p}")
        for proj in ("q", "k", "v"):  # concatenated below into qkv / kv
            out[f"{hf}self_attn.{proj}_proj.weight"] = ((D, D), None)
            out[f"{hf}encoder_attn.{proj}_proj.weight"] = ((D, D), f"{ours}cross.q.weight" if proj == "q" else None)
        out[f"{hf}self_attn.out_proj.weight"] = ((D, D), f"{ours}attn.out.weight")
        out[f"{hf}encoder_attn.out_proj.weight"] = ((D, D), f"{ours}cross.out.weight")
        out[f"{hf}fc1.weight"] = ((F, D), f"{ours}mlp.0.weight")
        out[f"{hf}fc2.weight"] = ((D, F), f"{ours}mlp.2.weight")
    return out


def _check_tensors(reader: TensorReader, folder: Path, dec: dict, prefix: str, expected: dict) -> None:
    """Raise one MediaError listing every missing, unexpected and mis-shaped decoder tensor."""
    from cuecraft.models.lm import sinusoidal_table

    N, D = dec["max_position_embeddings"], dec["hidden_size"]
    positions = f"{prefix}model.decoder.embed_positions.weights"  # a Parameter in older transformers
    others = ("text_encoder.", "audio_encoder.") if prefix else ()  # other components' tensors
    have = {k for k in reader.entries if not k.startswith(others)}
    missing = [k for k in expected if k not in have]
    unexpected = [k for k in have if k not in expected and k != positions]
    shapes = [f"{k} {reader.shape(k)} (expected {expected[k][0]})" for k in expected
              if k in have and reader.shape(k) != expected[k][0]]
    if positions in have and reader.shape(positions) != (N, D):
        shapes.append(f"{positions} {reader.shape(positions)} (expected {(N, D)})")
    if missing or unexpected or shapes:
        raise mismatch_error(folder, f"a MusicGen decoder with {dec['num_hidden_layers']} layers, width {D}, "
                                     f"{dec['num_codebooks']} codebooks of {dec['vocab_size']}",
                             missing, unexpected, shapes)
    if positions in have and not torch.allclose(reader.get(positions).float(), sinusoidal_table(N, D), atol=1e-4):
        raise MediaError(f"weights folder '{folder}': {positions} is not MusicGen's sinusoidal table")


def load_musicgen_lm(folder: str | os.PathLike, *, dtype: torch.dtype = torch.float32):
    """Load a MusicGen LM (HF folder) into a :class:`TokenLM`, strictly, in eval mode.

    Parameters
    ----------
    folder : path
        A ``MusicgenForConditionalGeneration`` folder (``model_type`` "musicgen", e.g. a local
        copy of facebook/musicgen-small) or a decoder-only ``MusicgenForCausalLM`` folder
        ("musicgen_decoder").
    dtype : torch.dtype
        Parameter dtype of the returned model.

    Returns
    -------
    lm : TokenLM
        ``n_codebooks`` streams, ``vocab_size`` classes, input rows ``vocab_size + 1``,
        sinusoidal positions, cross-attention to a ``[B, S, d_model]`` memory.
    info : MusicgenInfo

    Raises
    ------
    MediaError
        Missing folder, config or weights; pickle-only weights; an unsupported config; or
        tensors that do not fit (all of them listed).
    """
    from cuecraft.models.lm import TokenLM

    folder, config = read_config(folder)
    dec, prefix = _decoder_config(folder, config)
    _check_supported(folder, dec)
    V, D, N = dec["vocab_size"], dec["hidden_size"], dec["max_position_embeddings"]
    expected = _expected(dec, prefix)
    text = config.get("text_encoder") if prefix else None
    text_hidden = None
    if isinstance(text, dict):  # T5 calls its width d_model
        text_hidden = text.get("d_model", text.get("hidden_size"))
    wants_proj = bool(text_hidden) and text_hidden != D and dec.get("cross_attention_hidden_size") is None
    if wants_proj:
        expected["enc_to_dec_proj.weight"] = ((D, text_hidden), None)
        expected["enc_to_dec_proj.bias"] = ((D,), None)
    with TensorReader(folder) as reader:
        _check_tensors(reader, folder, dec, prefix, expected)
        ratio = dec["ffn_dim"] / D
        if int(ratio * D) < dec["ffn_dim"]:  # TokenLM floors mlp_ratio * d_model; step past float rounding
            ratio = math.nextafter(ratio, math.inf)
        try:
            lm = TokenLM(vocab_size=V, input_vocab_size=V + 1, d_model=D, n_layers=dec["num_hidden_layers"],
                         n_heads=dec["num_attention_heads"], n_codebooks=dec["num_codebooks"], mlp_ratio=ratio,
                         positions="sinusoidal", max_positions=N, bias=False, cross_attention=True)
        except ParameterError as exc:
            raise MediaError(f"'{folder / 'config.json'}': decoder cannot be built ({exc})") from None
        lm = lm.to(dtype)
        own = lm.state_dict()  # shares storage with the parameters: reads land in the model
        done = set()
        for key, (_, ours) in expected.items():
            if ours is not None:
                reader.read_into(key, own[ours])
                done.add(ours)
        m = prefix + "model.decoder.layers."
        for i in range(dec["num_hidden_layers"]):
            qkv, kv = own[f"blocks.{i}.attn.qkv.weight"], own[f"blocks.{i}.cross.kv.weight"]
            for j, p in enumerate(("q", "k", "v")):  # fused [3D, D]: q rows, then k, then v
                reader.read_into(f"{m}{i}.self_attn.{p}_proj.weight", qkv[j * D:(j + 1) * D])
            for j, p in enumerate(("k", "v")):  # fused [2D, D]
                reader.read_into(f"{m}{i}.encoder_attn.{p}_proj.weight", kv[j * D:(j + 1) * D])
            done.update({f"blocks.{i}.attn.qkv.weight", f"blocks.{i}.cross.kv.weight"})
        assert done == set(own), f"unmapped TokenLM tensors: {sorted(set(own) - done)}"
        proj = None
        if wants_proj:
            proj = nn.Linear(text_hidden, D).to(dtype).eval()
            reader.read_into("enc_to_dec_proj.weight", proj.weight)
            reader.read_into("enc_to_dec_proj.bias", proj.bias)
    audio = config.get("audio_encoder") if prefix else None
    sr = frame_rate = None
    if isinstance(audio, dict) and audio.get("sampling_rate") and audio.get("upsampling_ratios"):
        sr = int(audio["sampling_rate"])
        frame_rate = sr / float(np.prod(audio["upsampling_ratios"]))
    info = MusicgenInfo(folder=folder, n_codebooks=dec["num_codebooks"], vocab_size=V, pad_id=dec["pad_token_id"],
                        bos_id=dec["bos_token_id"], max_positions=N, frame_rate=frame_rate, sampling_rate=sr,
                        text_hidden_size=text_hidden, enc_to_dec_proj=proj)
    return lm.eval(), info


class EncodecCodec:
    """EnCodec (transformers ``EncodecModel``) as a mono audio <-> codes ``[K, T]`` converter.

    Build it with :meth:`from_folder`. ``sampling_rate``, ``frame_rate``, ``n_codebooks`` and
    ``codebook_size`` come from the folder's EnCodec config.
    """

    def __init__(self, model, *, bandwidth: float):
        self.model = model.eval()
        cfg = model.config
        self.sampling_rate = int(cfg.sampling_rate)
        self.frame_rate = self.sampling_rate / float(np.prod(cfg.upsampling_ratios))
        self.codebook_size = int(cfg.codebook_size)
        self.bandwidth = bandwidth
        self.n_codebooks = model.quantizer.get_num_quantizers_for_bandwidth(bandwidth)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> EncodecCodec:
        """Load from a MusicGen folder (its ``audio_encoder.*`` tensors) or an EnCodec folder
        (``model_type`` "encodec", e.g. facebook/encodec_32khz), strictly."""
        try:
            from transformers import EncodecConfig, EncodecModel
        except ImportError:
            raise MediaError(f"EnCodec needs transformers: {INSTALL_HINT}") from None
        folder, config = read_config(folder)
        if config.get("model_type") == "musicgen" and isinstance(config.get("audio_encoder"), dict):
            sub, prefix = config["audio_encoder"], "audio_encoder."
        elif config.get("model_type") == "encodec":
            sub, prefix = config, ""
        else:
            raise MediaError(f"'{folder / 'config.json'}': no EnCodec config (model_type "
                             f"{config.get('model_type')!r}, expected 'musicgen' or 'encodec')")
        if sub.get("normalize") or sub.get("chunk_length_s"):
            raise MediaError(f"'{folder / 'config.json'}': EnCodec with normalize/chunk_length_s (per-chunk "
                             "scales) is not supported; MusicGen's 32 kHz EnCodec uses neither")
        try:
            model = EncodecModel(EncodecConfig.from_dict(sub))
        except (TypeError, ValueError) as exc:
            raise MediaError(f"'{folder / 'config.json'}': EnCodec config cannot be built ({exc})") from None
        own = model.state_dict()
        with TensorReader(folder) as reader:
            cls._load(own, reader, folder, prefix)
        return cls(model, bandwidth=float(max(model.config.target_bandwidths)))

    @staticmethod
    def _load(own: dict, reader: TensorReader, folder: Path, prefix: str) -> None:
        have = {k[len(prefix):]: k for k in reader.entries if k.startswith(prefix)}  # our name -> file name
        for key in list(have):  # torch's old weight_norm names, as in checkpoints converted in 2023
            for old, new in ((".weight_g", ".parametrizations.weight.original0"),
                             (".weight_v", ".parametrizations.weight.original1")):
                if key.endswith(old) and key[:-len(old)] + new in own:
                    have[key[:-len(old)] + new] = have.pop(key)
        missing = [prefix + k for k in own if k not in have]
        unexpected = [have[k] for k in have if k not in own]
        shapes = [f"{have[k]} {reader.shape(have[k])} (expected {tuple(own[k].shape)})" for k in own
                  if k in have and reader.shape(have[k]) != tuple(own[k].shape)]
        if missing or unexpected or shapes:
            raise mismatch_error(folder, "its EnCodec config", missing, unexpected, shapes)
        for k, tensor in own.items():
            reader.read_into(have[k], tensor)

    def encode(self, audio, *, sr: int) -> torch.Tensor:
        """Codes ``[K, T]`` (int64, in ``[0, codebook_size)``) of mono ``audio`` at ``sr`` Hz.

        The audio is resampled to :attr:`sampling_rate` (polyphase, scipy) first;
        ``T = ceil(n_resampled / hop)``.
        """
        from scipy.signal import resample_poly

        if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
            raise ParameterError(f"sr must be a positive integer, got {sr!r}")
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 1 or x.size == 0:
            raise ParameterError(f"audio must be a non-empty mono 1-D array, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ParameterError("audio contains NaN or infinite samples")
        if sr != self.sampling_rate:
            g = math.gcd(int(sr), self.sampling_rate)
            x = resample_poly(x, self.sampling_rate // g, int(sr) // g).astype(np.float32)
        with torch.no_grad():
            out = self.model.encode(torch.from_numpy(x)[None, None], bandwidth=self.bandwidth)
        codes = out.audio_codes  # [chunks = 1, B = 1, K, T]
        return codes[0, 0].long()

    def decode(self, codes) -> np.ndarray:
        """Mono float32 audio at :attr:`sampling_rate` from codes ``[K, T]`` (``T / frame_rate`` seconds)."""
        c = torch.as_tensor(codes)
        if c.dim() != 2 or c.shape[0] != self.n_codebooks or c.shape[1] == 0:
            raise ParameterError(f"codes must be [{self.n_codebooks}, T>0], got shape {tuple(c.shape)}")
        if c.dtype.is_floating_point or c.dtype == torch.bool:
            raise ParameterError(f"codes must be integer, got {c.dtype}")
        if int(c.min()) < 0 or int(c.max()) >= self.codebook_size:
            bad = int(c.min()) if int(c.min()) < 0 else int(c.max())
            raise ParameterError(f"code {bad} is outside [0, {self.codebook_size})")
        with torch.no_grad():
            audio = self.model.decode(c.long()[None, None], [None]).audio_values  # [1, 1, n]
        return audio[0, 0].float().numpy().astype(np.float32, copy=False)
