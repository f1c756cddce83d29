"""Input checks and atomic, all-or-nothing output writing."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from cuecraft.errors import MediaError, OutputError


def check_input_file(path: str | os.PathLike, *, kind: str) -> Path:
    """Return ``path`` as a Path if it names a readable, non-empty regular file.

    Raises
    ------
    MediaError
        Naming the file and what is wrong with it.
    """
    path = Path(path)
    if not path.exists():
        raise MediaError(f"'{path}': no such {kind} file")
    if not path.is_file():
        raise MediaError(f"'{path}': not a file")
    if not os.access(path, os.R_OK):
        raise MediaError(f"'{path}': not readable")
    if path.stat().st_size == 0:
        raise MediaError(f"'{path}': the file is empty")
    return path


def check_output_paths(paths: list[Path], *, overwrite: bool) -> None:
    """Fail before any work if an output exists (without ``overwrite``) or its folder is unwritable."""
    for path in paths:
        if path.exists() and not overwrite:
            raise OutputError(f"'{path}': already exists (use --overwrite to replace it)")
        if path.exists() and path.is_dir():
            raise OutputError(f"'{path}': is a directory")
        folder = path.parent
        if not folder.is_dir():
            raise OutputError(f"'{folder}': output directory does not exist")
        _check_writable(folder)


def _check_writable(folder: Path) -> None:
    # Try it rather than trust os.access: root passes os.access checks on read-only mounts.
    try:
        fd, name = tempfile.mkstemp(prefix=".cuecraft-write-test.", dir=folder)
    except OSError as exc:
        raise OutputError(f"'{folder}': output directory is not writable ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(name)


def _temp_sibling(path: Path) -> Path:
    # Same directory, so the final os.replace is an atomic rename on one filesystem;
    # same suffix, so writers that pick a format from the extension still work.
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    # mkstemp makes 0600 files; outputs should get the usual permissions (0666 minus umask).
    os.chmod(name, 0o666 & ~_umask())
    return Path(name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    try:
        tmp = _temp_sibling(path)
    except OSError as exc:
        raise OutputError(f"'{path}': cannot write ({exc.strerror or exc})") from None
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class OutputSet:
    """Several outputs that appear together or not at all.

    Each output is written to a temporary sibling; :meth:`commit` renames them all.
    If the ``with`` block fails, every temporary file is removed and no output appears.
    """

    def __init__(self, paths: dict[str, Path], *, overwrite: bool) -> None:
        self.paths = {k: Path(v) for k, v in paths.items()}
        check_output_paths(list(self.paths.values()), overwrite=overwrite)
        self._temps: dict[str, Path] = {}

    def temp(self, key: str) -> Path:
        """The temporary path to write output ``key`` to."""
        if key not in self._temps:
            try:
                self._temps[key] = _temp_sibling(self.paths[key])
            except OSError as exc:
                raise OutputError(f"'{self.paths[key]}': cannot write ({exc.strerror or exc})") from None
        return self._temps[key]

    def commit(self) -> dict[str, Path]:
        missing = sorted(set(self.paths) - set(self._temps))
        if missing:
            raise AssertionError(f"outputs never written: {missing}")
        for key, tmp in self._temps.items():
            os.replace(tmp, self.paths[key])
        self._temps.clear()
        return dict(self.paths)

    def discard(self) -> None:
        for tmp in self._temps.values():
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._temps.clear()

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.discard()
