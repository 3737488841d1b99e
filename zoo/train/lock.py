"""The run-folder lock: one process at a time writes into a run folder.

``acquire(folder)`` takes an exclusive ``fcntl.flock`` on ``folder/.lock`` (``zoo.files.LOCK_FILE``)
and writes the holder's PID and command line into it. The lock is held for the rest of the
process (re-entrant: acquiring a folder this process already holds does nothing) and the kernel
drops it when the process ends, however it ends, so a kill -9 never leaves a stale lock. A normal
exit removes the file too. A second process that asks for a held folder gets a one-line
:class:`RunLocked` (a ZooError: exit 2) naming the holder's PID.

Removing a lock file is safe while other processes open it: a taker checks, after locking, that
the path still names the file it locked, and starts again if not.
"""
from __future__ import annotations

import atexit
import fcntl
import os
import shlex
import sys
from pathlib import Path

from ..errors import ZooError
from ..files import LOCK_FILE

_held: dict[Path, int] = {}   # resolved lock-file path -> open descriptor, for this process


class RunLocked(ZooError):
    """Another process holds the run folder's lock."""


def _key(folder: str | os.PathLike) -> Path:
    return Path(folder).resolve() / LOCK_FILE


def _holder(fd: int) -> str:
    """What the holder wrote into the lock file: 'PID 123: zoo train ...' (or '' if not yet written)."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        return ""
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if "pid" not in fields:
        return ""
    command = fields.get("command", "")
    if len(command) > 120:   # one readable line: the start of a long command, marked as cut
        command = command[:117] + "..."
    return f"PID {fields['pid']}" + (f": {command}" if command else "")


def acquire(folder: str | os.PathLike) -> None:
    """Hold ``folder``'s lock for the rest of this process (making ``folder`` if needed), or raise
    :class:`RunLocked` naming the process that holds it."""
    path = _key(folder)
    if path in _held:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _holder(fd)
            os.close(fd)
            raise RunLocked(f"{folder} is in use by another zoo process ({who or 'its PID not yet written'}); "
                            f"wait for it to finish, or use another folder") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)   # the file was removed or replaced after we opened it: take the new one
    command = " ".join(shlex.quote(a) for a in sys.argv).replace("\n", " ")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid={os.getpid()}\ncommand={command}\n".encode(), 0)
    _held[path] = fd


def release(folder: str | os.PathLike, *, remove: bool = True) -> None:
    """Give up ``folder``'s lock if this process holds it (removing the lock file first, by default)."""
    path = _key(folder)
    fd = _held.pop(path, None)
    if fd is None:
        return
    if remove:
        path.unlink(missing_ok=True)
    os.close(fd)


def held(folder: str | os.PathLike) -> bool:
    """Whether this process holds ``folder``'s lock."""
    return _key(folder) in _held


def in_use(folder: str | os.PathLike) -> bool:
    """Whether another process holds ``folder``'s lock (checked without taking it or writing anything)."""
    try:
        fd = os.open(_key(folder), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


@atexit.register
def _release_all() -> None:
    for path in list(_held):
        release(path.parent)
