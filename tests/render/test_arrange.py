"""The drum/bass arrangement layer: on the beat grid, following intensity, the plan and the melody."""
from __future__ import annotations

import io

import numpy as np
import pretty_midi
import pytest

from cuecraft.controls.schema import Controls
from cuecraft.errors import ParameterError
from cuecraft.generate.plan import Plan, make_plan
from cuecraft.render.arrange import CRASH, KICK, SNARE, TOMS, arrange

DURATION = 40.0
CHANGE_AT = 16.0  # 120 BPM before, 100 BPM after


def beat_grid(duration: float = DURATION) -> np.ndarray:
    rows, t, k = [], 0.0, 0
    while t < duration:
        rows.append([round(t, 6), k % 4])
        t += 0.5 if t < CHANGE_AT - 1e-9 else 0.6
        k += 1
    return np.array(rows)


def ramp_controls(**kw) -> Controls:
    return Controls(beat=beat_grid(), intensity=np.array([[0.0, -40.0], [DURATION, -6.0]]), duration=DURATION, **kw)


def flat_controls(db: float, **kw) -> Controls:
    return Controls(beat=beat_grid(), intensity=np.array([[0.0, db]]), duration=DURATION, **kw)


def plan_for(c: Controls, seed: int = 0) -> Plan:
    return make_plan(c, cuts=[10.1, 20.9, 30.0], duration=DURATION, seed=seed)


def track(pm, name):
    return next(i for i in pm.instruments if i.name.startswith(name))


def midi_bytes(pm) -> bytes:
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def sixteenth_grid(beats: np.ndarray) -> np.ndarray:
    intervals = np.append(np.diff(beats), beats[-1] - beats[-2])
    return (beats[:, None] + np.arange(4)[None, :] * intervals[:, None] / 4).ravel()


@pytest.fixture(scope="module")
def ramp():
    c = ramp_controls()
    plan = plan_for(c)
    return c, plan, arrange(c, plan, duration=DURATION, seed=0)


@pytest.mark.parametrize("missing", ["beat", "intensity"])
def test_requires_beat_and_intensity(missing):
    kw = {"beat": beat_grid(), "intensity": np.array([[0.0, -20.0]])}
    del kw[missing]
    c = Controls(**kw, duration=DURATION)
    with pytest.raises(ParameterError, match=missing):
        arrange(c, plan_for(ramp_controls()), duration=DURATION, seed=0)


@pytest.mark.parametrize(("kwargs", "match"), [({"duration": -1.0}, "duration = -1.0"), ({"seed": -3}, "seed = -3")])
def test_rejects_bad_arguments(kwargs, match):
    c = ramp_controls()
    with pytest.raises(ParameterError, match=match):
        arrange(c, plan_for(c), **{"duration": DURATION, "seed": 0, **kwargs})


def test_tracks(ramp):
    _, _, pm = ramp
    drums, bass = track(pm, "drums"), track(pm, "bass")
    assert drums.is_drum and not bass.is_drum
    assert bass.program in (32, 33, 34)
    assert len(pm.instruments) == 2  # no melody control: no guide
    assert max(n.end for i in pm.instruments for n in i.notes) <= DURATION


def test_kicks_and_snares_land_exactly_on_beats_after_tempo_change(ramp):
    c, _, pm = ramp
    beats = c.beat[:, 0]
    # Written and read back too: the file must keep the timing, not just the object.
    for obj in (pm, pretty_midi.PrettyMIDI(io.BytesIO(midi_bytes(pm)))):
        drums = track(obj, "drums")
        onsets = np.array([n.start for n in drums.notes if n.pitch in (KICK, SNARE)])
        nearest = np.abs(onsets[:, None] - beats[None, :]).min(axis=1)
        on_beat = nearest < 0.05
        assert np.all(nearest[on_beat] <= 0.001)
        # Every drum hit sits on the locally interpolated 16th grid, never a fixed-tempo one.
        all_onsets = np.array([n.start for n in drums.notes])
        assert np.abs(all_onsets[:, None] - sixteenth_grid(beats)[None, :]).min(axis=1).max() <= 0.001
        # The tempo change is exercised: many on-beat hits after it, off the old 0.5 s grid.
        late = onsets[on_beat & (onsets > CHANGE_AT + 0.1)]
        assert len(late) >= 20
        assert np.abs(((late - CHANGE_AT) / 0.5) - np.round((late - CHANGE_AT) / 0.5)).max() > 0.1


def test_crash_at_each_section_start_and_fill_before_it(ramp):
    c, plan, pm = ramp
    beats = c.beat[:, 0]
    drums = track(pm, "drums")
    crashes = np.array([n.start for n in drums.notes if n.pitch == CRASH])
    assert len(plan.sections) == 4
    for start in plan.sections:
        assert np.abs(crashes - start).min() <= 0.001
    for start in plan.sections[1:]:
        k = int(np.argmin(np.abs(beats - start)))
        fill = [n for n in drums.notes if beats[k - 1] - 1e-6 <= n.start < beats[k] - 1e-6
                and n.pitch in (SNARE, *TOMS)]
        assert len(fill) >= 2
        # A fill plays between the beats, which the ordinary pattern's snare never does.
        assert any(np.abs(beats - n.start).min() > 0.05 for n in fill)


def test_note_count_and_velocity_rise_with_intensity():
    counts, velocities = [], []
    for db in (-38.0, -25.0, -16.0, -8.0):
        c = flat_controls(db)
        drums = track(arrange(c, plan_for(c), duration=DURATION, seed=0), "drums")
        counts.append(len(drums.notes))
        velocities.append(np.mean([n.velocity for n in drums.notes]))
    assert counts == sorted(counts) and len(set(counts)) == 4
    assert velocities == sorted(velocities) and len(set(velocities)) == 4


def test_ramp_gets_denser_and_louder(ramp):
    _, _, pm = ramp
    drums = track(pm, "drums")
    first = [n for n in drums.notes if n.start < DURATION / 3]
    last = [n for n in drums.notes if n.start >= 2 * DURATION / 3]
    assert len(last) > 2 * len(first)
    assert np.mean([n.velocity for n in last]) > np.mean([n.velocity for n in first]) + 20


def test_arousal_moves_density_both_ways():
    def hits(arousal):
        c = flat_controls(-16.0, emotion=None if arousal is None else np.array([[0.0, 0.0, arousal]]))
        return len(track(arrange(c, plan_for(c), duration=DURATION, seed=0), "drums").notes)

    assert hits(-0.6) < hits(None) == hits(0.0) < hits(0.6)


def test_bass_is_in_key_and_plays_each_bars_root_on_the_downbeat(ramp):
    c, plan, pm = ramp
    bass = track(pm, "bass")
    assert bass.notes and {n.pitch % 12 for n in bass.notes} <= set(plan.scale)
    downbeats = c.beat[c.beat[:, 1] == 0, 0]
    starts = {round(n.start, 6): n.pitch for n in bass.notes}
    section_bar = {}
    for bar_time in downbeats:
        s = plan.section_index(bar_time + 1e-6)
        bar_in_section = section_bar.setdefault(s, 0)
        section_bar[s] += 1
        prog = plan.progressions[s]
        assert starts[round(bar_time, 6)] % 12 == plan.chord(prog[bar_in_section % len(prog)])[0]
    # A monophonic line: no two bass notes overlap.
    notes = sorted(bass.notes, key=lambda n: n.start)
    assert all(a.end <= b.start + 1e-9 for a, b in zip(notes, notes[1:]))


def test_melody_guide_plays_requested_pitch_classes_and_steers_bass():
    # Pitch classes change every 2.5 s; rests 12.5-17.5 s.
    pcs = [0, 4, 7, 2, 5, np.nan, np.nan, 9, 11, 0, 4, 4, 7, 2, 5, 9]
    melody = np.array([[2.5 * i, pc] for i, pc in enumerate(pcs)])
    c = ramp_controls(melody=melody)
    plan = make_plan(c, cuts=[10.1, 20.9, 30.0], duration=DURATION, seed=0)
    pm = arrange(c, plan, duration=DURATION, seed=0)
    guide = track(pm, "melody guide")
    assert not guide.is_drum and guide.program in range(72, 88)
    beats = c.beat[:, 0]
    # Expected: the melody's value at each beat, repeats merged into one note.
    expected = []
    for t in beats:
        pc = melody[np.searchsorted(melody[:, 0], t, side="right") - 1, 1]
        if np.isfinite(pc) and not (expected and expected[-1][1] == pc and expected[-1][2]):
            expected.append((t, int(pc), True))
        elif not np.isfinite(pc):
            expected.append((t, None, False))
    expected = [(t, pc) for t, pc, sounding in expected if sounding]
    assert [(round(n.start, 6), n.pitch) for n in guide.notes] == [(round(t, 6), 72 + pc) for t, pc in expected]
    assert all(60 <= n.pitch - 12 < 72 for n in guide.notes)  # octave 5
    assert not any(12.5 < n.start < 17.5 for n in guide.notes)  # rests stay silent
    # Bass: each bar's chord holds the melody's note whenever the progression has such a chord.
    bass = {round(n.start, 6): n.pitch % 12 for n in track(pm, "bass").notes}
    checked = 0
    for t in c.beat[c.beat[:, 1] == 0, 0]:
        pc = melody[np.searchsorted(melody[:, 0], t, side="right") - 1, 1]
        prog = plan.progressions[plan.section_index(t + 1e-6)]
        if np.isfinite(pc) and any(int(pc) in plan.chord(d) for d in prog):
            degree = plan.scale.index(bass[round(t, 6)])
            assert int(pc) in plan.chord(degree)
            checked += 1
    assert checked >= 5


def test_same_seed_gives_identical_bytes_and_seeds_differ():
    c = ramp_controls(melody=np.array([[0.0, 0.0], [10.0, 7.0]]))
    plan = plan_for(c)
    reference = midi_bytes(arrange(c, plan, duration=DURATION, seed=4))
    assert midi_bytes(arrange(c, plan, duration=DURATION, seed=4)) == reference
    others = {midi_bytes(arrange(c, plan, duration=DURATION, seed=s)) for s in range(5)}
    assert len(others) > 1


def test_short_duration_cuts_the_arrangement():
    c = ramp_controls()
    pm = arrange(c, plan_for(c), duration=5.0, seed=0)
    assert max(n.end for i in pm.instruments for n in i.notes) <= 5.0
    assert min(n.start for n in track(pm, "drums").notes) == 0.0


@pytest.mark.parametrize("db", [-35.0, -16.0, -8.0])
def test_drum_pattern_changes_at_each_section_start(db):
    # Constant intensity, so only the section change can change the pattern.
    c = flat_controls(db)
    plan = plan_for(c)
    drums = track(arrange(c, plan, duration=DURATION, seed=0), "drums")
    downbeats = c.beat[c.beat[:, 1] == 0, 0]

    def second_bar(section_start):
        # The second bar of a section: clear of the crash and of the next fill.
        i = int(np.argmin(np.abs(downbeats - section_start))) + 1
        lo, hi = downbeats[i], downbeats[i + 1]
        return {(round((n.start - lo) / (hi - lo) * 16), n.pitch) for n in drums.notes if lo <= n.start < hi - 1e-6}

    bars = [second_bar(s) for s in plan.sections]
    assert all(a != b for a, b in zip(bars, bars[1:]))
