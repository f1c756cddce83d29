"""Dispatch of a reference file to the MIDI or the audio extractor, and its errors."""
from __future__ import annotations

import mido
import numpy as np
import pytest
import soundfile as sf

from cuecraft.controls.reference import is_midi_file, load_reference
from cuecraft.controls.schema import dumps_controls
from cuecraft.errors import MediaError

SR = 22050


def write_midi(path, *, pitches=(60, 64, 67, 72), seconds_per_note: float = 0.5):
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0)])
    for p in pitches:
        track.append(mido.Message("note_on", note=p, velocity=90, time=0))
        track.append(mido.Message("note_off", note=p, velocity=0, time=int(seconds_per_note * 960)))
    mid = mido.MidiFile(ticks_per_beat=480)
    mid.tracks.append(track)
    mid.save(str(path))
    return path


def write_tones(path, pitches=(60, 64, 67, 69)):
    t = np.arange(SR) / SR
    y = np.concatenate([0.3 * np.sin(2 * np.pi * 440 * 2 ** ((p - 69) / 12) * t) for p in pitches])
    sf.write(path, y.astype(np.float32), SR)
    return path


def test_midi_by_suffix(tmp_path):
    controls = load_reference(write_midi(tmp_path / "theme.MID"))
    assert controls.source["melody"] == "reference MIDI 'theme.MID'"
    assert controls.duration == pytest.approx(2.0)
    np.testing.assert_array_equal(controls.melody[:, 1], [0, 4, 7, 0])


def test_midi_by_magic_whatever_the_suffix(tmp_path):
    path = write_midi(tmp_path / "theme.bin")
    assert is_midi_file(path)
    assert load_reference(path).source["beat"] == "reference MIDI 'theme.bin'"


def test_audio_otherwise(tmp_path):
    path = write_tones(tmp_path / "theme.flac")
    assert not is_midi_file(path)
    controls = load_reference(path, max_duration=3.0)
    assert controls.source["melody"] == "reference audio 'theme.flac'"
    assert controls.duration == pytest.approx(3.0, abs=0.01)
    assert set(controls.present) >= {"melody", "intensity", "emotion"}
    # The result is a valid, serialisable controls file.
    assert '"melody"' in dumps_controls(controls)


@pytest.mark.parametrize("name, content, match", [
    ("missing.wav", None, "no such"),
    ("missing.mid", None, "no such"),
    ("empty.wav", b"", "empty"),
    ("notes.wav", b"just some text, not audio\n" * 10, "cannot decode"),
    ("corrupt.mid", b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x01\x00\x90", "not a readable MIDI"),
    ("corrupt.dat", b"MThd\xff\xff", "not a readable MIDI"),
])
def test_bad_files_raise_media_error_naming_them(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError, match=match) as info:
        load_reference(path)
    assert str(path) in str(info.value)


def test_directory_and_nan_audio(tmp_path):
    with pytest.raises(MediaError, match="not a file"):
        load_reference(tmp_path)
    path = tmp_path / "nan.wav"
    sf.write(path, np.full(SR * 2, np.nan, dtype=np.float32), SR, subtype="FLOAT")
    with pytest.raises(MediaError, match="nan.wav") as info:
        load_reference(path)
    assert "NaN" in str(info.value)
