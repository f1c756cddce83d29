"""Controls from a reference piece: a MIDI file or anything with an audio stream."""
from __future__ import annotations

import os

from cuecraft.controls.from_audio import load_reference_audio
from cuecraft.controls.from_midi import load_reference_midi
from cuecraft.controls.schema import Controls
from cuecraft.errors import MediaError
from cuecraft.io.files import check_input_file

MIDI_SUFFIXES = (".mid", ".midi", ".smf", ".kar")
MIDI_MAGIC = b"MThd"


def is_midi_file(path: str | os.PathLike) -> bool:
    """True if ``path`` has a MIDI suffix or starts with the Standard MIDI File magic ``MThd``."""
    path = check_input_file(path, kind="reference")
    if path.suffix.lower() in MIDI_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == MIDI_MAGIC
    except OSError as exc:
        raise MediaError(f"'{path}': cannot read it ({exc.strerror or exc})") from None


def load_reference(path: str | os.PathLike, *, max_duration: float | None = None) -> Controls:
    """Beat, melody, intensity and emotion controls taken from a reference piece.

    A ``.mid`` / ``.midi`` / ``.smf`` / ``.kar`` file, or any file starting with ``MThd``,
    is read as MIDI (:func:`~cuecraft.controls.from_midi.load_reference_midi`); anything
    else as audio (:func:`~cuecraft.controls.from_audio.load_reference_audio`), which also
    takes the audio track of a video.

    Parameters
    ----------
    path : reference file
    max_duration : only use the first this many seconds (None = all)

    Returns
    -------
    Controls
        ``source`` names the file for every control.

    Raises
    ------
    MediaError
        If the file is missing, empty, unreadable or unusable, naming the file.
    """
    if is_midi_file(path):
        return load_reference_midi(path, max_duration=max_duration)
    return load_reference_audio(path, max_duration=max_duration)
