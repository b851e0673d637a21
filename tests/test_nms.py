"""Our compiled NMS keeps exactly the candidates StarDist's keeps, in the same order.

Candidates are made as the CNN makes them, without a CNN: every foreground pixel of a
generated label image (one per ``grid`` step) becomes a candidate with StarDist's own
ray distances to its nucleus' outline (``stardist.geometry.star_dist``), disturbed by
noise, and a probability that falls off towards the outline. So each nucleus brings
dozens of near-duplicates, neighbours touch and overlap, and the pairs near the
threshold that only Clipper can decide occur too (the test checks that every decision
path ran).
"""
from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

from stardist_v4d.pipeline import nms, overlap_area, polygon_facts as facts


def discs(shape, n, radius, rng, ellipticity=0.3):
    """A label image of ``n`` random elliptical nuclei (overlaps resolved by drawing order)."""
    labels = np.zeros(shape, np.uint16)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    for label in range(1, n + 1):
        cy, cx = rng.uniform(-radius[1] / 2, shape[0] + radius[1] / 2), rng.uniform(-radius[1] / 2, shape[1] + radius[1] / 2)
        r = rng.uniform(*radius)
        ry, rx = r * (1 + rng.uniform(-ellipticity, ellipticity)), r * (1 + rng.uniform(-ellipticity, ellipticity))
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u, v = dy * np.cos(angle) + dx * np.sin(angle), -dy * np.sin(angle) + dx * np.cos(angle)
        labels[(u / ry) ** 2 + (v / rx) ** 2 <= 1] = label
    return labels


def candidates(labels, n_rays, rng, noise=0.8, grid=2):
    """(dist, prob, points) of every ``grid``-th foreground pixel, as ``predict_sparse`` gives them."""
    from stardist.geometry import star_dist

    dist = star_dist(labels, n_rays)[::grid, ::grid]
    points = np.stack(np.nonzero(labels[::grid, ::grid]), axis=1)
    dist = dist[points[:, 0], points[:, 1]]
    dist = np.maximum(0, dist + rng.normal(0, noise, dist.shape)).astype(np.float32)
    centre_ness = dist.min(axis=1) / (dist.max(axis=1) + 1e-6)
    prob = np.clip(centre_ness + rng.normal(0, 0.1, len(dist)), 0.01, 1).astype(np.float32)
    return dist, prob, (points * grid).astype(np.float32)


def assert_same_as_stardist(dist, prob, points, thresh):
    from stardist.nms import non_maximum_suppression_sparse

    expected = non_maximum_suppression_sparse(dist, prob, points, nms_thresh=thresh)
    ours = nms.non_maximum_suppression_sparse(dist, prob, points, nms_thresh=thresh)
    for name, a, b in zip(("points", "prob", "dist", "indices"), expected, ours):
        assert a.dtype == b.dtype and np.array_equal(a, b), f"{name} differ ({len(a)} vs {len(b)} kept)"


CASES = {   # shape, nuclei, radius range, ray noise
    "crowded": ((192, 192), 90, (6, 14), 0.8),
    "sparse": ((256, 256), 12, (6, 14), 0.8),
    "touching, exact rays": ((160, 160), 90, (7, 11), 0.0),
    "tiny": ((128, 128), 120, (1, 3), 0.4),
    "huge": ((320, 320), 3, (60, 120), 2.0),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("n_rays", [8, 32, 64])
def test_kept_candidates_equal_stardist(case, n_rays):
    shape, n, radius, noise = CASES[case]
    rng = np.random.default_rng(zlib.crc32(f"{case} {n_rays}".encode()))
    dist, prob, points = candidates(discs(shape, n, radius, rng), n_rays, rng, noise, grid=4 if case == "huge" else 2)
    for thresh in (0.0, 0.3, 0.4, 0.7):
        assert_same_as_stardist(dist, prob, points, thresh)


def test_threads_change_nothing():
    """The per-candidate facts split over threads are the single thread's, bit for bit, and so
    is the kept set (worker processes run one thread, the run's own process two)."""
    rng = np.random.default_rng(5)
    dist, prob, points = candidates(discs((256, 256), 160, (6, 14), rng), 32, rng)
    assert len(dist) > 2 * facts.CANDIDATES_PER_THREAD, len(dist)     # enough candidates to be split
    sin, cos = facts.ray_directions(32)
    one, three = facts.polygon_facts(dist, points, sin, cos, 1), facts.polygon_facts(dist, points, sin, cos, 3)
    assert all(np.array_equal(a, b) for a, b in zip(one, three))
    order = np.argsort(prob)[::-1]
    kept = [nms.non_maximum_suppression_inds(dist[order], points[order], 0.4, threads=t) for t in (1, 2)]
    assert np.array_equal(kept[0], kept[1]) and 0 < kept[0].sum() < len(dist)
    assert_same_as_stardist(dist, prob, points, 0.4)


def test_thread_budget_follows_the_process_openmp_setting(monkeypatch):
    """Worker processes (ours and Dask's) run with OMP_NUM_THREADS=1 beside the CNN: so does NMS."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert facts.thread_budget() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    assert facts.thread_budget() == facts.MAX_THREADS
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert facts.thread_budget() == min(facts.MAX_THREADS, os.cpu_count() or 1)


def test_every_decision_path_runs_and_agrees():
    """Crowded candidates over thresholds: each of the five tests (outer discs, inner discs,
    hull, exact area, Clipper) decides some pairs, and the result is still StarDist's."""
    rng = np.random.default_rng(7)
    total = np.zeros(5, np.int64)
    for thresh in (0.1, 0.4, 0.6, 0.8):
        labels = discs((192, 192), 100, (5, 13), rng, ellipticity=0.5)
        dist, prob, points = candidates(labels, 32, rng, noise=1.2)
        assert_same_as_stardist(dist, prob, points, thresh)
        order = np.argsort(prob)[::-1]
        tiers = np.zeros(5, np.int64)
        nms.non_maximum_suppression_inds(dist[order], points[order], thresh, tiers=tiers)
        total += tiers
    assert (total > 0).all(), f"pairs decided by outer discs, inner discs, hull, exact area, Clipper: {total}"


def test_degenerate_candidates():
    """Identical polygons, rays of length zero, one candidate, none, candidates far outside the plane."""
    rng = np.random.default_rng(3)
    dist = np.tile(rng.uniform(3, 9, (1, 16)), (6, 1)).astype(np.float32)
    dist[3] = 0
    dist[4, ::2] = 0
    points = np.array([[10, 10]] * 6, np.float32)
    prob = np.array([0.9, 0.9, 0.8, 0.7, 0.95, 0.6], np.float32)
    for thresh in (0.0, 0.4, 1.0):
        assert_same_as_stardist(dist, prob, points, thresh)
        assert_same_as_stardist(dist[:1], prob[:1], points[:1], thresh)
        assert_same_as_stardist(dist[:0], prob[:0], points[:0], thresh)
        assert_same_as_stardist(dist, prob, points - 500, thresh)


def touch(vx, vy, i, j) -> bool:
    """Whether a vertex of either integer outline lies on the other outline."""
    from stardist_v4d.pipeline.polygon_geometry import on_segment

    n = vx.shape[1]
    return any(on_segment(vx[q, k], vy[q, k], vx[q, (k + 1) % n], vy[q, (k + 1) % n], vx[p, m], vy[p, m])
               for p, q in ((i, j), (j, i)) for k in range(n) for m in range(n))


def test_every_pair_decided_without_clipper_agrees_with_clipper():
    """Pair by pair, not only the kept set: on crowded and touching planes, every sampled pair
    of close candidates that the bounds decide (outer and inner discs, hull, exact area with
    its rounding margin, touching outlines included) gets Clipper's verdict. (Offline, the
    same check passed on 4.3 million decisions.)"""
    from scipy.spatial import cKDTree

    from stardist_v4d.pipeline.polygon_geometry import shapes

    rng = np.random.default_rng(11)
    decided = exact = touching = 0
    for case in ("crowded", "touching, exact rays"):
        shape, n, radius, noise = CASES[case]
        dist, prob, points = candidates(discs(shape, n, radius, rng), 32, rng, noise)
        sin, cos = facts.ray_directions(32)
        vx, vy, box, _, area, regular, outer, inner = facts.polygon_facts(dist, points, sin, cos)
        polygon_shapes = shapes(vx, vy, regular)
        pairs = cKDTree(points).query_pairs(2 * float(dist.max()) + 2, output_type="ndarray")
        ts, scratch = np.empty(32), np.empty((6, 68), np.int64)
        for i, j in pairs[rng.choice(len(pairs), 2500, replace=False)]:
            overlap = np.float32(float(overlap_area.clipper_area(vx, vy, i, j)) /
                                 min(float(area[i]) + 1e-10, float(area[j]) + 1e-10))
            by_exact_area = False
            for thresh in (0.1, 0.3, 0.5, 0.7):
                threshold = float(np.float32(thresh))
                tiers = np.zeros(5, np.int64)
                verdict = nms._decide(i, j, vx, vy, points, outer, inner, regular, area, threshold, ts, tiers,
                                      polygon_shapes, scratch)
                if verdict != -1:
                    assert verdict == int(float(overlap) > threshold), (case, thresh, i, j, verdict, float(overlap))
                    decided += 1
                    by_exact_area |= bool(tiers[3])
            if by_exact_area:
                exact += 1
                touching += touch(vx, vy, i, j)
    assert decided > 15_000 and exact > 500 and touching > 50, (decided, exact, touching)


def test_row_maxima_equal_numpys_max_over_the_rays_nan_included():
    from stardist_v4d.pipeline.nms import _row_maxima
    rng = np.random.default_rng(3)
    dist = (rng.random((500, 32)) * 20).astype(np.float32)
    dist[7, 0] = dist[9, 17] = dist[11, 31] = np.nan
    assert np.array_equal(_row_maxima(dist), dist.max(axis=1), equal_nan=True)
