import av
import numpy as np

from cuecraft.io.audio import load_audio
from cuecraft.io.mux import mux_music
from cuecraft.io.video import probe


def _packets(path, kind):
    with av.open(str(path)) as c:
        stream = getattr(c.streams, kind)[0]
        return [bytes(p) for p in c.demux(stream) if p.size]


def _tone(sr, seconds, freq=1000.0, amp=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_video_stream_copied_and_audio_replaced(small_video, tmp_path):
    sr = 44100
    before = small_video.read_bytes()
    out = mux_music(small_video, _tone(sr, 6.0), tmp_path / "out.mp4", sr=sr)
    assert small_video.read_bytes() == before  # input untouched
    assert _packets(out, "video") == _packets(small_video, "video")  # copied bit for bit, not re-encoded
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams].count("audio") == 1
        assert c.streams.audio[0].codec_context.name == "aac"
    y = load_audio(out, sr=sr)
    spectrum = np.abs(np.fft.rfft(y[sr:3 * sr]))
    assert abs(np.argmax(spectrum) * sr / (2 * sr) - 1000) < 5  # our tone, not the original's
    assert abs(probe(out).duration - probe(small_video).duration) < 0.05
    assert not list(tmp_path.glob(".*part*"))


def test_keep_audio_mixes_original(small_video, tmp_path):
    sr = 44100
    original = load_audio(small_video, sr=sr)
    silent = np.zeros(int(6.0 * sr), np.float32)
    replaced = load_audio(mux_music(small_video, silent, tmp_path / "a.mp4", sr=sr), sr=sr)
    kept = load_audio(mux_music(small_video, silent, tmp_path / "b.mp4", sr=sr, keep_audio=True), sr=sr)
    assert np.sqrt(np.mean(replaced[sr:-sr] ** 2)) < 1e-3
    rms_kept, rms_orig = np.sqrt(np.mean(kept[sr:-sr] ** 2)), np.sqrt(np.mean(original[sr:-sr] ** 2))
    assert rms_orig > 1e-3 and 0.5 * rms_orig < rms_kept < 1.2 * rms_orig


def test_music_streamed_from_wav_file(small_video, tmp_path):
    from cuecraft.io.audio import write_wav

    sr = 44100
    wav = write_wav(tmp_path / "music.wav", _tone(sr, 6.0, freq=500.0), sr=sr)
    out = mux_music(small_video, wav, tmp_path / "out.mp4", sr=sr)
    y = load_audio(out, sr=sr)
    spectrum = np.abs(np.fft.rfft(y[sr:3 * sr]))
    assert abs(np.argmax(spectrum) * sr / (2 * sr) - 500) < 5
    assert abs(len(y) / sr - 6.0) < 0.1


def test_wav_with_wrong_rate_is_an_error(small_video, tmp_path):
    import pytest

    from cuecraft.errors import MediaError
    from cuecraft.io.audio import write_wav

    wav = write_wav(tmp_path / "music.wav", _tone(22050, 6.0), sr=22050)
    with pytest.raises(MediaError, match="22050 Hz, expected 44100"):
        mux_music(small_video, wav, tmp_path / "out.mp4", sr=44100)
    assert not (tmp_path / "out.mp4").exists()


def test_soft_clip_is_identity_below_knee_and_bounded():
    from cuecraft.io.mux import soft_clip

    x = np.linspace(-3, 3, 601).astype(np.float32)
    y = soft_clip(x)
    quiet = np.abs(x) <= 0.9
    np.testing.assert_array_equal(y[quiet], x[quiet])
    assert np.all(np.abs(y) <= 1.0) and np.all(np.diff(y) >= 0)


def test_blocks_of_any_length_give_the_same_file_as_one_array(small_video, tmp_path):
    from cuecraft.io.mux import mux_streamed

    sr = 44100
    tone = _tone(sr, 6.0, freq=700.0)
    whole = mux_music(small_video, tone, tmp_path / "whole.mp4", sr=sr)
    # Blocks far longer than an AAC frame, one shorter, and an uneven tail.
    blocks = iter([tone[:100_000], tone[100_000:100_500], tone[100_500:]])
    streamed = mux_streamed(blocks, small_video, tmp_path / "streamed.mp4", sr=sr)
    assert _packets(streamed, "audio") == _packets(whole, "audio")
    assert _packets(streamed, "video") == _packets(small_video, "video")
