"""The run's tables as CSV files, appended plane by plane, put in place when complete.

Why CSV as the primary record: it streams (one plane's rows appended and flushed as
that plane is written, so memory stays at one plane and a stopped run keeps the rows
of every plane it wrote, in ``NAME.partial`` like the image), every tool reads it,
and the Excel workbook and plots are made from it at the end. Numbers are written
with 10 significant digits; an empty field is "not a number".
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .measure import Calibration

PARTIAL_SUFFIX = ".partial"
#: Columns that hold whole numbers (written without a decimal point).
INTEGER_COLUMNS = frozenset({"time_point", "z", "label", "nuclei", "track_id", "first_time_point",
                             "last_time_point", "time_points", "object_id", "first_z", "last_z", "planes",
                             "cut_by_z_range", "lineage_id", "start_time_point", "end_time_point", "spots",
                             "duration_time_points"})


def planes_columns(calibration: Calibration) -> list[str]:
    """Columns of the per-plane table."""
    area = calibration.area_unit
    density = "density_per_mm2" if calibration.pixel_size_um else "density_per_px2"
    return ["time_point", "z", "nuclei", density, f"mean_area_{area}", f"median_area_{area}",
            "covered_fraction"]


def plane_summary(time_point: int, z: int, nuclei: Mapping[str, np.ndarray],
                  calibration: Calibration, plane_shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """One row of the planes table from that plane's nuclei columns.

    ``covered_fraction`` is the share of the plane's pixels inside a nucleus; density
    is nuclei per mm2 of the field (per px2 without a pixel size).
    """
    names = planes_columns(calibration)
    area = np.asarray(nuclei[f"area_{calibration.area_unit}"], dtype=np.float64)
    sy, sx = calibration.spacing
    field = plane_shape[0] * plane_shape[1] * sy * sx          # in the area unit
    field_for_density = field / 1e6 if calibration.pixel_size_um else field   # um2 -> mm2
    count = len(area)
    values = [time_point, z, count, count / field_for_density,
              float(area.mean()) if count else np.nan,
              float(np.median(area)) if count else np.nan,
              float(area.sum() / field)]
    return {name: np.array([value]) for name, value in zip(names, values)}


def format_column(name: str, values: np.ndarray) -> list[str]:
    """CSV fields of one column: whole numbers plain, others ``%.10g``, NaN empty."""
    values = np.asarray(values)
    if name in INTEGER_COLUMNS:
        return [str(int(v)) for v in values]
    text = np.char.mod("%.10g", values.astype(np.float64))
    return ["" if t in ("nan", "-nan") else t for t in text.tolist()]


class CsvTable:
    """One CSV file: header at creation, rows appended and flushed per call.

    Written as ``PATH.partial``; ``finish(True)`` renames it to ``PATH``.
    """

    def __init__(self, path: Path, columns: Sequence[str], resume_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.partial_path = Path(str(self.path) + PARTIAL_SUFFIX)
        self.columns = list(columns)
        self.rows = 0
        if resume_bytes is not None:           # a resumed run: back to the last complete plane
            os.truncate(self.partial_path, resume_bytes)
            with open(self.partial_path, encoding="utf-8") as earlier:
                self.rows = sum(1 for _ in earlier) - 1
            self._file = open(self.partial_path, "a", newline="", encoding="utf-8")
            return
        self._file = open(self.partial_path, "w", newline="", encoding="utf-8")
        self._file.write(",".join(self.columns) + "\n")
        self._file.flush()

    def append(self, columns: Mapping[str, np.ndarray]) -> None:
        """Rows given as columns (every column of the table, equal lengths)."""
        fields = [format_column(name, columns[name]) for name in self.columns]
        if not fields or not fields[0]:
            return
        self._file.write("".join(",".join(row) + "\n" for row in zip(*fields)))
        self._file.flush()
        os.fsync(self._file.fileno())
        self.rows += len(fields[0])

    def cut_back(self, size: int) -> None:
        """Truncate to ``size`` bytes (a plane boundary recorded earlier) and recount the rows."""
        self._file.flush()
        self._file.truncate(size)
        self._file.seek(size)
        with open(self.partial_path, encoding="utf-8") as written:
            self.rows = sum(1 for _ in written) - 1

    @property
    def size(self) -> int:
        """Bytes written so far (flushed): what the journal records after each plane."""
        return self._file.tell() if not self._file.closed else self.partial_path.stat().st_size

    def finish(self, completed: bool, renumber: tuple[str, Callable[[int], int]] | None = None) -> Path:
        """Close; a completed table goes to its final name. Returns where it is.

        ``renumber`` ``(column, new ID)`` rewrites one ID column on the way (``track_t``'s
        track IDs); the ``.partial`` stays as it was until the final file is in place, so a
        resumed run still finds the bytes its journal recorded. The ``.partial`` stays in any
        case until ``drop_partial``: the run removes it once its output is in place, so a run
        killed in between finishes again from the same rows.
        """
        if not self._file.closed:
            self._file.close()
        if not completed:
            return self.partial_path
        if renumber is None:
            temporary = Path(str(self.path) + ".tmp")
            temporary.unlink(missing_ok=True)
            try:
                os.link(self.partial_path, temporary)        # the same bytes under the final name
            except OSError:                                  # a file system without hard links
                shutil.copyfile(self.partial_path, temporary)
            os.replace(temporary, self.path)
            return self.path
        temporary = Path(str(self.path) + ".tmp")
        with open(self.partial_path, encoding="utf-8") as rows, \
                open(temporary, "w", newline="", encoding="utf-8") as out:
            header = next(rows)
            out.write(header)
            column = header.rstrip("\n").split(",").index(renumber[0])
            for row in rows:
                fields = row.rstrip("\n").split(",")
                if fields[column]:
                    fields[column] = str(renumber[1](int(fields[column])))
                out.write(",".join(fields) + "\n")
        os.replace(temporary, self.path)
        return self.path

    def drop_partial(self) -> None:
        """Remove the ``.partial`` once the run's output is in place (``finish`` kept it)."""
        self.partial_path.unlink(missing_ok=True)


@dataclass(frozen=True)
class TablePaths:
    """Where a run's files go: ``FOLDER/STEM_nuclei.csv`` and the rest."""

    folder: Path
    stem: str

    def file(self, suffix: str) -> Path:
        return self.folder / f"{self.stem}_{suffix}"

    @property
    def nuclei(self) -> Path:
        return self.file("nuclei.csv")

    @property
    def planes(self) -> Path:
        return self.file("planes.csv")

    @property
    def objects(self) -> Path:
        return self.file("objects.csv")

    @property
    def spots(self) -> Path:
        return self.file("spots.csv")

    @property
    def tracks(self) -> Path:
        return self.file("tracks.csv")

    @property
    def workbook(self) -> Path:
        return self.file("measurements.xlsx")

    @property
    def plots(self) -> Path:
        return self.file("plots")

    def existing(self) -> list[Path]:
        """Finished files of an earlier run that a new one would replace.

        ``.partial`` tables are not counted: they belong to the output's ``.partial``,
        which the host resumes (or replaces) on its own terms.
        """
        paths = [self.nuclei, self.planes, self.objects, self.spots, self.tracks, self.workbook]
        return [p for p in paths if p.exists()] + ([self.plots] if self.plots.exists() else [])
