import json
import math

import numpy as np
import pytest

from cuecraft.controls.audio_emotion import (FEATURES, HAND_SET, SHIPPED, AudioFrames, EmotionMap, cqt_pitch,
                                             load_emotion_map, save_emotion_map, window_features)
from cuecraft.controls.from_midi import MODE_SCALE, mode_strength
from cuecraft.errors import MediaError


def frames(**overrides) -> AudioFrames:
    """10 s of frames at 100 Hz: quiet for the first 2 s, then at -25 dBFS, with C major chroma, pitch 72,
    a 2 kHz centroid, onsets 6 a second, beats at 120 BPM."""
    times = np.arange(0, 10, 0.01)
    quiet = times < 2.0
    chroma = np.zeros((12, len(times)))
    chroma[[0, 4, 7], :] = 1.0
    base = dict(times=times, power=np.where(quiet, 1e-12, 10 ** -2.5), chroma=chroma,
                pitch=np.full(len(times), 72.0), centroid=np.full(len(times), 2000.0), quiet=quiet,
                onsets=np.arange(2, 10, 1 / 6), beats=np.arange(2, 10, 0.5), tempo=120.0)
    base.update(overrides)
    return AudioFrames(**base)


def test_window_features_read_known_frames():
    got = dict(zip(FEATURES, window_features(frames(), np.array([6.0]), window=4.0, duration=10.0)[0]))
    assert got["voiced"] == 1.0
    triad = np.zeros(12)
    triad[[0, 4, 7]] = 1.0
    assert got["mode"] == pytest.approx(math.tanh(mode_strength(triad) / MODE_SCALE)) and got["mode"] > 0.3
    assert got["brightness"] == pytest.approx(0.0, abs=1e-9)
    assert got["register"] == pytest.approx(math.tanh(1.0))
    assert got["tempo"] == pytest.approx(math.tanh(10 / 40))
    assert got["level"] == pytest.approx(0.0, abs=0.01)  # mean power over the window: -25 dBFS
    assert got["onset_rate"] == pytest.approx(math.tanh(1.0), abs=0.03)


def test_window_features_cut_at_the_ends_and_count_quiet_frames():
    at_start = dict(zip(FEATURES, window_features(frames(), np.array([1.0]), window=4.0, duration=10.0)[0]))
    # The window is [0, 3): 2 s quiet of 3 and 1 s of sound.
    assert at_start["voiced"] == pytest.approx(1 / 3, abs=0.01)
    assert at_start["mode"] < window_features(frames(), np.array([6.0]), window=4.0, duration=10.0)[0, 0]
    assert at_start["tempo"] == pytest.approx(math.tanh(10 / 40))  # too few beats: the global tempo
    slow = frames(beats=np.arange(2, 10, 1.0))
    assert window_features(slow, np.array([6.0]), window=4.0, duration=10.0)[0, FEATURES.index("tempo")] \
        == pytest.approx(math.tanh(-50 / 40))


def test_cqt_pitch_is_the_power_weighted_bin_pitch():
    cqt = np.zeros((252, 3))
    cqt[108, 0] = 1.0            # 108 bins of a third of a semitone above C1: C4
    cqt[[108, 144], 1] = 1.0     # C4 and C5 equally
    assert cqt_pitch(cqt).tolist() == [60.0, 66.0, 60.0]  # a silent frame reads as 60


def test_map_is_linear_and_clipped():
    emotion_map = EmotionMap(weights=np.eye(2, len(FEATURES)), bias=np.array([0.1, -0.2]))
    features = np.zeros((2, len(FEATURES)))
    features[0, :2] = (0.3, 0.4)
    features[1, :2] = (5.0, -5.0)
    assert np.allclose(emotion_map(features), [[0.4, 0.2], [1.0, -1.0]])


def test_hand_set_is_the_rule_used_before():
    features = np.random.default_rng(0).uniform(-1, 1, (5, len(FEATURES)))
    f = {name: features[:, i] for i, name in enumerate(FEATURES)}
    want = np.stack([0.7 * f["mode"] + 0.3 * f["brightness"],
                     0.3 * f["tempo"] + 0.35 * f["level"] + 0.35 * f["onset_rate"]], axis=1)
    assert np.allclose(HAND_SET(features), np.clip(want, -1, 1))


def test_save_and_load_round_trip(tmp_path):
    emotion_map = EmotionMap(weights=np.arange(2 * len(FEATURES), dtype=float).reshape(2, -1) / 10,
                             bias=np.array([0.5, -0.5]))
    save_emotion_map(emotion_map, tmp_path / "map.safetensors", metadata={"note": "test"})
    loaded = load_emotion_map(tmp_path / "map.safetensors")
    assert np.array_equal(loaded.weights, emotion_map.weights) and np.array_equal(loaded.bias, emotion_map.bias)


def test_bad_maps_are_refused_naming_the_file(tmp_path):
    from safetensors.numpy import save_file

    with pytest.raises(MediaError, match="no such file"):
        load_emotion_map(tmp_path / "missing.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    with pytest.raises(MediaError, match="corrupt.safetensors.*not a readable"):
        load_emotion_map(corrupt)
    other = tmp_path / "other.safetensors"
    save_file({"weights": np.zeros((2, 3)), "bias": np.zeros(2)}, str(other),
              metadata={"features": json.dumps(["a", "b", "c"])})
    with pytest.raises(MediaError, match="other.safetensors.*features"):
        load_emotion_map(other)
    shape = tmp_path / "shape.safetensors"
    save_file({"weights": np.zeros((3, len(FEATURES))), "bias": np.zeros(2)}, str(shape),
              metadata={"features": json.dumps(FEATURES)})
    with pytest.raises(MediaError, match="shape.safetensors.*weights"):
        load_emotion_map(shape)
    nan = tmp_path / "nan.safetensors"
    save_file({"weights": np.full((2, len(FEATURES)), np.nan), "bias": np.zeros(2)}, str(nan),
              metadata={"features": json.dumps(FEATURES)})
    with pytest.raises(MediaError, match="nan.safetensors.*finite"):
        load_emotion_map(nan)


def test_the_shipped_map_loads_and_its_summary_shows_it_beats_the_hand_set_rule():
    emotion_map = load_emotion_map()
    assert emotion_map.weights.shape == (2, len(FEATURES))
    summary = json.loads((SHIPPED.parent / "summary.json").read_text())
    assert summary["features"] == list(FEATURES)
    assert np.allclose([summary["weights"]["arousal"][name] for name in FEATURES], emotion_map.weights[1], atol=1e-4)
    fitted, hand = summary["held_out"]["fitted"], summary["held_out"]["hand_set"]
    for dimension in ("valence", "arousal"):
        assert fitted[dimension]["mae"] < hand[dimension]["mae"]
        assert fitted[dimension]["r"] > hand[dimension]["r"]
