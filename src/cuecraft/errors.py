"""One family of errors. Library code raises these; only the CLI turns them into exit code 2."""


class CuecraftError(Exception):
    """Base class of every error cuecraft raises on purpose (bad input, bad parameters)."""


class ParameterError(CuecraftError, ValueError):
    """A function or command was called with an invalid argument."""


class MediaError(CuecraftError):
    """A media file (video, audio, MIDI) is missing, unreadable or unusable."""


class ControlsError(CuecraftError, ValueError):
    """A controls file or Controls object is invalid."""


class OutputError(CuecraftError):
    """An output cannot be written (exists without overwrite, unwritable directory)."""
