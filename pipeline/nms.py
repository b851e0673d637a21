"""StarDist's 2D non-maximum suppression, compiled, with the same result.

stardist 0.9.2's ``c_non_max_suppression_inds`` (C++) keeps candidates greedily in
order of probability: each kept polygon suppresses every later candidate whose centre
lies within a radius (a nanoflann KD-tree), whose bounding box meets its own (boxes
truncated to int) and whose intersection with it, computed by Clipper 6.4.2 on the
polygons' vertices truncated to integers, exceeds ``nms_thresh`` of the smaller area.
Almost all of the time goes into Clipper, one pair at a time.

Here the same loop runs in numba on the same float32 vertices, integer points, float32
areas, radius and box tests, and decides each pair without Clipper whenever the answer
cannot depend on how Clipper rounds the points where two outlines cross (each moves at
most half a pixel in x and y):

1. the discs around both centres (or the vertices' means) that hold the whole polygons overlap too little for
   the pair to reach the threshold (or not at all), or so does the rectangle where both
   polygons reach along and across the line between their centres: kept;
2. the discs inside both polygons (centre to nearest edge), shrunk by the rounding,
   already overlap enough, or one polygon's inner disc, cut to what lies inside the
   other polygon and shrunk by the rounding, covers enough: suppressed;
3. else the exact intersection area of the two integer polygons (their edges clipped
   at every crossing, Green's theorem), with a bound on what rounding each crossing
   can change, lies clearly on one side of the threshold.

What is left (near the threshold, a vertex lying exactly on the other outline, a
polygon whose integer outline crosses itself) goes to Clipper itself through pyclipper,
which bundles the same Clipper 6.4.2 source, and the area is summed as StarDist sums
it (both overlaps: ``overlap_area``). Tests hold the kept candidates to StarDist's on crowded, sparse, tiny, huge and
cut-off nuclei and every threshold.

Most pairs are a nucleus' off-centre candidate against the one kept, which the inner
discs decide, so those are tested first. The candidates' facts (vertices, areas, discs,
simplicity: ``polygon_facts.py``) are computed once each, in one pass, on ``thread_budget()``
threads, and stored by grid cell, so that a kept candidate's neighbours lie together in memory.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .overlap_area import ROUNDING, SHIFT_X, SHIFT_Y, boundary_part, clipper_area
from .polygon_facts import polygon_facts, ray_directions, thread_budget
from .polygon_geometry import empty_shapes, hull_twice_area, inside, lens_area, overlap_rectangle_area
from .polygon_geometry import segment_distance2, shape_of

@njit(cache=True, nogil=True)
def _clearly_above(lower, threshold, smaller, tolerance):
    """A lower bound of the overlap that exceeds the threshold share of ``smaller`` beyond doubt."""
    return lower > threshold * smaller + tolerance and lower / smaller > threshold + 1e-6


@njit(cache=True, nogil=True)
def _clearly_below(upper, threshold, smaller, tolerance):
    """An upper bound of the overlap that stays under the threshold share of ``smaller`` beyond doubt."""
    return upper / smaller < threshold - 1e-6 and upper + tolerance < threshold * smaller


@njit(cache=True, nogil=True)
def _disc_inside(vx, vy, p, disc, needed):
    """Area of the largest disc around ``disc``'s centre inside both ``disc`` (the inner disc of
    one polygon) and polygon ``p``, shrunk by Clipper's rounding, so that it lies inside the
    intersection Clipper computes; 0 when the centre is outside ``p``. Decides most pairs of a
    nucleus' off-centre candidates with the one kept, whose inner discs barely meet.

    Returns 0 early once the area can no longer exceed ``needed`` (a little below the area
    that would decide the pair, so the caller's own comparison stays the judge)."""
    cy, cx, r = disc[0], disc[1], disc[2]
    reach = math.sqrt(needed / math.pi) + ROUNDING       # the radius the disc must keep (>= the rounding)
    if r <= reach:
        return 0.0
    n = vx.shape[1]
    d2 = r * r
    limit = reach * reach
    for k in range(n):
        k1 = k + 1 if k + 1 < n else 0
        d2 = min(d2, segment_distance2(cx, cy, vx[p, k], vy[p, k], vx[p, k1], vy[p, k1]))
        if d2 <= limit:
            return 0.0
    if not inside(vx, vy, p, cx, cy):
        return 0.0
    rho = math.sqrt(d2) - ROUNDING
    return math.pi * rho * rho if rho > 0 else 0.0


@njit(cache=True, nogil=True)
def _decide(i, j, vx, vy, points, outer, inner, regular, area, threshold, ts, tiers, shapes, scratch):
    """1: ``i`` suppresses ``j``, 0: it does not, -1: only Clipper can tell. ``tiers`` counts
    the pairs each test decided (outer discs, inner discs, hull, exact area, Clipper)."""
    smaller = min(float(area[i]) + 1e-10, float(area[j]) + 1e-10)
    if regular[i] and regular[j]:
        # most pairs are a nucleus' off-centre candidate against the one kept: their inner
        # discs decide them, so test these first (the tolerance is the largest the outer
        # discs' test below could use: never bolder than it)
        cap = math.pi * min(outer[i, 2] + ROUNDING, outer[j, 2] + ROUNDING) ** 2
        tolerance = 1e-6 * max(1.0, cap)
        lower = lens_area(inner[i, 2] - ROUNDING, inner[j, 2] - ROUNDING,
                          math.sqrt((inner[i, 0] - inner[j, 0]) ** 2 + (inner[i, 1] - inner[j, 1]) ** 2))
        if _clearly_above(lower, threshold, smaller, tolerance):
            tiers[1] += 1
            return 1
    upper = lens_area(outer[i, 2] + ROUNDING, outer[j, 2] + ROUNDING,
                  math.sqrt((outer[i, 0] - outer[j, 0]) ** 2 + (outer[i, 1] - outer[j, 1]) ** 2))
    if upper == 0.0 and threshold >= 0:
        tiers[0] += 1
        return 0
    if not (regular[i] and regular[j]):
        tiers[4] += 1
        return -1
    tolerance = 1e-6 * max(1.0, upper)
    if _clearly_below(upper, threshold, smaller, tolerance):
        tiers[0] += 1
        return 0
    needed = max(0.0, (1 - 1e-6) * threshold * smaller)  # what a deciding disc must exceed, and then some
    for p, q in ((j, i), (i, j)):
        lower = _disc_inside(vx, vy, p, inner[q], needed)
        if _clearly_above(lower, threshold, smaller, tolerance):
            tiers[1] += 1
            return 1
    # neighbours side by side: the band where both reach, along and across the line between
    # their centres (or the image axes), widened by the rounding, holds too little
    dy, dx = float(points[j, 0] - points[i, 0]), float(points[j, 1] - points[i, 1])
    norm = math.sqrt(dx * dx + dy * dy)
    upper = overlap_rectangle_area(vx, vy, i, j, 1.0, 0.0, ROUNDING)
    if norm > 0:
        upper = min(upper, overlap_rectangle_area(vx, vy, i, j, dx / norm, dy / norm, ROUNDING))
    if _clearly_below(upper, threshold, smaller, tolerance):
        tiers[0] += 1
        return 0
    shape_of(vx, vy, regular, i, shapes, scratch)
    shape_of(vx, vy, regular, j, shapes, scratch)
    twice, perimeter = shapes[3], shapes[4]
    hull = hull_twice_area(shapes, i, j, scratch[0], scratch[1], scratch[2], scratch[3])
    # the union lies in the hull; Clipper's rounding moves the outline at most ROUNDING
    lower = 0.5 * (twice[i] + twice[j] - hull) - ROUNDING * (perimeter[i] + perimeter[j]) - tolerance
    if lower > threshold * smaller and lower / smaller > threshold + 1e-6:
        tiers[2] += 1
        return 1
    part_i, margin_i, degenerate = boundary_part(vx, vy, i, 0.0, j, 1.0, ts, scratch[0])
    if degenerate:
        tiers[4] += 1
        return -1
    part_j, margin_j, degenerate = boundary_part(vx, vy, j, 1.0, i, 0.0, ts, scratch[0])
    if degenerate:
        tiers[4] += 1
        return -1
    exact = part_i + part_j                  # the area of i and j moved by the shift
    shift = math.hypot(SHIFT_X, SHIFT_Y) * perimeter[j]
    margin = 0.5 * (margin_i + margin_j) + shift + tolerance    # each crossing was counted from both sides
    if (exact - margin) / smaller > threshold + 1e-6:
        tiers[3] += 1
        return 1
    if (exact + margin) / smaller < threshold - 1e-6:
        tiers[3] += 1
        return 0
    tiers[4] += 1
    return -1


@njit(cache=True, nogil=True)
def _suppress(start, position, rank, points, vx, vy, box, radius, area, outer, inner, regular, suppressed, threshold,
              cell, cell_start, grid_shape, origin, max_dist, pending, tiers, shapes):
    """The greedy loop from the ``start``-th most probable candidate on. The candidates are
    stored by grid cell (a kept one's neighbours lie together in memory); ``position[k]`` is
    where the ``k``-th most probable one is. Returns ``(k, count)`` when that one left
    ``count`` pairs for Clipper (their positions in ``pending``), ``(n, 0)`` when done."""
    n = points.shape[0]
    ts = np.empty(vx.shape[1], np.float64)
    scratch = np.empty((6, 2 * vx.shape[1] + 4), np.int64)
    rows, cols = grid_shape
    for k in range(start, n - 1):
        i = position[k]
        if suppressed[i]:
            continue
        reach = np.float32(max_dist + radius[i])
        reach2 = np.float32(reach * reach)
        y0 = int((points[i, 0] - reach - origin[0]) // cell) - 1
        y1 = int((points[i, 0] + reach - origin[0]) // cell) + 1
        x0 = int((points[i, 1] - reach - origin[1]) // cell) - 1
        x1 = int((points[i, 1] + reach - origin[1]) // cell) + 1
        count = 0
        for gy in range(max(0, y0), min(rows, y1 + 1)):
            for gx in range(max(0, x0), min(cols, x1 + 1)):
                g = gy * cols + gx
                for j in range(cell_start[g], cell_start[g + 1]):
                    if rank[j] <= k or suppressed[j]:
                        continue
                    d0 = np.float32(points[i, 0] - points[j, 0])
                    d1 = np.float32(points[i, 1] - points[j, 1])
                    if not np.float32(np.float32(d0 * d0) + np.float32(d1 * d1)) < reach2:
                        continue
                    if not (box[j, 0] <= box[i, 1] and box[i, 0] <= box[j, 1]
                            and box[j, 2] <= box[i, 3] and box[i, 2] <= box[j, 3]):
                        continue
                    verdict = _decide(i, j, vx, vy, points, outer, inner, regular, area, threshold, ts, tiers, shapes, scratch)
                    if verdict == 1:
                        suppressed[j] = True
                    elif verdict == -1:
                        pending[count] = j
                        count += 1
        if count:
            return k, count
    return n, 0


@njit(cache=True, nogil=True)
def _row_maxima(dist):
    """``dist.max(axis=1)``, the same values: numpy's reduction over 32 rays a row took ~2.6 ms
    of a crowded plane's ~45 ms NMS, this ~0.1 ms."""
    out = np.empty(dist.shape[0], dist.dtype)
    for i in range(dist.shape[0]):
        m = dist[i, 0]
        for k in range(1, dist.shape[1]):
            x = dist[i, k]
            if x > m or x != x:              # a NaN stays, as in numpy's max
                m = x
        out[i] = m
    return out


@njit(cache=True, nogil=True)
def _cell_index(points, cell):
    """Candidates bucketed by the grid cell of their centre (a counting sort, stable: by
    probability within a cell): origin, grid shape, where each cell starts, the order."""
    n = points.shape[0]
    y0, x0 = np.inf, np.inf
    for i in range(n):
        y0, x0 = min(y0, float(points[i, 0])), min(x0, float(points[i, 1]))
    iy, ix = np.empty(n, np.int64), np.empty(n, np.int64)
    for i in range(n):
        iy[i] = int(math.floor((float(points[i, 0]) - y0) / cell))
        ix[i] = int(math.floor((float(points[i, 1]) - x0) / cell))
    rows, cols = iy.max() + 1, ix.max() + 1
    flat = iy * cols + ix
    cell_start = np.zeros(rows * cols + 1, np.int64)
    for i in range(n):
        cell_start[flat[i] + 1] += 1
    for g in range(rows * cols):
        cell_start[g + 1] += cell_start[g]
    fill = cell_start[:-1].copy()
    order = np.empty(n, np.int64)
    for i in range(n):
        order[fill[flat[i]]] = i
        fill[flat[i]] += 1
    return np.array([y0, x0]), (rows, cols), cell_start, order


def non_maximum_suppression_inds(dist: np.ndarray, points: np.ndarray, thresh: float = 0.5,
                                 tiers: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
    """Which of the candidates (sorted by falling probability) survive: StarDist's
    ``non_maximum_suppression_inds`` (KD-tree and boxes on), the same boolean array.
    ``tiers`` (5 int64), if given, counts the pairs each test decided (see ``_decide``)."""
    return _kept(dist, points, np.arange(len(dist)), thresh, tiers, threads)


def _kept(dist: np.ndarray, points: np.ndarray, by_rank: np.ndarray, thresh: float,
          tiers: np.ndarray | None, threads: int | None) -> np.ndarray:
    """``non_maximum_suppression_inds`` of the candidates in the order ``by_rank`` (the rows of
    ``dist``/``points`` by falling probability), without copying them into that order."""
    tiers = np.zeros(5, np.int64) if tiers is None else tiers
    dist = np.ascontiguousarray(dist, np.float32)
    points = np.ascontiguousarray(points, np.float32)[by_rank]
    n = len(dist)
    suppressed = np.zeros(n, bool)
    if n < 2:
        return ~suppressed
    sin, cos = ray_directions(dist.shape[1])
    cell = max(8.0, float(np.median(_row_maxima(dist))))
    origin, grid_shape, cell_start, rank = _cell_index(points, cell)
    # stored by grid cell: rank[c] is the probability rank of the candidate at c
    position = np.empty(n, np.int64)
    position[rank] = np.arange(n)
    points = points[rank]
    vx, vy, box, radius, area, regular, outer, inner = polygon_facts(
        dist, points, sin, cos, thread_budget() if threads is None else threads, rows=np.ascontiguousarray(by_rank[rank]))
    shapes = empty_shapes(n, dist.shape[1])
    max_dist = np.float32(radius.max())
    threshold = float(np.float32(thresh))
    pending = np.empty(n, np.int64)
    outlines: dict = {}
    start = 0
    while start < n - 1:
        k, count = _suppress(start, position, rank, points, vx, vy, box, radius, area, outer, inner, regular,
                             suppressed, threshold, cell, cell_start, grid_shape, origin, max_dist, pending, tiers,
                             shapes)
        i = position[k] if k < n else -1
        for j in pending[:count]:
            # const float overlap = area_inter / fmin(areas[i] + 1e-10, areas[j] + 1e-10)
            overlap = np.float32(float(clipper_area(vx, vy, i, int(j), outlines)) / min(float(area[i]) + 1e-10, float(area[j]) + 1e-10))
            if float(overlap) > threshold:
                suppressed[j] = True
        start = k + 1
    keep = np.empty(n, bool)
    keep[rank] = ~suppressed
    return keep


def non_maximum_suppression_sparse(dist: np.ndarray, prob: np.ndarray, points: np.ndarray,
                                   nms_thresh: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``stardist.nms.non_maximum_suppression_sparse`` (2D, its defaults): the same four arrays."""
    dist, prob, points = np.asarray(dist), np.asarray(prob), np.asarray(points)
    order = np.argsort(prob)[::-1]
    keep = order[_kept(dist, points, order, nms_thresh, None, None)]
    return points[keep], prob[keep], dist[keep], keep
