"""Label ID modes on planes whose right answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from stardist_v4d.pipeline.label_ids import LabelNumbering, walk_order
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
    out = renumber_all(LabelNumbering("unique"), planes, walk_order("unique", [0, 1], [0, 1]))
    ids = [set(np.unique(p[p > 0])) for p in out.values()]
    assert sum(len(i) for i in ids) == len(set().union(*ids)) == 12


def test_track_t_moving_object_keeps_its_id_and_newcomers_get_new_ones():
    # one nucleus drifts 3 px per time point; a second appears at t=2 far away
    centres = {0: [(20, 20)], 1: [(20, 23)], 2: [(50, 50), (20, 26)]}
    planes = {(t, 0): disk_plane(centres[t]) for t in range(3)}
    out = renumber_all(LabelNumbering("track_t", iou=0.3), planes, walk_order("track_t", [0, 1, 2], [0]))
    moving = [out[(t, 0)][centres[t][-1]] for t in range(3)]
    assert moving[0] == moving[1] == moving[2]
    assert out[(2, 0)][50, 50] not in (0, moving[0])


def test_track_t_object_that_jumps_too_far_is_a_new_object():
    planes = {(0, 0): disk_plane([(20, 20)]), (1, 0): disk_plane([(20, 40)])}
    out = renumber_all(LabelNumbering("track_t", iou=0.3), planes, walk_order("track_t", [0, 1], [0]))
    assert out[(0, 0)][20, 20] != out[(1, 0)][20, 40]


def test_track_t_never_links_different_planes():
    planes = {(t, z): disk_plane([(30, 30)]) for t in range(2) for z in range(2)}
    steps = walk_order("track_t", [0, 1], [0, 1])
    assert steps == [(0, 0), (1, 0), (0, 1), (1, 1)]       # z-major: one plane in memory
    out = renumber_all(LabelNumbering("track_t"), planes, steps)
    assert out[(0, 0)][30, 30] == out[(1, 0)][30, 30] != out[(0, 1)][30, 30] == out[(1, 1)][30, 30]


def test_link_z_nucleus_spanning_three_planes_is_one_id():
    # a nucleus through z=0..2 (shrinking), another only in z=2, a third only in z=0
    planes = {(0, 0): disk_plane([(30, 30), (10, 50)], radius=5),
              (0, 1): disk_plane([(30, 31)], radius=7),
              (0, 2): disk_plane([(31, 31), (52, 12)], radius=5),
              (0, 3): disk_plane([])}
    steps = walk_order("link_z", [0], [0, 1, 2, 3])
    out = renumber_all(LabelNumbering("link_z", iou=0.3), planes, steps)
    spanning = {int(out[(0, z)][30, 30]) for z in range(3)}
    assert len(spanning) == 1 and 0 not in spanning
    others = {int(out[(0, 0)][10, 50]), int(out[(0, 2)][52, 12])}
    assert len(others) == 2 and not others & spanning


def test_link_z_does_not_link_across_time_points():
    planes = {(t, 0): disk_plane([(30, 30)]) for t in range(2)}
    out = renumber_all(LabelNumbering("link_z"), planes, walk_order("link_z", [0, 1], [0]))
    assert out[(0, 0)][30, 30] != out[(1, 0)][30, 30]


@pytest.mark.parametrize("mode, dtype, expected", [
    ("per_plane", np.uint8, np.uint16), ("unique", np.uint8, np.uint32), ("track_t", np.uint16, np.uint32),
    ("link_z", np.float32, np.float32), ("unique", np.int16, np.int32)])
def test_run_wide_ids_get_a_wide_enough_type(mode, dtype, expected):
    assert output_dtype(np.dtype(dtype), "auto", mode) == expected


def test_unknown_mode_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="valid: per_plane, unique, track_t, link_z"):
        LabelNumbering("3d")
