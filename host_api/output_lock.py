"""One writer per output: an exclusive lock on ``OUTPUT.lock``, held for the whole run.

Why: two runs started a second apart on one output both passed the "exists" check
and interleaved their planes into one file that ended "Done". The lock is taken
before anything else (before the model loads); a second run stops at once, naming
the run that holds it. It is an OS lock (``flock`` / ``msvcrt.locking``) on an open
file, so the OS releases it however the holder ends, ``kill -9`` included; the file
keeps the holder's pid and start time, so the next run can say whose stale lock it
took over.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from .base import HostError

LOCK_SUFFIX = ".lock"


class OutputLocked(HostError):
    """Another run is writing this output."""


def _try_lock(fd: int) -> bool:
    """Exclusive, non-blocking; False when another process holds it."""
    try:
        import fcntl
    except ImportError:                            # Windows
        import msvcrt
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


def _holder(fd: int) -> dict:
    """What the lock file says of the run that wrote it (``{}`` if unreadable)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "unknown time"
    host = holder.get("host")
    return f"pid {holder.get('pid', '?')}{f' on {host}' if host else ''}, started {when}"


class OutputLock:
    """``acquire()`` before writing ``output``; ``release()`` when the run is over."""

    def __init__(self, output: Path) -> None:
        self.output = Path(output)
        self.path = Path(str(self.output) + LOCK_SUFFIX)
        self._fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock; returns a line to say when a stopped run's stale lock was taken over.

        Raises OutputLocked (one line, naming the other run) when a live run holds it.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            holder = _holder(fd)
            os.close(fd)
            raise OutputLocked(
                f"{self.output} is being written by another run ({_describe(holder)}); wait for it "
                "to end, or choose another output")
        previous = _holder(fd)
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, record.encode())
        os.fsync(fd)
        self._fd = fd
        if previous.get("pid") and previous.get("pid") != os.getpid():
            return f"Took over the lock of a run that ended without releasing it ({_describe(previous)})."
        return None

    def release(self) -> None:
        """Remove the lock file and let go (safe to call twice)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None
