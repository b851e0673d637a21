"""Label ID modes on planes whose right answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from stardist_v4d.pipeline.label_ids import LabelNumbering, final_ids, provisional_floor, walk_order
from stardist_v4d.pipeline.plan import output_dtype


def disk_plane(centres: list[tuple[int, int]], radius: int = 6, size: int = 64) -> np.ndarray:
    """Labels 1..n, one disk per centre."""
    yy, xx = np.mgrid[:size, :size]
    plane = np.zeros((size, size), np.int32)
    for label, (cy, cx) in enumerate(centres, start=1):
        plane[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = label
    return plane


def ids_at(plane: np.ndarray, points: list[tuple[int, int]]) -> list[int]:
    return [int(plane[p]) for p in points]


def renumber_all(numbering: LabelNumbering, planes: dict[tuple[int, int], np.ndarray], steps):
    return {step: numbering.renumber(*step, planes[step])[0] for step in steps}


def test_per_plane_keeps_stardists_numbering():
    plane = disk_plane([(10, 10), (40, 40)])
    out, mapping = LabelNumbering("per_plane").renumber(0, 0, plane)
    assert out is plane and mapping == {1: 1, 2: 2}


def test_unique_never_repeats_an_id_across_the_run():
    planes = {(t, z): disk_plane([(10, 10), (40, 40), (20, 50)]) for t in range(2) for z in range(2)}
    out = renumber_all(LabelNumbering("unique"), planes, walk_order([0, 1], [0, 1]))
    ids = [set(np.unique(p[p > 0])) for p in out.values()]
    assert sum(len(i) for i in ids) == len(set().union(*ids)) == 12


def test_track_t_numbers_objects_through_z_with_provisional_ids_from_the_top():
    # one nucleus through both planes, one only in z=1; then a second time point
    planes = {(0, 0): disk_plane([(20, 20)]), (0, 1): disk_plane([(20, 21), (50, 50)]),
              (1, 0): disk_plane([(20, 24)]), (1, 1): disk_plane([(20, 25)])}
    steps = walk_order([0, 1], [0, 1])
    assert steps == [(0, 0), (0, 1), (1, 0), (1, 1)]                  # time-major, as every mode
    numbering = LabelNumbering("track_t", ceiling=1000)
    out = renumber_all(numbering, planes, steps)
    assert out[(0, 0)][20, 20] == out[(0, 1)][20, 21] == 1000         # linked through Z
    assert out[(0, 1)][50, 50] == 999
    assert out[(1, 0)][20, 24] == out[(1, 1)][20, 25] == 998          # time points are not linked here
    assert all(p[p > 0].min() > provisional_floor(1000) for p in out.values())


def test_track_t_runs_out_of_ids_before_they_meet_the_track_ids():
    numbering = LabelNumbering("track_t", ceiling=9)
    numbering.renumber(0, 0, disk_plane([(10, 10), (30, 30), (50, 50)]))
    assert not numbering.out_of_ids                                  # 9, 8, 7: above 4
    numbering.renumber(1, 0, disk_plane([(10, 50), (50, 10)]))
    assert numbering.out_of_ids                                      # 5 objects: 5 tracks would need ID 5, provisional


def test_final_ids_rewrites_provisional_ids_once_and_is_idempotent():
    ceiling = 2 ** 16 - 1
    plane = np.array([[0, ceiling, ceiling - 1], [ceiling - 2, 0, ceiling]], np.uint16)
    tracks = {ceiling: 2, ceiling - 1: 1, ceiling - 2: 2}
    once = final_ids(plane, tracks, ceiling)
    assert once.tolist() == [[0, 2, 1], [2, 0, 2]] and once.dtype == np.uint16
    half = plane.copy()
    half[0] = once[0]                                                 # a kill in the middle of the write
    assert final_ids(half, tracks, ceiling).tolist() == once.tolist()
    assert final_ids(once, tracks, ceiling).tolist() == once.tolist()


def test_link_z_nucleus_spanning_three_planes_is_one_id():
    # a nucleus through z=0..2 (shrinking), another only in z=2, a third only in z=0
    planes = {(0, 0): disk_plane([(30, 30), (10, 50)], radius=5),
              (0, 1): disk_plane([(30, 31)], radius=7),
              (0, 2): disk_plane([(31, 31), (52, 12)], radius=5),
              (0, 3): disk_plane([])}
    steps = walk_order([0], [0, 1, 2, 3])
    out = renumber_all(LabelNumbering("link_z", iou=0.3), planes, steps)
    spanning = {int(out[(0, z)][30, 30]) for z in range(3)}
    assert len(spanning) == 1 and 0 not in spanning
    others = {int(out[(0, 0)][10, 50]), int(out[(0, 2)][52, 12])}
    assert len(others) == 2 and not others & spanning


def test_link_z_does_not_link_across_time_points():
    planes = {(t, 0): disk_plane([(30, 30)]) for t in range(2)}
    out = renumber_all(LabelNumbering("link_z"), planes, walk_order([0, 1], [0]))
    assert out[(0, 0)][30, 30] != out[(1, 0)][30, 30]


@pytest.mark.parametrize("mode, dtype, expected", [
    ("per_plane", np.uint8, np.uint16), ("unique", np.uint8, np.uint32), ("track_t", np.uint16, np.uint32),
    ("link_z", np.float32, np.float32), ("unique", np.int16, np.int32)])
def test_run_wide_ids_get_a_wide_enough_type(mode, dtype, expected):
    assert output_dtype(np.dtype(dtype), "auto", mode) == expected


def test_unknown_mode_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="valid: per_plane, unique, track_t, link_z"):
        LabelNumbering("3d")
