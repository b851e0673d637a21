"""laptrack's LAP tracker with its link, gap-closing and division candidates found by a KD-tree.

laptrack finds the pairs of nuclei it may link between two time points with a dense
``cdist`` (nuclei x nuclei float64: 580 MB and ~3 s for 8,500 nuclei a time point), and
for every track segment the segments it could continue after a gap and the nuclei it
could have divided from with one pandas ``apply`` and a ``cdist`` per segment (its own
comment: "can use KDTree if metric is distance"; with 8,000 nuclei about 30 of 40 s).
``KDTreeLapTrack`` asks a KD-tree per time point for the pairs within the cutoff instead
and hands laptrack the same candidates and cost matrices, in the same order, so its cost
matrices, its assignments (laptrack's own solver) and the tracks are the same (test:
identical graphs to ``LapTrack`` on random nuclei with gaps and divisions). Only the
squared-Euclidean metric and the serial backend (ours) take this route; anything else
falls back to laptrack's own code. Depends on laptrack's internal method names (pinned
in pyproject: laptrack 0.16-0.17); a test compares both on every install.
"""
from __future__ import annotations

from itertools import chain

import numpy as np
import pandas as pd
import networkx as nx
from laptrack import LapTrack
from laptrack._coo_matrix_builder import coo_matrix_builder
from laptrack._cost_matrix import build_frame_cost_matrix, build_segment_cost_matrix
from laptrack._optimization import lap_optimization
from scipy.spatial import cKDTree


def _pairs_within(points: np.ndarray, targets: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(point row, target row, squared distance)`` of every pair closer than ``sqrt(cutoff)``
    (squared distance < ``cutoff``, summed over the axes in order as ``cdist`` does), sorted
    by point, then target."""
    if len(points) == 0 or len(targets) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    radius = float(np.sqrt(cutoff)) * (1 + 1e-9) + 1e-12          # the tree's test must not drop a pair
    found = cKDTree(targets).query_ball_point(points, radius)
    counts = np.fromiter((len(f) for f in found), np.int64, len(found))
    rows = np.repeat(np.arange(len(points)), counts)
    cols = np.fromiter(chain.from_iterable(found), np.int64, int(counts.sum()))
    difference = points[rows] - targets[cols]
    squared = np.zeros(len(rows))
    for axis in range(points.shape[1]):
        squared = squared + difference[:, axis] * difference[:, axis]
    keep = squared < cutoff
    rows, cols, squared = rows[keep], cols[keep], squared[keep]
    order = np.lexsort((cols, rows))
    return rows[order], cols[order], squared[order]


def _stack(values: pd.Series) -> np.ndarray:
    return np.stack(values.to_numpy()).astype(np.float64) if len(values) else np.zeros((0, 0))


class KDTreeLapTrack(LapTrack):
    """``LapTrack`` whose link and segment candidates come from a KD-tree (same results, far
    fewer steps, and no dense distance matrix: laptrack's frame linking holds one of
    nuclei x nuclei float64, 580 MB for 8,500 per time point)."""

    def _predict_links(self, coords, segment_connected_edges, split_merge_edges):
        from laptrack import ParallelBackend

        if self.metric != "sqeuclidean" or self.parallel_backend != ParallelBackend.serial:
            return super()._predict_links(coords, segment_connected_edges, split_merge_edges)
        tree = nx.Graph()
        for frame, coord in enumerate(coords):
            if len(coord):
                tree.add_nodes_from((frame, j) for j in range(np.asarray(coord).shape[0]))
        forced = list(segment_connected_edges) + list(split_merge_edges)
        edges = []
        for frame, (before, after) in enumerate(zip(coords[:-1], coords[1:])):
            if len(before) == 0 or len(after) == 0:
                continue
            before, after = np.asarray(before, np.float64), np.asarray(after, np.float64)
            rows, cols, squared = _pairs_within(before, after, self.cutoff)     # row-major, as np.where
            blocked_rows = {e[0][1] for e in forced if e[0][0] == frame}
            blocked_cols = {e[1][1] for e in forced if e[1][0] == frame + 1}
            if blocked_rows or blocked_cols:
                keep = ~np.isin(rows, list(blocked_rows)) & ~np.isin(cols, list(blocked_cols))
                rows, cols, squared = rows[keep], cols[keep], squared[keep]
            distances = coo_matrix_builder((len(before), len(after)), row=rows, col=cols, data=squared,
                                           dtype=np.float64)
            cost = build_frame_cost_matrix(distances, track_start_cost=self.track_start_cost,
                                           track_end_cost=self.track_end_cost)
            xs, _ = lap_optimization(cost)
            edges += [((frame, i), (frame + 1, int(xs[i]))) for i in range(len(before)) if xs[i] < len(after)]
        tree.add_edges_from(edges)
        tree.add_edges_from(segment_connected_edges)
        return tree

    def _get_gap_closing_matrix(self, segments_df, *, force_end_nodes=[], force_start_nodes=[]):
        if not self.gap_closing_cutoff or self.gap_closing_metric != "sqeuclidean":
            return super()._get_gap_closing_matrix(segments_df, force_end_nodes=force_end_nodes,
                                                   force_start_nodes=force_start_nodes)
        n = len(segments_df)
        first_frame = segments_df["first_frame"].to_numpy(np.int64)
        last_frame = segments_df["last_frame"].to_numpy(np.int64)
        forced_end = set(map(tuple, force_end_nodes))
        forced_start = set(map(tuple, force_start_nodes))
        ends_ok = np.array([(f, i) not in forced_end for f, i in
                            zip(last_frame.tolist(), segments_df["last_index"].tolist())], bool)
        starts_ok = np.array([(f, i) not in forced_start for f, i in
                              zip(first_frame.tolist(), segments_df["first_index"].tolist())], bool)
        end_xyz, start_xyz = _stack(segments_df["last_frame_coords"]), _stack(segments_df["first_frame_coords"])
        rows, cols, costs = [], [], []
        for frame in np.unique(last_frame).tolist():
            ends = np.flatnonzero((last_frame == frame) & ends_ok)
            gap = first_frame - frame
            starts = np.flatnonzero((gap >= 1) & (gap <= self.gap_closing_max_frame_count) & starts_ok)
            r, c, d = _pairs_within(end_xyz[ends], start_xyz[starts], self.gap_closing_cutoff)
            rows.append(ends[r])
            cols.append(starts[c])
            costs.append(d)
        rows, cols, costs = (np.concatenate(a) if a else np.zeros(0) for a in (rows, cols, costs))
        order = np.lexsort((cols, rows))                    # per segment end, candidates by segment index
        rows, cols, costs = rows[order].astype(np.int64), cols[order].astype(np.int64), costs[order]
        cut = np.searchsorted(rows, np.arange(n + 1))
        segments_df["gap_closing_candidates"] = [(segments_df.index[cols[a:b]].values, costs[a:b])
                                                 for a, b in zip(cut[:-1], cut[1:])]
        matrix = coo_matrix_builder((n, n), row=rows, col=cols, data=costs.astype(np.float32), dtype=np.float32)
        return segments_df, matrix

    def _get_splitting_merging_candidates(self, segments_df, coords, cutoff, prefix, dist_metric, *,
                                          force_end_nodes=[], force_start_nodes=[]):
        if not cutoff:                                      # none asked for (merging, always here)
            segments_df[f"{prefix}_candidates"] = [([], [])] * len(segments_df)
            return segments_df, coo_matrix_builder((len(segments_df), 0), dtype=np.float32), np.unique([], axis=0)
        if dist_metric != "sqeuclidean":
            return super()._get_splitting_merging_candidates(
                segments_df, coords, cutoff, prefix, dist_metric,
                force_end_nodes=force_end_nodes, force_start_nodes=force_start_nodes)
        n = len(segments_df)
        step = -1 if prefix == "first" else 1
        frames = segments_df[f"{prefix}_frame"].to_numpy(np.int64)
        indices = segments_df[f"{prefix}_index"].to_numpy(np.int64)
        row_blocked = set(map(tuple, force_start_nodes if prefix == "first" else force_end_nodes))
        other_blocked = force_end_nodes if prefix == "first" else force_start_nodes
        xyz = _stack(segments_df[f"{prefix}_frame_coords"])
        usable = np.array([(f, i) not in row_blocked for f, i in zip(frames.tolist(), indices.tolist())], bool)
        rows, frames_of, targets, costs = [], [], [], []
        for frame in np.unique(frames).tolist():
            other = frame + step
            if other < 0 or other >= len(coords) or len(coords[other]) == 0:
                continue
            mine = np.flatnonzero((frames == frame) & usable)
            points = np.asarray(coords[other], np.float64)
            r, c, d = _pairs_within(xyz[mine], points, cutoff)
            blocked = {n_[1] for n_ in other_blocked if n_[0] == other}
            if blocked:
                keep = ~np.isin(c, list(blocked))
                r, c, d = r[keep], c[keep], d[keep]
            rows.append(mine[r])
            frames_of.append(np.full(len(r), other, np.int64))
            targets.append(c)
            costs.append(d)
        rows, frames_of, targets, costs = (np.concatenate(a) if a else np.zeros(0, np.int64)
                                           for a in (rows, frames_of, targets, costs))
        order = np.lexsort((targets, rows))
        rows, frames_of, targets = rows[order].astype(np.int64), frames_of[order], targets[order].astype(np.int64)
        costs = np.asarray(costs, np.float64)[order]
        cut = np.searchsorted(rows, np.arange(n + 1))
        segments_df[f"{prefix}_candidates"] = [
            ([(int(f), int(i)) for f, i in zip(frames_of[a:b], targets[a:b])], costs[a:b])
            for a, b in zip(cut[:-1], cut[1:])]
        pairs = [(int(f), int(i)) for f, i in zip(frames_of, targets)]
        middle = np.unique(pairs, axis=0) if pairs else np.unique([], axis=0)
        if pairs:
            column = {tuple(val): k for k, val in enumerate(middle.tolist())}
            cols = np.array([column[p] for p in pairs], np.int64)
        else:
            cols = np.zeros(0, np.int64)
        matrix = coo_matrix_builder((n, len(middle)), row=rows, col=cols, data=costs.astype(np.float32),
                                    dtype=np.float32)
        return segments_df, matrix, middle

    def _link_gap_split_merge_from_matrix(self, segments_df, track_tree, gap_closing_dist_matrix,
                                          splitting_dist_matrix, merging_dist_matrix,
                                          splitting_all_candidates, merging_all_candidates):
        """laptrack's segment assignment and the edges it adds, read from arrays instead of a
        pandas row per segment (same cost matrix, same solver, same edges)."""
        if not isinstance(segments_df.index, pd.RangeIndex) or segments_df.index.start != 0:
            return super()._link_gap_split_merge_from_matrix(
                segments_df, track_tree, gap_closing_dist_matrix, splitting_dist_matrix, merging_dist_matrix,
                splitting_all_candidates, merging_all_candidates)
        cost_matrix = build_segment_cost_matrix(
            gap_closing_dist_matrix, splitting_dist_matrix, merging_dist_matrix,
            self.segment_start_cost, self.segment_end_cost, self.no_splitting_cost, self.no_merging_cost,
            self.alternative_cost_factor, self.alternative_cost_percentile,
            self.alternative_cost_percentile_interpolation)
        if cost_matrix is None:
            return track_tree
        xs, ys = lap_optimization(cost_matrix)
        m, n1, n2 = gap_closing_dist_matrix.shape[0], splitting_dist_matrix.shape[1], merging_dist_matrix.shape[1]
        first = list(zip(segments_df["first_frame"].tolist(), segments_df["first_index"].tolist()))
        last = list(zip(segments_df["last_frame"].tolist(), segments_df["last_index"].tolist()))
        edges = []
        for ind in range(len(segments_df)):
            column, row = int(xs[ind]), int(ys[ind])
            if column < m:
                edges.append((last[ind], first[column]))
            elif column < m + n2:
                edges.append((last[ind], tuple(int(v) for v in merging_all_candidates[column - m])))
            if m <= row < m + n1:
                edges.append((first[ind], tuple(int(v) for v in splitting_all_candidates[row - m])))
        track_tree.add_edges_from(edges)
        return track_tree
