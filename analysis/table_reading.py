"""Reading a run's CSV tables in chunks, and what their column names say about units.

Why chunks: the nuclei table can hold tens of millions of rows; every pass reads only
the columns it needs, ``chunksize`` rows at a time. The planes table (one row per
plane) is read whole, three columns of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

#: Rows read at a time from the nuclei table.
CHUNKSIZE = 200_000


@dataclass(frozen=True)
class Units:
    """Unit names of a run's tables: ``"um"`` or ``"px"`` and the derived labels."""

    length: str

    @property
    def area(self) -> str:
        """Column suffix of areas: ``um2`` or ``px2``."""
        return f"{self.length}2"

    @property
    def length_label(self) -> str:
        """Length unit as shown on axes: ``µm`` or ``px``."""
        return "µm" if self.length == "um" else self.length

    @property
    def area_label(self) -> str:
        """Area unit as shown on axes: ``µm²`` or ``px²``."""
        return f"{self.length_label}²"

    @property
    def density_area(self) -> float:
        """Reference area of the density, in the table's area unit: 1 mm² or 10⁶ px²."""
        return 1e6

    @property
    def density_label(self) -> str:
        """What a density value counts per: ``mm²`` or ``10⁶ px²``."""
        return "mm²" if self.length == "um" else "10⁶ px²"


def _header(path: Path) -> list[str]:
    """Column names of a CSV; an empty (0-byte) file has none."""
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except pd.errors.EmptyDataError:
        return []


def table_units(nuclei_csv: Path, planes_csv: Path | None = None) -> Units:
    """Units of a run's tables, from the nuclei table's header (``area_um2`` or ``area_px2``).

    The planes table's header is the fallback for a nuclei file without even a
    header, so an aborted run still gets its pictures.
    """
    for path, um, px in ((nuclei_csv, "area_um2", "area_px2"),
                         (planes_csv, "mean_area_um2", "mean_area_px2")):
        if path is None:
            continue
        columns = _header(Path(path))
        if um in columns:
            return Units("um")
        if px in columns:
            return Units("px")
        if columns:
            raise ValueError(f"{path}: neither {um!r} nor {px!r} in the header {columns}")
    raise ValueError(f"{nuclei_csv}: empty file, cannot tell the units")


def _chunks(path: Path, columns: Sequence[str], chunksize: int) -> Iterator[pd.DataFrame]:
    """``columns`` of ``path`` as float64, ``chunksize`` rows at a time; empty fields are NaN.

    A header-only or 0-byte file yields nothing.
    """
    if not _header(Path(path)):
        return
    reader = pd.read_csv(path, usecols=list(columns), dtype=np.float64, chunksize=chunksize)
    with reader:
        for chunk in reader:
            if len(chunk):
                yield chunk


def read_planes(planes_csv: Path, chunksize: int = CHUNKSIZE) -> pd.DataFrame:
    """``time_point, z, nuclei`` of every segmented plane (one row per plane, duplicates dropped).

    Small enough to keep: one row per plane, not per nucleus.
    """
    parts = [c for c in _chunks(planes_csv, ("time_point", "z", "nuclei"), chunksize)]
    if not parts:
        return pd.DataFrame({"time_point": np.zeros(0, np.int64), "z": np.zeros(0, np.int64),
                             "nuclei": np.zeros(0, np.float64)})
    planes = pd.concat(parts, ignore_index=True)
    planes = planes.dropna(subset=["time_point", "z"])
    planes["time_point"] = planes["time_point"].astype(np.int64)
    planes["z"] = planes["z"].astype(np.int64)
    planes["nuclei"] = planes["nuclei"].fillna(0.0)
    planes = planes.drop_duplicates(subset=["time_point", "z"], keep="last")
    return planes.sort_values(["time_point", "z"], ignore_index=True)


