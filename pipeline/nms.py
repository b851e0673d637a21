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

1. the discs around both centres that hold the whole polygons overlap too little for
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
it. Tests hold the kept candidates to StarDist's on crowded, sparse, tiny, huge and
cut-off nuclei and every threshold.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math

import numpy as np
import pyclipper
from numba import njit

from .polygon_geometry import discs, hull_twice_area, inside, lens_area, proper_cross, regular_all, segment_distance2
from .polygon_geometry import empty_shapes, overlap_rectangle_area, shape_of

#: Clipper's crossing points are rounded to integers: at most this far from the exact one.
ROUNDING = 0.75
#: Crossings of edges closer to parallel than this (sine of the angle) go to Clipper.
MIN_CROSSING_SINE = 0.05


@functools.lru_cache(maxsize=None)
def ray_directions(n_rays: int) -> tuple[np.ndarray, np.ndarray]:
    """``sinf``/``cosf`` of StarDist's ray angles, from the C library StarDist's code calls."""
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libm.sincosf.argtypes = [ctypes.c_float, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
    step = np.float32(2 * math.pi / n_rays)                   # const float ANGLE_PI = 2*M_PI/n_rays
    sin, cos = np.empty(n_rays, np.float32), np.empty(n_rays, np.float32)
    s, c = ctypes.c_float(), ctypes.c_float()
    for k in range(n_rays):
        libm.sincosf(ctypes.c_float(np.float32(k) * step), ctypes.byref(s), ctypes.byref(c))
        sin[k], cos[k] = s.value, c.value
    return sin, cos


@njit(cache=True, nogil=True)
def _polygons(dist, points, sin, cos):
    """Integer vertices (x, y), int bounding boxes, float32 outer radius and area, as StarDist."""
    n, n_rays = dist.shape
    vx = np.empty((n, n_rays), np.int64)
    vy = np.empty((n, n_rays), np.int64)
    box = np.empty((n, 4), np.int64)                  # x1, x2, y1, y2
    radius = np.empty(n, np.float32)
    area = np.empty(n, np.float32)
    for i in range(n):
        py, px = points[i, 0], points[i, 1]
        x1 = x2 = y1 = y2 = np.float32(0)
        r = np.float32(0)
        for k in range(n_rays):
            d = dist[i, k]
            y = np.float32(py + np.float32(d * sin[k]))
            x = np.float32(px + np.float32(d * cos[k]))
            if k == 0:
                x1 = x2 = x
                y1 = y2 = y
            else:
                x1 = x if x < x1 else x1
                x2 = x if x > x2 else x2
                y1 = y if y < y1 else y1
                y2 = y if y > y2 else y2
            vx[i, k] = int(x)                         # IntPoint(float, float): truncation
            vy[i, k] = int(y)
            r = max(d, r)
        box[i, 0], box[i, 1], box[i, 2], box[i, 3] = int(x1), int(x2), int(y1), int(y2)
        radius[i] = r
        a = np.float32(0)
        for k in range(n_rays):
            k1 = k + 1 if k + 1 < n_rays else 0
            a = np.float32(a + np.float32(vx[i, k] * vy[i, k1] - vy[i, k] * vx[i, k1]))
        area[i] = np.float32(0.5) * abs(a)
    return vx, vy, box, radius, area




#: Polygon ``j`` is moved by this (x, y) before the exact area: no vertex of one integer
#: outline then lies on the other, and the area changes by at most |shift| x perimeter.
SHIFT_X, SHIFT_Y = 1e-4 * 0.7071067811865476, 1e-4


@njit(cache=True, nogil=True)
def _inside_shifted(vx, vy, q, sx, sy, px, py):
    """Crossing-number test of point p against polygon ``q`` moved by (sx, sy)."""
    n = vx.shape[1]
    inside = False
    for k in range(n):
        k1 = k + 1 if k + 1 < n else 0
        ay, by = vy[q, k] + sy, vy[q, k1] + sy
        if (ay > py) != (by > py):
            x = vx[q, k] + sx + (py - ay) * (vx[q, k1] - vx[q, k]) / (by - ay)
            if px < x:
                inside = not inside
    return inside


@njit(cache=True, nogil=True)
def _boundary_part(vx, vy, p, sp, q, sq, ts, near):
    """Green's-theorem share of polygon ``p``'s edges (moved by ``sp`` times the shift) inside
    polygon ``q`` (moved by ``sq`` times it), and the bound on what Clipper's rounding of the
    crossings can change; ``degenerate`` when two properly crossing edges are near parallel
    (Clipper may then clamp the crossing point along an edge), or when the walk does not
    close (an odd number of crossings: never seen, but then only Clipper can tell).

    Where the outlines only touch (a vertex on the other outline, collinear edges: a
    crossing that only the shift makes proper) the point Clipper finds is that integer
    vertex, so nothing is rounded; the rounding bound is still added there, which only
    widens the margin. Only edges of ``p`` that reach ``q``'s bounding box can be inside
    ``q``, and only ``q``'s edges that reach ``p``'s box (listed in ``near``) can cross
    them; whether an edge starts inside ``q`` follows from the edge before it (each
    crossing flips it), so the point-in-polygon test runs at most once, when every edge
    of ``p`` reaches the box. ``ts`` and ``near`` are scratch space."""
    n = vx.shape[1]
    psx, psy, qsx, qsy = sp * SHIFT_X, sp * SHIFT_Y, sq * SHIFT_X, sq * SHIFT_Y
    # bounding boxes, widened by a pixel: the shifts are far smaller
    px0, px1, py0, py1 = vx[p, 0], vx[p, 0], vy[p, 0], vy[p, 0]
    qx0, qx1, qy0, qy1 = vx[q, 0], vx[q, 0], vy[q, 0], vy[q, 0]
    for k in range(1, n):
        px0, px1 = min(px0, vx[p, k]), max(px1, vx[p, k])
        py0, py1 = min(py0, vy[p, k]), max(py1, vy[p, k])
        qx0, qx1 = min(qx0, vx[q, k]), max(qx1, vx[q, k])
        qy0, qy1 = min(qy0, vy[q, k]), max(qy1, vy[q, k])
    n_near = 0
    for b in range(n):
        b1 = b + 1 if b + 1 < n else 0
        cx, cy, dx, dy = vx[q, b], vy[q, b], vx[q, b1], vy[q, b1]
        if (cx == dx and cy == dy) or max(cx, dx) < px0 - 1 or min(cx, dx) > px1 + 1 \
                or max(cy, dy) < py0 - 1 or min(cy, dy) > py1 + 1:
            continue
        near[n_near] = b
        n_near += 1
    # start the walk at an edge outside q's box (it starts outside q), if there is one
    start = -1
    for a in range(n):
        a1 = a + 1 if a + 1 < n else 0
        if max(vx[p, a], vx[p, a1]) < qx0 - 1 or min(vx[p, a], vx[p, a1]) > qx1 + 1 \
                or max(vy[p, a], vy[p, a1]) < qy0 - 1 or min(vy[p, a], vy[p, a1]) > qy1 + 1:
            start = a
            break
    if start < 0:
        start = 0
        inside = _inside_shifted(vx, vy, q, qsx, qsy, vx[p, 0] + psx, vy[p, 0] + psy)
    else:
        inside = False
    first_inside = inside
    total = 0.0
    margin = 0.0
    for step in range(n):
        a = (start + step) % n
        a1 = a + 1 if a + 1 < n else 0
        ax, ay, bx, by = vx[p, a], vy[p, a], vx[p, a1], vy[p, a1]
        if ax == bx and ay == by:
            continue
        if max(ax, bx) < qx0 - 1 or min(ax, bx) > qx1 + 1 or max(ay, by) < qy0 - 1 or min(ay, by) > qy1 + 1:
            if inside:                       # an edge outside q's box cannot start inside q
                return 0.0, 0.0, True
            continue
        ex, ey = float(bx - ax), float(by - ay)
        fax, fay = ax + psx, ay + psy
        length_e = math.sqrt(ex * ex + ey * ey)
        ex0, ex1, ey0, ey1 = min(ax, bx), max(ax, bx), min(ay, by), max(ay, by)
        m = 0
        for u in range(n_near):
            b = near[u]
            b1 = b + 1 if b + 1 < n else 0
            cx, cy, dx, dy = vx[q, b], vy[q, b], vx[q, b1], vy[q, b1]
            if max(cx, dx) < ex0 - 1 or min(cx, dx) > ex1 + 1 or max(cy, dy) < ey0 - 1 or min(cy, dy) > ey1 + 1:
                continue
            fx, fy = float(dx - cx), float(dy - cy)
            fcx, fcy = cx + qsx, cy + qsy
            o1 = ex * (fcy - fay) - ey * (fcx - fax)                 # c against edge a-b
            o2 = ex * (fcy + fy - fay) - ey * (fcx + fx - fax)       # d against edge a-b
            if (o1 > 0) == (o2 > 0):
                continue
            o3 = fx * (fay - fcy) - fy * (fax - fcx)                 # a against edge c-d
            o4 = fx * (fay + ey - fcy) - fy * (fax + ex - fcx)       # b against edge c-d
            if (o3 > 0) == (o4 > 0):
                continue
            denominator = ex * fy - ey * fx
            ts[m] = ((fcx - fax) * fy - (fcy - fay) * fx) / denominator
            m += 1
            length_f = math.sqrt(fx * fx + fy * fy)
            if proper_cross(ax, ay, bx, by, cx, cy, dx, dy) and \
                    abs(denominator) < MIN_CROSSING_SINE * length_e * length_f:
                return 0.0, 0.0, True
            margin += 0.5 * ROUNDING * (length_e + length_f) + 0.5 * ROUNDING * ROUNDING
        for u in range(1, m):                        # few crossings per edge: insertion sort
            t = ts[u]
            v = u - 1
            while v >= 0 and ts[v] > t:
                ts[v + 1] = ts[v]
                v -= 1
            ts[v + 1] = t
        t0 = 0.0
        for u in range(m + 1):
            t1 = ts[u] if u < m else 1.0
            if inside:
                x0, y0 = fax + t0 * ex, fay + t0 * ey
                x1, y1 = fax + t1 * ex, fay + t1 * ey
                total += 0.5 * (x0 * y1 - y0 * x1)
            if u < m:
                inside = not inside
            t0 = t1
    if inside != first_inside:                       # the walk must close where it began
        return 0.0, 0.0, True
    return total, margin, False


@njit(cache=True, nogil=True)
def _disc_inside(vx, vy, p, disc):
    """Area of the largest disc around ``disc``'s centre inside both ``disc`` (the inner disc of
    one polygon) and polygon ``p``, shrunk by Clipper's rounding, so that it lies inside the
    intersection Clipper computes; 0 when the centre is outside ``p``. Decides most pairs of a
    nucleus' off-centre candidates with the one kept, whose inner discs barely meet."""
    cy, cx, r = disc[0], disc[1], disc[2]
    if r <= ROUNDING or not inside(vx, vy, p, cx, cy):
        return 0.0
    n = vx.shape[1]
    d2 = r * r
    for k in range(n):
        k1 = k + 1 if k + 1 < n else 0
        d2 = min(d2, segment_distance2(cx, cy, vx[p, k], vy[p, k], vx[p, k1], vy[p, k1]))
    rho = math.sqrt(d2) - ROUNDING
    return math.pi * rho * rho if rho > 0 else 0.0


@njit(cache=True, nogil=True)
def _decide(i, j, vx, vy, points, outer, inner, regular, area, threshold, ts, tiers, shapes, scratch):
    """1: ``i`` suppresses ``j``, 0: it does not, -1: only Clipper can tell. ``tiers`` counts
    the pairs each test decided (outer discs, inner discs, hull, exact area, Clipper)."""
    smaller = min(float(area[i]) + 1e-10, float(area[j]) + 1e-10)
    upper = lens_area(outer[i, 2] + ROUNDING, outer[j, 2] + ROUNDING,
                  math.sqrt((outer[i, 0] - outer[j, 0]) ** 2 + (outer[i, 1] - outer[j, 1]) ** 2))
    if upper == 0.0 and threshold >= 0:
        tiers[0] += 1
        return 0
    if not (regular[i] and regular[j]):
        tiers[4] += 1
        return -1
    tolerance = 1e-6 * max(1.0, upper)
    if upper / smaller < threshold - 1e-6 and upper + tolerance < threshold * smaller:
        tiers[0] += 1
        return 0
    lower = lens_area(inner[i, 2] - ROUNDING, inner[j, 2] - ROUNDING,
                  math.sqrt((inner[i, 0] - inner[j, 0]) ** 2 + (inner[i, 1] - inner[j, 1]) ** 2))
    if lower > threshold * smaller + tolerance and lower / smaller > threshold + 1e-6:
        tiers[1] += 1
        return 1
    lower = max(_disc_inside(vx, vy, i, inner[j]), _disc_inside(vx, vy, j, inner[i]))
    if lower > threshold * smaller + tolerance and lower / smaller > threshold + 1e-6:
        tiers[1] += 1
        return 1
    # neighbours side by side: the band where both reach, along and across the line between
    # their centres (or the image axes), widened by the rounding, holds too little
    dy, dx = float(points[j, 0] - points[i, 0]), float(points[j, 1] - points[i, 1])
    norm = math.sqrt(dx * dx + dy * dy)
    upper = overlap_rectangle_area(vx, vy, i, j, 1.0, 0.0, ROUNDING)
    if norm > 0:
        upper = min(upper, overlap_rectangle_area(vx, vy, i, j, dx / norm, dy / norm, ROUNDING))
    if upper / smaller < threshold - 1e-6 and upper + tolerance < threshold * smaller:
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
    part_i, margin_i, degenerate = _boundary_part(vx, vy, i, 0.0, j, 1.0, ts, scratch[0])
    if degenerate:
        tiers[4] += 1
        return -1
    part_j, margin_j, degenerate = _boundary_part(vx, vy, j, 1.0, i, 0.0, ts, scratch[0])
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
def _suppress(start, points, vx, vy, box, radius, area, outer, inner, regular, suppressed, threshold,
              cell, cell_start, cell_items, grid_shape, origin, max_dist, pending, tiers, shapes):
    """The greedy loop from candidate ``start`` on. Returns ``(i, count)`` when candidate ``i``
    left ``count`` pairs for Clipper (in ``pending``), ``(n, 0)`` when done."""
    n = points.shape[0]
    ts = np.empty(vx.shape[1], np.float64)
    scratch = np.empty((6, 2 * vx.shape[1] + 4), np.int64)
    rows, cols = grid_shape
    for i in range(start, n - 1):
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
                for s in range(cell_start[g], cell_start[g + 1]):
                    j = cell_items[s]
                    if j <= i or suppressed[j]:
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
            return i, count
    return n, 0


def _clipper_area(vx: np.ndarray, vy: np.ndarray, i: int, j: int, outlines: dict | None = None) -> np.float32:
    """StarDist's ``poly_intersection_area``: Clipper, and each result path's area summed in float32.
    ``outlines`` caches the polygons as Clipper paths across calls."""
    outlines = {} if outlines is None else outlines
    clipper = pyclipper.Pyclipper()
    for index, kind in ((i, pyclipper.PT_CLIP), (j, pyclipper.PT_SUBJECT)):
        if index not in outlines:
            outlines[index] = list(zip(vx[index].tolist(), vy[index].tolist()))
        try:
            clipper.AddPath(outlines[index], kind, True)
        except pyclipper.ClipperException:       # a path Clipper rejects (no area): StarDist ignores it too
            pass
    try:
        paths = clipper.Execute(pyclipper.CT_INTERSECTION, pyclipper.PFT_NONZERO, pyclipper.PFT_NONZERO)
    except pyclipper.ClipperException:
        paths = []
    total = np.float32(0)
    for path in paths:
        terms = [x0 * y1 - y0 * x1 for (x0, y0), (x1, y1) in zip(path, path[1:] + path[:1])]
        partial, exact = 0, True
        for term in terms:              # float32 adds integers exactly while every sum stays below 2^24
            partial += term
            exact = exact and abs(term) < 2 ** 24 and abs(partial) < 2 ** 24
        if exact:
            a = np.float32(partial)
        else:                           # StarDist's float32 accumulation, step by step
            a = np.float32(0)
            for term in terms:
                a = np.float32(a + np.float32(term))
        total = np.float32(total + np.float32(np.float32(0.5) * abs(a)))
    return total


def _cell_index(points: np.ndarray, cell: float) -> tuple:
    """Candidates bucketed by the grid cell of their centre (counting sort)."""
    origin = points.min(axis=0).astype(np.float64) if len(points) else np.zeros(2)
    ij = np.floor((points - origin) / cell).astype(np.int64)
    rows, cols = int(ij[:, 0].max()) + 1, int(ij[:, 1].max()) + 1
    flat = ij[:, 0] * cols + ij[:, 1]
    order = np.argsort(flat, kind="stable")
    cell_start = np.searchsorted(flat[order], np.arange(rows * cols + 1))
    return origin, (rows, cols), cell_start.astype(np.int64), order.astype(np.int64)


def non_maximum_suppression_inds(dist: np.ndarray, points: np.ndarray, thresh: float = 0.5,
                                 tiers: np.ndarray | None = None) -> np.ndarray:
    """Which of the candidates (sorted by falling probability) survive: StarDist's
    ``non_maximum_suppression_inds`` (KD-tree and boxes on), the same boolean array.
    ``tiers`` (5 int64), if given, counts the pairs each test decided (see ``_decide``)."""
    tiers = np.zeros(5, np.int64) if tiers is None else tiers
    dist = np.ascontiguousarray(dist, np.float32)
    points = np.ascontiguousarray(points, np.float32)
    n = len(dist)
    suppressed = np.zeros(n, bool)
    if n < 2:
        return ~suppressed
    sin, cos = ray_directions(dist.shape[1])
    vx, vy, box, radius, area = _polygons(dist, points, sin, cos)
    regular = regular_all(vx, vy, points)
    outer, inner = discs(vx, vy, points, regular)
    shapes = empty_shapes(n, dist.shape[1])
    max_dist = np.float32(radius.max())
    threshold = float(np.float32(thresh))
    cell = max(8.0, float(np.median(radius)) if n else 8.0)
    origin, grid_shape, cell_start, cell_items = _cell_index(points.astype(np.float64), cell)
    pending = np.empty(n, np.int64)
    outlines: dict = {}
    start = 0
    while start < n - 1:
        i, count = _suppress(start, points, vx, vy, box, radius, area, outer, inner, regular, suppressed,
                             threshold, cell, cell_start, cell_items, grid_shape, origin, max_dist, pending, tiers, shapes)
        for j in pending[:count]:
            # const float overlap = area_inter / fmin(areas[i] + 1e-10, areas[j] + 1e-10)
            overlap = np.float32(float(_clipper_area(vx, vy, i, int(j), outlines)) / min(float(area[i]) + 1e-10, float(area[j]) + 1e-10))
            if float(overlap) > threshold:
                suppressed[j] = True
        start = i + 1
    return ~suppressed




def non_maximum_suppression_sparse(dist: np.ndarray, prob: np.ndarray, points: np.ndarray,
                                   nms_thresh: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``stardist.nms.non_maximum_suppression_sparse`` (2D, its defaults): the same four arrays."""
    dist, prob, points = np.asarray(dist), np.asarray(prob), np.asarray(points)
    order = np.argsort(prob)[::-1]
    probi, disti, pointsi, original = prob[order], dist[order], points[order], np.arange(len(prob))[order]
    keep = non_maximum_suppression_inds(disti, pointsi, thresh=nms_thresh)
    return pointsi[keep], probi[keep], disti[keep], original[keep]
