"""Room for an output, claimed before the first plane is written.

Why: the output is written through a memory map; with the disk full, a write into a
page the file system cannot back kills the process with SIGBUS and no message (seen
with 2 MB free). Checking the free space first, then allocating the file's blocks
(``posix_fallocate``), turns a disk too small into one line at the start, and no
later write into the map can fail for want of space.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .base import HostError


class DiskFull(HostError, OSError):
    """Not enough free space for the output."""


def megabytes(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MB"


def check_free(folder: Path, needed: int) -> None:
    """DiskFull (one line) unless ``folder``'s file system has ``needed`` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DiskFull(f"The output needs {megabytes(needed)}, {megabytes(free)} free on {folder}; "
                       "free some space or choose another output folder")


def reserve(path: Path) -> None:
    """Allocate every block of the file at ``path`` (its current size), where the OS can."""
    if not hasattr(os, "posix_fallocate"):
        return                                  # macOS, Windows: the free-space check must do
    size = Path(path).stat().st_size
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as error:
        if error.errno in (28, 122):             # ENOSPC, EDQUOT
            free = shutil.disk_usage(Path(path).parent).free
            raise DiskFull(f"The output needs {megabytes(size)}, {megabytes(free)} free on "
                           f"{Path(path).parent}; free some space or choose another output folder") from None
        if error.errno not in (95, 22):          # EOPNOTSUPP, EINVAL: a file system without it
            raise
    finally:
        os.close(fd)


def write_error(error: OSError, what: Path) -> HostError:
    """A failed write as one line naming the file; the journal still holds every complete plane."""
    reason = "the disk is full" if error.errno in (28, 122) else (error.strerror or str(error))
    return HostError(f"Writing {what} failed: {reason}. Every complete plane is kept; free space "
                     "and rerun the same command to resume.")
