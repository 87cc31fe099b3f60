"""nfrepro.engine.faults: atomic writes under a full disk, folder locks, output checks, one-line errors."""
from __future__ import annotations

import errno
import os

import pytest

from nfrepro.engine import faults
from nfrepro.engine.faults import (
    FolderInUseError,
    OutputLocationError,
    atomic_write,
    atomic_write_all,
    check_output_dir,
    error_line,
    exclusive_lock,
)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_replaces_whole_files(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write(target, "one")
    atomic_write(target, b"two")
    atomic_write(target, lambda f: f.write(b"three"))
    assert target.read_text() == "three" and leftovers(target.parent) == []
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # as open() would make it


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_full_disk_mid_write_keeps_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.csv"
    atomic_write(target, "previous\n")

    def half_then_full(f):
        f.write(b"half of the new table")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(target, half_then_full)
    assert target.read_text() == "previous\n" and leftovers(tmp_path) == []


def test_a_failure_on_the_second_file_renames_neither(tmp_path, monkeypatch):
    a, b = tmp_path / "a.csv", tmp_path / "a.json"
    atomic_write_all([(a, "old a"), (b, "old b")])
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(faults.os, "fsync", fsync)
    with pytest.raises(OSError):
        atomic_write_all([(a, "new a"), (b, "new b")])
    assert a.read_text() == "old a" and b.read_text() == "old b" and leftovers(tmp_path) == []


def test_exclusive_lock_refuses_a_second_holder_and_is_released(tmp_path):
    lock = tmp_path / "run" / ".lock"
    with exclusive_lock(lock, "run folder run"):
        with pytest.raises(FolderInUseError, match=f"run folder run is in use by pid {os.getpid()}"):
            with exclusive_lock(lock, "run folder run"):
                pass
    with exclusive_lock(lock, "run folder run"):  # released on exit
        pass


def test_check_output_dir(tmp_path):
    (tmp_path / "file").write_text("x")
    assert check_output_dir(tmp_path / "new" / "deeper").is_dir()
    with pytest.raises(OutputLocationError, match="is a file"):
        check_output_dir(tmp_path / "file" / "run")
    with pytest.raises(OutputLocationError, match="cannot be created|not writable"):
        check_output_dir("/proc/1/nfrepro-run")  # refused even to root


def test_error_line_is_one_non_empty_line():
    assert error_line(EOFError()) == "EOFError"
    assert error_line(RuntimeError("")) == "RuntimeError"
    assert error_line(KeyError("model")) == "KeyError: 'model'"
    assert error_line(ValueError("first\nsecond")) == "first"
    assert len(error_line(ValueError("x" * 1000), 50)) == 50
    worker = ValueError("Caught DataIntegrityError in DataLoader worker process 0.\n"
                        "Original Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                        "nfrepro.data.datasets.DataIntegrityError: a.png is not a readable image\n")
    assert error_line(worker) == "nfrepro.data.datasets.DataIntegrityError: a.png is not a readable image"


def test_a_failed_write_is_one_line_that_names_the_file_and_the_fix(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(faults.os, "fsync", full)
    with pytest.raises(OutputLocationError) as info:
        atomic_write(tmp_path / "checkpoint.pt", b"x")
    message = str(info.value)
    assert "checkpoint.pt" in message and "free some space" in message and "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained traceback


def test_a_lock_on_a_read_only_location_is_one_line(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("builtins.open", read_only)
    with pytest.raises(OutputLocationError, match="run.lock .*Read-only.*writable location"):
        with exclusive_lock(tmp_path / "run.lock", "run folder"):
            pass


def test_remove_temp_files_takes_only_dead_writers_leftovers(tmp_path):
    dead = 2 ** 22 + 12345  # above the default pid_max: no such process
    ours_dead = tmp_path / f".checkpoint.pt.{dead}.0123abcd.tmp"
    ours_alive = tmp_path / f".checkpoint.pt.{os.getpid()}.0123abcd.tmp"
    foreign = tmp_path / ".notes.tmp"
    for path in (ours_dead, ours_alive, foreign):
        path.write_text("x")
    assert faults.remove_temp_files(tmp_path) == [ours_dead]
    assert leftovers(tmp_path) == sorted([ours_alive.name, foreign.name])
