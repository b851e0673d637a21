"""How much two integer polygons overlap, as Clipper 6.4.2 would say (for ``nms``).

Two ways: the exact area of the intersection of the two integer outlines (their edges
clipped at every crossing, Green's theorem), with a bound on what Clipper's rounding of
each crossing to whole pixels can change, which decides a pair whenever the threshold
lies outside that bound; and, for what is left, Clipper itself through pyclipper (the
same 6.4.2 source StarDist bundles), its paths' areas summed as StarDist sums them.
"""
from __future__ import annotations

import math

import numpy as np
import pyclipper
from numba import njit

from .polygon_geometry import proper_cross

#: Clipper's crossing points are rounded to integers: at most this far from the exact one.
ROUNDING = 0.75
#: Crossings of edges closer to parallel than this (sine of the angle) go to Clipper.
MIN_CROSSING_SINE = 0.05


#: Polygon ``j`` is moved by this (x, y) before the exact area: no vertex of one integer
#: outline then lies on the other, and the area changes by at most |shift| x perimeter.
SHIFT_X, SHIFT_Y = 1e-4 * 0.7071067811865476, 1e-4


@njit(cache=True, nogil=True)
def inside_shifted(vx, vy, q, sx, sy, px, py):
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
def boundary_part(vx, vy, p, sp, q, sq, ts, near):
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
        inside = inside_shifted(vx, vy, q, qsx, qsy, vx[p, 0] + psx, vy[p, 0] + psy)
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


def clipper_area(vx: np.ndarray, vy: np.ndarray, i: int, j: int, outlines: dict | None = None) -> np.float32:
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
