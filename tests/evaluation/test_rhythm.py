"""Rhythm metrics: each on perfect, empty and invalid input and on a hand-worked case."""
import math

import numpy as np
import pytest

from cuecraft.errors import ParameterError
from cuecraft.evaluation import rhythm
from cuecraft.evaluation.rhythm import (
    ONSET_VARIANTS,
    bcs_bhs_d2m,
    bcs_bhs_loris,
    beat_align,
    cut_hit_chance,
    cut_hit_rate,
    music_beats,
    music_onsets,
    validate_events,
    visual_beat_f1,
)

SR = 22050
HOP_SECONDS = 512 / SR


def click_track(times, seconds, sr=SR, decay=0.01):
    """Decaying 1 kHz blips starting at ``times`` (a percussive onset at each)."""
    y = np.zeros(int(seconds * sr), np.float32)
    n = int(0.05 * sr)
    blip = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(n) / sr) * np.exp(-np.arange(n) / (decay * sr)))
    for t in times:
        i = round(t * sr)
        y[i:i + n] += blip[:len(y) - i].astype(np.float32)
    return y


CLICKS = np.cumsum(np.random.default_rng(1).uniform(0.35, 0.8, size=16))  # irregular, so no grid luck


def test_validate_events():
    assert validate_events("x", [0, 1.5, 1.5, 2]).dtype == float
    assert len(validate_events("x", [])) == 0
    for bad, needle in (([[1.0]], "1-D"), ([0.0, np.nan], r"x\[1\] = nan"), ([-1.0], r"x\[0\] = -1.0"),
                        ([2.0, 1.0], r"x\[1\] = 1.0.*previous 2.0"), ([1e6], "30000")):
        with pytest.raises(ParameterError, match=needle):
            validate_events("x", bad)


def test_visual_beat_f1():
    beats = np.arange(0.5, 6.0, 0.5)
    assert visual_beat_f1(beats, beats) == 1.0
    assert math.isnan(visual_beat_f1([], beats))  # nothing to follow: undefined, not 0
    assert visual_beat_f1(beats, []) == 0.0
    # Hand-worked: 1.05 (50 ms) and 3.0 match; 2.08 is 80 ms off. P = 2/5, R = 2/4.
    ref, est = [1.0, 2.0, 3.0, 4.0], [1.05, 2.08, 3.0, 3.5, 5.0]
    assert visual_beat_f1(ref, est) == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert visual_beat_f1(ref, est, window=0.1) == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    # mir_eval's trimmed variant: only events from min_time on (ref 3, 4; est 3.0, 3.5, 5) -> P 1/3, R 1/2.
    assert visual_beat_f1(ref, est, min_time=2.5) == pytest.approx(0.4)
    with pytest.raises(ParameterError, match="music_beats"):
        visual_beat_f1(ref, [np.inf])
    with pytest.raises(ParameterError, match="window"):
        visual_beat_f1(ref, est, window=0)


def test_cut_hit_rate_and_chance():
    cuts = [1.0, 2.0, 3.0]
    assert cut_hit_rate(cuts, cuts) == 1.0
    assert math.isnan(cut_hit_rate([], cuts))
    assert cut_hit_rate(cuts, []) == 0.0
    assert cut_hit_rate(cuts, [1.05, 2.2, 2.95]) == pytest.approx(2 / 3)  # 2.0 is 200 ms from any onset
    assert cut_hit_rate([1.0], [1.1]) == 1.0  # exactly on the window's edge counts
    assert cut_hit_rate([1.0], [1.1], window=0.05) == 0.0
    assert cut_hit_rate([2.0, 2.1], [2.05]) == 1.0  # not one-to-one: one onset serves both
    with pytest.raises(ParameterError, match=r"cuts\[1\]"):
        cut_hit_rate([2.0, 1.0], [1.0])
    # Chance: union of ±100 ms around onsets, over the clip: [0.9, 1.25] and [0, 0.15] of 10 s.
    assert cut_hit_chance([1.0, 1.15], duration=10.0) == pytest.approx(0.035)
    assert cut_hit_chance([0.05], duration=10.0) == pytest.approx(0.015)
    assert cut_hit_chance([], duration=10.0) == 0.0
    assert cut_hit_chance(np.arange(0.0, 10.0, 0.1), duration=10.0) == pytest.approx(1.0)
    with pytest.raises(ParameterError, match="duration"):
        cut_hit_chance([1.0], duration=0)


def test_beat_align():
    beats = [0.5, 1.0, 1.5]
    assert beat_align(beats, beats) == 1.0
    assert beat_align(beats, beats, symmetric=True) == 1.0
    assert math.isnan(beat_align([], beats))
    assert beat_align(beats, []) == 0.0
    assert math.isnan(beat_align([], [], symmetric=True))
    # Hand-worked, sigma 50 ms: music beat 1.0 is 50 ms from the visual beat -> exp(-1/2);
    # music beat 2.0 is 950 ms away -> ~0. Averaged over the two music beats.
    assert beat_align([1.0, 2.0], [1.05]) == pytest.approx(math.exp(-0.5) / 2)
    # The reverse direction sees one visual beat 50 ms from a music beat -> exp(-1/2).
    assert beat_align([1.0, 2.0], [1.05], symmetric=True) == pytest.approx((math.exp(-0.5) / 2 + math.exp(-0.5)) / 2)
    assert beat_align([1.0], [1.1], sigma=0.1) == pytest.approx(math.exp(-0.5))
    with pytest.raises(ParameterError, match="sigma"):
        beat_align(beats, beats, sigma=-1)


def test_bcs_bhs_variants_hand_worked():
    # 4.5 s -> 5 one-second bins. Reference bins {0, 1, 3}; generated bins {0, 2, 3, 4}; shared {0, 3}.
    ref, gen = [0.2, 1.5, 3.7], [0.9, 2.1, 3.2, 4.4]
    d2m = bcs_bhs_d2m(ref, gen, duration=4.5)
    assert d2m == {"bcs": pytest.approx(4 / 3), "bhs": pytest.approx(2 / 3)}  # coverage can exceed 1
    loris = bcs_bhs_loris(ref, gen, duration=4.5)
    assert loris["bcs"] == pytest.approx(2 / 4) and loris["bhs"] == pytest.approx(2 / 3)  # precision, recall
    assert loris["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # Several onsets in one bin count once; an onset at exactly 1.0 s falls in bin 1.
    assert bcs_bhs_d2m([1.0], [1.2, 1.3, 1.9], duration=3.0) == {"bcs": 1.0, "bhs": 1.0}


def test_bcs_bhs_perfect_empty_invalid():
    onsets = [0.5, 1.5, 2.5]
    assert bcs_bhs_d2m(onsets, onsets, duration=3.0) == {"bcs": 1.0, "bhs": 1.0}
    assert bcs_bhs_loris(onsets, onsets, duration=3.0) == {"bcs": 1.0, "bhs": 1.0, "f1": 1.0}
    assert bcs_bhs_d2m(onsets, [], duration=3.0) == {"bcs": 0.0, "bhs": 0.0}
    assert bcs_bhs_loris(onsets, [], duration=3.0) == {"bcs": 0.0, "bhs": 0.0, "f1": 0.0}
    empty_ref = bcs_bhs_d2m([], onsets, duration=3.0)
    assert math.isnan(empty_ref["bcs"]) and math.isnan(empty_ref["bhs"])  # the original divides by zero
    empty_ref = bcs_bhs_loris([], onsets, duration=3.0)
    assert empty_ref["bcs"] == 0.0 and math.isnan(empty_ref["bhs"]) and math.isnan(empty_ref["f1"])
    for bad in (0.0, -1.0, float("nan"), True):
        with pytest.raises(ParameterError, match="duration"):
            bcs_bhs_d2m(onsets, onsets, duration=bad)
    with pytest.raises(ParameterError, match="gen_onsets"):
        bcs_bhs_loris(onsets, [1.0, 0.5], duration=3.0)


@pytest.mark.parametrize("variant", sorted(ONSET_VARIANTS))
def test_music_onsets_find_clicks(variant):
    y = click_track(CLICKS, CLICKS[-1] + 1.0)
    found = music_onsets(y, sr=SR, variant=variant)
    assert len(found) == len(CLICKS)
    error = found - CLICKS
    # librosa reports onsets on a 23 ms frame grid, slightly late on average: typically within
    # 20 ms, and never more than a frame and a half.
    assert abs(np.median(error)) < 0.02
    assert np.all(np.abs(error) < 1.5 * HOP_SECONDS)


def test_music_onsets_resample_and_invalid():
    y44 = click_track(CLICKS, CLICKS[-1] + 1.0, sr=44100)
    found = music_onsets(y44, sr=44100, variant="loris")  # resampled to 22050 Hz first
    assert len(found) == len(CLICKS) and np.all(np.abs(found - CLICKS) < 1.5 * HOP_SECONDS)
    stereo = np.stack([click_track(CLICKS, CLICKS[-1] + 1.0)] * 2, axis=1)
    assert len(music_onsets(stereo, sr=SR)) == len(CLICKS)
    with pytest.raises(ParameterError, match="variant"):
        music_onsets(y44, sr=44100, variant="madmom")
    with pytest.raises(ParameterError, match="sr"):
        music_onsets(y44, sr=44100.0)
    with pytest.raises(ParameterError, match="NaN"):
        music_onsets(np.full(SR, np.nan), sr=SR)
    with pytest.raises(ParameterError, match="n > 0"):
        music_onsets(np.zeros(0), sr=SR)


def test_music_onsets_and_beats_empty():
    silence = np.zeros(3 * SR, np.float32)
    for variant in ONSET_VARIANTS:
        assert len(music_onsets(silence, sr=SR, variant=variant)) == 0
    assert len(music_beats(silence, sr=SR)) == 0
    with pytest.raises(ParameterError, match="NaN"):
        music_beats(np.full(SR, np.nan), sr=SR)


def test_music_beats_on_a_steady_click_track():
    clicks = np.arange(0.5, 10.0, 0.5)  # 120 BPM, with silence before the first and after the last click
    beats = music_beats(click_track(clicks, 10.5), sr=SR)
    assert visual_beat_f1(clicks, beats) >= 0.95
    assert beats[0] > 0.4 and beats[-1] < 9.6  # no beats in the silent ends


def test_harmonic_mean():
    assert rhythm.harmonic_mean(0.5, 1.0) == pytest.approx(2 / 3)
    assert rhythm.harmonic_mean(1.0, 1.0) == 1.0 and rhythm.harmonic_mean(0.0, 0.0) == 0.0
    assert math.isnan(rhythm.harmonic_mean(float("nan"), 1.0))


def test_evaluate_keys_and_alignment():
    impacts = np.arange(0.5, 8.0, 0.5)
    cuts = np.array([2.0, 6.0])
    aligned = click_track(impacts, 8.0)
    shifted = click_track(impacts + 0.25, 8.0)
    good = rhythm.evaluate(impacts, cuts, aligned, sr=SR, duration=8.0)
    bad = rhythm.evaluate(impacts, cuts, shifted, sr=SR, duration=8.0)
    expected = {"visual_beat_f1", "cut_hit_rate_100ms", "cut_hit_rate_100ms_chance", "beat_align_sigma50ms",
                "beat_align_symmetric_sigma50ms", "bcs_d2m_vs_visual", "bhs_d2m_vs_visual", "bcs_loris_vs_visual",
                "bhs_loris_vs_visual", "f1_loris_vs_visual"}
    assert set(good) == expected and set(bad) == expected
    assert good["visual_beat_f1"] >= 0.8 and bad["visual_beat_f1"] <= 0.2
    assert good["cut_hit_rate_100ms"] == 1.0 and bad["cut_hit_rate_100ms"] == 0.0
    assert good["beat_align_sigma50ms"] > 0.5 and bad["beat_align_sigma50ms"] < 0.1
    # 1-s bins cannot tell a 250 ms shift: the known weakness of BCS/BHS.
    assert good["bhs_d2m_vs_visual"] == bad["bhs_d2m_vs_visual"] == 1.0
    assert set(rhythm.definitions()) >= expected

    other = rhythm.evaluate(impacts, cuts, aligned, sr=SR, duration=8.0, reference_audio=shifted,
                            cut_window=0.05, sigma=0.03)
    assert {"cut_hit_rate_50ms", "beat_align_sigma30ms", "bhs_d2m_vs_reference", "f1_loris_vs_reference"} <= set(other)
    assert other["bhs_d2m_vs_reference"] == 1.0  # the same bins, a quarter second apart
    assert set(rhythm.definitions(cut_window=0.05, sigma=0.03)) >= set(other)


def test_evaluate_empty_events_and_silent_music():
    # Nothing to follow and nothing played: every rate over an empty set is NaN, none is 0 by accident.
    out = rhythm.evaluate([], [], np.zeros(4 * SR, np.float32), sr=SR, duration=4.0)
    for key in ("visual_beat_f1", "cut_hit_rate_100ms", "beat_align_sigma50ms", "beat_align_symmetric_sigma50ms",
                "bcs_d2m_vs_visual", "bhs_d2m_vs_visual", "bhs_loris_vs_visual", "f1_loris_vs_visual"):
        assert math.isnan(out[key]), key
    assert out["cut_hit_rate_100ms_chance"] == 0.0 and out["bcs_loris_vs_visual"] == 0.0
    # Visual beats and cuts but silent music: the music follows nothing, so the rates are 0.
    impacts = np.arange(0.5, 4.0, 0.5)
    out = rhythm.evaluate(impacts, [2.0], np.zeros(4 * SR, np.float32), sr=SR, duration=4.0)
    assert out["visual_beat_f1"] == 0.0 and out["cut_hit_rate_100ms"] == 0.0 and out["bhs_d2m_vs_visual"] == 0.0
    assert math.isnan(out["beat_align_sigma50ms"])  # averaged over music beats, of which there are none


def test_evaluate_ignores_music_after_the_video_and_checks_input():
    impacts = np.arange(0.5, 4.0, 0.5)
    y = click_track(np.arange(0.5, 8.0, 0.5), 8.0)  # 8 s of music for a 4 s video
    out = rhythm.evaluate(impacts, [], y, sr=SR, duration=4.0)
    assert out["visual_beat_f1"] >= 0.8 and math.isnan(out["cut_hit_rate_100ms"])
    assert out["bcs_d2m_vs_visual"] == pytest.approx(1.0)  # bins past 4 s do not count
    with pytest.raises(ParameterError, match="video_beats"):
        rhythm.evaluate([1.0, np.nan], [], y, sr=SR, duration=4.0)
    with pytest.raises(ParameterError, match="duration"):
        rhythm.evaluate(impacts, [], y, sr=SR, duration=float("inf"))
