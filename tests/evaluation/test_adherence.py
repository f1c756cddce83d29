import numpy as np
import pytest

from cuecraft.errors import ParameterError
from cuecraft.evaluation.adherence import (beat_f_measure, emotion_agreement, intensity_correlation,
                                           melody_accuracy, rms_db, track_beats)

SR = 8000


def ramp_audio(db_start, db_end, seconds):
    t = np.arange(int(seconds * SR)) / SR
    db = np.linspace(db_start, db_end, len(t))
    return (10 ** (db / 20) * np.sqrt(2) * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_intensity_perfect_inverted_and_constant():
    audio = ramp_audio(-40, -6, 10.0)
    times = np.arange(0.5, 9.5, 0.5)
    assert intensity_correlation(times, np.linspace(-40, -6, 10 * SR)[(times * SR).astype(int)], audio, sr=SR) > 0.99
    assert intensity_correlation(times, -times, audio, sr=SR) < -0.99
    assert np.isnan(intensity_correlation(times, np.full(len(times), -20.0), audio, sr=SR))
    assert np.isnan(intensity_correlation([], [], audio, sr=SR))


def test_rms_db_hand_worked():
    audio = np.full(SR, 0.5)  # RMS 0.5 -> -6.02 dB
    assert abs(rms_db(audio, sr=SR, times=np.array([0.5]))[0] - 20 * np.log10(0.5)) < 1e-6


def test_melody_accuracy_hand_worked():
    req_t, req = np.array([0.0, 1.0, 2.0]), np.array([0.0, np.nan, 7.0])  # C for 1 s, rest, G for 1 s
    assert melody_accuracy(req_t, req, req_t, req) == 1.0
    got_t, got = np.array([0.0, 0.5]), np.array([0.0, 2.0])  # C for 0.5 s, then D
    # 10 Hz frames over [0, 3): C asked on 10, G on 10; the produced C matches the first 5.
    assert abs(melody_accuracy(req_t, req, got_t, got) - 5 / 20) < 1e-9
    assert melody_accuracy(req_t, req, np.empty(0), np.empty(0)) == 0.0
    assert np.isnan(melody_accuracy(np.empty(0), np.empty(0), req_t, req))
    with pytest.raises(ParameterError, match="strictly increasing"):
        melody_accuracy(np.array([1.0, 0.0]), np.array([0.0, 1.0]), req_t, req)


def test_beat_f_measure_perfect_empty_and_shifted():
    beats = np.arange(1.0, 10.0, 0.5)
    assert beat_f_measure(beats, beats) == 1.0
    assert beat_f_measure(beats, np.empty(0)) == 0.0
    assert beat_f_measure(beats, beats + 0.1) == 0.0  # outside ±70 ms
    assert np.isnan(beat_f_measure(np.empty(0), beats))


def test_track_beats_on_a_click_track():
    sr = 22050
    y = np.zeros(int(12 * sr), np.float32)
    truth = np.arange(0.5, 11.5, 0.5)
    click = np.sin(2 * np.pi * 1000 * np.arange(800) / sr) * np.exp(-np.arange(800) / 150)
    for t in truth:
        y[int(t * sr):int(t * sr) + 800] = click
    assert beat_f_measure(truth, track_beats(y, sr=sr)) >= 0.9


def test_emotion_agreement():
    req = np.array([[0.5, -0.5], [0.5, 0.5], [-0.2, 0.1]])
    got = np.array([[0.1, -0.9], [-0.3, 0.2], [-0.5, -0.1]])
    out = emotion_agreement(req, got)
    assert out == {"valence_sign_agreement": 2 / 3, "arousal_sign_agreement": 2 / 3}
    with pytest.raises(ParameterError):
        emotion_agreement(req, got[:2])
