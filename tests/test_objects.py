"""Nuclei as objects through Z: each row held to an independent computation.

Generated ellipsoids (``cell_stacks``) are measured plane by plane as a run does
(``measure_plane``) and joined by ``ObjectBuilder``; every column of each object is
compared with scikit-image's ``regionprops`` on the projection of that cell's true
voxels, and with sums over its voxels and its slices' rings computed here directly.
"""
from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import perimeter_crofton, regionprops
from skimage.segmentation import expand_labels

from stardist_v4d.analysis.measure import Calibration, measure_plane
from stardist_v4d.analysis.objects import ObjectBuilder, object_columns

from cell_stacks import cell_stack

CAL = Calibration((0.5, 0.5), ring_um=1.0, z_step_um=2.0)


def build(labels_tzyx: np.ndarray, channels_tczyx: list[np.ndarray], calibration: Calibration,
          planes=None) -> list[dict]:
    """Rows of the objects table, as a run builds them (planes in order, per time point)."""
    planes = list(range(labels_tzyx.shape[1])) if planes is None else planes
    builder = ObjectBuilder(calibration, len(channels_tczyx), planes)
    rows = []
    for t in range(labels_tzyx.shape[0]):
        for z in planes:
            slices = measure_plane(labels_tzyx[t, z], [c[t, z] for c in channels_tczyx], None, calibration, t, z)
            finished = builder.add_plane(t, z, labels_tzyx[t, z], slices)
            if finished is not None:
                rows += [dict(zip(finished, values)) for values in zip(*finished.values())]
    return rows


@pytest.fixture(scope="module")
def stack():
    return cell_stack(seed=3, size_t=2, n_cells=8)


def test_one_row_per_cell_per_time_point_with_its_planes(stack):
    rows = build(stack.labels, [stack.image], CAL)
    for t in range(2):
        mine = [r for r in rows if r["time_point"] == t]
        cells = np.unique(stack.labels[t][stack.labels[t] > 0])
        assert len(mine) == len(cells)
        by_label = {int(r["label_id"]): r for r in mine}
        assert sorted(by_label) == cells.tolist()                # one ID per object: the channel's ID
        for cell in cells:
            planes = np.unique(np.nonzero(stack.labels[t] == cell)[0])
            row = by_label[int(cell)]
            assert (row["first_z"], row["last_z"], row["planes"]) == (planes[0], planes[-1], len(planes))
            assert 3 <= row["planes"] <= 8
        assert [r["object_id"] for r in mine] == list(range(1, len(mine) + 1))


def test_projected_shape_volume_and_centroid_match_regionprops_of_the_projection(stack):
    rows = build(stack.labels, [stack.image], CAL)
    sy, sx = CAL.spacing
    for row in rows:
        t, cell = int(row["time_point"]), int(row["label_id"])
        voxels = stack.labels[t] == cell
        projection = voxels.any(axis=0)
        props = regionprops(projection.astype(np.uint8))[0]
        assert row["projected_area_um2"] == pytest.approx(props.area * sx * sy, rel=1e-12)
        circumference = perimeter_crofton(projection, 4) * sx
        assert row["projected_circumference_um"] == pytest.approx(circumference, rel=1e-9)
        assert row["projected_roundness"] == pytest.approx(4 * np.pi * props.area * sx * sy / circumference ** 2,
                                                           rel=1e-9)
        assert row["volume_um3"] == pytest.approx(voxels.sum() * sx * sy * CAL.z_step_um, rel=1e-12)
        z, y, x = np.nonzero(voxels)
        assert (row["centroid_x_um"], row["centroid_y_um"], row["centroid_z_um"]) == pytest.approx(
            (x.mean() * sx, y.mean() * sy, z.mean() * CAL.z_step_um), rel=1e-9)


def test_intensities_over_the_voxels_and_the_pooled_ring(stack):
    channel = stack.image * 100 + np.arange(stack.image.shape[-1], dtype=np.float32)   # varies along x
    rows = build(stack.labels, [channel], CAL)
    for row in rows:
        t, cell = int(row["time_point"]), int(row["label_id"])
        voxels = stack.labels[t] == cell
        assert row["integrated_c0"] == pytest.approx(channel[t][voxels].astype(np.float64).sum(), rel=1e-9)
        assert row["mean_c0"] == pytest.approx(channel[t][voxels].astype(np.float64).mean(), rel=1e-9)
        ring_values = []
        for z in range(stack.labels.shape[1]):
            plane = stack.labels[t, z]
            if not (plane == cell).any():
                continue
            grown = expand_labels(plane, CAL.ring_px)
            ring_values.append(channel[t, z][(grown == cell) & (plane == 0)])
        ring_values = np.concatenate(ring_values).astype(np.float64)
        assert row["ring_mean_c0"] == pytest.approx(ring_values.mean(), rel=1e-9)
        assert row["ring_integrated_c0"] == pytest.approx(ring_values.sum(), rel=1e-9)


def test_objects_touching_the_z_range_ends_are_flagged_cut(stack):
    planes = list(range(3, 9))                      # a sub-range: cells reaching plane 3 or 8 are cut
    rows = build(stack.labels, [stack.image], CAL, planes=planes)
    assert rows
    for row in rows:
        assert row["cut_by_z_range"] == int(row["first_z"] == 3 or row["last_z"] == 8)
    assert any(r["cut_by_z_range"] for r in rows) and not all(r["cut_by_z_range"] for r in rows)


def test_slices_with_other_ids_in_each_plane_are_still_one_object(stack):
    """``per_plane`` numbering: 1..n in every plane; the object joins them by overlap, no single label ID."""
    renumbered = np.zeros_like(stack.labels)
    for t in range(2):
        for z in range(stack.labels.shape[1]):
            ids = np.unique(stack.labels[t, z][stack.labels[t, z] > 0])
            for k, cell in enumerate(ids[::-1], start=1):           # reversed order: IDs differ from plane to plane
                renumbered[t, z][stack.labels[t, z] == cell] = k
    rows = build(renumbered, [stack.image], CAL)
    same = build(stack.labels, [stack.image], CAL)
    assert len(rows) == len(same)
    assert sorted(r["volume_um3"] for r in rows) == pytest.approx(sorted(r["volume_um3"] for r in same))
    assert any(np.isnan(r["label_id"]) for r in rows)


def test_units_without_calibration_are_pixels_planes_and_voxels():
    names = object_columns(1, Calibration(None))
    assert {"volume_voxels", "projected_area_px2", "projected_circumference_px", "centroid_z_plane"} <= set(names)
    names = object_columns(2, CAL)
    assert names[-4:] == ["mean_c1", "integrated_c1", "ring_mean_c1", "ring_integrated_c1"]


def test_nuclei_stacked_in_z_overlap_in_projection_yet_each_keeps_its_own_projection():
    """Two nuclei one above the other (their projections overlap), an empty plane between them,
    IDs far beyond the plane's size: each object's projection is its own voxels' alone."""
    yy, xx = np.mgrid[:40, :40]
    labels = np.zeros((1, 6, 40, 40), np.uint64)
    upper, lower = np.uint64(2 ** 40 + 5), np.uint64(7)
    for z, radius in ((0, 5), (1, 8), (2, 6)):
        labels[0, z][(yy - 15) ** 2 + (xx - 15) ** 2 <= radius ** 2] = upper
    for z, radius in ((4, 6), (5, 4)):
        labels[0, z][(yy - 21) ** 2 + (xx - 22) ** 2 <= radius ** 2] = lower
    image = np.random.default_rng(0).uniform(0, 100, labels.shape).astype(np.float32)
    rows = build(labels, [image], CAL)
    assert len(rows) == 2
    by_first = {int(r["first_z"]): r for r in rows}
    for first, cell in ((0, upper), (4, lower)):
        row, voxels = by_first[first], labels[0] == cell
        projection = voxels.any(axis=0)
        assert (projection & (labels[0] == (lower if cell == upper else upper)).any(axis=0)).any()   # they overlap
        assert row["label_id"] == float(cell)
        assert row["projected_area_um2"] == pytest.approx(projection.sum() * 0.25, rel=1e-12)
        assert row["projected_circumference_um"] == pytest.approx(perimeter_crofton(projection, 4) * 0.5, rel=1e-9)
        assert row["integrated_c0"] == pytest.approx(image[0][voxels].sum(), rel=1e-5)


def test_overlap_links_equal_one_assignment_over_the_whole_plane():
    """The per-group sparse assignment gives the links of a dense ``linear_sum_assignment``
    over every pair of the two planes (the rule written out here), on crowded random planes."""
    from scipy.optimize import linear_sum_assignment
    from skimage.segmentation import expand_labels as grow
    from stardist_v4d.analysis.objects import overlap_links

    rng = np.random.default_rng(5)
    for case in range(12):
        planes = []
        for _ in range(2):
            seeds = np.zeros((128, 128), np.int32)
            points = rng.integers(0, 128, (60, 2))
            seeds[points[:, 0], points[:, 1]] = rng.permutation(np.arange(1, 61)) * (3 if case % 2 else 1)
            planes.append(grow(seeds, int(rng.integers(3, 9))) * (rng.uniform(size=(128, 128)) > 0.02))
        before, now = planes
        ids_b, ids_n = np.unique(before[before > 0]), np.unique(now[now > 0])
        inter = np.array([[np.sum((before == b) & (now == n)) for n in ids_n] for b in ids_b], float)
        area_b, area_n = np.array([np.sum(before == b) for b in ids_b]), np.array([np.sum(now == n) for n in ids_n])
        for criterion, threshold in (("smaller", 0.5), ("iou", 0.3)):
            if criterion == "smaller":
                score = inter / np.minimum(area_b[:, None], area_n[None, :])
            else:
                score = inter / (area_b[:, None] + area_n[None, :] - inter)
            r, c = linear_sum_assignment(score, maximize=True)
            expected = {int(ids_n[j]): int(ids_b[i]) for i, j in zip(r, c) if score[i, j] >= threshold}
            assert overlap_links(before, now, threshold, criterion) == expected, (case, criterion)
