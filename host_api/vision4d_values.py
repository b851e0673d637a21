"""Plain values the arivis adapter (``vision4d.py``) hands around: its errors, the
operation's region, a read plane's shape check. No arivis call lives here (they all stay
in ``vision4d.py``); this is what of the adapter can be read and tested without arivis.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import HostError

ADAPTER_PATH = "stardist_v4d/host_api/vision4d.py"


class UnverifiedHostCall(HostError, NotImplementedError):
    """An arivis call no public script shows; implement it from the installed API help."""


class OutputChannelExists(HostError, ValueError):
    """The output channel exists already and OVERWRITE is not set."""


def unverified_call(call: str, function: str) -> UnverifiedHostCall:
    return UnverifiedHostCall(
        f"{call} is not in any public arivis script: check it in the installed arivis Python API "
        f"help and implement {function}() in {ADAPTER_PATH}")


@dataclass(frozen=True)
class Extent:
    """The operation's region in host coordinates: planes ``z1..z2`` inclusive, one time point."""

    x1: int
    y1: int
    width: int
    height: int
    z1: int
    z2: int
    time_point: int

    @property
    def size_z(self) -> int:
        return self.z2 - self.z1 + 1

    def region(self, z_host: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """``((x, y, z), (width, height, 1))``: one plane, as ``read/write_imagedata`` take it."""
        return ((self.x1, self.y1, int(z_host)), (self.width, self.height, 1))


def as_plane(data: Any, shape: tuple[int, int], call: str) -> tuple[np.ndarray, bool]:
    """``(Y, X)`` plane from a host read, and whether it came with a leading axis of length 1."""
    plane = np.asarray(data)
    leading = plane.ndim == 3 and plane.shape[0] == 1
    if leading:
        plane = plane[0]
    if plane.shape != shape:
        raise ValueError(f"{call} returned shape {np.shape(data)}, expected {shape} (Y, X), "
                         "optionally with a leading axis of length 1")
    return plane, leading
