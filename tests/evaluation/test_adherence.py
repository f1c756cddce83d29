"""Control adherence metrics: each on perfect, empty and invalid input and on a hand-worked case."""
import math

import numpy as np
import pytest

from cuecraft.controls.from_audio import controls_from_audio
from cuecraft.controls.schema import Controls
from cuecraft.errors import ParameterError
from cuecraft.evaluation.adherence import (beat_f_measure, emotion_agreement, evaluate, intensity_correlation,
                                           melody_accuracy, rms_db, track_beats)

SR = 8000


def ramp_audio(db_start, db_end, seconds):
    t = np.arange(int(seconds * SR)) / SR
    db = np.linspace(db_start, db_end, len(t))
    return (10 ** (db / 20) * np.sqrt(2) * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def steps_audio(sr=SR):
    """A 220 Hz sine at -40, -20, -20 dB RMS for one second each (whole periods per half second)."""
    t = np.arange(3 * sr) / sr
    rms = np.repeat([0.01, 0.1, 0.1], sr)
    return (rms * np.sqrt(2) * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def clicks(times, seconds, *, sr=22050, amplitudes=None):
    y = np.zeros(int(seconds * sr), np.float32)
    click = np.sin(2 * np.pi * 1000 * np.arange(800) / sr) * np.exp(-np.arange(800) / 150)
    for t, a in zip(times, np.ones(len(times)) if amplitudes is None else amplitudes, strict=True):
        y[int(t * sr):int(t * sr) + 800] += a * click
    return y


def test_intensity_perfect_inverted_and_constant():
    audio = ramp_audio(-40, -6, 10.0)
    times = np.arange(0.5, 9.5, 0.5)
    assert intensity_correlation(times, np.linspace(-40, -6, 10 * SR)[(times * SR).astype(int)], audio, sr=SR) > 0.99
    assert intensity_correlation(times, -times, audio, sr=SR) < -0.99
    assert np.isnan(intensity_correlation(times, np.full(len(times), -20.0), audio, sr=SR))
    assert np.isnan(intensity_correlation([], [], audio, sr=SR))


def test_intensity_hand_worked_and_invalid():
    # Requested [-30, -20, -10] dB at the segment centres, produced [-40, -20, -20]:
    # deviations (-10, 0, 10) and (-13.3, 6.7, 6.7) -> r = 200 / (sqrt(200) * sqrt(266.7)) = sqrt(3) / 2.
    times = np.array([0.5, 1.5, 2.5])
    assert intensity_correlation(times, [-30.0, -20.0, -10.0], steps_audio(), sr=SR) == pytest.approx(
        math.sqrt(3) / 2, abs=1e-4)
    with pytest.raises(ParameterError, match="strictly increasing"):
        intensity_correlation([0.5, 0.5, 1.0], [-30.0, -20.0, -10.0], steps_audio(), sr=SR)
    with pytest.raises(ParameterError, match="intensity: values must be finite"):
        intensity_correlation(times, [-30.0, np.nan, -10.0], steps_audio(), sr=SR)


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


def test_beat_f_measure_perfect_empty_hand_worked_and_invalid():
    beats = np.arange(1.0, 10.0, 0.5)
    assert beat_f_measure(beats, beats) == 1.0
    assert beat_f_measure(beats, np.empty(0)) == 0.0
    assert beat_f_measure(beats, beats + 0.1) == 0.0  # outside ±70 ms
    assert np.isnan(beat_f_measure(np.empty(0), beats))
    # 1.05 and 3.0 match, 2.08 is 80 ms off: P = 2/3, R = 2/4, F = 4/7 (produced beats may come unsorted).
    assert beat_f_measure([1.0, 2.0, 3.0, 4.0], [2.08, 1.05, 3.0]) == pytest.approx(4 / 7)
    with pytest.raises(ParameterError, match="beat: times must be finite and strictly increasing"):
        beat_f_measure([1.0, 0.5], beats)
    with pytest.raises(ParameterError, match="produced_beats must be finite"):
        beat_f_measure(beats, [1.0, np.nan])


def test_track_beats_on_a_click_track_with_silent_ends():
    sr = 22050
    truth = np.arange(0.5, 11.5, 0.5)
    beats = track_beats(clicks(truth, 12.0), sr=sr)
    assert beat_f_measure(truth, beats) >= 0.95
    # librosa's untrimmed path would also put beats at 0 s and after the last click, where nothing sounds.
    assert beats.min() > 0.4 and beats.max() < 11.1
    # A silent middle is not trimmed: the pulse goes on through a rest.
    rest = truth[(truth < 4.0) | (truth > 6.0)]
    assert beat_f_measure(truth, track_beats(clicks(rest, 12.0), sr=sr)) >= 0.95
    # Stereo is mixed to mono.
    assert np.array_equal(track_beats(np.stack([clicks(truth, 12.0)] * 2, axis=1), sr=sr), beats)


def test_track_beats_keeps_a_soft_intro():
    # Hand-worked: the first five clicks are 30 dB softer. librosa's trim=True drops their
    # beats (weak relative to the mean beat); they are not silence, so they stay.
    truth = np.arange(0.5, 8.0, 0.5)
    y = clicks(truth, 8.5, amplitudes=np.where(truth < 2.6, 0.03, 1.0))
    beats = track_beats(y, sr=22050)
    assert beat_f_measure(truth, beats) >= 0.95 and beats.min() < 0.6


def test_track_beats_empty_and_invalid():
    assert len(track_beats(np.zeros(22050 * 3, np.float32), sr=22050)) == 0
    assert len(track_beats(np.full(22050 * 3, 1e-6, np.float32), sr=22050)) == 0  # below -80 dBFS
    with pytest.raises(ParameterError, match="NaN"):
        track_beats(np.full(22050, np.nan), sr=22050)
    with pytest.raises(ParameterError, match=r"sr = 22050\.0"):
        track_beats(np.zeros(22050), sr=22050.0)
    with pytest.raises(ParameterError, match="n > 0"):
        track_beats(np.zeros(0), sr=22050)


def test_emotion_agreement():
    req = np.array([[0.5, -0.5], [0.5, 0.5], [-0.2, 0.1]])
    got = np.array([[0.1, -0.9], [-0.3, 0.2], [-0.5, -0.1]])
    out = emotion_agreement(req, got)
    assert out == {"valence_sign_agreement": 2 / 3, "arousal_sign_agreement": 2 / 3}
    with pytest.raises(ParameterError):
        emotion_agreement(req, got[:2])
    assert emotion_agreement(req, req) == {"valence_sign_agreement": 1.0, "arousal_sign_agreement": 1.0}
    empty = emotion_agreement(np.empty((0, 2)), np.empty((0, 2)))
    assert all(math.isnan(v) for v in empty.values())


CLICKS = np.arange(0.5, 4.6, 0.5)


def tune(sr=22050):
    """Half a second of silence, notes C E G A (1 s each, louder as they go) with a click on every
    half second from 0.5 to 4.5 s, and a silent last second."""
    t = np.arange(int(5.5 * sr)) / sr
    seconds = [sr // 2, sr, sr, sr, sr, sr]
    pitch = np.repeat([60, 60, 64, 67, 69, 69], seconds)
    level = np.repeat([0.0, 0.05, 0.1, 0.2, 0.4, 0.0], seconds)
    y = level * sum(np.sin(2 * np.pi * 440 * 2 ** ((pitch - 69) / 12) * k * t) / k for k in (1, 2, 3))
    return (y + 0.5 * clicks(CLICKS, 5.5, sr=sr)).astype(np.float32)


def test_evaluate_perfect_when_the_music_does_what_was_asked():
    # Melody, intensity and emotion read off the music, and the beats it was built on, are
    # exactly what it does: every metric is (near) perfect.
    y = tune()
    heard = controls_from_audio(y, sr=22050)
    requested = Controls(beat=np.stack([CLICKS, np.arange(len(CLICKS)) % 4], axis=1), melody=heard.melody,
                         intensity=heard.intensity, emotion=heard.emotion)
    out = evaluate(requested, y, sr=22050)
    assert set(out) == {"control_intensity_r", "control_melody_chroma_accuracy", "control_beat_f1",
                        "control_valence_sign_agreement", "control_arousal_sign_agreement"}
    assert out["control_melody_chroma_accuracy"] == 1.0 and out["control_beat_f1"] == 1.0
    assert out["control_valence_sign_agreement"] == out["control_arousal_sign_agreement"] == 1.0
    # Not 1: the request is RMS smoothed over 0.5 s, the measure RMS in 0.5-s windows; they part at the silent ends.
    assert out["control_intensity_r"] > 0.9
    assert evaluate(requested, np.stack([y, y], axis=1), sr=22050) == pytest.approx(out)


def test_evaluate_hand_worked_only_what_was_requested():
    requested = Controls(intensity=[[0.5, -30.0], [1.5, -20.0], [2.5, -10.0]])
    out = evaluate(requested, steps_audio(), sr=SR)
    assert out == {"control_intensity_r": pytest.approx(math.sqrt(3) / 2, abs=1e-4)}


def test_evaluate_empty_request_and_silent_music():
    assert evaluate(Controls(), tune(), sr=22050) == {}
    requested = Controls(beat=[[0.5, 0], [1.0, 1], [1.5, 2]], melody=[[0.0, 0]],
                         intensity=[[0.5, -30.0], [1.0, -20.0], [1.5, -10.0]], emotion=[[0.0, 0.5, 0.5]])
    out = evaluate(requested, np.zeros(2 * SR, np.float32), sr=SR)
    # Silence does nothing that was asked: no beat, no melody; its loudness and mood are undefined.
    assert out["control_beat_f1"] == 0.0 and out["control_melody_chroma_accuracy"] == 0.0
    assert math.isnan(out["control_intensity_r"]) and math.isnan(out["control_valence_sign_agreement"])
    assert math.isnan(out["control_arousal_sign_agreement"])


def test_evaluate_invalid():
    with pytest.raises(ParameterError, match="requested must be a Controls, got dict"):
        evaluate({"beat": [[0.5, 0]]}, tune(), sr=22050)
    with pytest.raises(ParameterError, match="need at least 1 s"):
        evaluate(Controls(), np.ones(SR // 2, np.float32), sr=SR)
    with pytest.raises(ParameterError, match="NaN"):
        evaluate(Controls(), np.full(2 * SR, np.nan), sr=SR)
    with pytest.raises(ParameterError, match="sr = 0"):
        evaluate(Controls(), tune(), sr=0)
