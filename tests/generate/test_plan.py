"""make_plan: one key, mode and a few reused progressions for the whole video; sections on downbeats."""
from __future__ import annotations

import numpy as np
import pytest

from cuecraft.controls.schema import Controls
from cuecraft.errors import ParameterError
from cuecraft.generate.plan import Plan, make_plan


def beat_grid(duration: float, *, change_at: float = 16.0, before: float = 0.5, after: float = 0.6) -> np.ndarray:
    """4/4 beats at 120 BPM, then 100 BPM from the first beat at or after ``change_at``."""
    rows, t, k = [], 0.0, 0
    while t < duration:
        rows.append([round(t, 6), k % 4])
        t += before if t < change_at - 1e-9 else after
        k += 1
    return np.array(rows)


def controls(duration: float = 40.0, **kw) -> Controls:
    return Controls(beat=beat_grid(duration), duration=duration, **kw)


@pytest.mark.parametrize(("valence", "mode"), [(0.6, "major"), (0.0, "major"), (-0.4, "minor")])
def test_mode_follows_mean_valence(valence, mode):
    emotion = np.array([[0.0, valence, 0.0], [40.0, valence, 0.5]])
    assert make_plan(controls(emotion=emotion), cuts=[], duration=40.0, seed=3).mode == mode


def test_mode_is_time_weighted_mean_not_first_value():
    # Negative only for the first 5 s: the mean over 40 s is positive.
    emotion = np.array([[0.0, -0.9, 0.0], [5.0, -0.9, 0.0], [5.1, 0.5, 0.0], [40.0, 0.5, 0.0]])
    assert make_plan(controls(emotion=emotion), cuts=[], duration=40.0, seed=0).mode == "major"


def test_key_is_deterministic_from_seed_and_varies_across_seeds():
    roots = [make_plan(controls(), cuts=[], duration=40.0, seed=s).key_root for s in range(12)]
    assert roots == [make_plan(controls(), cuts=[], duration=40.0, seed=s).key_root for s in range(12)]
    assert len(set(roots)) >= 3


def _melody(pcs, step=1.0):
    return np.array([[i * step, pc] for i, pc in enumerate(pcs)], dtype=float)


def test_all_rest_melody_falls_back_to_seed():
    rest = np.array([[0.0, np.nan]])
    with_rest = make_plan(controls(melody=rest), cuts=[], duration=40.0, seed=4)
    assert with_rest == make_plan(controls(), cuts=[], duration=40.0, seed=4)


def test_sections_snap_to_downbeats_including_after_tempo_change():
    c = controls()
    downbeats = c.beat[c.beat[:, 1] == 0, 0]
    # Downbeats: 0, 2, ..., 16 then every 2.4 s: 18.4, 20.8, 23.2, ...
    plan = make_plan(c, cuts=[8.3, 20.5, 31.0], duration=40.0, seed=0)
    assert plan.sections[0] == 0.0
    assert plan.sections == pytest.approx((0.0, 8.0, 20.8, 30.4))
    assert all(np.min(np.abs(downbeats - s)) < 1e-9 for s in plan.sections)


def test_cut_within_two_bars_of_previous_section_is_dropped():
    c = controls()
    # 2.1 -> downbeat 2.0 is one bar after 0: dropped. 4.0 is two bars: kept.
    # 5.9 -> 6.0 is one bar after 4.0: dropped. 13.0 is far: kept (snaps to 12 or 14).
    plan = make_plan(c, cuts=[2.1, 4.0, 5.9, 13.1], duration=40.0, seed=0)
    assert plan.sections == pytest.approx((0.0, 4.0, 14.0))
    # Unsorted cuts and cuts at/after the end are handled the same way.
    assert make_plan(c, cuts=[13.1, 40.0, 45.0, 4.0, 5.9, 2.1], duration=40.0, seed=0).sections == plan.sections


def test_sections_without_beat_control_use_cut_times():
    plan = make_plan(Controls(duration=30.0), cuts=[3.0, 10.0, 11.0], duration=30.0, seed=0)
    assert plan.sections == pytest.approx((0.0, 10.0))  # 3 s is under two assumed 2 s bars


def test_progressions_are_a_small_reused_set_and_neighbours_differ():
    duration = 200.0
    c = Controls(beat=beat_grid(duration, change_at=1e9), duration=duration)
    plan = make_plan(c, cuts=np.arange(8.0, duration, 8.0), duration=duration, seed=11)
    assert len(plan.sections) == 25 and len(plan.progressions) == 25
    assert len(set(plan.progressions)) == 3
    assert plan.progressions.count(plan.progressions[0]) >= len(plan.sections) // 2
    assert all(a != b for a, b in zip(plan.progressions, plan.progressions[1:]))
    assert all(0 <= d <= 6 for prog in plan.progressions for d in prog)


def test_same_seed_same_plan_and_seed_changes_plan():
    c = controls()
    plans = [make_plan(c, cuts=[8.0, 20.0, 30.0], duration=40.0, seed=s) for s in range(6)]
    assert plans[0] == make_plan(c, cuts=[8.0, 20.0, 30.0], duration=40.0, seed=0)
    assert len({(p.key_root, p.progressions) for p in plans}) > 1


def test_chord_is_diatonic_triad():
    plan = Plan(key_root=0, mode="major", sections=(0.0,), progressions=((0, 4, 5, 3),))
    assert plan.chord(4) == (7, 11, 2)  # G B D
    assert plan.chord(6) == (11, 2, 5)  # B D F
    minor = Plan(key_root=9, mode="minor", sections=(0.0,), progressions=((0,),))
    assert minor.chord(0) == (9, 0, 4)  # A C E
    assert plan.section_index(-1.0) == 0 and plan.section_index(100.0) == 0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"duration": 0.0}, "duration = 0.0"),
    ({"duration": float("nan")}, "duration = nan"),
    ({"cuts": [1.0, float("inf")]}, "cuts contains inf"),
    ({"cuts": [-2.0]}, "cuts contains -2.0"),
    ({"seed": -1}, "seed = -1"),
])
def test_make_plan_rejects_bad_arguments(kwargs, match):
    args = {"cuts": [], "duration": 40.0, "seed": 0, **kwargs}
    with pytest.raises(ParameterError, match=match):
        make_plan(controls(), **args)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"key_root": 12}, "key_root = 12"),
    ({"mode": "dorian"}, "dorian"),
    ({"sections": (1.0,)}, "start with 0.0"),
    ({"sections": (0.0, 5.0, 5.0), "progressions": ((0,),) * 3}, r"sections\[2\] = 5.0"),
    ({"progressions": ((0,), (1,))}, "2 entries for 1 sections"),
    ({"progressions": ((0, 7),)}, r"\(0, 7\)"),
])
def test_plan_validates(kwargs, match):
    args = {"key_root": 0, "mode": "major", "sections": (0.0,), "progressions": ((0, 4),), **kwargs}
    with pytest.raises(ParameterError, match=match):
        Plan(**args)


def test_key_from_melody_g_major():
    # G major scale with tonic/dominant emphasis; the seed must not matter.
    pcs = [7, 11, 2, 7, 9, 11, 0, 2, 4, 6, 7, 2, 7, 11, 7, 2]
    for seed in (0, 1, 2):
        plan = make_plan(controls(melody=_melody(pcs, step=2.5)), cuts=[], duration=40.0, seed=seed)
        assert (plan.key_root, plan.mode) == (7, "major")


def test_key_from_melody_respects_mode_from_emotion():
    # D natural minor line; negative valence fixes the mode, the melody the tonic.
    pcs = [2, 5, 9, 2, 4, 5, 7, 9, 10, 9, 5, 2, 0, 2, 9, 2]
    emotion = np.array([[0.0, -0.5, 0.0], [40.0, -0.5, 0.0]])
    plan = make_plan(controls(melody=_melody(pcs, step=2.5), emotion=emotion), cuts=[], duration=40.0, seed=5)
    assert (plan.key_root, plan.mode) == (2, "minor")
    assert set(pcs) <= set(plan.scale)
