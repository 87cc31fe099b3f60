"""What keeps a fault from losing results or hiding its cause: atomic writes, folder locks, and
one line per error.

* :func:`atomic_write` / :func:`atomic_write_all`: every file the engine writes (checkpoints,
  metrics, results tables and their records, ``config.json``) goes to a temporary file in the same
  folder and is renamed into place. A kill or a full disk at any moment leaves the previous file
  whole (``os.replace`` is atomic within one file system) and no temporary file behind, except
  after SIGKILL (such leftovers are named ``.<name>.<pid>.<hex>.tmp``;
  :func:`remove_temp_files` clears them when the run folder is next taken). A write that fails
  (a full disk, a read-only file system) is one :class:`OutputLocationError` line.
* :func:`exclusive_lock`: a run folder (or a results table) belongs to one process at a time;
  ``fcntl.flock`` is released by the kernel when its holder dies, so a killed run never leaves a
  stale lock. Linux (and macOS) only, the platforms we target.
* :func:`check_output_dir`: an output location that is a file or not writable fails before any
  work, not after the first epoch.
* :func:`error_line`: the one place that turns an exception into one printable line.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import uuid
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence, Union

Content = Union[bytes, str, Callable[[BinaryIO], None]]


class FolderInUseError(RuntimeError):
    """Another process holds the lock of a run folder or results table."""


class OutputLocationError(OSError):
    """An output path cannot be written (it is a file, or permission is missing)."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno 13]" prefix
        return str(self.strerror)


def error_line(err: BaseException, limit: int = 300) -> str:
    """One line that says what went wrong, never empty.

    ``str(err)`` may be empty (``EOFError()`` from a 0-byte file), span many lines, or, for an
    error raised in a DataLoader worker, start with "Caught X in DataLoader worker process 0"
    followed by the worker's traceback, whose last line is the original error: we keep that one.
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if lines and lines[0].startswith("Caught ") and "Traceback" in str(err):
        lines = lines[-1:]
    text = " ".join(lines[0].split()) if lines else ""
    if not text or isinstance(err, (KeyError, EOFError)):
        text = f"{type(err).__name__}{': ' + text if text else ''}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _tmp_name(path: Path) -> Path:
    # unique per process and call: two writers never share a temporary file
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


_TMP_PATTERN = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$")


def remove_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writers of ours left in ``folder``; return them.

    Only names of :func:`_tmp_name`'s form whose process is gone are removed: call it while holding
    the folder's lock, so no live writer of ours can be writing there.
    """
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        match = _TMP_PATTERN.match(path.name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_failed(target: Path, err: OSError) -> OutputLocationError:
    """The one-line error for a write that failed: what, why, and that the old file is intact."""
    why = err.strerror or type(err).__name__
    hint = ("free some space" if err.errno == errno.ENOSPC else
            "choose a writable location" if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else
            "check the location")
    return OutputLocationError(err.errno or errno.EIO, f"could not write {target} ({why}); any "
                               f"previous version is intact: {hint} and run the same command again")


def atomic_write_all(files: Sequence[tuple[str | os.PathLike, Content]]) -> list[Path]:
    """Write every ``(path, content)`` to a temporary file first, then rename them into place in
    the given order.

    ``content`` is text, bytes, or a function that writes to a binary file (``torch.save``).
    All the slow work (serialising, writing, ``fsync``) is done before the first rename, so the
    files change together but for a window of a few system calls; callers that read several of
    them back check that they agree (the metrics CSV against its record, for example). On any
    error, a full disk included, the temporary files are removed and the targets are untouched.
    """
    done: list[tuple[Path, Path]] = []
    target = Path(files[0][0]) if files else Path()
    try:
        for target, content in files:
            target = Path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = _tmp_name(target)
            done.append((tmp, target))
            # os.open with 0o666 honours the umask, as a plain open() would (mkstemp gives 0600)
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
                if callable(content):
                    content(f)
                else:
                    f.write(content.encode() if isinstance(content, str) else content)
                f.flush()
                os.fsync(f.fileno())
        while done:
            tmp, target = done[0]
            os.replace(tmp, target)
            done.pop(0)
    except OutputLocationError:
        raise
    except OSError as err:  # a full disk, a read-only file system: one line, the old files intact
        raise write_failed(Path(target), err) from None
    finally:
        for tmp, _ in done:  # only what was not renamed: after an error, or an interrupt
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return [Path(target) for target, _ in files]


def atomic_write(path: str | os.PathLike, content: Content) -> Path:
    """Write one file atomically (see :func:`atomic_write_all`)."""
    return atomic_write_all([(path, content)])[0]


def check_output_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` now, or fail in one line saying why (:class:`OutputLocationError`).

    Walks up to the nearest existing ancestor first, so that a file in the way or a missing
    write permission is named; creating it catches the rest (read-only or special file systems,
    where ``os.access`` answers yes to root).
    """
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        if probe.is_symlink():  # a dangling link: mkdir would fail
            raise OutputLocationError(errno.ENOENT, f"output folder {folder}: {probe} is a broken link")
        probe = probe.parent
    if not probe.is_dir():
        raise OutputLocationError(errno.ENOTDIR, f"output folder {folder}: {probe} is a file, "
                                  f"not a folder; choose another location")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputLocationError(errno.EACCES, f"output folder {folder}: {probe} is not writable; "
                                  f"choose another location")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputLocationError(err.errno, f"output folder {folder} cannot be created "
                                  f"({err.strerror or type(err).__name__}); choose another location"
                                  ) from None
    return folder


@contextlib.contextmanager
def exclusive_lock(lock_path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing) while the block runs.

    A second process gets :class:`FolderInUseError` at once, naming the holder, instead of two
    runs interleaving their checkpoints. ``what`` names the locked thing in that message.
    """
    lock_path = Path(lock_path)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")
    except OSError as err:
        raise write_failed(lock_path, err) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise FolderInUseError(f"{what} is in use by {holder}: wait for it to finish, or "
                                   f"use another folder") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            handle.flush()
        except OSError as err:  # a full disk: the run could not write its checkpoints either
            raise write_failed(lock_path, err) from None
        yield
    finally:
        handle.close()  # closing releases the flock
