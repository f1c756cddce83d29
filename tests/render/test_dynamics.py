"""Dynamics on the model's notes: velocities follow the intensity's changes around its median."""
import numpy as np
import pretty_midi

from cuecraft.evaluation.adherence import intensity_correlation
from cuecraft.render.dynamics import follow_intensity, pretty_midi_of, ride_intensity
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


def _dense_then_thin(seconds: float = 16.0) -> pretty_midi.PrettyMIDI:
    """Six-note chords on every beat for the first half, single notes for the second, all at one
    velocity: by the controls' measure (power adds over sounding notes) the first half is
    10 log10(6) = 7.8 dB louder."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    flute = pretty_midi.Instrument(program=73)
    for k in range(int(seconds * 2)):
        t = k / 2
        for pitch in ((60, 64, 67, 72, 76, 79) if t < seconds / 2 else (72,)):
            flute.notes.append(pretty_midi.Note(velocity=64, pitch=pitch, start=t, end=t + 0.45))
    pm.instruments.append(flute)
    return pm


def test_ride_evens_out_what_the_density_did_under_a_flat_request():
    from cuecraft.controls.from_midi import note_intensity_db

    pm = _dense_then_thin()
    flat = np.array([[0.0, -20.0], [16.0, -20.0]])
    probe = np.array([4.0, 12.0])
    before = note_intensity_db(pm, probe)
    ride_intensity(pm, flat)
    after = note_intensity_db(pm, probe)
    assert before[0] - before[1] > 7.0
    assert abs(after[0] - after[1]) < 1.0  # about 3.9 dB each way: within the ride's 6 dB
    dense = [n.velocity for n in pm.instruments[0].notes if 1.0 < n.start < 7.0]
    thin = [n.velocity for n in pm.instruments[0].notes if 9.0 < n.start < 15.0]
    assert max(dense) < 64 < min(thin)  # quieter where dense, louder where thin: the level in between kept


def test_ride_follows_a_requested_rise_and_stays_within_its_limit():
    from cuecraft.controls.from_midi import note_intensity_db

    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    pm.instruments.append(steady_melody(velocity=64))
    rise = np.array([[0.0, -26.0], [16.0, -14.0]])
    times = np.arange(1.0, 15.0, 0.5)
    ride_intensity(pm, rise)
    got = note_intensity_db(pm, times)
    assert np.corrcoef(got, np.interp(times, rise[:, 0], rise[:, 1]))[0, 1] > 0.95
    gains_db = 20 * np.log10(np.array([n.velocity for n in pm.instruments[0].notes]) / 64)
    assert gains_db.min() > -6.5 and gains_db.max() < 6.5 and np.ptp(gains_db) > 8.0


def test_ride_leaves_silence_requests_and_missing_controls_alone():
    for intensity in (None, np.array([[0.0, -80.0], [16.0, -80.0]])):
        pm = _dense_then_thin()
        ride_intensity(pm, intensity)
        assert {n.velocity for n in pm.instruments[0].notes} == {64}


def _grid(seconds: float = 16.0, period: float = 0.5):
    times = np.arange(0.0, seconds, period)
    return times, np.arange(len(times)) % 4


def test_arousal_shift_thins_a_busy_calm_bar_and_fills_a_flat_excited_one():
    from cuecraft.render.dynamics import arousal_level_shift

    times, positions = _grid()
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    busy = pretty_midi.Instrument(program=73)  # sixteenths for 8 s (reads aroused), then one note a bar
    for k in range(64):
        busy.notes.append(pretty_midi.Note(velocity=100, pitch=72, start=k / 8, end=k / 8 + 0.1))
    for t in np.arange(8.0, 16.0, 2.0):
        busy.notes.append(pretty_midi.Note(velocity=40, pitch=60, start=t, end=t + 1.9))
    pm.instruments.append(busy)
    calm_then_excited = np.array([[0.0, 0.0, -0.5], [16.0, 0.0, -0.5]])
    shift = arousal_level_shift(pm, calm_then_excited, times, positions)
    assert set(shift[(times > 2) & (times < 6)]) == {-1}  # busy bars asked to be calm: thinner
    assert set(shift[times >= 10]) == {0}  # calm bars asked to be calm: left alone
    excited = np.array([[0.0, 0.0, 0.5], [16.0, 0.0, 0.5]])
    shift = arousal_level_shift(pm, excited, times, positions)
    assert set(shift[(times > 2) & (times < 6)]) == {0} and set(shift[times >= 10]) == {1}
    neutral = np.array([[0.0, 0.0, -0.02], [16.0, 0.0, 0.02]])
    assert not arousal_level_shift(pm, neutral, times, positions).any()
    assert not arousal_level_shift(pm, None, times, positions).any()


def test_level_shift_thins_the_kit():
    from cuecraft.controls.schema import Controls
    from cuecraft.generate.plan import make_plan
    from cuecraft.render.arrange import arrange

    times, positions = _grid(8.0)
    c = Controls(beat=np.stack([times, positions], axis=1), intensity=[[0.0, -14.0], [8.0, -14.0]], duration=8.0)
    plan = make_plan(c, cuts=[], duration=8.0, seed=0)
    drums = [len(arrange(c, plan, duration=8.0, seed=0, level_shift=np.full(len(times), s)).instruments[0].notes)
             for s in (0, -1, -2)]
    assert drums[0] > drums[1] > drums[2]


def test_match_level_puts_the_notes_at_the_requested_median():
    from cuecraft.controls.from_midi import note_intensity_db
    from cuecraft.render.dynamics import match_level

    times = np.arange(1.0, 15.0, 0.1)
    for velocity, request in ((120, -30.0), (30, -12.0)):
        flute = steady_melody(velocity=velocity)
        intensity = np.array([[0.0, -80.0], [0.9, -80.0], [1.0, request], [16.0, request]])  # a silent lead-in
        before = np.median(note_intensity_db(pretty_midi_of([flute]), times))
        gain = match_level([flute], intensity)
        after = np.median(note_intensity_db(pretty_midi_of([flute]), times))
        assert abs(gain - (request - before)) < 0.01 and abs(after - request) < 0.5
        assert len({n.velocity for n in flute.notes}) == 1  # one gain: the notes keep their relations


def test_match_level_is_bounded_and_leaves_missing_requests_alone():
    from cuecraft.render.dynamics import MAX_LEVEL_DB, match_level

    flute = steady_melody(velocity=100)
    assert match_level([flute], np.array([[0.0, -58.0], [16.0, -58.0]])) == -MAX_LEVEL_DB
    assert {n.velocity for n in flute.notes} == {10}  # 100 at -20 dB
    for intensity in (None, np.array([[0.0, -80.0], [16.0, -80.0]])):
        flute = steady_melody()
        assert match_level([flute], intensity) == 0.0
        assert {n.velocity for n in flute.notes} == {64}
    assert match_level([pretty_midi.Instrument(program=0)], np.array([[0.0, -20.0], [16.0, -20.0]])) == 0.0


def test_match_level_measures_the_lead_and_moves_every_part():
    from cuecraft.controls.from_midi import note_intensity_db
    from cuecraft.render.dynamics import match_level

    melody, harmony = steady_melody(velocity=100), steady_melody(velocity=80)
    for note in harmony.notes:
        note.pitch -= 12
    request = np.array([[0.0, -24.0], [16.0, -24.0]])
    gain = match_level([melody, harmony], request, lead=[melody])
    times = np.arange(1.0, 15.0, 0.1)
    assert abs(np.median(note_intensity_db(pretty_midi_of([melody]), times)) + 24.0) < 0.5
    assert {n.velocity for n in harmony.notes} == {round(80 * 10 ** (gain / 20))}  # the same gain


def test_silent_spans_where_the_curve_crosses_the_threshold():
    from cuecraft.render.dynamics import SOUNDING_DB, silent_spans

    # -80 at 2.0-2.2 s between -20 dB points 0.1 s away: the line crosses -60 dB 2/3 of the way down.
    rest = np.array([[0.0, -20.0], [1.9, -20.0], [2.0, -80.0], [2.2, -80.0], [2.3, -20.0], [6.0, -20.0]])
    assert np.allclose(silent_spans(rest), [[1.9 + 0.1 * 40 / 60, 2.3 - 0.1 * 40 / 60]])
    # A lead-in and an ending run to the ends; a silent point between sounding ones is a short span.
    edges = np.array([[0.0, -80.0], [1.0, -80.0], [1.5, -20.0], [3.0, -20.0], [3.2, -80.0], [3.4, -20.0],
                      [6.0, -20.0], [6.5, -80.0]])
    spans = silent_spans(edges)
    assert spans.shape == (3, 2) and spans[0, 0] == -np.inf and spans[-1, 1] == np.inf
    assert np.allclose(spans[:, 1][:2], [1.0 + 0.5 * 20 / 60, 3.2 + 0.2 * 20 / 60])
    assert SOUNDING_DB == -60.0
    assert len(silent_spans(np.array([[0.0, -20.0], [5.0, -10.0]]))) == 0 and len(silent_spans(None)) == 0


def test_music_rests_where_silence_is_asked_for_and_nowhere_else():
    from cuecraft.evaluation.adherence import rms_db
    from cuecraft.render.dynamics import rest_where_silent, silent_spans

    drums = pretty_midi.Instrument(program=0, is_drum=True)
    drums.notes = [pretty_midi.Note(velocity=60, pitch=42, start=t, end=t + 0.1) for t in np.arange(0, 8, 0.25)]
    pm = pretty_midi_of([steady_melody(8.0), drums])
    rest = np.array([[0.0, -20.0], [3.4, -20.0], [3.5, -80.0], [4.5, -80.0], [4.6, -20.0], [8.0, -20.0]])
    (start, end), = silent_spans(rest)

    def notes(where=lambda n: True):
        return {(k, n.start, n.end, n.pitch) for k, i in enumerate(pm.instruments) for n in i.notes if where(n)}

    outside, into = notes(lambda n: n.end <= start or n.start >= end), notes(lambda n: n.start < start < n.end)
    before = len(notes())
    changed = rest_where_silent(pm, rest)
    assert 0 < before - len(notes()) <= changed and into
    assert outside <= notes()  # the notes clear of the rest are untouched
    assert {(k, a, pitch) for k, a, b, pitch in into} <= {(k, a, pitch) for k, a, b, pitch in notes()}
    for instrument in pm.instruments:
        assert all(n.end <= start or n.start >= end for n in instrument.notes)  # one sounding into it ends there
        assert all(n.end - n.start >= 0.05 for n in instrument.notes)
    # Heard: the middle of the rest is silent, the music on either side is not.
    level = rms_db(render_midi(pm, sample_rate=SR, soundfont=DEFAULT_SOUNDFONT, duration=8.0), sr=SR,
                   times=np.array([2.0, (start + end) / 2, 6.0]), window=0.2)
    assert level[1] < -60.0 and level[0] > -40.0 and level[2] > -40.0


def test_rest_where_silent_leaves_music_without_silence_requests_alone():
    from cuecraft.render.dynamics import rest_where_silent

    pm = pretty_midi_of([steady_melody(4.0)])
    notes = [(n.start, n.end) for n in pm.instruments[0].notes]
    assert rest_where_silent(pm, np.array([[0.0, -40.0], [4.0, -10.0]])) == 0
    assert rest_where_silent(pm, None) == 0
    assert [(n.start, n.end) for n in pm.instruments[0].notes] == notes
