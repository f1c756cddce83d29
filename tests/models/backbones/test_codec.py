"""Codec backbone: a tiny random HF MusicGen saved with save_pretrained and loaded through our code.

Our TokenLM's logits must equal HF's (full sequence and KV-cached), mismatched folders must
fail with every problem listed, EnCodec must round-trip, and generate_codes must follow the
delay pattern, guidance and seeds exactly (greedy decoding equals HF's own generate).
"""
from __future__ import annotations

import inspect
import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from cuecraft.errors import MediaError, ParameterError
from cuecraft.generate.codec import generate_codes
from cuecraft.models.backbones.codec import EncodecCodec, load_musicgen_lm
from cuecraft.models.lm import TokenLM, sinusoidal_table
from cuecraft.models.patterns import lm_inputs

from tiny_models import D, K, V
from tiny_models import build_tiny_musicgen as build_hf

DEC = "decoder.model.decoder."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = build_hf()
    folder = tmp_path_factory.mktemp("codec") / "tiny musicgen"
    model.save_pretrained(folder, safe_serialization=True)
    lm, info = load_musicgen_lm(folder)
    return model, folder, lm, info


def rewrite(src, dst, edit):
    """Copy a folder's config and weights, with ``edit(tensors)`` applied to the weights."""
    from safetensors.torch import load_file, save_file

    dst.mkdir()
    shutil.copy(src / "config.json", dst / "config.json")
    tensors = load_file(str(src / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def hf_logits(decoder, ids, memory):
    B, _, T = ids.shape
    with torch.no_grad():
        return decoder(input_ids=ids.reshape(B * K, T), encoder_hidden_states=memory).logits.reshape(B, K, T, V)


def test_logits_match_hf_full_and_cached(tiny):
    model, _, lm, _ = tiny
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V + 1, (2, K, 9), generator=g)  # the start/pad id included
    memory = torch.randn(2, 5, D, generator=g)
    want = hf_logits(model.decoder, ids, memory)
    with torch.no_grad():
        assert torch.allclose(lm(ids, memory=memory), want, atol=1e-4)
        cache = lm.new_cache(2, 9)
        steps = [lm.step(ids[:, :, t:t + 1], cache=cache, memory=memory) for t in range(9)]
        assert torch.allclose(torch.cat(steps, dim=2), want, atol=1e-4)
        cache = lm.new_cache(2, 9)
        chunks = [lm.step(ids[:, :, :4], cache=cache, memory=memory),
                  lm.step(ids[:, :, 4:], cache=cache, memory=memory)]
        assert torch.allclose(torch.cat(chunks, dim=2), want, atol=1e-4)


def test_text_path_through_enc_to_dec_proj(tiny):
    model, _, lm, info = tiny
    text = torch.tensor([[3, 7, 1], [5, 2, 1]])
    ids = torch.randint(0, V, (2, K, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model(input_ids=text, decoder_input_ids=ids.reshape(2 * K, 6)).logits.reshape(2, K, 6, V)
        memory = info.enc_to_dec_proj(model.text_encoder(input_ids=text).last_hidden_state)  # [2, 3, D]
        assert torch.allclose(lm(ids, memory=memory), want, atol=1e-4)


def test_info(tiny):
    _, folder, lm, info = tiny
    assert (info.n_codebooks, info.vocab_size, info.pad_id, info.bos_id) == (K, V, V, V)
    assert (info.sampling_rate, info.frame_rate, info.max_positions, info.text_hidden_size) == (32000, 50.0, 256, 16)
    assert info.folder == folder
    assert (lm.n_codebooks, lm.vocab_size, lm.input_vocab_size, lm.positions) == (K, V, V + 1, "sinusoidal")
    assert not lm.training
    wide, _ = load_musicgen_lm(folder, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in wide.parameters())
    assert torch.equal(wide.heads[0].weight, lm.heads[0].weight.double())


def test_decoder_only_and_sharded_folders(tiny, tmp_path):
    model, _, _, _ = tiny
    ids = torch.randint(0, V + 1, (1, K, 7), generator=torch.Generator().manual_seed(3))
    memory = torch.randn(1, 4, D)
    want = hf_logits(model.decoder, ids, memory)
    model.decoder.save_pretrained(tmp_path / "decoder only", safe_serialization=True)
    lm, info = load_musicgen_lm(tmp_path / "decoder only")
    assert info.frame_rate is None and info.enc_to_dec_proj is None
    with torch.no_grad():
        assert torch.allclose(lm(ids, memory=memory), want, atol=1e-4)
    model.save_pretrained(tmp_path / "sharded", safe_serialization=True, max_shard_size="40KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    lm, _ = load_musicgen_lm(tmp_path / "sharded")
    with torch.no_grad():
        assert torch.allclose(lm(ids, memory=memory), want, atol=1e-4)


def test_mismatches_are_listed_together(tiny, tmp_path):
    _, folder, _, _ = tiny

    def edit(t):
        t[f"{DEC}layers.1.fc_1.weight"] = t.pop(f"{DEC}layers.1.fc1.weight")  # renamed
        del t["decoder.lm_heads.2.weight"]  # missing
        t[f"{DEC}layers.0.self_attn.q_proj.weight"] = torch.zeros(D, D - 1)  # wrong shape

    bad = rewrite(folder, tmp_path / "bad", edit)
    with pytest.raises(MediaError) as err:
        load_musicgen_lm(bad)
    msg = str(err.value)
    assert str(bad) in msg
    for part in ("2 missing", f"{DEC}layers.1.fc1.weight", "decoder.lm_heads.2.weight",
                 "1 unexpected", f"{DEC}layers.1.fc_1.weight",
                 "1 wrong shape", f"{DEC}layers.0.self_attn.q_proj.weight (32, 31) (expected (32, 32))"):
        assert part in msg


def test_many_mismatches_are_counted(tiny, tmp_path):
    _, folder, _, _ = tiny
    bad = rewrite(folder, tmp_path / "bad", lambda t: [t.pop(k) for k in list(t) if k.startswith(DEC + "layers")])
    with pytest.raises(MediaError, match=r"32 missing: .*\(\+24 more\)"):
        load_musicgen_lm(bad)


def test_legacy_position_table(tiny, tmp_path):
    _, folder, _, _ = tiny
    key = DEC + "embed_positions.weights"
    good = rewrite(folder, tmp_path / "good", lambda t: t.update({key: sinusoidal_table(256, D)}))
    load_musicgen_lm(good)
    bad = rewrite(folder, tmp_path / "bad", lambda t: t.update({key: torch.randn(256, D)}))
    with pytest.raises(MediaError, match="sinusoidal"):
        load_musicgen_lm(bad)


def test_half_precision_file_and_corrupt_file(tiny, tmp_path):
    model, folder, _, _ = tiny
    half = rewrite(folder, tmp_path / "half", lambda t: t.update({k: v.half() for k, v in t.items()
                                                                  if k.startswith("decoder.")}))
    lm, _ = load_musicgen_lm(half)  # read as float16, cast into the float32 model
    want = model.decoder.lm_heads[1].weight.detach().half().float()
    assert lm.heads[1].weight.dtype == torch.float32 and torch.equal(lm.heads[1].weight, want)
    qkv = lm.blocks[1].attn.qkv.weight  # the fused rows: q, then k, then v
    k_proj = model.decoder.model.decoder.layers[1].self_attn.k_proj.weight.detach()
    assert torch.equal(qkv[D:2 * D], k_proj.half().float())
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="bad data offsets"):
        load_musicgen_lm(broken)
    (broken / "model.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(MediaError, match="not a readable safetensors file"):
        load_musicgen_lm(broken)


def test_unusable_folders(tiny, tmp_path):
    _, folder, _, _ = tiny
    with pytest.raises(MediaError, match="no such directory"):
        load_musicgen_lm(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MediaError, match="no config.json"):
        load_musicgen_lm(tmp_path / "empty")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(folder / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"never read")
    with pytest.raises(MediaError, match="never unpickles"):
        load_musicgen_lm(pickled)
    with pytest.raises(MediaError, match="never unpickles"):
        EncodecCodec.from_folder(pickled)
    for name, change in (("bert", {"model_type": "bert"}), ("stereo", {"decoder": "audio_channels"})):
        other = tmp_path / name
        shutil.copytree(folder, other)
        config = json.loads((other / "config.json").read_text())
        if "decoder" in change:
            config["decoder"]["audio_channels"] = 2
        else:
            config.update(change)
        (other / "config.json").write_text(json.dumps(config))
        with pytest.raises(MediaError, match="model_type 'bert'" if name == "bert" else "audio_channels = 2"):
            load_musicgen_lm(other)


def test_encodec_round_trip(tiny, tmp_path):
    model, folder, _, _ = tiny
    codec = EncodecCodec.from_folder(folder)
    assert (codec.sampling_rate, codec.frame_rate, codec.n_codebooks, codec.codebook_size) == (32000, 50.0, K, V)
    t = np.arange(32000) / 32000
    noise = np.random.default_rng(0).standard_normal(32000)
    audio = (0.5 * np.sin(2 * np.pi * 220 * t) + 0.1 * noise).astype(np.float32)
    codes = codec.encode(audio, sr=32000)
    assert codes.shape == (K, 50) and codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < V and len(codes.unique()) > 1
    with torch.no_grad():
        want = model.audio_encoder.encode(torch.from_numpy(audio)[None, None], bandwidth=1.2).audio_codes[0, 0]
    assert torch.equal(codes, want)
    resampled = codec.encode(audio[::2].copy(), sr=16000)  # 1 s at another rate -> same frame count
    assert resampled.shape == (K, 50)
    out = codec.decode(codes)
    assert out.dtype == np.float32 and out.shape == (32000,) and np.isfinite(out).all()
    with pytest.raises(ParameterError, match="mono"):
        codec.encode(audio[None], sr=32000)
    with pytest.raises(ParameterError, match="sr"):
        codec.encode(audio, sr=0)
    with pytest.raises(ParameterError, match="outside"):
        codec.decode(torch.full((K, 3), V))
    # a separate EnCodec folder, and torch's old weight_norm tensor names, load to the same codec
    model.audio_encoder.save_pretrained(tmp_path / "encodec", safe_serialization=True)
    assert torch.equal(EncodecCodec.from_folder(tmp_path / "encodec").encode(audio, sr=32000), codes)

    def legacy(t):
        for key in [k for k in t if ".parametrizations.weight.original" in k]:
            old = ".weight_g" if key.endswith("0") else ".weight_v"
            t[key.replace(".parametrizations.weight.original" + key[-1], old)] = t.pop(key)

    old = EncodecCodec.from_folder(rewrite(folder, tmp_path / "legacy", legacy))
    assert np.array_equal(old.decode(codes), out)


def test_delay_pattern_agrees_with_hf(tiny):
    model, _, _, _ = tiny
    codes = torch.randint(0, V, (1, K, 5), generator=torch.Generator().manual_seed(4))
    inputs, targets = lm_inputs(codes, pad_id=V, start_id=V)
    # HF lays a prompt of the start column out over max_length = T + K steps with -1 where codes go
    _, pattern = model.decoder.build_delay_pattern_mask(torch.full((K, 1), V), pad_token_id=V, max_length=5 + K)
    pattern = pattern.reshape(1, K, 5 + K)
    assert torch.equal(pattern[:, :, :1], inputs[:, :, :1])
    assert torch.equal(pattern[:, :, 1:] == -1, targets != -100)


def manual_greedy(lm, memory, n_frames, scale):
    """Greedy CFG decoding through the full forward (no cache), pads by the delay rule."""
    seq = torch.full((1, K, 1), V)
    pair = torch.cat([memory, torch.zeros_like(memory)])
    with torch.no_grad():
        for s in range(n_frames + K - 1):
            logits = lm(seq.expand(2, -1, -1), memory=pair)[:, :, -1]  # [2, K, V]
            codes = (logits[1] + scale * (logits[0] - logits[1])).argmax(-1)
            codes = torch.tensor([int(c) if 0 <= s - k < n_frames else V for k, c in enumerate(codes)])
            seq = torch.cat([seq, codes.view(1, K, 1)], dim=2)
    return torch.stack([seq[0, k, 1 + k:1 + k + n_frames] for k in range(K)])


def test_generate_defaults_shape_range_and_seed(tiny):
    _, _, lm, _ = tiny
    params = inspect.signature(generate_codes).parameters
    assert (params["cfg_scale"].default, params["top_k"].default) == (3.0, 250)
    memory = torch.randn(1, 5, D, generator=torch.Generator().manual_seed(5))
    a = generate_codes(lm, n_frames=12, memory=memory, seed=7)
    assert a.shape == (K, 12) and a.dtype == torch.int64
    assert 0 <= int(a.min()) and int(a.max()) < V
    assert torch.equal(a, generate_codes(lm, n_frames=12, memory=memory, seed=7))
    assert not torch.equal(a, generate_codes(lm, n_frames=12, memory=memory, seed=8))


def test_greedy_equals_full_forward_and_hf_generate(tiny):
    from transformers import DynamicCache, EncoderDecoderCache

    model, _, lm, _ = tiny
    memory = torch.randn(1, 5, D, generator=torch.Generator().manual_seed(6))
    ours = generate_codes(lm, n_frames=10, memory=memory, top_k=1, cfg_scale=3.0)
    assert torch.equal(ours, manual_greedy(lm, memory, 10, 3.0))
    # HF's CausalLM.generate keeps self- and cross-attention keys in one DynamicCache unless
    # given an EncoderDecoderCache; the start column must not be masked out as padding either.
    with torch.no_grad():
        hf = model.decoder.generate(input_ids=torch.full((K, 1), V), attention_mask=torch.ones(K, 1, dtype=torch.long),
                                    encoder_hidden_states=torch.cat([memory, torch.zeros_like(memory)]),
                                    cache=EncoderDecoderCache(DynamicCache(), DynamicCache()), do_sample=False,
                                    guidance_scale=3.0, max_length=10 + K, decoder_start_token_id=V, pad_token_id=V,
                                    bos_token_id=V, num_return_sequences=1)
    assert torch.equal(hf[0], ours)
    cond_only = generate_codes(lm, n_frames=10, memory=memory, uncond_memory=torch.ones_like(memory), top_k=1,
                               cfg_scale=1.0)
    assert torch.equal(cond_only, manual_greedy(lm, memory, 10, 1.0))
    assert not torch.equal(cond_only, ours)


def test_generate_continues_a_prompt(tiny):
    _, _, lm, _ = tiny
    memory = torch.randn(1, 5, D, generator=torch.Generator().manual_seed(9))
    full = generate_codes(lm, n_frames=12, memory=memory, top_k=1)
    # greedy from the first 5 frames (fed in one forward) must continue exactly as the full decode
    calls = []
    again = generate_codes(lm, n_frames=12, memory=memory, top_k=1, prompt=full[:, :5],
                           progress=lambda done, total: calls.append((done, total)))
    assert torch.equal(again, full)
    assert calls[-1] == (12 + K - 1 - 5,) * 2
    prompt = torch.randint(0, V, (K, 4), generator=torch.Generator().manual_seed(10))
    sampled = generate_codes(lm, n_frames=9, memory=memory, prompt=prompt, seed=2)
    assert torch.equal(sampled[:, :4], prompt) and int(sampled.max()) < V
    for bad, match in ((prompt[:3], r"\[4, P\]"), (prompt.float(), "integer"), (full, "shorter"),
                       (torch.full((K, 2), V), "outside")):
        with pytest.raises(ParameterError, match=match):
            generate_codes(lm, n_frames=9, memory=memory, prompt=bad)


def test_generate_with_prefix_and_controls():
    from cuecraft.models.guidance import ControlGuidance

    torch.manual_seed(0)
    lm = TokenLM(vocab_size=16, input_vocab_size=17, d_model=32, n_layers=2, n_heads=2, n_codebooks=K,
                 positions="sinusoidal", max_positions=64, cross_attention=True,
                 guidance=ControlGuidance(d_model=32, mode="concat")).eval()
    with torch.no_grad():  # larger than the init's std 0.02, so the prefix and controls move the argmax
        for p in lm.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    prefix = torch.randn(1, 1, 32)
    base = generate_codes(lm, n_frames=8, prefix=prefix, top_k=1)  # greedy: sensitive to any change
    assert base.shape == (K, 8) and int(base.max()) < 16
    assert not torch.equal(base, generate_codes(lm, n_frames=8, prefix=prefix, uncond_prefix=-prefix, top_k=1))
    controls = torch.randn(1, 8, lm.guidance.n_features)  # per frame; held for the K - 1 extra steps
    steered = generate_codes(lm, n_frames=8, prefix=prefix, controls=controls, top_k=1)
    assert steered.shape == (K, 8) and not torch.equal(steered, base)
    # MTCV2M's bug: attribute dropout at inference. A model left in training mode decodes as in eval
    calls = []
    lm.train()
    again = generate_codes(lm, n_frames=8, prefix=prefix, controls=controls, top_k=1,
                           progress=lambda done, total: calls.append((done, total)))
    assert torch.equal(again, steered) and lm.training
    assert calls[-1] == (8 + K - 1, 8 + K - 1) and len(calls) == 8 + K - 1
    with pytest.raises(ParameterError, match="positions"):
        generate_codes(lm, n_frames=62, prefix=prefix)  # 1 + 62 + 3 > 64


def test_generate_bad_arguments(tiny):
    _, _, lm, _ = tiny
    memory = torch.zeros(1, 3, D)
    for kwargs, match in (({"n_frames": 0}, "n_frames"), ({"n_frames": 4, "temperature": 0}, "temperature"),
                          ({"n_frames": 4, "top_k": -1}, "top_k"), ({"n_frames": 300}, "max_positions"),
                          ({"n_frames": 4, "memory": torch.zeros(1, 3, D + 1)}, "memory must be"),
                          ({"n_frames": 4, "uncond_memory": memory}, "without memory"),
                          ({"n_frames": 4, "memory": memory, "uncond_memory": torch.zeros(1, 2, D)}, "shape"),
                          ({"n_frames": 4, "pad_id": V + 1}, "pad_id")):
        with pytest.raises(ParameterError, match=match):
            generate_codes(lm, **kwargs)
