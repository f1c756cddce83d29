"""Dynamics on the model's notes: velocities follow the intensity's changes around its median."""
import numpy as np
import pretty_midi

from cuecraft.evaluation.adherence import intensity_correlation
from cuecraft.render.dynamics import follow_intensity
from cuecraft.render.synth import DEFAULT_SOUNDFONT, render_midi

SR = 16000


def steady_melody(seconds: float = 16.0, velocity: int = 64) -> pretty_midi.Instrument:
    """Eighth notes at one velocity, as the model writes them (the corpus has no dynamics)."""
    flute = pretty_midi.Instrument(program=73)
    for k in range(int(seconds * 4)):
        flute.notes.append(pretty_midi.Note(velocity=velocity, pitch=72 + (k % 5), start=k / 4, end=k / 4 + 0.24))
    return flute


def velocities_at(instrument, times):
    starts = np.array([n.start for n in instrument.notes])
    return np.array([instrument.notes[int(np.argmin(np.abs(starts - t)))].velocity for t in times])


def test_louder_above_the_median_quieter_below_unchanged_at_it():
    flute = steady_melody(velocity=40)
    intensity = np.array([[0.0, -20.0], [4.0, -20.0], [6.0, -8.0], [10.0, -8.0], [12.0, -32.0], [16.0, -32.0]])
    follow_intensity([flute], intensity)
    loud, median_level, quiet = velocities_at(flute, [8.0, 1.0, 14.0])
    # The median over time (evenly, however the control was sampled) is -20 dB: unchanged there.
    assert median_level == 40
    # The arrangement's slope: 12 dB of control is 0.7 * 12 = 8.4 dB of amplitude.
    assert abs(20 * np.log10(loud / 40) - 8.4) < 0.5 and abs(20 * np.log10(quiet / 40) + 8.4) < 0.5


def test_silence_is_left_out_of_the_median_and_fades_the_notes():
    flute = steady_melody()
    lead_in = np.array([[0.0, -80.0], [3.9, -80.0], [4.0, -20.0], [16.0, -20.0]])
    follow_intensity([flute], lead_in)
    assert velocities_at(flute, [8.0])[0] == 64  # the sounding level is the median, not the silence
    assert velocities_at(flute, [1.0])[0] <= 4


def test_no_intensity_or_no_sound_changes_nothing():
    for intensity in (None, np.array([[0.0, -80.0], [16.0, -80.0]])):
        flute = steady_melody()
        follow_intensity([flute], intensity)
        assert {n.velocity for n in flute.notes} == {64}


def test_the_rendered_music_follows_a_swinging_intensity():
    times = np.arange(0.0, 16.0, 0.25)
    swing = np.stack([times, -18.0 + 6.0 * np.sin(2 * np.pi * times / 8.0)], axis=1)
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    pm.instruments.append(steady_melody())
    before = intensity_correlation(times, swing[:, 1], render_midi(pm, sample_rate=SR, soundfont=DEFAULT_SOUNDFONT,
                                                                    duration=16.0), sr=SR)
    follow_intensity(pm.instruments, swing)
    after = intensity_correlation(times, swing[:, 1], render_midi(pm, sample_rate=SR, soundfont=DEFAULT_SOUNDFONT,
                                                                   duration=16.0), sr=SR)
    assert abs(before) < 0.5 < 0.8 < after
