"""How label IDs are numbered across planes and time points.

- ``per_plane``: StarDist's own numbering, 1..n in every plane.
- ``unique``: no ID repeats anywhere in the run.
- ``track_t``: an object keeps its ID from one time point to the next at the same Z
  when the two overlap with IoU >= ``iou``; new objects get new IDs.
- ``link_z``: slices of one nucleus in neighbouring planes of one time point share one
  ID, so they read as 3D objects: the objects table's rule (overlap of at least half
  the smaller slice, ``analysis.objects.Z_LINK_OVERLAP``).

Memory stays at one plane: the walk order is chosen so that the plane an object is
linked to is always the one segmented just before (time-major for ``link_z``,
Z-major for ``track_t``). Links are one-to-one (``analysis.objects.overlap_links``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..analysis.objects import Z_LINK_OVERLAP, overlap_links

LABEL_ID_MODES = ("per_plane", "unique", "track_t", "link_z")


def walk_order(mode: str, time_points: Sequence[int], planes: Sequence[int]) -> list[tuple[int, int]]:
    """``(time_point, z)`` steps in the order that keeps each link to the previous plane."""
    if mode == "track_t":
        return [(t, z) for z in planes for t in time_points]
    return [(t, z) for t in time_points for z in planes]


class LabelNumbering:
    """Turns each plane's 1..n labels into the run's IDs, one plane at a time."""

    def __init__(self, mode: str = "per_plane", iou: float = 0.3) -> None:
        if mode not in LABEL_ID_MODES:
            raise ValueError(f"unknown label ID mode {mode!r}; valid: {', '.join(LABEL_ID_MODES)}")
        self.mode, self.iou = mode, iou
        self.next_id = 1
        self._previous: tuple[int, int, np.ndarray] | None = None   # (t, z, run IDs)

    def _is_predecessor(self, t: int, z: int) -> bool:
        if self._previous is None:
            return False
        pt, pz, _ = self._previous
        if self.mode == "track_t":
            return pz == z and pt == t - 1
        return pt == t and pz == z - 1

    def renumber(self, t: int, z: int, labels: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
        """Run IDs for this plane's ``labels`` and the ``{plane ID: run ID}`` map."""
        plane_ids = np.unique(labels[labels > 0])
        if self.mode == "per_plane":
            return labels, {int(i): int(i) for i in plane_ids}
        links = {}
        if self.mode == "track_t" and self._is_predecessor(t, z):
            links = overlap_links(self._previous[2], labels, self.iou, "iou")
        elif self.mode == "link_z" and self._is_predecessor(t, z):
            links = overlap_links(self._previous[2], labels, Z_LINK_OVERLAP, "smaller")
        mapping: dict[int, int] = {}
        for plane_id in plane_ids:
            plane_id = int(plane_id)
            if plane_id in links:
                mapping[plane_id] = links[plane_id]
            else:
                mapping[plane_id] = self.next_id
                self.next_id += 1
        lookup = np.zeros(int(labels.max()) + 1, dtype=np.int64)
        for plane_id, run_id in mapping.items():
            lookup[plane_id] = run_id
        run_ids = lookup[labels]
        if self.mode in ("track_t", "link_z"):
            self._previous = (t, z, run_ids)
        return run_ids, mapping

    @property
    def largest_id(self) -> int:
        return self.next_id - 1

    def state(self) -> dict:
        """What a resumed run needs besides the previous plane's labels (kept in the journal)."""
        return {"next_id": self.next_id}

    def restore(self, state: dict, previous: tuple[int, int, np.ndarray] | None) -> None:
        """Continue after an earlier run: its next ID, and the last plane it wrote (run IDs)."""
        self.next_id = int(state.get("next_id", 1))
        if self.mode in ("track_t", "link_z") and previous is not None:
            t, z, run_ids = previous
            self._previous = (t, z, np.asarray(run_ids).astype(np.int64))
