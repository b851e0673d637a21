"""How label IDs are numbered across planes and time points.

- ``per_plane``: StarDist's own numbering, 1..n in every plane.
- ``unique``: no ID repeats anywhere in the run.
- ``link_z``: slices of one nucleus in neighbouring planes of one time point share one
  ID, so they read as 3D objects: the objects table's rule (overlap of at least half
  the smaller slice, ``analysis.objects.Z_LINK_OVERLAP``).
- ``track_t``: every slice of a nucleus carries its track's ID (the LAP tracker's, as in
  the tracks table). Tracks are known only once every time point is segmented, so the
  walk numbers objects as ``link_z`` does but with provisional IDs counted down from
  the pixel type's largest value; the run's last pass (``final_ids``) replaces them with
  track IDs 1, 2, ... The two ranges never meet (provisional IDs stay above half the
  type's range), so that pass can be repeated on any plane, half-rewritten or not: a
  run killed during it is resumed by doing it again.

The walk is time point by time point, Z bottom to top: the plane an object is linked
to is always the one segmented just before, so memory stays at one plane. Links are
one-to-one (``analysis.objects.overlap_links``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


LABEL_ID_MODES = ("per_plane", "unique", "track_t", "link_z")


def walk_order(time_points: Sequence[int], planes: Sequence[int]) -> list[tuple[int, int]]:
    """``(time_point, z)`` steps: time point by time point, each plane linked to the one before."""
    return [(t, z) for t in time_points for z in planes]


def provisional_floor(ceiling: int) -> int:
    """IDs above this are ``track_t``'s provisional ones; track IDs stay at or below it."""
    return ceiling // 2


def final_ids(plane: np.ndarray, track_ids: Mapping[int, int], ceiling: int) -> np.ndarray:
    """``plane`` with every provisional ID replaced by its track ID (final IDs stay as they are).

    Idempotent: applied to a plane already (or half) rewritten, it changes nothing more.
    """
    floor = provisional_floor(ceiling)
    values, inverse = np.unique(plane, return_inverse=True)
    if values.size == 0 or values[-1] <= floor:
        return plane
    mapped = np.array([track_ids.get(int(v), v) if v > floor else v for v in values.tolist()], dtype=plane.dtype)
    return mapped[inverse].reshape(plane.shape)


class LabelNumbering:
    """Turns each plane's 1..n labels into the run's IDs, one plane at a time."""

    def __init__(self, mode: str = "per_plane", iou: float = 0.3, ceiling: int = 2 ** 32 - 1) -> None:
        """``ceiling``: the output type's largest ID (``track_t`` counts down from it)."""
        if mode not in LABEL_ID_MODES:
            raise ValueError(f"unknown label ID mode {mode!r}; valid: {', '.join(LABEL_ID_MODES)}")
        self.mode, self.iou, self.ceiling = mode, iou, ceiling
        self.next_id = 1
        self._previous: tuple[int, int, np.ndarray] | None = None   # (t, z, run IDs)

    def _is_predecessor(self, t: int, z: int) -> bool:
        if self._previous is None:
            return False
        pt, pz, _ = self._previous
        return pt == t and pz == z - 1

    def _new_id(self) -> int:
        k, self.next_id = self.next_id, self.next_id + 1
        return self.ceiling + 1 - k if self.mode == "track_t" else k

    @property
    def out_of_ids(self) -> bool:
        """``track_t`` numbered more objects than track IDs may reach: as many tracks as objects
        would need IDs up to their count, which must stay at or below the provisional floor."""
        return self.mode == "track_t" and self.next_id - 1 > provisional_floor(self.ceiling)

    def renumber(self, t: int, z: int, labels: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
        """Run IDs for this plane's ``labels`` and the ``{plane ID: run ID}`` map."""
        plane_ids = np.unique(labels[labels > 0])
        if self.mode == "per_plane":
            return labels, {int(i): int(i) for i in plane_ids}
        links = {}
        if self.mode in ("track_t", "link_z") and self._is_predecessor(t, z):
            from ..analysis.objects import Z_LINK_OVERLAP, overlap_links   # link_z only: scipy's import stays out of start-up
            links = overlap_links(self._previous[2], labels, Z_LINK_OVERLAP, "smaller")
        mapping: dict[int, int] = {}
        for plane_id in plane_ids:
            plane_id = int(plane_id)
            mapping[plane_id] = links[plane_id] if plane_id in links else self._new_id()
        lookup = np.zeros(int(labels.max()) + 1, dtype=np.int64)
        for plane_id, run_id in mapping.items():
            lookup[plane_id] = run_id
        run_ids = lookup[labels]
        if self.mode in ("track_t", "link_z"):
            self._previous = (t, z, run_ids)
        return run_ids, mapping

    def state(self) -> dict:
        """What a resumed run needs besides the previous plane's labels (kept in the journal)."""
        return {"next_id": self.next_id}

    def restore(self, state: dict, previous: tuple[int, int, np.ndarray] | None) -> None:
        """Continue after an earlier run: its next ID, and the last plane it wrote (run IDs)."""
        self.next_id = int(state.get("next_id", 1))
        if self.mode in ("track_t", "link_z") and previous is not None:
            t, z, run_ids = previous
            self._previous = (t, z, np.asarray(run_ids).astype(np.int64))
