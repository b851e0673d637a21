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
   the pair to reach the threshold (or not at all): kept;
2. the discs inside both polygons (centre to nearest edge), shrunk by the rounding,
   already overlap enough: suppressed;
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
from numba import njit

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
            k1 = (k + 1) % n_rays
            a = np.float32(a + np.float32(vx[i, k] * vy[i, k1] - vy[i, k] * vx[i, k1]))
        area[i] = np.float32(0.5) * abs(a)
    return vx, vy, box, radius, area


@njit(cache=True, nogil=True)
def _orient(ax, ay, bx, by, cx, cy):
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


@njit(cache=True, nogil=True)
def _on_segment(ax, ay, bx, by, px, py):
    """Whether integer point p lies on the closed segment a-b (exact)."""
    if _orient(ax, ay, bx, by, px, py) != 0:
        return False
    return min(ax, bx) <= px <= max(ax, bx) and min(ay, by) <= py <= max(ay, by)


@njit(cache=True, nogil=True)
def _proper_cross(ax, ay, bx, by, cx, cy, dx, dy):
    """Whether segments a-b and c-d cross at one interior point of both (no endpoint on the other)."""
    o1 = _orient(ax, ay, bx, by, cx, cy)
    o2 = _orient(ax, ay, bx, by, dx, dy)
    o3 = _orient(cx, cy, dx, dy, ax, ay)
    o4 = _orient(cx, cy, dx, dy, bx, by)
    return ((o1 > 0 and o2 < 0) or (o1 < 0 and o2 > 0)) and ((o3 > 0 and o4 < 0) or (o3 < 0 and o4 > 0))


@njit(cache=True, nogil=True)
def _star_around(vx, vy, i, cx, cy):
    """Whether polygon ``i``'s distinct vertices turn once around (cx, cy), each strictly left of
    the one before: then it is star-shaped around that point, so simple and counter-clockwise."""
    n = vx.shape[1]
    turns = 0
    last = n - 1
    while last > 0 and vx[i, last] == vx[i, 0] and vy[i, last] == vy[i, 0]:
        last -= 1
    previous = last
    distinct = 0
    for k in range(last + 1):
        if k > 0 and vx[i, k] == vx[i, previous] and vy[i, k] == vy[i, previous]:
            continue
        ax, ay = vx[i, previous] - cx, vy[i, previous] - cy
        bx, by = vx[i, k] - cx, vy[i, k] - cy
        cross = ax * by - ay * bx
        if not cross > 1e-6 * (1.0 + abs(ax) + abs(ay)) * (1.0 + abs(bx) + abs(by)):
            return False
        if ay < 0 <= by:           # each step turns left by less than pi: count the turns
            turns += 1             # by the times the outline crosses the ray from the point to +x
        previous = k
        distinct += 1
    return distinct >= 3 and turns == 1


@njit(cache=True, nogil=True)
def _distinct(vx, vy, i):
    """Polygon ``i``'s vertices without repeats of the one before (around the loop): x, y, count."""
    n = vx.shape[1]
    xs = np.empty(n, np.int64)
    ys = np.empty(n, np.int64)
    m = 0
    for k in range(n):
        if m == 0 or vx[i, k] != xs[m - 1] or vy[i, k] != ys[m - 1]:
            xs[m], ys[m] = vx[i, k], vy[i, k]
            m += 1
    while m > 1 and xs[m - 1] == xs[0] and ys[m - 1] == ys[0]:
        m -= 1
    return xs, ys, m


@njit(cache=True, nogil=True)
def _regular(vx, vy, i):
    """Polygon ``i`` is simple and counter-clockwise with positive area (duplicate points aside)."""
    xs, ys, m = _distinct(vx, vy, i)
    if m < 3:
        return False
    twice = 0
    for k in range(m):
        twice += xs[k] * ys[(k + 1) % m] - ys[k] * xs[(k + 1) % m]
    if twice <= 0:
        return False
    for a in range(m):
        a1 = (a + 1) % m
        for b in range(a + 1, m):
            b1 = (b + 1) % m
            if b == a1 or a == b1:                       # neighbours share a vertex: no backtracking
                if b == a1 and _on_segment(xs[a], ys[a], xs[a1], ys[a1], xs[b1], ys[b1]):
                    return False
                if a == b1 and _on_segment(xs[b], ys[b], xs[b1], ys[b1], xs[a1], ys[a1]):
                    return False
                continue
            if _proper_cross(xs[a], ys[a], xs[a1], ys[a1], xs[b], ys[b], xs[b1], ys[b1]) \
                    or _on_segment(xs[a], ys[a], xs[a1], ys[a1], xs[b], ys[b]) \
                    or _on_segment(xs[a], ys[a], xs[a1], ys[a1], xs[b1], ys[b1]) \
                    or _on_segment(xs[b], ys[b], xs[b1], ys[b1], xs[a], ys[a]) \
                    or _on_segment(xs[b], ys[b], xs[b1], ys[b1], xs[a1], ys[a1]):
                return False
    return True


@njit(cache=True, nogil=True)
def _segment_distance2(px, py, ax, ay, bx, by):
    """Squared distance from point p to segment a-b."""
    ex, ey = bx - ax, by - ay
    length2 = ex * ex + ey * ey
    t = 0.0 if length2 == 0 else min(1.0, max(0.0, ((px - ax) * ex + (py - ay) * ey) / length2))
    qx, qy = ax + t * ex - px, ay + t * ey - py
    return qx * qx + qy * qy


@njit(cache=True, nogil=True)
def _inside(vx, vy, i, px, py):
    """Crossing-number test of a point (float) against integer polygon ``i``."""
    n = vx.shape[1]
    inside = False
    for k in range(n):
        k1 = (k + 1) % n
        ay, by = vy[i, k], vy[i, k1]
        if (ay > py) != (by > py):
            x = vx[i, k] + (py - ay) * (vx[i, k1] - vx[i, k]) / (by - ay)
            if px < x:
                inside = not inside
    return inside


@njit(cache=True, nogil=True)
def _discs(vx, vy, points, regular):
    """Per polygon a disc that holds it and one inside it (radius -1 if none), each as
    (y, x, radius): around its centre or its vertices' mean, whichever is tighter. A
    candidate's centre may sit near its outline; the mean sits in the middle."""
    n, n_rays = vx.shape
    outer = np.empty((n, 3))
    inner = np.full((n, 3), -1.0)
    for i in range(n):
        my, mx = 0.0, 0.0
        for k in range(n_rays):
            my += vy[i, k]
            mx += vx[i, k]
        first = True
        for option in range(2):
            cy = np.float64(points[i, 0]) if option == 0 else my / n_rays
            cx = np.float64(points[i, 1]) if option == 0 else mx / n_rays
            r2 = 0.0
            for k in range(n_rays):
                r2 = max(r2, (vx[i, k] - cx) ** 2 + (vy[i, k] - cy) ** 2)
            r = math.sqrt(r2)
            if first or r < outer[i, 2]:
                outer[i, 0], outer[i, 1], outer[i, 2] = cy, cx, r
            first = False
            if regular[i] and _inside(vx, vy, i, cx, cy):
                rho2 = math.inf
                for k in range(n_rays):
                    k1 = (k + 1) % n_rays
                    rho2 = min(rho2, _segment_distance2(cx, cy, vx[i, k], vy[i, k], vx[i, k1], vy[i, k1]))
                rho = math.sqrt(rho2) * (1 - 1e-9)
                if rho > inner[i, 2]:
                    inner[i, 0], inner[i, 1], inner[i, 2] = cy, cx, rho
    return outer, inner


@njit(cache=True, nogil=True)
def _chain(xs, ys, m, hx, hy):
    """Andrew's monotone chain over ``m`` points sorted by (x, y): the hull, counter-clockwise,
    from the lowest-left point, into ``hx``/``hy``; returns its length (first point not repeated)."""
    h = 0
    for k in range(m):                           # lower hull
        while h >= 2 and _orient(hx[h - 2], hy[h - 2], hx[h - 1], hy[h - 1], xs[k], ys[k]) <= 0:
            h -= 1
        hx[h], hy[h] = xs[k], ys[k]
        h += 1
    lower = h + 1
    for k in range(m - 2, -1, -1):               # upper hull
        while h >= lower and _orient(hx[h - 2], hy[h - 2], hx[h - 1], hy[h - 1], xs[k], ys[k]) <= 0:
            h -= 1
        hx[h], hy[h] = xs[k], ys[k]
        h += 1
    return max(1, h - 1)


@njit(cache=True, nogil=True)
def _melkman(vx, vy, i, dx, dy, hx, hy):
    """Convex hull of simple polygon ``i`` (Melkman 1987, linear time), counter-clockwise from
    its lowest-left vertex, into ``hx``/``hy``; returns its length. ``dx``/``dy``: the deque."""
    n = vx.shape[1]
    xs, ys, m = _distinct(vx, vy, i)
    first = 0                                    # a start not collinear with the next two
    for k in range(m):
        a, b = (k + 1) % m, (k + 2) % m
        if _orient(xs[k], ys[k], xs[a], ys[a], xs[b], ys[b]) != 0:
            first = k
            break
    bottom = n
    top = n + 3
    a, b = (first + 1) % m, (first + 2) % m
    dx[n], dy[n] = xs[b], ys[b]
    if _orient(xs[first], ys[first], xs[a], ys[a], xs[b], ys[b]) > 0:
        dx[n + 1], dy[n + 1], dx[n + 2], dy[n + 2] = xs[first], ys[first], xs[a], ys[a]
    else:
        dx[n + 1], dy[n + 1], dx[n + 2], dy[n + 2] = xs[a], ys[a], xs[first], ys[first]
    dx[n + 3], dy[n + 3] = xs[b], ys[b]
    for step in range(3, m):
        k = (first + step) % m
        x, y = xs[k], ys[k]
        if _orient(dx[top - 1], dy[top - 1], dx[top], dy[top], x, y) > 0 and \
                _orient(dx[bottom], dy[bottom], dx[bottom + 1], dy[bottom + 1], x, y) > 0:
            continue
        while top - bottom > 2 and _orient(dx[top - 1], dy[top - 1], dx[top], dy[top], x, y) <= 0:
            top -= 1
        top += 1
        dx[top], dy[top] = x, y
        while top - bottom > 2 and _orient(x, y, dx[bottom], dy[bottom], dx[bottom + 1], dy[bottom + 1]) <= 0:
            bottom += 1
        bottom -= 1
        dx[bottom], dy[bottom] = x, y
    h = top - bottom                              # the deque holds its first point twice
    start = bottom
    for k in range(bottom, top):
        if dx[k] < dx[start] or (dx[k] == dx[start] and dy[k] < dy[start]):
            start = k
    for k in range(h):
        hx[k], hy[k] = dx[bottom + (start - bottom + k) % h], dy[bottom + (start - bottom + k) % h]
    return h


@njit(cache=True, nogil=True)
def _shapes(vx, vy, regular):
    """Per polygon: its convex hull's vertices sorted by (x, y) and their number, twice its
    exact area (int), its perimeter."""
    n, n_rays = vx.shape
    hull_x = np.empty((n, n_rays + 1), np.int64)
    hull_y = np.empty((n, n_rays + 1), np.int64)
    hull_n = np.empty(n, np.int64)
    twice = np.zeros(n, np.int64)
    perimeter = np.zeros(n)
    for i in range(n):
        xs = np.empty(n_rays, np.int64)
        ys = np.empty(n_rays, np.int64)
        hx = np.empty(n_rays + 1, np.int64)
        hy = np.empty(n_rays + 1, np.int64)
        dx = np.empty(2 * n_rays + 2, np.int64)
        dy = np.empty(2 * n_rays + 2, np.int64)
        for k in range(n_rays):
            k1 = (k + 1) % n_rays
            twice[i] += vx[i, k] * vy[i, k1] - vy[i, k] * vx[i, k1]
            perimeter[i] += math.sqrt(float((vx[i, k1] - vx[i, k]) ** 2 + (vy[i, k1] - vy[i, k]) ** 2))
        if regular[i]:             # a simple outline: Melkman's hull in one pass, no sort
            h = _melkman(vx, vy, i, dx, dy, hx, hy)
        else:
            for k in range(n_rays):
                x, y = vx[i, k], vy[i, k]            # insertion sort by (x, y)
                m = k - 1
                while m >= 0 and (xs[m] > x or (xs[m] == x and ys[m] > y)):
                    xs[m + 1], ys[m + 1] = xs[m], ys[m]
                    m -= 1
                xs[m + 1], ys[m + 1] = x, y
            h = _chain(xs, ys, n_rays, hx, hy)
        # the hull runs right along its lower chain, then back left: merge the two by (x, y)
        low = 0
        while low + 1 < h and (hx[low + 1] > hx[low] or (hx[low + 1] == hx[low] and hy[low + 1] > hy[low])):
            low += 1
        a, b, m = 0, h - 1, 0                       # a: lower chain forward, b: upper chain backward
        while a <= low or b > low:
            if b <= low or (a <= low and (hx[a] < hx[b] or (hx[a] == hx[b] and hy[a] <= hy[b]))):
                hull_x[i, m], hull_y[i, m] = hx[a], hy[a]
                a += 1
            else:
                hull_x[i, m], hull_y[i, m] = hx[b], hy[b]
                b -= 1
            m += 1
        hull_n[i] = m
    return hull_x, hull_y, hull_n, twice, perimeter


@njit(cache=True, nogil=True)
def _hull_twice_area(shapes, i, j, xs, ys, hx, hy):
    """Twice the area of the convex hull of both polygons (of their hulls' vertices, merged by
    (x, y)). ``xs``/``ys``/``hx``/``hy`` are scratch space."""
    hull_x, hull_y, hull_n = shapes[0], shapes[1], shapes[2]
    a = b = m = 0
    while a < hull_n[i] or b < hull_n[j]:
        if b >= hull_n[j] or (a < hull_n[i] and (hull_x[i, a] < hull_x[j, b] or (
                hull_x[i, a] == hull_x[j, b] and hull_y[i, a] <= hull_y[j, b]))):
            xs[m], ys[m] = hull_x[i, a], hull_y[i, a]
            a += 1
        else:
            xs[m], ys[m] = hull_x[j, b], hull_y[j, b]
            b += 1
        m += 1
    h = _chain(xs, ys, m, hx, hy)
    twice = 0
    for k in range(h):
        k1 = (k + 1) % h
        twice += hx[k] * hy[k1] - hy[k] * hx[k1]
    return twice


@njit(cache=True, nogil=True)
def _lens(r1, r2, d):
    """Area of the intersection of two discs."""
    if r1 <= 0 or r2 <= 0 or d >= r1 + r2:
        return 0.0
    if d <= abs(r1 - r2):
        r = min(r1, r2)
        return math.pi * r * r
    a1 = (d * d + r1 * r1 - r2 * r2) / (2 * d * r1)
    a2 = (d * d + r2 * r2 - r1 * r1) / (2 * d * r2)
    a1, a2 = math.acos(min(1.0, max(-1.0, a1))), math.acos(min(1.0, max(-1.0, a2)))
    return r1 * r1 * (a1 - math.sin(2 * a1) / 2) + r2 * r2 * (a2 - math.sin(2 * a2) / 2)


#: Polygon ``j`` is moved by this (x, y) before the exact area: no vertex of one integer
#: outline then lies on the other, and the area changes by at most |shift| x perimeter.
SHIFT_X, SHIFT_Y = 1e-4 * 0.7071067811865476, 1e-4


@njit(cache=True, nogil=True)
def _inside_shifted(vx, vy, q, sx, sy, px, py):
    """Crossing-number test of point p against polygon ``q`` moved by (sx, sy)."""
    n = vx.shape[1]
    inside = False
    for k in range(n):
        k1 = (k + 1) % n
        ay, by = vy[q, k] + sy, vy[q, k1] + sy
        if (ay > py) != (by > py):
            x = vx[q, k] + sx + (py - ay) * (vx[q, k1] - vx[q, k]) / (by - ay)
            if px < x:
                inside = not inside
    return inside


@njit(cache=True, nogil=True)
def _boundary_part(vx, vy, p, sp, q, sq, ts):
    """Green's-theorem share of polygon ``p``'s edges (moved by ``sp`` times the shift) inside
    polygon ``q`` (moved by ``sq`` times it), and the bound on what Clipper's rounding of the
    crossings can change; ``degenerate`` when two crossing edges are near parallel, or when
    the outlines touch (a crossing that only the shift makes proper: there Clipper adds
    rounded points of its own, and no bound per crossing holds). ``ts`` is scratch space."""
    n = vx.shape[1]
    total = 0.0
    margin = 0.0
    psx, psy, qsx, qsy = sp * SHIFT_X, sp * SHIFT_Y, sq * SHIFT_X, sq * SHIFT_Y
    for a in range(n):
        a1 = (a + 1) % n
        ax, ay, bx, by = vx[p, a], vy[p, a], vx[p, a1], vy[p, a1]
        if ax == bx and ay == by:
            continue
        ex, ey = float(bx - ax), float(by - ay)
        fax, fay = ax + psx, ay + psy
        length_e = math.sqrt(ex * ex + ey * ey)
        m = 0
        for b in range(n):
            b1 = (b + 1) % n
            cx, cy, dx, dy = vx[q, b], vy[q, b], vx[q, b1], vy[q, b1]
            if cx == dx and cy == dy:
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
            if not _proper_cross(ax, ay, bx, by, cx, cy, dx, dy):
                return 0.0, 0.0, True
            length_f = math.sqrt(fx * fx + fy * fy)
            if abs(denominator) < MIN_CROSSING_SINE * length_e * length_f:
                return 0.0, 0.0, True
            margin += 0.5 * ROUNDING * (length_e + length_f) + 0.5 * ROUNDING * ROUNDING
        for u in range(1, m):                        # few crossings per edge: insertion sort
            t = ts[u]
            v = u - 1
            while v >= 0 and ts[v] > t:
                ts[v + 1] = ts[v]
                v -= 1
            ts[v + 1] = t
        inside = _inside_shifted(vx, vy, q, qsx, qsy, fax, fay)
        t0 = 0.0
        for u in range(m + 1):
            t1 = ts[u] if u < m else 1.0
            if inside:
                x0, y0 = fax + t0 * ex, fay + t0 * ey
                x1, y1 = fax + t1 * ex, fay + t1 * ey
                total += 0.5 * (x0 * y1 - y0 * x1)
            inside = not inside
            t0 = t1
    return total, margin, False


@njit(cache=True, nogil=True)
def _decide(i, j, vx, vy, points, outer, inner, regular, area, threshold, ts, tiers, shapes, scratch):
    """1: ``i`` suppresses ``j``, 0: it does not, -1: only Clipper can tell. ``tiers`` counts
    the pairs each test decided (outer discs, inner discs, hull, exact area, Clipper)."""
    smaller = min(float(area[i]) + 1e-10, float(area[j]) + 1e-10)
    upper = _lens(outer[i, 2] + ROUNDING, outer[j, 2] + ROUNDING,
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
    lower = _lens(inner[i, 2] - ROUNDING, inner[j, 2] - ROUNDING,
                  math.sqrt((inner[i, 0] - inner[j, 0]) ** 2 + (inner[i, 1] - inner[j, 1]) ** 2))
    if lower > threshold * smaller + tolerance and lower / smaller > threshold + 1e-6:
        tiers[1] += 1
        return 1
    twice, perimeter = shapes[3], shapes[4]
    hull = _hull_twice_area(shapes, i, j, scratch[0], scratch[1], scratch[2], scratch[3])
    # the union lies in the hull; Clipper's rounding moves the outline at most ROUNDING
    lower = 0.5 * (twice[i] + twice[j] - hull) - ROUNDING * (perimeter[i] + perimeter[j]) - tolerance
    if lower > threshold * smaller and lower / smaller > threshold + 1e-6:
        tiers[2] += 1
        return 1
    part_i, margin_i, degenerate = _boundary_part(vx, vy, i, 0.0, j, 1.0, ts)
    if degenerate:
        tiers[4] += 1
        return -1
    part_j, margin_j, degenerate = _boundary_part(vx, vy, j, 1.0, i, 0.0, ts)
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
    scratch = np.empty((4, 2 * vx.shape[1] + 4), np.int64)
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
    import pyclipper

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
    regular = _regular_all(vx, vy, points)
    outer, inner = _discs(vx, vy, points, regular)
    shapes = _shapes(vx, vy, regular)
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


@njit(cache=True, nogil=True)
def _regular_all(vx, vy, points):
    """``_regular`` of every polygon; the quick star test around its centre first."""
    out = np.empty(vx.shape[0], np.bool_)
    for i in range(vx.shape[0]):
        out[i] = _star_around(vx, vy, i, float(points[i, 1]), float(points[i, 0])) or _regular(vx, vy, i)
    return out


def non_maximum_suppression_sparse(dist: np.ndarray, prob: np.ndarray, points: np.ndarray,
                                   nms_thresh: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``stardist.nms.non_maximum_suppression_sparse`` (2D, its defaults): the same four arrays."""
    dist, prob, points = np.asarray(dist), np.asarray(prob), np.asarray(points)
    order = np.argsort(prob)[::-1]
    probi, disti, pointsi, original = prob[order], dist[order], points[order], np.arange(len(prob))[order]
    keep = non_maximum_suppression_inds(disti, pointsi, thresh=nms_thresh)
    return pointsi[keep], probi[keep], disti[keep], original[keep]
