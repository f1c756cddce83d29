import numpy as np
import pytest
import soundfile as sf

from cuecraft.errors import MediaError, ParameterError
from cuecraft.io.audio import load_audio, write_wav


def test_wav_round_trip_and_resample(tmp_path):
    sr = 44100
    t = np.arange(sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = write_wav(tmp_path / "tone é.wav", tone, sr=sr)
    y = load_audio(path, sr=22050)
    assert y.dtype == np.float32 and abs(len(y) - 22050) <= 64
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * 22050 / len(y) - 440) < 3
    assert 0.45 < np.max(np.abs(y)) < 0.55
    assert not list(tmp_path.glob(".*part*"))


def test_load_audio_from_video_and_limit(small_video):
    y = load_audio(small_video, sr=16000, max_duration=2.0)
    assert len(y) == 32000 and np.max(np.abs(y)) > 0.001


def test_stereo(tmp_path):
    path = tmp_path / "st.wav"
    sf.write(path, np.stack([np.ones(8000) * 0.25, -np.ones(8000) * 0.25], axis=1), 8000)
    y = load_audio(path, sr=8000, mono=False)
    assert y.shape[1] == 2 and y[100, 0] > 0.2 and y[100, 1] < -0.2


@pytest.mark.parametrize("content, needle", [(None, "no such"), (b"", "empty"), (b"RIFF....WAVEjunk" * 4, "decode")])
def test_bad_audio(tmp_path, content, needle):
    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError, match=needle) as err:
        load_audio(path, sr=22050)
    assert "bad.wav" in str(err.value)


def test_write_wav_rejects_nan(tmp_path):
    with pytest.raises(ParameterError, match="NaN"):
        write_wav(tmp_path / "x.wav", np.array([0.0, np.nan]), sr=22050)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sr", [0, 22050.5, True])
def test_bad_sr(tmp_path, sr):
    with pytest.raises(ParameterError, match="sr"):
        write_wav(tmp_path / "x.wav", np.zeros(10), sr=sr)
