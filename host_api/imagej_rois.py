"""Nucleus outlines beside a TIFF output, as an ImageJ ROI set (``.zip``).

Why ImageJ ROIs and not GeoJSON: the people who open a headless TIFF output mostly
open it in Fiji, whose ROI Manager reads this zip directly and puts each outline on
its own plane (C, Z, T positions), and roifile makes each ROI without new dependencies.

Why a stream first: a zip cannot be cut back to what it held after plane k (appending
rewrites its central directory), so a run killed mid-plane could not resume it.
Outlines are appended plane by plane to ``NAME.parts`` (length-prefixed name + ROI
bytes: truncating it to a recorded size restores any earlier plane boundary), and the
zip is built from it at the end, with fixed entry times, so the same run always makes
the same bytes. A stopped run also gets ``NAME.partial``, a zip of what it has, for Fiji.
"""
from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

import roifile

from .base import Nucleus
from .tiff_metadata import tiff_stem

#: Entry time of every ROI in the zip (the zip format's earliest): byte-identical reruns.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_LENGTHS = struct.Struct("<II")


def sidecar_path(output_path: Path) -> Path:
    """``out.ome.tif`` -> ``out_rois.zip`` (beside it)."""
    return output_path.with_name(tiff_stem(output_path.name) + "_rois.zip")


class RoiSidecar:
    """Appends one polygon ROI per nucleus; ``finish`` builds the zip.

    ``resume_bytes`` continues a stream cut back to that size (a resumed run);
    otherwise any earlier stream or partial zip is replaced.
    """

    def __init__(self, path: Path, label_channel: int, resume_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.partial_path = Path(str(self.path) + ".partial")
        self.parts_path = Path(str(self.path) + ".parts")
        self.label_channel = label_channel
        self.count = 0
        self.renumber: Callable[[int], int] | None = None    # new IDs for the names (``track_t``)
        if resume_bytes is None:
            self.discard()
            self.parts_path.touch()
        else:
            self.cut_back(resume_bytes)

    def cut_back(self, size: int) -> None:
        """Truncate the stream to ``size`` bytes (a plane boundary recorded earlier)."""
        with open(self.parts_path, "r+b") as parts:
            parts.truncate(size)
        self.count = sum(1 for _ in self._entries())

    def append(self, time_point: int, z: int, nuclei: Sequence[Nucleus], tag: str) -> None:
        """Outlines of one plane (roifile takes 0-based C, Z, T and stores ImageJ's 1-based)."""
        records = []
        for nucleus in nuclei:
            # (y, x) rows -> ImageJ's (x, y); StarDist's vertices are in pixel-centre coordinates
            # (pixel k at k), ImageJ's in pixel-corner ones (pixel k spans k..k+1, centre k + 0.5)
            xy = nucleus.contour[:, ::-1] + 0.5
            name = f"t{time_point:04d}-z{z:04d}-{nucleus.label:06d}"
            roi = roifile.ImagejRoi.frompoints(xy, name=name, c=self.label_channel, z=z, t=time_point)
            data, encoded = roi.tobytes(), (name + ".roi").encode()
            records.append(_LENGTHS.pack(len(encoded), len(data)) + encoded + data)
        if records:
            with open(self.parts_path, "ab") as parts:
                parts.write(b"".join(records))
                parts.flush()
                os.fsync(parts.fileno())
            self.count += len(records)

    @property
    def size(self) -> int:
        """Bytes in the stream now: what the journal records after each plane."""
        return self.parts_path.stat().st_size if self.parts_path.exists() else 0

    def _entries(self) -> Iterator[tuple[str, bytes]]:
        with open(self.parts_path, "rb") as parts:
            while header := parts.read(_LENGTHS.size):
                name_length, data_length = _LENGTHS.unpack(header)
                yield parts.read(name_length).decode(), parts.read(data_length)

    def _renamed(self, name: str, data: bytes) -> tuple[str, bytes]:
        """One entry with its label ID (the name's last part) replaced by ``renumber``'s."""
        stem, label = name[: -len(".roi")].rsplit("-", 1)
        new = f"{stem}-{self.renumber(int(label)):06d}"
        roi = roifile.ImagejRoi.frombytes(data)
        roi.name = new
        return new + ".roi", roi.tobytes()

    def _write_zip(self, target: Path) -> None:
        temporary = Path(str(target) + ".tmp")
        with zipfile.ZipFile(temporary, "w") as archive:
            for name, data in self._entries():
                if self.renumber is not None:
                    name, data = self._renamed(name, data)
                archive.writestr(zipfile.ZipInfo(name, date_time=ZIP_TIME), data)
        os.replace(temporary, target)

    def finish(self, completed: bool, keep_parts: bool = True) -> Path | None:
        """Where the outlines are, or None when there were none.

        A completed run gets the zip and loses the stream; a stopped one gets
        ``NAME.partial`` (a zip for Fiji) and keeps the stream for a resume.
        """
        if not self.count:
            self.discard()
            return None
        target = self.path if completed else self.partial_path
        self._write_zip(target)
        if completed:
            self.partial_path.unlink(missing_ok=True)
        if not keep_parts:
            self.parts_path.unlink(missing_ok=True)
        return target

    def discard(self) -> None:
        """Remove the stream and any partial zip (not a finished zip)."""
        for path in (self.parts_path, self.partial_path, Path(str(self.partial_path) + ".tmp")):
            path.unlink(missing_ok=True)
