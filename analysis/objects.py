"""Slices of one nucleus in neighbouring Z planes -> one object per time point, one row each.

A nucleus spans several Z planes; the slice table (``measure.py``) has one row per plane
it is seen in. Here a slice in plane ``z`` joins the object of the slice it overlaps in
the plane below (at least ``Z_LINK_OVERLAP`` of the smaller slice, one-to-one): the rule
``LABEL_IDS = "link_z"`` numbers the channel by, applied whatever IDs the channel holds.
Per object, as the application note's table has it:

- first and last plane, number of planes, volume (voxels x voxel size; voxels when the
  pixel size or the Z step is unknown), centroid x, y, z (over its voxels);
- the projected features: the union of its slices' masks seen along Z, its area, its
  circumference (Crofton, as the slice table's perimeter) and roundness 4 pi A / C^2;
- per channel the mean and integrated intensity over its voxels and over its ring (the
  slices' rings pooled pixel by pixel);
- the ID it carries in the label channel where all its slices carry one ID;
- ``cut_by_z_range``: it reaches the first or last plane of the run's Z range, so part
  of it may lie outside what was segmented.

Planes are added in the run's order (every plane of a time point, bottom to top, then
the next time point); a time point's objects are finished when its last plane is in.
Memory: the previous plane's labels and each open object's projected mask (its
bounding box). Pure numpy/scipy; no files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage as ndi

from .measure import Calibration, crofton_perimeters

#: Columns before the per-channel ones; ``{L}`` length, ``{A}`` area, ``{V}`` volume, ``{Z}`` z unit.
OBJECT_COLUMNS = ("time_point", "object_id", "label_id", "first_z", "last_z", "planes", "volume_{V}",
                  "projected_area_{A}", "projected_circumference_{L}", "projected_roundness",
                  "centroid_x_{L}", "centroid_y_{L}", "centroid_z_{Z}", "cut_by_z_range")
CHANNEL_OBJECT_STATISTICS = ("mean", "integrated", "ring_mean", "ring_integrated")


def units(calibration: Calibration) -> dict[str, str]:
    """The unit words of the object table's columns for this calibration."""
    z_known = calibration.z_step_um is not None
    return {"L": calibration.length_unit, "A": calibration.area_unit,
            "V": "um3" if calibration.pixel_size_um and z_known else "voxels",
            "Z": "um" if z_known else "plane"}


def object_columns(n_channels: int, calibration: Calibration) -> list[str]:
    """Every column of the objects table, in order."""
    words = units(calibration)
    names = [c.format(**words) for c in OBJECT_COLUMNS]
    names += [f"{s}_c{k}" for k in range(n_channels) for s in CHANNEL_OBJECT_STATISTICS]
    return names


#: A slice continues the object of the slice below it when their overlap covers at least
#: this share of the smaller of the two (a nucleus' top or bottom cap lies inside the slice
#: next to it, however small it is: IoU would cut caps off as objects of their own).
Z_LINK_OVERLAP = 0.5


def overlap_links(previous: np.ndarray, current: np.ndarray, threshold: float,
                  criterion: str = "iou") -> dict[int, int]:
    """``{current ID: previous ID}``: one-to-one links of two label planes by overlap.

    ``criterion`` "iou": intersection over union (StarDist's ``matching``), for one
    object's place at two time points; "smaller": intersection over the smaller of the
    two, for slices of one nucleus in neighbouring Z planes. Pairs are chosen to maximise
    the total overlap (``linear_sum_assignment``), as StarDist's matching does; a pair
    below ``threshold`` is no link.
    """
    from scipy.optimize import linear_sum_assignment
    from stardist.matching import label_overlap
    from skimage.segmentation import relabel_sequential

    if not previous.any() or not current.any():
        return {}
    before, _, back_before = relabel_sequential(np.asarray(previous).astype(np.int64, copy=False))
    now, _, back_now = relabel_sequential(np.asarray(current).astype(np.int64, copy=False))
    overlap = label_overlap(before, now, check=False)[1:, 1:].astype(np.float64)
    area_before, area_now = np.bincount(before.ravel())[1:], np.bincount(now.ravel())[1:]
    if criterion == "iou":
        denominator = area_before[:, None] + area_now[None, :] - overlap
    elif criterion == "smaller":
        denominator = np.minimum(area_before[:, None], area_now[None, :])
    else:
        raise ValueError(f"criterion must be 'iou' or 'smaller', not {criterion!r}")
    score = overlap / np.maximum(denominator, 1)
    rows, cols = linear_sum_assignment(score, maximize=True)
    keep = score[rows, cols] >= threshold
    return {int(back_now[c + 1]): int(back_before[r + 1]) for r, c in zip(rows[keep], cols[keep])}


@dataclass
class _Object:
    """What one nucleus has gathered so far, slice by slice."""

    first_z: int
    last_z: int
    top: int                       # the projected mask's bounding box: top-left corner
    left: int
    mask: np.ndarray               # (h, w) bool, the union of its slices
    planes: int = 0
    voxels: int = 0
    sum_x: float = 0.0             # pixel coordinates, summed over voxels
    sum_y: float = 0.0
    sum_z: float = 0.0
    sums: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ring_sums: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ring_pixels: float = 0.0
    label_ids: set = field(default_factory=set)

    def add_mask(self, top: int, left: int, crop: np.ndarray) -> None:
        """OR a slice's mask (its bounding-box crop at ``top, left``) into the projection."""
        bottom = max(self.top + self.mask.shape[0], top + crop.shape[0])
        right = max(self.left + self.mask.shape[1], left + crop.shape[1])
        new_top, new_left = min(self.top, top), min(self.left, left)
        if (new_top, new_left, bottom, right) != (self.top, self.left, self.top + self.mask.shape[0],
                                                   self.left + self.mask.shape[1]):
            grown = np.zeros((bottom - new_top, right - new_left), bool)
            grown[self.top - new_top:self.top - new_top + self.mask.shape[0],
                  self.left - new_left:self.left - new_left + self.mask.shape[1]] = self.mask
            self.mask, self.top, self.left = grown, new_top, new_left
        self.mask[top - self.top:top - self.top + crop.shape[0],
                  left - self.left:left - self.left + crop.shape[1]] |= crop


class ObjectBuilder:
    """Feed it every plane of the run in order; it returns each time point's objects as columns."""

    def __init__(self, calibration: Calibration, n_channels: int, planes: Sequence[int]) -> None:
        self.calibration, self.n_channels = calibration, n_channels
        self.planes = tuple(planes)
        self.columns = object_columns(n_channels, calibration)
        self._time_point: int | None = None
        self._objects: list[_Object] = []
        self._previous: tuple[int, np.ndarray, dict[int, int]] | None = None   # z, labels, {ID: object}

    def add_plane(self, time_point: int, z: int, labels: np.ndarray,
                  slices: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Add one plane's labels and its slice-table columns (same IDs).

        Returns the finished objects of ``time_point`` when ``z`` is its last plane, else None.
        """
        if self._time_point is not None and time_point != self._time_point:
            raise ValueError(f"plane t={time_point} z={z} came before time point {self._time_point} was complete")
        self._time_point = time_point
        labels = np.asarray(labels)
        if labels.dtype.kind != "i" and labels.dtype.kind != "u":
            labels = labels.astype(np.int64)
        links = {}
        if self._previous is not None and self._previous[0] == self._z_before(z):
            links = overlap_links(self._previous[1], labels, Z_LINK_OVERLAP, "smaller")
        owner: dict[int, int] = {}
        for slice_id, top, left, crop, rows, cols in _slices(labels):
            linked = links.get(slice_id)
            index = self._previous[2].get(linked) if linked is not None else None
            if index is None:
                index = len(self._objects)
                self._objects.append(_Object(z, z, top, left, np.zeros((0, 0), bool),
                                             sums=np.zeros(self.n_channels), ring_sums=np.zeros(self.n_channels)))
            owner[slice_id] = index
            item = self._objects[index]
            item.add_mask(top, left, crop)
            item.last_z = z
            item.planes += 1
            item.voxels += rows.size
            item.sum_y += float(rows.sum())
            item.sum_x += float(cols.sum())
            item.sum_z += float(z) * rows.size
            item.label_ids.add(slice_id)
        self._add_intensities(slices, owner)
        self._previous = (z, labels, owner)
        if z != self.planes[-1]:
            return None
        return self._finish()

    def _z_before(self, z: int) -> int | None:
        index = self.planes.index(z)
        return self.planes[index - 1] if index > 0 else None

    def _add_intensities(self, slices: Mapping[str, np.ndarray], owner: Mapping[int, int]) -> None:
        """Channel sums inside and in the ring, from the slice table (ring sum = ring mean x ring pixels)."""
        sy, sx = self.calibration.spacing
        ring_area = np.asarray(slices[f"ring_area_{self.calibration.area_unit}"], np.float64) / (sx * sy)
        for row, label in enumerate(np.asarray(slices["label"]).tolist()):
            item = self._objects[owner[int(label)]]
            item.ring_pixels += ring_area[row]
            for k in range(self.n_channels):
                item.sums[k] += float(slices[f"sum_c{k}"][row])
                ring_mean = float(slices[f"ring_mean_c{k}"][row])
                if ring_area[row] > 0 and np.isfinite(ring_mean):
                    item.ring_sums[k] += ring_mean * ring_area[row]

    def _finish(self) -> dict[str, np.ndarray]:
        """The time point's objects as columns, numbered 1..n by first plane, then position."""
        objects, t = self._objects, self._time_point
        self._objects, self._previous, self._time_point = [], None, None
        sy, sx = self.calibration.spacing
        z_step = self.calibration.z_step_um
        names = self.columns
        n = len(objects)
        columns: dict[str, np.ndarray] = {name: np.zeros(n) for name in names}
        columns["time_point"] = np.full(n, t, np.int64)
        columns["object_id"] = np.arange(1, n + 1, dtype=np.int64)
        columns["label_id"] = np.array([next(iter(o.label_ids)) if len(o.label_ids) == 1 else np.nan
                                        for o in objects], np.float64)
        columns["first_z"] = np.array([o.first_z for o in objects], np.int64)
        columns["last_z"] = np.array([o.last_z for o in objects], np.int64)
        columns["planes"] = np.array([o.planes for o in objects], np.int64)
        voxels = np.array([o.voxels for o in objects], np.float64)
        voxel_size = sx * sy * z_step if self.calibration.pixel_size_um and z_step is not None else 1.0
        columns[names[6]] = voxels * voxel_size
        area = np.array([np.count_nonzero(o.mask) for o in objects], np.float64) * sx * sy
        circumference = np.array([crofton_perimeters(o.mask.astype(np.int64), 2)[1] for o in objects],
                                 np.float64) * float(np.sqrt(sx * sy))
        columns[names[7]], columns[names[8]] = area, circumference
        with np.errstate(divide="ignore", invalid="ignore"):
            columns["projected_roundness"] = np.where(circumference > 0, 4 * np.pi * area / circumference ** 2,
                                                      np.nan)
        columns[names[10]] = np.array([o.sum_x for o in objects]) / np.maximum(voxels, 1) * sx
        columns[names[11]] = np.array([o.sum_y for o in objects]) / np.maximum(voxels, 1) * sy
        columns[names[12]] = np.array([o.sum_z for o in objects]) / np.maximum(voxels, 1) * (z_step or 1.0)
        columns["cut_by_z_range"] = np.array([o.first_z == self.planes[0] or o.last_z == self.planes[-1]
                                              for o in objects], np.int64)
        ring = np.array([o.ring_pixels for o in objects], np.float64)
        for k in range(self.n_channels):
            sums = np.array([o.sums[k] for o in objects], np.float64)
            ring_sums = np.array([o.ring_sums[k] for o in objects], np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                columns[f"mean_c{k}"] = sums / voxels
                columns[f"ring_mean_c{k}"] = np.where(ring > 0, ring_sums / ring, np.nan)
            columns[f"integrated_c{k}"] = sums
            columns[f"ring_integrated_c{k}"] = np.where(ring > 0, ring_sums, np.nan)
        return {name: columns[name] for name in names}


def _slices(labels: np.ndarray):
    """``(ID, top, left, mask crop, rows, cols)`` of every label present in one plane."""
    present = np.unique(labels[labels > 0])
    if present.size == 0:
        return
    if int(present[-1]) > 4 * labels.size:            # run-wide IDs far beyond the plane: number compactly
        searched = np.searchsorted(present, labels) + 1
        indexed, keys = np.where(labels > 0, searched, 0), range(1, present.size + 1)
    else:
        indexed, keys = labels, present.tolist()
    boxes = ndi.find_objects(indexed)
    for label, key in zip(present.tolist(), keys):
        box = boxes[key - 1]
        crop = indexed[box] == key
        rows, cols = np.nonzero(crop)
        yield int(label), box[0].start, box[1].start, crop, rows + box[0].start, cols + box[1].start
