"""Tiny random Hugging Face models saved with save_pretrained, shared by the codec tests."""
from __future__ import annotations

import torch

V, D, K = 64, 32, 4  # codebook size (pad / start id = V), LM width, codebooks


def build_tiny_musicgen():
    """A random ``MusicgenForConditionalGeneration``: 2-layer decoder, 4 codebooks of 64 at 50 Hz."""
    from transformers import (EncodecConfig, MusicgenConfig, MusicgenDecoderConfig,
                              MusicgenForConditionalGeneration, T5Config)
    from transformers.utils import logging

    logging.set_verbosity_error()  # HF warns that pad id 64 is outside the 64 codes; MusicGen's 2048 is too
    torch.manual_seed(0)
    config = MusicgenConfig(
        text_encoder=T5Config(vocab_size=32, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2),
        # hop 8*5*4*4 = 640 at 32 kHz -> 50 Hz; 1.2 kbps / (50 Hz * 6 bits) -> 4 codebooks of 64
        audio_encoder=EncodecConfig(sampling_rate=32000, upsampling_ratios=[8, 5, 4, 4], codebook_size=V,
                                    target_bandwidths=[1.2], hidden_size=16, num_filters=4, num_lstm_layers=1),
        decoder=MusicgenDecoderConfig(vocab_size=V, hidden_size=D, num_hidden_layers=2, num_attention_heads=2,
                                      ffn_dim=64, num_codebooks=K, pad_token_id=V, bos_token_id=V,
                                      max_position_embeddings=256))
    model = MusicgenForConditionalGeneration(config).eval()
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()  # HF starts codebooks at zero: every code would be 0
    return model


def save_tiny_musicgen(folder):
    """Save :func:`build_tiny_musicgen` to ``folder`` (safetensors) and return the model."""
    model = build_tiny_musicgen()
    model.save_pretrained(folder, safe_serialization=True)
    return model
