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
        return walk_order(self.time_points, self.planes)


def resolve_plane_range(first: int, last: int, size_z: int) -> tuple[int, int]:
    """``-1`` means bottom for ``first`` and top for ``last``; both inclusive, 0-based."""
    return (0 if first == -1 else first, size_z - 1 if last == -1 else last)


def output_dtype(input_dtype: np.dtype, label_dtype: str = "auto", label_ids: str = "per_plane",
                 source: str = "") -> np.dtype:
    """One pixel type for the input channels and the labels together, for every input type.

    ``auto`` widens the input type to at least uint16 so labels have room; every input
    value is kept exactly:

    ==================================  =====================  ==========================
    input                               ``per_plane`` IDs       run-wide IDs (other modes)
    ==================================  =====================  ==========================
    bool (read as uint8 by the TIFF     uint16                 uint32
    host), uint8, uint16
    uint32                              uint32                 uint32
    int8, int16, int32                  int32                  int32
    float16, float32                    float32                float32
    float64                             float64                float64
    int64, uint64                       refused (ValueError)   refused
    complex, anything else              refused (ValueError)   refused
    ==================================  =====================  ==========================

    64-bit integers are refused because no output type holds them exactly (OME-TIFF has
    no 64-bit integer type, and float64 is exact only up to 2**53); complex values are
    not intensities. The refusal comes whatever ``label_dtype`` says, since no choice of
    it holds them either; ``source`` (a file name) is named in the message.

    An explicit ``label_dtype`` is taken as given otherwise; whether it can hold the
    input values is checked by config validation. Float outputs number labels exactly
    up to ``largest_label`` (2**24 for float32).
    """
    input_dtype = np.dtype(input_dtype)
    _refuse_unstorable(input_dtype, source)
    if label_dtype != "auto":
        return np.dtype(label_dtype)
    if label_ids != "per_plane" and input_dtype.kind in "bu" and input_dtype.itemsize < 4:
        return np.dtype(np.uint32)
    if input_dtype.kind == "f":
        return np.dtype(np.float64) if input_dtype.itemsize > 4 else np.dtype(np.float32)
    if input_dtype.kind == "b" or (input_dtype.kind == "u" and input_dtype.itemsize <= 2):
        return np.dtype(np.uint16)
    if input_dtype.kind == "i":
        return np.dtype(np.int32)
    return input_dtype                      # uint32


def _refuse_unstorable(dtype: np.dtype, source: str) -> None:
    """ValueError (one line) for an input type no output pixel type holds exactly."""
    what = f"{source} has" if source else "the input has"
    if dtype.kind in "ui" and dtype.itemsize > 4:
        raise ValueError(
            f"{what} {dtype.name} pixels, which no output type holds exactly (OME-TIFF has no "
            "64-bit integers); save the image as uint16, uint32 or int32 if its values fit, "
            f"e.g. numpy: image.astype('{'uint32' if dtype.kind == 'u' else 'int32'}')")
    if dtype.kind == "c":
        raise ValueError(
            f"{what} complex pixels ({dtype.name}); StarDist segments real intensities: save the "
            "magnitude or the real part as float32, e.g. numpy: np.abs(image).astype('float32')")
    if dtype.kind not in "buif" or (dtype.kind == "f" and dtype.itemsize > 8):
        raise ValueError(f"{what} pixels of type {dtype.name}, which are not intensities; save "
                         "the image as uint8, uint16, int32 or float32")


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
