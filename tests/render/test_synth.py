"""SoundFont rendering: sample-accurate, fixed gain (loudness follows intensity), limited, fast."""
from __future__ import annotations


import librosa
import mir_eval
import numpy as np
import pretty_midi
import pytest

import cuecraft.render.synth as synth
from cuecraft.controls.schema import Controls
from cuecraft.errors import MediaError, ParameterError
from cuecraft.generate.plan import make_plan
from cuecraft.render.arrange import KICK, SNARE, arrange
from cuecraft.render.synth import DEFAULT_SOUNDFONT, find_soundfont, render_midi

SR = 22050


def beat_grid(duration: float) -> np.ndarray:
    rows, t, k = [], 0.0, 0
    while t < duration:
        rows.append([round(t, 6), k % 4])
        t += 0.5 if t < duration / 2 else 0.6  # 120 BPM, then 100 BPM
        k += 1
    return np.array(rows)


def arrangement(duration: float, intensity: np.ndarray, seed: int = 0) -> tuple[Controls, pretty_midi.PrettyMIDI]:
    c = Controls(beat=beat_grid(duration), intensity=intensity, duration=duration)
    plan = make_plan(c, cuts=[duration / 3, 2 * duration / 3], duration=duration, seed=seed)
    return c, arrange(c, plan, duration=duration, seed=seed)


def one_note(start: float = 0.5, *, drum: bool = True, pitch: int = KICK, velocity: int = 100) -> pretty_midi.PrettyMIDI:
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0 if drum else 33, is_drum=drum)
    inst.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=start, end=start + 0.2))
    pm.instruments.append(inst)
    return pm


def test_default_soundfont_is_bundled_timgm():
    assert DEFAULT_SOUNDFONT.name == "TimGM6mb.sf2" and DEFAULT_SOUNDFONT.is_file()


def test_find_soundfont_order(monkeypatch, tmp_path):
    monkeypatch.delenv(synth.SOUNDFONT_ENV, raising=False)
    monkeypatch.setattr(synth, "SYSTEM_SOUNDFONT", tmp_path / "absent.sf2")
    assert find_soundfont() == DEFAULT_SOUNDFONT
    system = tmp_path / "FluidR3_GM.sf2"
    system.write_bytes(b"x")
    monkeypatch.setattr(synth, "SYSTEM_SOUNDFONT", system)
    assert find_soundfont() == system
    env = tmp_path / "env.sf2"
    env.write_bytes(b"x")
    monkeypatch.setenv(synth.SOUNDFONT_ENV, str(env))
    assert find_soundfont() == env
    assert find_soundfont(DEFAULT_SOUNDFONT) == DEFAULT_SOUNDFONT  # explicit wins


def test_find_soundfont_missing_explicit_path_names_it(monkeypatch, tmp_path):
    missing = tmp_path / "nope" / "my font.sf2"
    with pytest.raises(MediaError, match="my font.sf2"):
        find_soundfont(str(missing))
    monkeypatch.setenv(synth.SOUNDFONT_ENV, str(missing))
    with pytest.raises(MediaError, match="CUECRAFT_SOUNDFONT"):
        find_soundfont()


def test_unloadable_soundfont_is_media_error(tmp_path):
    junk = tmp_path / "junk.sf2"
    junk.write_bytes(b"not a soundfont")
    with pytest.raises(MediaError, match="junk.sf2"):
        render_midi(one_note(), sample_rate=SR, soundfont=junk, duration=1.0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"sample_rate": 100}, "sample_rate = 100"),
    ({"duration": float("nan")}, "duration = nan"),
    ({"duration": -1.0}, "duration = -1.0"),
])
def test_render_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        render_midi(one_note(), soundfont=DEFAULT_SOUNDFONT, **kwargs)


def test_shape_length_and_dtype():
    pm = one_note(0.5, drum=False, pitch=40)
    audio = render_midi(pm, sample_rate=SR, soundfont=DEFAULT_SOUNDFONT, duration=2.25)
    assert audio.shape == (round(2.25 * SR), 2) and audio.dtype == np.float32
    assert np.abs(audio).max() > 0.01
    # Without a duration: the MIDI end plus the release tail.
    tail = render_midi(pm, sample_rate=SR, soundfont=DEFAULT_SOUNDFONT)
    assert tail.shape == (round((0.7 + synth.RELEASE_TAIL_S) * SR), 2)
    # A longer duration pads with silence after the sound has died away.
    long = render_midi(pm, sample_rate=SR, soundfont=DEFAULT_SOUNDFONT, duration=6.0)
    assert np.abs(long[-SR:]).max() < 1e-4


def test_note_starts_on_its_exact_sample():
    start = 0.5 + 37 / SR  # deliberately not on any block boundary
    audio = render_midi(one_note(start), sample_rate=SR, soundfont=DEFAULT_SOUNDFONT, duration=1.0)
    first = int(np.argmax(np.abs(audio[:, 0]) > 1e-5))
    assert round(start * SR) <= first <= round(start * SR) + 2


def test_loud_pile_up_is_limited_not_clipped():
    pm = pretty_midi.PrettyMIDI()
    for program in range(0, 48, 3):  # 16 instruments x 4 notes at full velocity
        inst = pretty_midi.Instrument(program=program)
        inst.notes += [pretty_midi.Note(velocity=127, pitch=p, start=0.1, end=1.0) for p in (48, 52, 55, 60)]
        pm.instruments.append(inst)
    with pytest.raises(ParameterError, match="15 melodic programs"):
        render_midi(pm, sample_rate=SR, soundfont=DEFAULT_SOUNDFONT, duration=1.0)
    pm.instruments = pm.instruments[:15]
    audio = render_midi(pm, sample_rate=SR, soundfont=DEFAULT_SOUNDFONT, duration=1.0)
    peak = np.abs(audio).max()
    assert peak <= synth.LIMIT_CEILING + 1e-6
    assert peak > 0.9  # it was limited at the ceiling, not rescaled far down
    # The limiter's gain is smooth: no sample-to-sample jumps beyond what the notes make.
    assert np.abs(np.diff(audio[:, 0])).max() < 0.5


def test_rendered_loudness_follows_intensity_ramp():
    duration = 24.0
    _, pm = arrangement(duration, np.array([[0.0, -40.0], [duration, -6.0]]))
    audio = render_midi(pm, sample_rate=SR, soundfont=DEFAULT_SOUNDFONT, duration=duration)
    assert audio.shape == (round(duration * SR), 2) and np.abs(audio).max() <= 1.0
    windows = audio[: int(duration) * SR].reshape(int(duration), SR, 2)
    rms_db = 20 * np.log10(np.sqrt(np.mean(windows ** 2, axis=(1, 2))) + 1e-9)
    requested = np.interp(np.arange(int(duration)) + 0.5, [0.0, duration], [-40.0, -6.0])
    assert np.corrcoef(requested, rms_db)[0, 1] >= 0.8
    # Fixed gain: the loud end is far louder than the quiet end (no per-piece normalisation).
    assert rms_db[-4:].mean() - rms_db[:4].mean() > 15


def test_fixed_gain_means_quiet_piece_renders_quiet():
    duration = 8.0
    _, quiet = arrangement(duration, np.array([[0.0, -36.0]]))
    _, loud = arrangement(duration, np.array([[0.0, -8.0]]))
    rms = [np.sqrt(np.mean(render_midi(pm, sample_rate=SR, soundfont=DEFAULT_SOUNDFONT,
                                       duration=duration) ** 2)) for pm in (quiet, loud)]
    assert 20 * np.log10(rms[1] / rms[0]) > 15


def test_kick_and_snare_onsets_are_detected_on_the_beats():
    duration = 16.0
    c, pm = arrangement(duration, np.array([[0.0, -24.0]]))  # level 1: kick/snare on every beat
    drums = next(i for i in pm.instruments if i.is_drum)
    drums.notes = [n for n in drums.notes if n.pitch in (KICK, SNARE)]
    pm.instruments = [drums]
    reference = np.unique(np.round([n.start for n in drums.notes], 6))
    on_beat = np.abs(reference[:, None] - c.beat[None, :, 0]).min(axis=1) <= 0.001
    assert on_beat.mean() > 0.9  # the rest are the fills' off-beat snares, also in the reference
    audio = render_midi(pm, sample_rate=SR, soundfont=DEFAULT_SOUNDFONT, duration=duration)
    onsets = librosa.onset.onset_detect(y=audio.mean(axis=1), sr=SR, units="time", hop_length=256)
    f, _, _ = mir_eval.onset.f_measure(reference, onsets, window=0.07)
    assert f >= 0.9


def test_block_rendering_matches_whole_render_and_stays_limited():
    from cuecraft.render.synth import render_blocks

    pm = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    for k in range(120):  # a loud pile-up that needs the limiter
        for p in (36, 43, 48, 55, 60):
            piano.notes.append(pretty_midi.Note(velocity=127, pitch=p + k % 7, start=k * 0.05, end=k * 0.05 + 1.0))
    pm.instruments.append(piano)
    whole = render_midi(pm, soundfont=DEFAULT_SOUNDFONT, duration=7.0)
    blocks = list(render_blocks(pm, soundfont=DEFAULT_SOUNDFONT, duration=7.0, block_seconds=0.3))
    joined = np.concatenate(blocks)
    assert len(blocks) > 10 and joined.shape == whole.shape
    assert np.max(np.abs(joined)) <= 0.98 + 1e-6
    # Block edges split the synth's internal render calls; the difference stays inaudible.
    assert np.max(np.abs(joined - whole)) < 0.02
