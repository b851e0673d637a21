"""Measuring as part of a run: per plane where NMS runs, tables and pictures at the end.

A plane's measurements are computed right after its labels are rendered (in the
worker process when there is a pool), keyed by StarDist's plane IDs; the run loop
maps them to the IDs written, appends them to the tables and hands them to the host
with the objects; a host that stores objects may attach the features to them. What is
measured and where the files go is decided before the model loads (``measure_plan.py``).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from ..analysis.measure import Calibration, measure_plane
from ..analysis.objects import ObjectBuilder, units
from ..analysis.tracking import TrackingSettings, track_files, track_table, write_csv
from ..analysis.tables import PARTIAL_SUFFIX, CsvTable, TablePaths, plane_summary, planes_columns
from .label_ids import final_ids, provisional_floor

if TYPE_CHECKING:
    from .workbook_process import WorkbookProcess

Columns = dict[str, np.ndarray]


def measure_instances(labels: np.ndarray, details: Mapping, channels: Sequence[np.ndarray],
                      calibration: Calibration, time_point: int = 0, z: int = 0) -> Columns:
    """The nuclei table of one plane as StarDist returned it (plane IDs; label k has prob[k-1])."""
    probabilities = {k + 1: float(p) for k, p in enumerate(np.asarray(details.get("prob", ())))}
    return measure_plane(labels, channels, probabilities, calibration, time_point, z)


def with_run_ids(columns: Columns, run_ids: Mapping[int, int]) -> Columns:
    """The same rows with the labels the run wrote (``{plane ID: run ID}``)."""
    labels = np.array([run_ids[int(i)] for i in columns["label"]], np.int64)
    return {**columns, "label": labels}


FEATURE_COLUMNS = ("area_{A}", "perimeter_{L}", "roundness", "probability")


def features_by_label(columns: Columns, calibration: Calibration, channel_names: Sequence[str],
                      header: Callable[[str, Sequence[str]], str]) -> dict[int, dict[str, float]]:
    """Per label, the features a host attaches to its object: shape, score, channel means."""
    units = {"L": calibration.length_unit, "A": calibration.area_unit}
    names = [c.format(**units) for c in FEATURE_COLUMNS]
    names += [name for name in columns if name.startswith("mean_c")]
    words = [header(name, channel_names) for name in names]
    values = np.column_stack([np.asarray(columns[name], np.float64) for name in names]) \
        if len(columns["label"]) else np.zeros((0, len(names)))
    return {int(label): dict(zip(words, row.tolist()))
            for label, row in zip(columns["label"], values)}


@dataclass
class Overlay:
    """The plane shown with outlines: where it is, and its labels once written."""

    time_point: int
    z: int
    labels: np.ndarray | None = None


@dataclass
class RunMeasurements:
    """The tables of one run, written as its planes complete; workbook and plots at the end."""

    paths: TablePaths
    calibration: Calibration
    channel_names: tuple[str, ...]
    plane_shape: tuple[int, int]
    track_ids: bool = False                  # track_t: the channel gets track IDs (``relabel_by_tracks``)
    time_increment_s: float | None = None
    plots: bool = True
    overlay: Overlay | None = None
    settings: Mapping[str, str] = field(default_factory=dict)
    resume: Mapping | None = None            # ``state()`` recorded with an earlier run's last plane
    z_planes: tuple[int, ...] = ()           # the run's Z planes; objects through Z when more than one
    replay: Callable[[int, int], tuple[np.ndarray, list[np.ndarray]]] | None = None   # a written plane + channels
    tracking: TrackingSettings | None = None   # LAP tracks over time at the end
    written: Callable[[int, int], np.ndarray] | None = None   # reads back a written plane (overlays)
    workbook_process: "WorkbookProcess | None" = None   # the workbook, written beside the run as rows come

    def __post_init__(self) -> None:
        from ..analysis.measure import column_names

        self.paths.folder.mkdir(parents=True, exist_ok=True)
        sizes = (self.resume or {}).get("tables", {})
        self.nuclei = CsvTable(self.paths.nuclei, column_names(len(self.channel_names), self.calibration),
                               sizes.get("nuclei"))
        self.planes = CsvTable(self.paths.planes, planes_columns(self.calibration), sizes.get("planes"))
        self.objects: CsvTable | None = None
        self.object_builder: ObjectBuilder | None = None
        if len(self.z_planes) > 1:
            self.object_builder = ObjectBuilder(self.calibration, len(self.channel_names), self.z_planes)
            self.objects = CsvTable(self.paths.objects, self.object_builder.columns, sizes.get("objects"))
            if self.resume:
                self._replay_open_time_point()
        self._tracked: list[str] | None = None     # track_t: lines of the tracking done before the output closed
        self._new_ids: Callable[[int], int] | None = None
        # the workbook's process follows the tables as they grow (track_t renumbers them at the end:
        # its workbook is written from the final tables); the run abandons the process if it stops
        self._streamed = self.workbook_process is not None and not self.track_ids
        if self._streamed:
            self.workbook_process.follow({sheet: table.partial_path for sheet, table in self._sheets().items()})
            self._workbook_grows()

    def _sheets(self) -> dict[str, CsvTable]:
        """The growing tables by sheet name, in the workbook's order."""
        sheets = {"Objects": self.objects} if self.objects is not None else {}
        return {**sheets, "Nuclei": self.nuclei, "Planes": self.planes}

    def _workbook_grows(self) -> None:
        """Tell the workbook's process how far the tables are written (flushed)."""
        if self._streamed:
            self.workbook_process.grow({sheet: table.size for sheet, table in self._sheets().items()})

    def _replay_open_time_point(self) -> None:
        """A resumed run stopped inside a time point: its done planes build their objects again.

        Read back from the output and the input and measured as the first run measured them,
        so the objects of that time point come out as an undisturbed run's.
        """
        done = [tuple(step) for step in self.resume.get("planes", [])]
        if not done or self.replay is None:
            return
        t, last = done[-1]
        if last == self.z_planes[-1]:
            return                                   # stopped between time points: nothing open
        for z in self.z_planes[: self.z_planes.index(last) + 1]:
            labels, channels = self.replay(t, z)
            self.object_builder.add_plane(t, z, labels, measure_plane(labels, channels, None, self.calibration, t, z))

    def state(self) -> dict:
        """Table sizes after the last plane: a resumed run starts from them.

        Called as each plane is recorded complete; a stopped run's tables are cut back
        to these sizes, so they hold exactly the rows of the complete planes.
        """
        tables = {"nuclei": self.nuclei, "planes": self.planes, "objects": self.objects}
        state: dict = {"tables": {k: t.size for k, t in tables.items() if t is not None}}
        self._committed = state["tables"]
        return state

    def _cut_back(self) -> None:
        """Drop rows appended after the last complete plane (a plane that failed mid-way)."""
        committed = getattr(self, "_committed", None)
        tables = {"nuclei": self.nuclei, "planes": self.planes, "objects": self.objects}
        for name, table in tables.items():
            if table is not None and committed is not None and name in committed:
                table.cut_back(committed[name])

    def add_plane(self, time_point: int, z: int, columns: Columns,
                  labels: np.ndarray | Callable[[], np.ndarray]) -> None:
        """Append one written plane's rows (run IDs) to every table.

        ``labels`` may be a call that reads them back (a Dask worker wrote them): only the
        overlay's plane needs them.
        """
        self.nuclei.append(columns)
        self.planes.append(plane_summary(time_point, z, columns, self.calibration, self.plane_shape))
        if self.object_builder is not None:
            finished = self.object_builder.add_plane(time_point, z, labels() if callable(labels) else labels, columns)
            if finished is not None:
                self.objects.append(finished)
        if self.overlay is not None and (time_point, z) == (self.overlay.time_point, self.overlay.z):
            self.overlay.labels = np.array(labels() if callable(labels) else labels, copy=True)
        self._workbook_grows()

    def _lap_tracks(self, where: dict[str, Path]) -> list[str]:
        """Tracks over time from the finished objects (or nuclei) table; adds their sheets to ``where``."""
        if self._tracked is not None:               # track_t: tracked before the output closed
            for path in (self.paths.spots, self.paths.tracks):
                partial = _partial(path)
                if partial.exists():
                    shutil.copyfile(partial, path)   # the .partial stays until drop_partials
            notes = self._tracked
        elif self.tracking is None:
            return []
        else:
            notes = track_files(where.get("Objects", where["Nuclei"]), self.paths.spots, self.paths.tracks,
                                self.calibration.length_unit, units(self.calibration)["Z"], self.tracking,
                                self.tracking.max_distance, self.time_increment_s)
        if notes:
            where["Tracks"], where["Spots"] = self.paths.tracks, self.paths.spots
        return notes

    @property
    def new_id(self) -> Callable[[int], int] | None:
        """track_t after ``relabel_by_tracks``: an ID written during the walk -> its track ID."""
        return self._new_ids

    def relabel_by_tracks(self, ceiling: int) -> Callable[[np.ndarray], np.ndarray]:
        """track_t, once every plane is written: track the nuclei now and return the plane rewrite.

        The run applies it to every plane before the output is finished; the tables' ID
        columns and the spots table follow as they are finished. The spots and tracks go to
        ``.partial`` files until then, so a run stopped during the rewrite resumes it (the
        rewrite is idempotent: ``label_ids.final_ids``). One time point: objects are numbered
        1..n in table order.
        """
        source = (self.objects or self.nuclei).partial_path
        settings = self.tracking or TrackingSettings()
        tracked = track_table(source, self.calibration.length_unit, units(self.calibration)["Z"], settings,
                              settings.max_distance, self.time_increment_s)
        import pandas as pd
        table = pd.read_csv(source)
        ids = table["label_id" if self.objects is not None else "label"]
        if tracked is None:
            new = dict(zip(ids.astype(np.int64).tolist(), range(1, len(ids) + 1)))
            self._tracked = []
        else:
            spots, tracks, line = tracked
            keys = ["time_point", "object_id"] if self.objects is not None else ["time_point", "label"]
            joined = table[keys].merge(spots.rename(columns={"object_id": keys[1]}), on=keys, how="left")
            new = dict(zip(ids.astype(np.int64).tolist(), joined["track_id"].astype(np.int64).tolist()))
            if self.objects is None:                # one plane: the spot's object is its label, now the track's
                spots["object_id"] = spots["object_id"].map(lambda v: new.get(int(v), v))
            write_csv(spots, _partial(self.paths.spots))
            write_csv(tracks, _partial(self.paths.tracks))
            self._tracked = [f"{line}; their IDs are the label channel's (LABEL_IDS track_t): "
                             f"{self.paths.tracks.name}, {self.paths.spots.name}"]
        floor = provisional_floor(ceiling)           # IDs at or below it are final already
        self._new_ids = lambda v: new.get(v, v) if v > floor else v   # noqa: E731
        if self.overlay is not None and self.overlay.labels is not None:
            self.overlay.labels = final_ids(self.overlay.labels, new, ceiling)
        return lambda plane: final_ids(plane, new, ceiling)

    def draw_time_point_overlays(self, read_plane: Callable[[int, int], np.ndarray]) -> None:
        """Overlays of the other time points, while the output is open (``run_pictures``)."""
        from .run_pictures import draw_time_point_overlays
        draw_time_point_overlays(self, read_plane)

    def discard(self) -> None:
        """Close and delete the unfinished tables (a run that failed on bad input)."""
        for table in (self.nuclei, self.planes, self.objects):
            if table is not None:
                table.finish(False).unlink(missing_ok=True)

    def drop_partials(self) -> None:
        """After a completed run's output is in place: the ``.partial`` tables ``finish`` kept go."""
        for table in (self.nuclei, self.planes, self.objects):
            if table is not None:
                table.drop_partial()
        for path in (self.paths.spots, self.paths.tracks):
            _partial(path).unlink(missing_ok=True)

    def finish(self, completed: bool, read_plane: Callable[[int, int], np.ndarray]) -> list[str]:
        """Close the tables; a completed run also gets its workbook and plots. Returns notes.

        A completed run's ``.partial`` tables stay until ``drop_partials`` (the run calls it once
        its output is in place): a run killed before that finishes again from them."""
        if not completed:
            self._cut_back()
        tables = self._sheets()
        renumber = {"Objects": "label_id", "Nuclei": "label"} if completed and self._new_ids else {}
        where = {sheet: table.finish(completed, (renumber[sheet], self._new_ids) if sheet in renumber else None)
                 for sheet, table in tables.items()}
        if not completed:
            return [f"Measurements of the {self.planes.rows} complete plane(s) are kept in "
                    f"{where['Nuclei']} (and the other .partial tables)."]
        track_notes = self._lap_tracks(where)
        counted = (f"{self.objects.rows} nuclei through Z ({self.nuclei.rows} slices) measured: "
                   f"{where['Objects'].name}, " if self.objects is not None else
                   f"{self.nuclei.rows} nuclei measured: ")
        notes = [counted + ", ".join(p.name for s, p in where.items() if s not in ("Objects", "Tracks", "Spots"))
                 + f" in {self.paths.folder}"] + track_notes
        if self.plots:                         # PLOTS = False: the CSV tables only
            from .run_pictures import workbook_and_plots
            notes += workbook_and_plots(self, where, read_plane)
        return notes


def _partial(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)
