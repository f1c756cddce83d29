import librosa
import mir_eval
import numpy as np
import pytest

from cuecraft.controls.beat_tracker import track_beats
from cuecraft.errors import ParameterError

FPS = 24.0


def noisy_envelope(beat_times, *, seconds, seed, noise=0.3, drop=0.2):
    rng = np.random.default_rng(seed)
    env = noise * rng.random(int(seconds * FPS))
    for t in beat_times:
        if rng.random() > drop:  # some beats have no visible event
            env[int(round(t * FPS))] += 1.0 + rng.random()
    return env


@pytest.mark.parametrize("seed", range(4))
def test_finds_beats_through_noise_and_gaps(seed):
    truth = np.arange(0.5, 29.5, 0.5)
    env = noisy_envelope(truth, seconds=30, seed=seed)
    beats = track_beats(env, fps=FPS, bpm=120) / FPS
    assert mir_eval.beat.f_measure(truth, beats) >= 0.95


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_librosa(seed):
    truth = np.cumsum(np.full(50, 0.6) + np.random.default_rng(seed).normal(0, 0.02, 50))
    env = noisy_envelope(truth, seconds=32, seed=seed)
    ours = track_beats(env, fps=FPS, bpm=100, tightness=100) / FPS
    _, theirs = librosa.beat.beat_track(onset_envelope=env, sr=FPS, hop_length=1, bpm=100, tightness=100,
                                        trim=False, units="time")
    assert mir_eval.beat.f_measure(theirs, ours, f_measure_threshold=0.05) >= 0.9


def test_empty_envelope_gives_no_beats():
    assert len(track_beats(np.zeros(100), fps=FPS, bpm=120)) == 0


@pytest.mark.parametrize("kwargs", [{"fps": 0}, {"bpm": float("nan")}, {"tightness": -1}])
def test_bad_arguments(kwargs):
    args = {"fps": FPS, "bpm": 120.0, **kwargs}
    with pytest.raises(ParameterError):
        track_beats(np.ones(10), **args)
