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

from dataclasses import dataclass
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


def compact_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(compact, present)``: the plane numbered 1..n in the order of its sorted IDs
    (``present``, 0 stays background); a lookup table when the IDs are small, else a search."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        labels = labels.astype(np.int64)
    top = int(labels.max(initial=0))
    if top == 0:
        return np.zeros(labels.shape, np.int32), np.zeros(0, labels.dtype)
    if top <= 4 * labels.size:
        counts = np.bincount(labels.ravel().astype(np.intp, copy=False), minlength=top + 1)
        present = np.flatnonzero(counts[1:]) + 1
        lookup = np.zeros(top + 1, np.int32)
        lookup[present] = np.arange(1, present.size + 1, dtype=np.int32)
        return lookup[labels], present.astype(labels.dtype)
    present = np.unique(labels[labels > 0])
    compact = np.where(labels > 0, np.searchsorted(present, labels) + 1, 0).astype(np.int32)
    return compact, present


def link_compact(before: np.ndarray, n_before: int, now: np.ndarray, n_now: int, threshold: float,
                 criterion: str = "iou") -> np.ndarray:
    """For each slice 1..``n_now`` of the compact plane ``now``, the compact ID in ``before`` it
    links to (0: none); the rule of ``overlap_links``.

    Only pairs that overlap at all are scored (sparse), and the assignment maximising the
    total overlap is solved per group of slices that overlap each other (connected
    components): the same optimum as one assignment over the whole plane, at a cost that
    grows with the number of nuclei, not its square.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    result = np.zeros(n_now + 1, np.int64)
    both = (before > 0) & (now > 0)
    if not both.any():
        return result
    keys = before[both].astype(np.int64) * (n_now + 1) + now[both]
    pairs, overlap = np.unique(keys, return_counts=True)
    rows, cols = pairs // (n_now + 1), pairs % (n_now + 1)
    area_before = np.bincount(before.ravel(), minlength=n_before + 1)
    area_now = np.bincount(now.ravel(), minlength=n_now + 1)
    if criterion == "iou":
        denominator = area_before[rows] + area_now[cols] - overlap
    elif criterion == "smaller":
        denominator = np.minimum(area_before[rows], area_now[cols])
    else:
        raise ValueError(f"criterion must be 'iou' or 'smaller', not {criterion!r}")
    score = overlap / np.maximum(denominator, 1)
    # bipartite graph: previous slices 0..n_before, current ones after them
    graph = coo_matrix((np.ones(len(rows)), (rows, n_before + 1 + cols)),
                       shape=(n_before + n_now + 2,) * 2)
    _, component = connected_components(graph, directed=False)
    group = component[rows]
    sizes = np.bincount(group)
    single = (sizes[group] == 1)                            # the only pair of its group: no choice
    chosen_rows, chosen_cols = [rows[single]], [cols[single]]
    chosen_score = [score[single]]
    if not single.all():
        order = np.argsort(group[~single], kind="stable")
        g, r, c, v = group[~single][order], rows[~single][order], cols[~single][order], score[~single][order]
        starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        stops = np.r_[starts[1:], len(g)]
        # a group of one slice on either side (a slice overlapping several, the usual case) with
        # one best pair: the assignment is that pair; only the rest need the solver
        one_side = (np.maximum.reduceat(r, starts) == np.minimum.reduceat(r, starts)) | \
                   (np.maximum.reduceat(c, starts) == np.minimum.reduceat(c, starts))
        best = np.maximum.reduceat(v, starts)
        at_best = v == np.repeat(best, stops - starts)
        unique_best = np.add.reduceat(at_best.astype(np.int64), starts) == 1
        easy = np.repeat(one_side & unique_best, stops - starts) & at_best
        chosen_rows.append(r[easy])
        chosen_cols.append(c[easy])
        chosen_score.append(v[easy])
        for start, stop in zip(starts[~(one_side & unique_best)], stops[~(one_side & unique_best)]):
            ur, ir = np.unique(r[start:stop], return_inverse=True)
            uc, ic = np.unique(c[start:stop], return_inverse=True)
            block = np.zeros((len(ur), len(uc)))
            block[ir, ic] = v[start:stop]
            picked_r, picked_c = linear_sum_assignment(block, maximize=True)
            chosen_rows.append(ur[picked_r])
            chosen_cols.append(uc[picked_c])
            chosen_score.append(block[picked_r, picked_c])
    chosen_rows, chosen_cols = np.concatenate(chosen_rows), np.concatenate(chosen_cols)
    keep = np.concatenate(chosen_score) >= threshold
    result[chosen_cols[keep]] = chosen_rows[keep]
    return result


def overlap_links(previous: np.ndarray, current: np.ndarray, threshold: float,
                  criterion: str = "iou") -> dict[int, int]:
    """``{current ID: previous ID}``: one-to-one links of two label planes by overlap.

    ``criterion`` "iou": intersection over union (StarDist's ``matching``), for one
    object's place at two time points; "smaller": intersection over the smaller of the
    two, for slices of one nucleus in neighbouring Z planes. Pairs are chosen to maximise
    the total overlap (``linear_sum_assignment``), as StarDist's matching does; a pair
    below ``threshold`` is no link.
    """
    before, present_before = compact_labels(previous)
    now, present_now = compact_labels(current)
    linked = link_compact(before, len(present_before), now, len(present_now), threshold, criterion)[1:]
    found = np.flatnonzero(linked)
    return dict(zip(present_now[found].tolist(), present_before[linked[found] - 1].tolist()))


@dataclass
class _Plane:
    """One plane's slices, as arrays in the order of their sorted IDs, with their objects."""

    z: int
    owner: np.ndarray              # object index of each slice
    label_ids: np.ndarray          # the slice's ID in the label channel
    voxels: np.ndarray
    sum_y: np.ndarray              # pixel coordinates summed over the slice
    sum_x: np.ndarray
    boxes: np.ndarray              # (4, slices): top, bottom, left, right (inclusive)
    pixels: np.ndarray             # object index x plane size + pixel index, every labelled pixel
    sums: np.ndarray               # (channels, slices): intensity sums inside
    ring_sums: np.ndarray          # (channels, slices): ring mean x ring pixels (0 where undefined)
    ring_pixels: np.ndarray


class ObjectBuilder:
    """Feed it every plane of the run in order; it returns each time point's objects as columns.

    Per plane everything is numpy over all its slices at once (no Python step per nucleus):
    the slices are linked to the plane below, the new ones open objects, and their pixel
    sums and labelled pixels are kept per plane until the time point's last plane is in.
    """

    def __init__(self, calibration: Calibration, n_channels: int, planes: Sequence[int]) -> None:
        self.calibration, self.n_channels = calibration, n_channels
        self.planes = tuple(planes)
        self.columns = object_columns(n_channels, calibration)
        self._time_point: int | None = None
        self._first_z: list[np.ndarray] = []           # per plane: the first plane of the objects it opened
        self._planes: list[_Plane] = []
        self._shape: tuple[int, int] | None = None
        self._previous: tuple[int, np.ndarray, int, np.ndarray] | None = None   # z, compact plane, n, owners

    @property
    def _n_objects(self) -> int:
        return sum(len(f) for f in self._first_z)

    def add_plane(self, time_point: int, z: int, labels: np.ndarray,
                  slices: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Add one plane's labels and its slice-table columns (same IDs).

        Returns the finished objects of ``time_point`` when ``z`` is its last plane, else None.
        """
        if self._time_point is not None and time_point != self._time_point:
            raise ValueError(f"plane t={time_point} z={z} came before time point {self._time_point} was complete")
        self._time_point = time_point
        compact, present = compact_labels(labels)
        n = len(present)
        if self._shape is not None and compact.shape != self._shape:
            raise ValueError(f"plane t={time_point} z={z} has shape {compact.shape}, the others {self._shape}")
        self._shape = compact.shape
        linked = np.zeros(n + 1, np.int64)
        if self._previous is not None and self._previous[0] == self._z_before(z):
            _, before, n_before, before_owner = self._previous
            links = link_compact(before, n_before, compact, n, Z_LINK_OVERLAP, "smaller")
            linked[links > 0] = before_owner[links[links > 0]] + 1
        opened = np.flatnonzero(linked[1:] == 0) + 1
        linked[opened] = self._n_objects + np.arange(1, len(opened) + 1)
        self._first_z.append(np.full(len(opened), z, np.int64))
        owner = linked - 1                                 # object index per compact ID (0: unused)

        rows, cols = np.nonzero(compact)
        ids = compact[rows, cols]
        width = compact.shape[1]
        size = compact.size
        voxels = np.bincount(ids, minlength=n + 1)[1:]
        sum_y = np.bincount(ids, weights=rows, minlength=n + 1)[1:]
        sum_x = np.bincount(ids, weights=cols, minlength=n + 1)[1:]
        pixels = owner[ids] * size + (rows.astype(np.int64) * width + cols)
        boxes = np.array([(b[0].start, b[0].stop - 1, b[1].start, b[1].stop - 1)
                          for b in ndi.find_objects(compact)], np.int64).reshape(-1, 4).T
        sums, ring_sums, ring_pixels = self._intensities(slices, present)
        self._planes.append(_Plane(z, owner[1:], present, voxels, sum_y, sum_x, boxes, pixels, sums, ring_sums,
                                   ring_pixels))
        self._previous = (z, compact, n, owner)
        if z != self.planes[-1]:
            return None
        return self._finish()

    def _z_before(self, z: int) -> int | None:
        index = self.planes.index(z)
        return self.planes[index - 1] if index > 0 else None

    def _intensities(self, slices: Mapping[str, np.ndarray], present: np.ndarray):
        """Per slice (in ``present``'s order): channel sums inside, ring sums (ring mean x ring
        pixels) and ring pixels, from the slice table."""
        n = len(present)
        sums, ring_sums, ring_pixels = np.zeros((self.n_channels, n)), np.zeros((self.n_channels, n)), np.zeros(n)
        table_ids = np.asarray(slices["label"])
        if n == 0 or table_ids.size == 0:
            return sums, ring_sums, ring_pixels
        where = np.searchsorted(present, table_ids)
        sy, sx = self.calibration.spacing
        ring_area = np.asarray(slices[f"ring_area_{self.calibration.area_unit}"], np.float64) / (sx * sy)
        ring_pixels[where] = ring_area
        for k in range(self.n_channels):
            sums[k, where] = np.asarray(slices[f"sum_c{k}"], np.float64)
            ring_mean = np.asarray(slices[f"ring_mean_c{k}"], np.float64)
            usable = (ring_area > 0) & np.isfinite(ring_mean)
            ring_sums[k, where] = np.where(usable, ring_mean * ring_area, 0.0)
        return sums, ring_sums, ring_pixels

    def _finish(self) -> dict[str, np.ndarray]:
        """The time point's objects as columns, numbered 1..n by first plane, then slice ID."""
        planes, t, shape = self._planes, self._time_point, self._shape
        first_z = np.concatenate(self._first_z) if self._first_z else np.zeros(0, np.int64)
        self._planes, self._first_z, self._previous, self._time_point = [], [], None, None
        n = len(first_z)
        sy, sx = self.calibration.spacing
        z_step = self.calibration.z_step_um
        names = self.columns
        owner = np.concatenate([p.owner for p in planes]) if planes else np.zeros(0, np.int64)

        def per_object(values) -> np.ndarray:
            return np.bincount(owner, weights=np.concatenate(values), minlength=n) if n else np.zeros(0)

        columns: dict[str, np.ndarray] = {name: np.zeros(n) for name in names}
        columns["time_point"] = np.full(n, t, np.int64)
        columns["object_id"] = np.arange(1, n + 1, dtype=np.int64)
        label_ids = np.concatenate([p.label_ids for p in planes]) if planes else np.zeros(0, np.int64)
        low, high = _grouped(np.minimum, owner, label_ids, n), _grouped(np.maximum, owner, label_ids, n)
        columns["label_id"] = np.where(low == high, low.astype(np.float64), np.nan)
        z_of_slice = np.concatenate([np.full(len(p.owner), p.z, np.int64) for p in planes]) if planes else owner
        columns["first_z"] = first_z
        columns["last_z"] = _grouped(np.maximum, owner, z_of_slice, n).astype(np.int64)
        columns["planes"] = np.bincount(owner, minlength=n).astype(np.int64)
        voxels = per_object([p.voxels for p in planes])
        voxel_size = sx * sy * z_step if self.calibration.pixel_size_um and z_step is not None else 1.0
        columns[names[6]] = voxels * voxel_size
        area, circumference = _projections([p.pixels for p in planes], owner,
                                           np.concatenate([p.boxes for p in planes], axis=1), n, shape)
        area, circumference = area * sx * sy, circumference * float(np.sqrt(sx * sy))
        columns[names[7]], columns[names[8]] = area, circumference
        with np.errstate(divide="ignore", invalid="ignore"):
            columns["projected_roundness"] = np.where(circumference > 0, 4 * np.pi * area / circumference ** 2,
                                                      np.nan)
        centre = np.maximum(voxels, 1)
        columns[names[10]] = per_object([p.sum_x for p in planes]) / centre * sx
        columns[names[11]] = per_object([p.sum_y for p in planes]) / centre * sy
        columns[names[12]] = per_object([p.voxels * float(p.z) for p in planes]) / centre * (z_step or 1.0)
        columns["cut_by_z_range"] = ((first_z == self.planes[0]) | (columns["last_z"] == self.planes[-1])
                                     ).astype(np.int64)
        ring = per_object([p.ring_pixels for p in planes])
        for k in range(self.n_channels):
            sums = per_object([p.sums[k] for p in planes])
            ring_sums = per_object([p.ring_sums[k] for p in planes])
            with np.errstate(divide="ignore", invalid="ignore"):
                columns[f"mean_c{k}"] = sums / voxels
                columns[f"ring_mean_c{k}"] = np.where(ring > 0, ring_sums / ring, np.nan)
            columns[f"integrated_c{k}"] = sums
            columns[f"ring_integrated_c{k}"] = np.where(ring > 0, ring_sums, np.nan)
        return {name: columns[name] for name in names}


def _projections(pixels: Sequence[np.ndarray], owner: np.ndarray, boxes: np.ndarray, n: int,
                 shape: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Projected area (pixels) and Crofton circumference of every object at once.

    Each object's bounding box (over its slices' ``boxes``) gets a place in one mosaic
    (shelves of boxes, tallest first), and every plane's labelled ``pixels`` (object index
    x plane size + pixel index) are written into it: a pixel seen in several planes lands
    on the same place, so each object's box holds the union of its slices, its projection.
    ``crofton_perimeters`` counts every label of a window apart, so one pass over the
    mosaic gives each object's perimeter exactly as alone; no sort of the voxels.
    """
    if n == 0 or shape is None:
        return np.zeros(n), np.zeros(n)
    top, bottom = _grouped(np.minimum, owner, boxes[0], n), _grouped(np.maximum, owner, boxes[1], n)
    left, right = _grouped(np.minimum, owner, boxes[2], n), _grouped(np.maximum, owner, boxes[3], n)
    heights, widths = bottom - top + 1, right - left + 1
    mosaic_width = max(2048, int(widths.max()))
    place_y, place_x = np.zeros(n, np.int64), np.zeros(n, np.int64)
    y = x = shelf_height = 0
    for k in np.argsort(-heights, kind="stable").tolist():
        if x + widths[k] > mosaic_width:
            y, x, shelf_height = y + shelf_height, 0, 0
        place_y[k], place_x[k] = y, x
        x += int(widths[k])
        shelf_height = max(shelf_height, int(heights[k]))
    mosaic = np.zeros((y + shelf_height, mosaic_width), np.int32 if n < 2 ** 31 - 1 else np.int64)
    size, width = shape[0] * shape[1], shape[1]
    for keys in pixels:
        index, place = np.divmod(keys, size)
        rows, cols = np.divmod(place, width)
        mosaic[rows - top[index] + place_y[index], cols - left[index] + place_x[index]] = index + 1
    area = np.bincount(mosaic.ravel(), minlength=n + 1)[1:].astype(np.float64)
    circumference = crofton_perimeters(mosaic, n + 1)[1:]
    return area, circumference


def _grouped(reduce: np.ufunc, owner: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """``reduce`` (np.minimum / np.maximum) of ``values`` per object index in ``owner`` (every
    object has a value; the dtype is kept: label IDs may be uint64)."""
    if n == 0:
        return values[:0]
    out = np.full(n, values.max() if reduce is np.minimum else values.min(), values.dtype)
    reduce.at(out, owner, values)
    return out
