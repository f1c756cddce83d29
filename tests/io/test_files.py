import os
from pathlib import Path

import pytest

from cuecraft.errors import OutputError
from cuecraft.io.files import OutputSet, atomic_path, check_output_paths


def test_output_set_is_all_or_nothing(tmp_path):
    paths = {"a": tmp_path / "a.txt", "b": tmp_path / "b.txt"}
    with pytest.raises(RuntimeError):
        with OutputSet(paths, overwrite=False) as outputs:
            outputs.temp("a").write_text("A")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with OutputSet(paths, overwrite=False) as outputs:
        outputs.temp("a").write_text("A")
        outputs.temp("b").write_text("B")
        outputs.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_existing_output_needs_overwrite(tmp_path):
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(OutputError, match="already exists.*--overwrite"):
        check_output_paths([tmp_path / "a.txt"], overwrite=False)
    check_output_paths([tmp_path / "a.txt"], overwrite=True)


def unwritable_dir(tmp_path):
    """A directory this process cannot write to, even as root (procfs refuses new files)."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        return locked
    return Path("/proc")


def test_unwritable_directory(tmp_path):
    with pytest.raises(OutputError, match="not writable"):
        check_output_paths([unwritable_dir(tmp_path) / "x.mp4"], overwrite=False)


def test_missing_directory(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        check_output_paths([tmp_path / "nope" / "x.mp4"], overwrite=False)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "t.bin"
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise ValueError
    assert list(tmp_path.iterdir()) == []
