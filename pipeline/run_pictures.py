"""The pictures and the workbook of a finished run: made from its CSV tables and its planes.

Split from ``measuring.py`` (which streams the tables plane by plane): everything here runs once,
at the end, and a failure costs a picture or the workbook, never a table. ``tables`` is the run's
``RunMeasurements``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

#: Outline overlays drawn at most (one per time point, evenly spread over a longer run).
MAX_OVERLAYS = 100


def draw_time_point_overlays(tables, read_plane: Callable[[int, int], np.ndarray]) -> None:
    """The overlay's plane at every other time point (up to ``MAX_OVERLAYS``, evenly spread), read
    back from the output while it is still open (call before the host finishes); none where the host
    cannot read its output back. The first time point's is drawn with the other plots."""
    from ..analysis.plots import Overlay as PlotOverlay, plot_overlay

    tables.overlay_pictures = []
    if not tables.plots or tables.overlay is None or tables.written is None:
        return
    times = np.unique(pd.read_csv(tables.planes.partial_path, usecols=["time_point"])["time_point"].to_numpy())
    if times.size > MAX_OVERLAYS:
        times = times[np.linspace(0, times.size - 1, MAX_OVERLAYS).round().astype(int)]
    z = tables.overlay.z
    pixel = tables.calibration.pixel_size_um[0] if tables.calibration.pixel_size_um else None
    tables.paths.plots.mkdir(exist_ok=True)
    for t in times.tolist():
        if t == tables.overlay.time_point:
            continue
        try:
            labels = tables.written(t, z)
        except NotImplementedError:
            return
        picture = PlotOverlay(read_plane(t, z), labels, t, z)
        tables.overlay_pictures.append(plot_overlay(picture, tables.paths.plots / f"overlay_t{t:04d}_z{z:04d}.png", pixel))


def cell_plots(tables, where: Mapping[str, Path], read_plane: Callable[[int, int], np.ndarray]) -> list[Path]:
    """Counts and sizes per time point, each nucleus once, and the tracks over the last projection."""
    from ..analysis.cell_plots import make_cell_plots
    from ..analysis.table_reading import Units

    planes = pd.read_csv(where["Planes"], usecols=["time_point", "z"])

    def projection(t: int) -> np.ndarray:
        image = None
        for z in planes.loc[planes["time_point"] == t, "z"]:
            plane = np.asarray(read_plane(t, int(z)), np.float32)
            image = plane if image is None else np.maximum(image, plane)
        return image

    sy, sx = tables.calibration.spacing
    return make_cell_plots(tables.paths.plots, where.get("Objects", where["Nuclei"]), "Objects" in where,
                           Units(tables.calibration.length_unit), (sx, sy), where.get("Spots"),
                           where.get("Tracks"), projection)


def workbook_and_plots(tables, where: Mapping[str, Path],
                        read_plane: Callable[[int, int], np.ndarray]) -> list[str]:
    """The Excel workbook and the pictures, made from the finished CSVs.

    The tables are complete before this starts; a disk or a file that fails here
    costs the workbook or the pictures (said in a note), never the tables.
    """
    from ..analysis.plots import Overlay as PlotOverlay, make_plots

    workbook_args = (tables.paths.workbook, dict(where), dict(tables.settings), list(tables.channel_names))
    beside = getattr(tables, "workbook_process", None)     # written as the tables grew, finished beside the plots
    notes: list[str] = []
    if beside is None:
        notes += _workbook_notes(workbook_args, None)
    else:
        beside.finish_later(where, tables.settings)
    picture = None
    if tables.overlay is not None and tables.overlay.labels is not None:
        picture = PlotOverlay(read_plane(tables.overlay.time_point, tables.overlay.z),
                              tables.overlay.labels, tables.overlay.time_point, tables.overlay.z)
    sy, sx = tables.calibration.spacing
    field_size = (tables.plane_shape[1] * sx, tables.plane_shape[0] * sy)
    try:
        skipped: list[str] = []
        pixel = tables.calibration.pixel_size_um[0] if tables.calibration.pixel_size_um else None
        pictures = make_plots(tables.paths.plots, where["Nuclei"], where["Planes"], field_size, picture,
                              notes=skipped, pixel_size=pixel)
        pictures += getattr(tables, "overlay_pictures", [])
        pictures += cell_plots(tables, where, read_plane)
        notes.append(f"{len(pictures)} plot(s) in {tables.paths.plots}")
        notes += skipped
    except OSError as error:
        notes.append(f"The plots could not be written ({error}); the CSV tables are complete.")
    if beside is not None:
        notes[:0] = _workbook_notes(workbook_args, beside)
    return notes


def _workbook_notes(workbook_args: tuple, beside) -> list[str]:
    """The workbook's notes: collected from ``beside`` (the second process), else written here,
    also when the second process could not write it for any reason but the disk (it died, or a
    script without a main guard stopped it); or why it could not be written."""
    from ..analysis.excel import write_workbook
    try:
        notes = beside.notes() if beside is not None else None
        if notes is None:
            notes = write_workbook(*workbook_args)
    except OSError as error:
        return [f"The Excel workbook could not be written ({error}); the CSV tables are complete."]
    return notes + [f"Excel workbook: {workbook_args[0]}"]
