"""Which planes a run touches and which pixel type its output has.

Pure functions over a Config and a DatasetInfo: no I/O, no TensorFlow, so they are
used both by config validation (to word errors) and by the pipeline.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .label_ids import walk_order

LABEL_DTYPES = ("auto", "uint16", "uint32", "float32")


@dataclass(frozen=True)
class Plan:
    """The (time point, z) planes to segment, in order, and the output pixel type."""

    channel: int
    time_points: tuple[int, ...]
    planes: tuple[int, ...]
    output_dtype: np.dtype
    label_ids: str = "per_plane"

    @property
    def steps(self) -> list[tuple[int, int]]:
        """Every selected ``(time_point, z)``, in the order the label ID mode needs."""
        return walk_order(self.label_ids, self.time_points, self.planes)


def resolve_plane_range(first: int, last: int, size_z: int) -> tuple[int, int]:
    """``-1`` means bottom for ``first`` and top for ``last``; both inclusive, 0-based."""
    return (0 if first == -1 else first, size_z - 1 if last == -1 else last)


def output_dtype(input_dtype: np.dtype, label_dtype: str = "auto", label_ids: str = "per_plane") -> np.dtype:
    """One pixel type for the input channels and the labels together.

    ``auto`` widens the input type to at least uint16 so labels have room:
    uint8/uint16 -> uint16, float16/32 -> float32, float64 -> float64,
    uint32 -> uint32, signed ints -> int32 (negative values must survive),
    other ints -> their own type. Run-wide IDs (any ``label_ids`` but ``per_plane``)
    need more room: integer types then widen to at least 32 bits. An explicit setting is taken as given; whether it
    can hold the input values is checked by config validation.
    """
    input_dtype = np.dtype(input_dtype)
    if label_dtype != "auto":
        return np.dtype(label_dtype)
    if label_ids != "per_plane" and input_dtype.kind in "bu" and input_dtype.itemsize < 4:
        return np.dtype(np.uint32)
    if input_dtype.kind == "f":
        return np.dtype(np.float64) if input_dtype.itemsize > 4 else np.dtype(np.float32)
    if input_dtype.kind == "b" or (input_dtype.kind == "u" and input_dtype.itemsize <= 2):
        return np.dtype(np.uint16)
    if input_dtype.kind == "i" and input_dtype.itemsize <= 4:
        return np.dtype(np.int32)
    return input_dtype


def largest_label(dtype: np.dtype) -> int:
    """Largest label ID the type stores exactly (floats: their integer mantissa)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return 2 ** (np.finfo(dtype).nmant + 1)
    return int(np.iinfo(dtype).max)


def make_plan(channel: int, time_points: tuple[int, ...], first_plane: int, last_plane: int,
              size_z: int, input_dtype: np.dtype, label_dtype: str = "auto",
              label_ids: str = "per_plane") -> Plan:
    """Plan from already validated settings."""
    first, last = resolve_plane_range(first_plane, last_plane, size_z)
    return Plan(channel=channel, time_points=tuple(time_points),
                planes=tuple(range(first, last + 1)),
                output_dtype=output_dtype(input_dtype, label_dtype, label_ids), label_ids=label_ids)
