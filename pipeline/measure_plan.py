"""What a run measures and where the files go, decided before the model loads.

``measure_plan`` reads the settings and the host once: the pixel size (and where it came
from), the table paths (refusing to replace an earlier run's tables without OVERWRITE), the
overlay's plane, tracking; ``MeasurePlan.start`` then opens the run's tables
(``measuring.RunMeasurements``) once the output exists.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from ..analysis.measure import Calibration
from ..analysis.tables import TablePaths
from ..analysis.tracking import TrackingSettings
from .measuring import Columns, Overlay, RunMeasurements, features_by_label

if TYPE_CHECKING:
    from .workbook_process import WorkbookProcess


def calibration_for(pixel_size_setting: tuple[float, float] | None,
                    file_pixel_size: Sequence[float | None], ring_um: float,
                    source: str) -> tuple[Calibration, str]:
    """The pixel size (and the file's Z step) measurements use, and one line saying where they came from."""
    calibration, line = _xy_calibration(pixel_size_setting, file_pixel_size, ring_um, source)
    z = file_pixel_size[2] if len(file_pixel_size) > 2 else None
    if z is not None and np.isfinite(z) and z > 0:
        return replace(calibration, z_step_um=float(z)), line
    return calibration, line


def _xy_calibration(pixel_size_setting: tuple[float, float] | None, file_pixel_size: Sequence[float | None],
                    ring_um: float, source: str) -> tuple[Calibration, str]:
    if pixel_size_setting is not None:
        x, y = (float(v) for v in pixel_size_setting)
        return Calibration((x, y), ring_um), f"Measuring in um: pixel size {x:g} x {y:g} um (PIXEL_SIZE_UM)."
    x, y = file_pixel_size[0], file_pixel_size[1]
    if x and y:
        return Calibration((float(x), float(y)), ring_um), f"Measuring in um: pixel size {x:g} x {y:g} um (from {source})."
    if x or y:
        size = float(x or y)
        return (Calibration((size, size), ring_um),
                f"Measuring in um: {source} states one pixel size ({size:g} um), taken for x and y; "
                "set PIXEL_SIZE_UM (--pixel-size-um X Y) if that is wrong.")
    return (Calibration(None, ring_um),
            f"Pixel size unknown in {source}: measurements are in pixels (columns _px, _px2) and "
            f"RING_UM = {ring_um:g} is taken as pixels; set PIXEL_SIZE_UM (--pixel-size-um X Y) for um.")


def safe_stem(name: str) -> str:
    """A file-name stem from a channel name (``StarDist (demo)`` -> ``StarDist_demo``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "stardist"


@dataclass(frozen=True)
class MeasurePlan:
    """What a run measures and where the results go, decided before the model loads."""

    calibration: Calibration
    channel_names: tuple[str, ...]
    plane_shape: tuple[int, int]
    paths: TablePaths | None                 # None: no files (features on objects only)
    attach_features: bool = False
    track_ids: bool = False                  # track_t: the channel gets the track IDs
    time_increment_s: float | None = None
    plots: bool = True
    overlay: tuple[int, int] | None = None   # (time point, z) of the outline picture
    planes: tuple[int, ...] = ()             # the run's Z planes, bottom to top
    tracking: TrackingSettings | None = None
    side_process: bool = False               # the workbook may be written in a process beside the plots

    def workbook_process(self) -> "WorkbookProcess | None":
        """The second process that writes the workbook as the tables grow, started now (before
        the model loads, so its start overlaps TensorFlow's); None where there is none."""
        if self.paths is None or not self.plots or not self.side_process:
            return None
        from .workbook_process import start_workbook_process
        return start_workbook_process(self.paths.workbook, self.channel_names)

    def start(self, settings: Mapping[str, str], resume: Mapping | None = None,
              written: Callable[[int, int], np.ndarray] | None = None,
              channels: Callable[[int, int], list[np.ndarray]] | None = None,
              workbook: "WorkbookProcess | None" = None) -> RunMeasurements | None:
        """Open the tables (once the output exists); None when no files are written.

        ``resume`` continues an earlier run's tables (``RunMeasurements.state()``);
        ``written`` reads back a plane it wrote, for the overlay picture and the objects of
        a time point the earlier run left unfinished; ``channels`` reads that plane's input;
        ``workbook``: the process from ``workbook_process()``.
        """
        if self.paths is None:
            return None
        overlay = None if self.overlay is None else Overlay(*self.overlay)
        if resume and overlay is not None and written is not None and \
                (overlay.time_point, overlay.z) in {tuple(p) for p in resume.get("planes", [])}:
            overlay.labels = written(overlay.time_point, overlay.z)
        replay = None
        if written is not None and channels is not None:
            replay = lambda t, z: (written(t, z), channels(t, z))   # noqa: E731
        return RunMeasurements(self.paths, self.calibration, self.channel_names, self.plane_shape,
                               self.track_ids, self.time_increment_s, self.plots, overlay, settings,
                               resume, self.planes if len(self.planes) > 1 else (), replay,
                               self.tracking, written, workbook)

    def features(self, columns: Columns) -> dict[int, dict[str, float]] | None:
        """Per label, the features the host attaches to objects (None when it attaches none)."""
        if not self.attach_features:
            return None
        from ..analysis.excel import human_header
        return features_by_label(columns, self.calibration, self.channel_names, human_header)


def measure_plan(config, host, plan, resuming: bool = False) -> MeasurePlan | None:
    """The run's MeasurePlan, or None when nothing would use measurements.

    Files go to MEASUREMENTS_DIR, else where the host puts them (beside a TIFF
    output; nowhere inside arivis). Files of an earlier run are replaced only with
    OVERWRITE; that is checked here, before the model loads.
    """
    if not config.measure:
        return None
    info = host.dataset_info()
    place = host.measurements_place()
    folder = Path(config.measurements_dir) if config.measurements_dir is not None else (
        place[0] if place else None)
    stem = place[1] if place else safe_stem(config.output_ch_name)
    paths = TablePaths(folder, stem) if folder is not None else None
    attach = host.keeps_features() and config.write_objects
    if paths is None and not attach:
        return None
    track_ids = config.label_ids == "track_t"
    from ..config import ConfigError
    if track_ids and (paths is None or not host.can_read_output()):
        raise ConfigError("LABEL_IDS = 'track_t' tracks nuclei from the measurement tables and then rewrites "
                          "the label channel: it needs MEASUREMENTS_DIR (--measurements-dir) where this host "
                          "writes no tables, and a host that reads its output back (the TIFF and OME-Zarr runs)")
    if paths is not None and not config.overwrite and not resuming:   # resuming: finished tables are its own
        existing = paths.existing()
        if existing:
            raise FileExistsError(
                f"Measurements {existing[0]} exist already; set OVERWRITE (--overwrite) to replace "
                "them, MEASUREMENTS_DIR (--measurements-dir) for another folder, or MEASURE = False")
    calibration, line = calibration_for(config.pixel_size_um, info.pixel_size_um, config.ring_um,
                                        info.source or "the image")
    host.log(line)
    planes = plan.planes
    return MeasurePlan(calibration, tuple(info.channel_names), info.plane_shape, paths, attach,
                       track_ids, info.time_increment_s, config.plots,
                       (plan.time_points[0], planes[len(planes) // 2]) if planes else None, tuple(planes),
                       TrackingSettings(config.track_max_distance_um, config.track_gap_frames, config.track_divisions),
                       side_process=_processes_allowed(config, host))


def _processes_allowed(config, host) -> bool:
    """A second process may write the workbook where the run may have worker processes
    (WORKERS not 0, the host and the Python executable allow them), on 2+ cores."""
    from .workers import cores, pool_refusal
    return cores() >= 2 and pool_refusal(config.workers, 2, host.allows_worker_processes()) is None
