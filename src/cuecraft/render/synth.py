"""Render MIDI to stereo audio with a General MIDI SoundFont (TinySoundFont, offline, CPU).

Events are scheduled here, not by tinysoundfont's Sequencer: the synth renders up to the
exact sample of each event, so note onsets are sample-accurate. The master gain is fixed,
so the loudness of the result follows the note velocities (the intensity control) rather
than being normalised per piece; a look-ahead limiter keeps peaks below full scale.
"""
from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pretty_midi
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from cuecraft.errors import MediaError, ParameterError


def _bundled_soundfont() -> Path:
    # Located without importing pretty_midi's heavier modules; it ships TimGM6mb.sf2 (GPL-2).
    spec = importlib.util.find_spec("pretty_midi")
    return Path(next(iter(spec.submodule_search_locations))) / "TimGM6mb.sf2"


DEFAULT_SOUNDFONT = _bundled_soundfont()
SYSTEM_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian fluid-soundfont-gm (MIT), optional
SOUNDFONT_ENV = "CUECRAFT_SOUNDFONT"
MASTER_GAIN_DB = 0.0  # fixed (not per-piece normalisation): rendered RMS follows the intensity control
LIMIT_CEILING = 0.98  # peak level the limiter holds
LIMIT_WINDOW_S = 0.005  # look-ahead/hold and smoothing of the limiter's gain
RELEASE_TAIL_S = 1.0  # extra audio after the last note-off when no duration is given
DRUM_CHANNEL = 9
_MAX_VOICES = 256
BLOCK_SECONDS = 10.0  # render/emit granularity: memory is flat in the length of the piece
# Samples of look-behind/ahead the block-wise limiter keeps: more than its reach (~3 windows).
LIMIT_CONTEXT = 8 * int(LIMIT_WINDOW_S * 192000)


def _readable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.R_OK)


def find_soundfont(path: str | os.PathLike | None = None) -> Path:
    """The SoundFont to render with.

    Parameters
    ----------
    path : str, PathLike or None
        An explicit ``.sf2``/``.sf3`` file. When ``None``: the file named by the
        ``CUECRAFT_SOUNDFONT`` environment variable, else Debian's FluidR3_GM.sf2 if it is
        installed, else pretty_midi's bundled TimGM6mb.sf2 (:data:`DEFAULT_SOUNDFONT`).

    Returns
    -------
    Path

    Raises
    ------
    MediaError
        If an explicit path (argument or environment variable) is missing or unreadable.
    """
    if path is not None:
        chosen = Path(path)
        if not _readable(chosen):
            raise MediaError(f"soundfont '{chosen}': no such readable file")
        return chosen
    env = os.environ.get(SOUNDFONT_ENV)
    if env:
        if not _readable(Path(env)):
            raise MediaError(f"soundfont '{env}' (from ${SOUNDFONT_ENV}): no such readable file")
        return Path(env)
    if _readable(SYSTEM_SOUNDFONT):
        return SYSTEM_SOUNDFONT
    if not _readable(DEFAULT_SOUNDFONT):
        raise MediaError(f"soundfont '{DEFAULT_SOUNDFONT}': pretty_midi's bundled SoundFont is missing")
    return DEFAULT_SOUNDFONT


def _assign_channels(pm: pretty_midi.PrettyMIDI) -> list[int]:
    """A MIDI channel per instrument: drums on 9, melodic programs share a channel each."""
    by_program: dict[int, int] = {}
    free = [c for c in range(16) if c != DRUM_CHANNEL]
    channels = []
    for inst in pm.instruments:
        if inst.is_drum:
            channels.append(DRUM_CHANNEL)
            continue
        if inst.program not in by_program:
            if not free:
                raise ParameterError(f"the MIDI uses more than 15 melodic programs (program {inst.program} "
                                     "has no free channel)")
            by_program[inst.program] = free.pop(0)
        channels.append(by_program[inst.program])
    return channels


def _events(pm: pretty_midi.PrettyMIDI, channels: list[int], sample_rate: int, n_samples: int) -> list[tuple]:
    """``(sample, order, channel, kind, a, b)`` sorted; at one sample, controls, then offs, then ons."""
    events = []
    for inst, ch in zip(pm.instruments, channels):
        for cc in inst.control_changes:
            events.append((round(cc.time * sample_rate), 0, ch, "cc", cc.number, cc.value))
        for bend in inst.pitch_bends:
            events.append((round(bend.time * sample_rate), 0, ch, "bend", bend.pitch + 8192, 0))
        for note in inst.notes:
            on = round(note.start * sample_rate)
            # Offs sort before ons at one sample, so a note shorter than a sample would never end.
            off = max(round(note.end * sample_rate), on + 1)
            events.append((on, 2, ch, "on", note.pitch, note.velocity))
            events.append((off, 1, ch, "off", note.pitch, 0))
    return sorted(e for e in events if e[0] < n_samples)


def _limit(audio: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """Gentle look-ahead limiter, in place: no peak exceeds the ceiling and the gain moves smoothly.

    The needed gain is min-filtered over +-W samples and then averaged over W samples; an
    average of values each at most the needed gain at the centre stays at most that gain,
    so no sample overshoots, while the gain ramps over ~W instead of jumping. Only the
    stretches around peaks are processed (elsewhere the gain is exactly 1), which keeps
    a minute of audio to a few milliseconds.
    """
    peak = np.maximum(np.abs(audio[:, 0]), np.abs(audio[:, 1]))
    over = np.flatnonzero(peak > LIMIT_CEILING)
    if over.size == 0:
        return audio
    width = max(1, int(LIMIT_WINDOW_S * sample_rate))
    margin = 4 * width  # beyond the filters' reach, so each stretch starts and ends at gain 1
    breaks = np.flatnonzero(np.diff(over) > 2 * margin)
    for first, last in zip(np.r_[over[0], over[breaks + 1]], np.r_[over[breaks], over[-1]]):
        lo, hi = max(0, first - margin), min(len(audio), last + margin + 1)
        needed = np.minimum(1.0, LIMIT_CEILING / np.maximum(peak[lo:hi], 1e-12))
        held = minimum_filter1d(needed, size=2 * width + 1, mode="nearest")
        gain = np.minimum(uniform_filter1d(held, size=width + 1, mode="nearest"), needed)
        audio[lo:hi] *= gain[:, None].astype(audio.dtype)
    return audio


def render_midi(pm: pretty_midi.PrettyMIDI, *, sample_rate: int = 44100, soundfont: str | os.PathLike | None = None,
                duration: float | None = None) -> np.ndarray:
    """Synthesise a PrettyMIDI with a SoundFont.

    Parameters
    ----------
    pm : pretty_midi.PrettyMIDI
    sample_rate : int
        Output rate in Hz (8000-192000).
    soundfont : str, PathLike or None
        See :func:`find_soundfont`.
    duration : float or None
        Output length in seconds (silence-padded or cut); ``None`` means the end of the
        MIDI plus a release tail of ``RELEASE_TAIL_S``.

    Returns
    -------
    np.ndarray
        float32 ``[n, 2]`` stereo in [-1, 1], at a fixed master gain.

    Raises
    ------
    ParameterError
        For a bad sample rate or duration.
    MediaError
        If the SoundFont cannot be found or loaded.
    """
    blocks = list(render_blocks(pm, sample_rate=sample_rate, soundfont=soundfont, duration=duration))
    return np.concatenate(blocks) if blocks else np.zeros((0, 2), np.float32)


def render_blocks(pm: pretty_midi.PrettyMIDI, *, sample_rate: int = 44100,
                  soundfont: str | os.PathLike | None = None, duration: float | None = None,
                  block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Like :func:`render_midi`, but yields the audio in blocks of about ``block_seconds``.

    Memory stays flat in the length of the piece. The limiter sees a context of
    ``LIMIT_CONTEXT`` samples across each block boundary, more than its reach, so the
    joined blocks equal the whole-piece render sample for sample.
    """
    import tinysoundfont  # imported here: only rendering needs the compiled synth

    if not isinstance(pm, pretty_midi.PrettyMIDI):
        raise ParameterError(f"pm = {pm!r}: must be a pretty_midi.PrettyMIDI")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) \
            or not 8000 <= sample_rate <= 192000:
        raise ParameterError(f"sample_rate = {sample_rate!r}: must be an integer number of Hz in [8000, 192000]")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float, np.floating))
                                 or not math.isfinite(duration) or duration < 0):
        raise ParameterError(f"duration = {duration!r}: must be finite seconds >= 0 or None")
    path = find_soundfont(soundfont)
    seconds = duration if duration is not None else pm.get_end_time() + RELEASE_TAIL_S
    n_samples = int(round(seconds * sample_rate))
    synth = tinysoundfont.Synth(gain=MASTER_GAIN_DB, samplerate=int(sample_rate))
    try:
        sfid = synth.sfload(str(path), max_voices=_MAX_VOICES)
    except Exception as exc:  # the binding raises plain exceptions for unparsable files
        raise MediaError(f"soundfont '{path}': cannot load it ({exc})") from None
    channels = _assign_channels(pm)
    for inst, ch in zip(pm.instruments, channels):
        try:
            synth.program_select(ch, sfid, 0, inst.program, is_drums=inst.is_drum)
        except RuntimeError:  # a SoundFont without this preset: fall back to its first one
            synth.program_select(ch, sfid, 0, 0, is_drums=inst.is_drum)
    raw = _raw_blocks(synth, _events(pm, channels, sample_rate, n_samples), n_samples=n_samples,
                      block=max(1, int(block_seconds * sample_rate)))
    context = np.zeros((0, 2), np.float32)   # already emitted, kept so the limiter sees behind
    pending = np.zeros((0, 2), np.float32)   # rendered, not yet emitted: the limiter must see ahead
    for chunk in raw:
        window = np.concatenate([context, pending, chunk])
        limited = _limit(window.copy(), sample_rate=int(sample_rate))
        ready = len(window) - LIMIT_CONTEXT
        if ready > len(context):
            out = limited[len(context):ready]
            yield np.clip(out, -1.0, 1.0, out=out)
            context = window[ready - LIMIT_CONTEXT:ready]
            pending = window[ready:]
        else:
            pending = window[len(context):]
    if len(pending):
        window = np.concatenate([context, pending])
        out = _limit(window.copy(), sample_rate=int(sample_rate))[len(context):]
        yield np.clip(out, -1.0, 1.0, out=out)


def _raw_blocks(synth, events: list[tuple], *, n_samples: int, block: int) -> Iterator[np.ndarray]:
    """Unlimited synth output in blocks; each event starts on its own sample."""
    pending = iter(events)
    event = next(pending, None)
    for start in range(0, n_samples, block):
        stop = min(n_samples, start + block)
        out = np.zeros((stop - start) * 2, dtype=np.float32)
        view = memoryview(out).cast("B")
        pos = start
        while event is not None and event[0] < stop:
            sample, _, ch, kind, a, b = event
            if sample > pos:  # render exactly up to this event
                synth.generate_simple(sample - pos, buffer=view[(pos - start) * 8:(sample - start) * 8])
                pos = sample
            if kind == "on":
                synth.noteon(ch, a, b)
            elif kind == "off":
                synth.noteoff(ch, a)
            elif kind == "cc":
                synth.control_change(ch, a, b)
            else:
                synth.pitchbend(ch, a)
            event = next(pending, None)
        if stop > pos:
            synth.generate_simple(stop - pos, buffer=view[(pos - start) * 8:])
        yield out.reshape(-1, 2)
