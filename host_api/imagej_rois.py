"""Nucleus outlines beside a TIFF output, as an ImageJ ROI set (``.zip``).

Why ImageJ ROIs and not GeoJSON: the people who open a headless TIFF output mostly
open it in Fiji, whose ROI Manager reads this zip directly and puts each outline on
its own plane (C, Z, T positions), and roifile writes it without new dependencies.
Polygons are appended plane by plane to ``NAME.partial`` (memory stays at one
plane) and renamed when the run completes, like the image itself.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import roifile

from .base import Nucleus


def sidecar_path(output_path: Path) -> Path:
    """``out.ome.tif`` -> ``out_rois.zip`` (beside it)."""
    name = output_path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return output_path.with_name(name + "_rois.zip")


class RoiSidecar:
    """Appends one polygon ROI per nucleus; ``finish`` puts the zip in place."""

    def __init__(self, path: Path, label_channel: int) -> None:
        self.path = Path(path)
        self.partial_path = Path(str(self.path) + ".partial")
        self.label_channel = label_channel
        self.count = 0
        self.partial_path.unlink(missing_ok=True)

    def append(self, time_point: int, z: int, nuclei: Sequence[Nucleus], tag: str) -> None:
        """Outlines of one plane (roifile takes 0-based C, Z, T and stores ImageJ's 1-based)."""
        rois, names = [], []
        for nucleus in nuclei:
            xy = nucleus.contour[:, ::-1]            # (y, x) rows -> ImageJ's (x, y)
            name = f"t{time_point:04d}-z{z:04d}-{nucleus.label:06d}"
            rois.append(roifile.ImagejRoi.frompoints(
                xy, name=name, c=self.label_channel, z=z, t=time_point))
            names.append(name)
        if rois:
            roifile.roiwrite(self.partial_path, rois, name=names, mode="a")
            self.count += len(rois)

    def finish(self, completed: bool) -> Path | None:
        """Where the outlines are, or None when there were none."""
        if not self.partial_path.exists():
            return None
        if completed:
            os.replace(self.partial_path, self.path)
            return self.path
        return self.partial_path
