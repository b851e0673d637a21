"""Tracks of cells: links, gaps and divisions against the generated truth.

The spots are the generated cells' true centroids (``cell_stacks``), so what is tested is
the tracker itself: every true link found and none invented, a cell missing at one time
point joined across the gap, a division ending the mother's track in two daughters'.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stardist_v4d.analysis.tracking import TrackingSettings, default_max_distance, track

from cell_stacks import cell_stack

COORDINATES = ["x", "y", "z"]


def truth_spots(stack) -> pd.DataFrame:
    rows = [(t, cell, x, y, z) for t, cell, parent, z, y, x, ry, rx, rz in stack.truth]
    return pd.DataFrame(rows, columns=["time_point", "object_id", "x", "y", "z"])


def links_of(spots: pd.DataFrame, tracks: pd.DataFrame) -> set[tuple[int, int]]:
    """``(object, object)`` pairs linked: consecutive spots of a track, and a mother's last spot to
    each daughter's first. Objects are named by their true cell ID, so the truth's links read alike."""
    links = set()
    by_track = {tid: g.sort_values("time_point") for tid, g in spots.groupby("track_id")}
    for tid, points in by_track.items():
        ids = points["object_id"].tolist()
        links |= {(a, b) for a, b in zip(ids, ids[1:]) if a != b}
        parent = tracks.loc[tracks["track_id"] == tid, "parent_track_id"].iloc[0]
        if not np.isnan(parent):
            links.add((by_track[int(parent)]["object_id"].iloc[-1], ids[0]))
    return links


def true_links(stack) -> set[tuple[int, int]]:
    return {(parent, cell) for _, cell, parent, *_ in stack.truth if parent} | \
        {(mother, d) for _, mother, d1, d2 in stack.divisions for d in (d1, d2)}


@pytest.fixture(scope="module")
def stack():
    # 8 cells, 4 time points, moving up to one radius; one divides, one is missed once
    return cell_stack(seed=5, size_t=4, n_cells=8, max_step=1.0, divisions=1, missed=(2, 3))


def test_every_cell_is_one_track_across_a_missed_time_point(stack):
    spots, tracks = track(truth_spots(stack), COORDINATES, TrackingSettings(), max_distance=12.0)
    for cell, points in spots.groupby("object_id"):
        assert points["track_id"].nunique() == 1, f"cell {cell} split over tracks"
    assert spots.groupby("track_id")["object_id"].nunique().max() == 1   # no track holds two cells
    gaps = tracks[(tracks["end_time_point"] - tracks["start_time_point"] + 1) > tracks["spots"]]
    assert len(gaps) == 1                                       # the missed detection, closed


def test_a_division_ends_the_mother_and_starts_two_daughters_naming_her(stack):
    spots, tracks = track(truth_spots(stack), COORDINATES, TrackingSettings(), max_distance=12.0)
    (t, mother, d1, d2), = stack.divisions
    track_of = dict(zip(spots["object_id"], spots["track_id"]))
    daughters = tracks[tracks["track_id"].isin([track_of[d1], track_of[d2]])]
    assert (daughters["parent_track_id"] == track_of[mother]).all()
    assert tracks.loc[tracks["track_id"] == track_of[mother], "end_time_point"].iloc[0] == t - 1
    lineage = spots[spots["object_id"].isin([mother, d1, d2])]["lineage_id"]
    assert lineage.nunique() == 1


def test_links_equal_the_truth(stack):
    spots, tracks = track(truth_spots(stack), COORDINATES, TrackingSettings(), max_distance=12.0)
    # same cell over time: the truth names it by one ID; a track holds one ID (previous test)
    found = links_of(spots, tracks)
    assert found == true_links(stack)


def test_without_gap_closing_or_divisions_the_tracks_break_there(stack):
    settings = TrackingSettings(gap_frames=0, divisions=False)
    spots, tracks = track(truth_spots(stack), COORDINATES, settings, max_distance=12.0)
    assert tracks["parent_track_id"].isna().all()
    per_cell = spots.groupby("object_id")["track_id"].nunique()
    assert per_cell.max() == 2                                # the missed cell: two tracks


def test_tracks_table_speeds_and_straightness():
    spots = pd.DataFrame({"time_point": [0, 1, 2], "object_id": [1, 1, 1],
                          "x": [0.0, 3.0, 3.0], "y": [0.0, 4.0, 8.0], "z": [0.0, 0.0, 0.0]})
    _, tracks = track(spots, COORDINATES, TrackingSettings(), max_distance=6.0, time_step_min=2.0, unit="um")
    row = tracks.iloc[0]
    assert row["duration_min"] == 4.0 and row["spots"] == 3
    assert row["path_length_um"] == pytest.approx(9.0)
    assert row["displacement_um"] == pytest.approx(np.hypot(3, 8))
    assert row["mean_speed_um_per_min"] == pytest.approx(9.0 / 4.0)
    assert row["straightness"] == pytest.approx(np.hypot(3, 8) / 9.0)


def test_time_points_need_not_start_at_zero_and_no_spots_is_no_tracks():
    spots = pd.DataFrame({"time_point": [5, 6], "object_id": [1, 1], "x": [0.0, 1.0], "y": [0.0, 0.0],
                          "z": [0.0, 0.0]})
    linked, tracks = track(spots, COORDINATES, TrackingSettings(), max_distance=3.0)
    assert linked["time_point"].tolist() == [5, 6] and linked["track_id"].tolist() == [1, 1]
    assert tracks[["start_time_point", "end_time_point"]].iloc[0].tolist() == [5, 6]
    linked, tracks = track(spots.iloc[:0], COORDINATES, TrackingSettings(), max_distance=3.0)
    assert linked.empty and tracks.empty


def test_default_max_distance_is_one_median_diameter():
    assert default_max_distance(np.array([np.pi * 25, np.pi * 25, np.pi * 100])) == pytest.approx(10.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_kd_tree_candidates_give_laptracks_own_tracks(seed):
    """``KDTreeLapTrack`` only finds laptrack's gap-closing and division candidates faster: on
    random nuclei (moves, missing detections, extra daughters; 2-D and 3-D; gaps and divisions
    on and off) its graph equals plain ``LapTrack``'s edge for edge."""
    from laptrack import LapTrack

    from stardist_v4d.analysis.lap_candidates import KDTreeLapTrack

    rng = np.random.default_rng(seed)
    for dim, gaps, divisions in ((2, True, True), (3, True, False), (3, False, True)):
        n = 150
        points = rng.uniform(0, 120, (n, dim))
        coords = []
        for t in range(4):
            moved = points + rng.normal(0, 2, points.shape) + t
            extra = moved[rng.integers(0, n, 6)] + rng.normal(0, 3, (6, dim))
            coords.append(np.vstack([moved[rng.uniform(size=n) > 0.08], extra]))
        cutoff = float(rng.uniform(16, 64))
        alternative = cutoff * 1.05
        settings = dict(cutoff=cutoff, gap_closing_cutoff=cutoff if gaps else False, gap_closing_max_frame_count=2,
                        splitting_cutoff=cutoff if divisions else False, track_start_cost=alternative,
                        track_end_cost=alternative, segment_start_cost=alternative, segment_end_cost=alternative,
                        no_splitting_cost=alternative)
        theirs = set(map(frozenset, LapTrack(**settings).predict(coords).edges()))
        ours = set(map(frozenset, KDTreeLapTrack(**settings).predict(coords).edges()))
        assert ours == theirs
        spans = [b[0] - a[0] for a, b in map(sorted, ours)]
        starts = [min(e)[1] + 1000 * min(e)[0] for e in map(sorted, ours)]
        assert (2 in spans) == gaps                   # the case exercises gap closing when it is on
        assert (len(starts) > len(set(starts))) == divisions    # and divisions (a node with two successors)
