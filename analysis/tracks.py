"""Tracks (an ID followed over time at one Z) from the nuclei table, as planes stream.

With ``LABEL_IDS = "track_t"`` a nucleus keeps its label from one time point to the
next at the same Z, and labels are unique in the run, so a track is one label: its
first and last time point, how far it ended from where it started (displacement),
how far it went step by step (path length), and its mean speed. The walk order of
``track_t`` is Z-major (every time point of one Z, then the next Z), so a track is
complete as soon as the run moves to another Z: memory holds the tracks of one Z.
Shaped like TrackMate's tracks table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .measure import Calibration


def tracks_columns(calibration: Calibration, time_increment_s: float | None) -> list[str]:
    """Columns of the tracks table; speed per second only when the time step is known."""
    unit = calibration.length_unit
    columns = ["track_id", "z", "first_time_point", "last_time_point", "time_points",
               f"displacement_{unit}", f"path_length_{unit}", f"mean_speed_{unit}_per_time_point"]
    if time_increment_s:
        columns.append(f"mean_speed_{unit}_per_s")
    return columns


@dataclass
class _Track:
    z: int
    first_t: int
    last_t: int
    points: int
    start: tuple[float, float]
    end: tuple[float, float]
    path: float


class TrackBuilder:
    """Feed it each plane's ``(label, centroid)`` columns in walk order; it yields finished tracks."""

    def __init__(self, calibration: Calibration, time_increment_s: float | None = None) -> None:
        self.columns = tracks_columns(calibration, time_increment_s)
        self.time_increment_s = time_increment_s
        unit = calibration.length_unit
        self._x, self._y = f"centroid_x_{unit}", f"centroid_y_{unit}"
        self._live: dict[int, _Track] = {}
        self._z: int | None = None

    def add_plane(self, time_point: int, z: int,
                  nuclei: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Take one plane's nuclei; returns the tracks completed by moving to a new Z, if any."""
        finished = self._flush() if self._z is not None and z != self._z else None
        self._z = z
        for label, x, y in zip(np.asarray(nuclei["label"]).tolist(),
                               np.asarray(nuclei[self._x]).tolist(), np.asarray(nuclei[self._y]).tolist()):
            track = self._live.get(label)
            if track is None:
                self._live[label] = _Track(z, time_point, time_point, 1, (x, y), (x, y), 0.0)
                continue
            track.path += float(np.hypot(x - track.end[0], y - track.end[1]))
            track.end, track.last_t = (x, y), time_point
            track.points += 1
        return finished

    def state(self) -> dict:
        """The open tracks, as JSON-ready numbers (a resumed run continues them)."""
        return {"z": self._z, "live": [[label, t.z, t.first_t, t.last_t, t.points, *t.start, *t.end, t.path]
                                       for label, t in self._live.items()]}

    def restore(self, state: dict) -> None:
        """Continue the open tracks of ``state`` (from ``state()``)."""
        self._z = state.get("z")
        self._live = {int(label): _Track(int(z), int(first), int(last), int(points), (sx, sy), (ex, ey), path)
                      for label, z, first, last, points, sx, sy, ex, ey, path in state.get("live", [])}

    def finish(self) -> dict[str, np.ndarray] | None:
        """The tracks still open (the last Z's), as columns."""
        return self._flush()

    def _flush(self) -> dict[str, np.ndarray] | None:
        tracks, self._live = sorted(self._live.items()), {}
        if not tracks:
            return None
        ids = np.array([label for label, _ in tracks], np.int64)
        first = np.array([t.first_t for _, t in tracks], np.int64)
        last = np.array([t.last_t for _, t in tracks], np.int64)
        start = np.array([t.start for _, t in tracks], np.float64)
        end = np.array([t.end for _, t in tracks], np.float64)
        path = np.array([t.path for _, t in tracks], np.float64)
        steps = (last - first).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            speed = np.where(steps > 0, path / steps, np.nan)
        values = [ids, np.array([t.z for _, t in tracks], np.int64), first, last,
                  np.array([t.points for _, t in tracks], np.int64),
                  np.hypot(*(end - start).T), path, speed]
        if self.time_increment_s:
            values.append(speed / self.time_increment_s)
        return dict(zip(self.columns, values))
