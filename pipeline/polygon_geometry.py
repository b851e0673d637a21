"""Integer polygons for the compiled NMS (``nms``): exact predicates and cheap bounds.

StarDist's NMS measures overlaps on polygons whose vertices are integers (Clipper
points). Deciding most pairs without clipping needs a few facts about each polygon and
pair, computed exactly on those integers where it matters: orientation tests, whether
an outline is simple, discs that hold a polygon or lie inside it, the convex hull (of
one polygon, and of two together), and the area two discs share. Nothing here knows
StarDist's rule or its thresholds.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def orient(ax, ay, bx, by, cx, cy):
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


@njit(cache=True, nogil=True)
def on_segment(ax, ay, bx, by, px, py):
    """Whether integer point p lies on the closed segment a-b (exact)."""
    if orient(ax, ay, bx, by, px, py) != 0:
        return False
    return min(ax, bx) <= px <= max(ax, bx) and min(ay, by) <= py <= max(ay, by)


@njit(cache=True, nogil=True)
def proper_cross(ax, ay, bx, by, cx, cy, dx, dy):
    """Whether segments a-b and c-d cross at one interior point of both (no endpoint on the other)."""
    o1 = orient(ax, ay, bx, by, cx, cy)
    o2 = orient(ax, ay, bx, by, dx, dy)
    o3 = orient(cx, cy, dx, dy, ax, ay)
    o4 = orient(cx, cy, dx, dy, bx, by)
    return ((o1 > 0 and o2 < 0) or (o1 < 0 and o2 > 0)) and ((o3 > 0 and o4 < 0) or (o3 < 0 and o4 > 0))


@njit(cache=True, nogil=True)
def star_around(vx, vy, i, cx, cy):
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
def distinct_vertices(vx, vy, i, xs, ys):
    """Polygon ``i``'s vertices without repeats of the one before (around the loop) into
    ``xs``/``ys``; returns xs, ys and their count."""
    n = vx.shape[1]
    m = 0
    for k in range(n):
        if m == 0 or vx[i, k] != xs[m - 1] or vy[i, k] != ys[m - 1]:
            xs[m], ys[m] = vx[i, k], vy[i, k]
            m += 1
    while m > 1 and xs[m - 1] == xs[0] and ys[m - 1] == ys[0]:
        m -= 1
    return xs, ys, m


@njit(cache=True, nogil=True)
def is_regular(vx, vy, i):
    """Polygon ``i`` is simple and counter-clockwise with positive area (duplicate points aside)."""
    xs, ys, m = distinct_vertices(vx, vy, i, np.empty(vx.shape[1], np.int64), np.empty(vx.shape[1], np.int64))
    if m < 3:
        return False
    twice = 0
    for k in range(m):
        twice += xs[k] * ys[(k + 1) % m] - ys[k] * xs[(k + 1) % m]
    if twice <= 0:
        return False
    for a in range(m):
        a1 = a + 1 if a + 1 < m else 0
        for b in range(a + 1, m):
            b1 = b + 1 if b + 1 < m else 0
            if b == a1 or a == b1:                       # neighbours share a vertex: no backtracking
                if b == a1 and on_segment(xs[a], ys[a], xs[a1], ys[a1], xs[b1], ys[b1]):
                    return False
                if a == b1 and on_segment(xs[b], ys[b], xs[b1], ys[b1], xs[a1], ys[a1]):
                    return False
                continue
            if proper_cross(xs[a], ys[a], xs[a1], ys[a1], xs[b], ys[b], xs[b1], ys[b1]) \
                    or on_segment(xs[a], ys[a], xs[a1], ys[a1], xs[b], ys[b]) \
                    or on_segment(xs[a], ys[a], xs[a1], ys[a1], xs[b1], ys[b1]) \
                    or on_segment(xs[b], ys[b], xs[b1], ys[b1], xs[a], ys[a]) \
                    or on_segment(xs[b], ys[b], xs[b1], ys[b1], xs[a1], ys[a1]):
                return False
    return True


@njit(cache=True, nogil=True)
def segment_distance2(px, py, ax, ay, bx, by):
    """Squared distance from point p to segment a-b."""
    ex, ey = bx - ax, by - ay
    length2 = ex * ex + ey * ey
    t = 0.0 if length2 == 0 else min(1.0, max(0.0, ((px - ax) * ex + (py - ay) * ey) / length2))
    qx, qy = ax + t * ex - px, ay + t * ey - py
    return qx * qx + qy * qy


@njit(cache=True, nogil=True)
def inside(vx, vy, i, px, py):
    """Crossing-number test of a point (float) against integer polygon ``i``."""
    n = vx.shape[1]
    inside = False
    for k in range(n):
        k1 = k + 1 if k + 1 < n else 0
        ay, by = vy[i, k], vy[i, k1]
        if (ay > py) != (by > py):
            x = vx[i, k] + (py - ay) * (vx[i, k1] - vx[i, k]) / (by - ay)
            if px < x:
                inside = not inside
    return inside


@njit(cache=True, nogil=True)
def hull_chain(xs, ys, m, hx, hy):
    """Andrew's monotone chain over ``m`` points sorted by (x, y): the hull, counter-clockwise,
    from the lowest-left point, into ``hx``/``hy``; returns its length (first point not repeated)."""
    h = 0
    for k in range(m):                           # lower hull
        while h >= 2 and orient(hx[h - 2], hy[h - 2], hx[h - 1], hy[h - 1], xs[k], ys[k]) <= 0:
            h -= 1
        hx[h], hy[h] = xs[k], ys[k]
        h += 1
    lower = h + 1
    for k in range(m - 2, -1, -1):               # upper hull
        while h >= lower and orient(hx[h - 2], hy[h - 2], hx[h - 1], hy[h - 1], xs[k], ys[k]) <= 0:
            h -= 1
        hx[h], hy[h] = xs[k], ys[k]
        h += 1
    return max(1, h - 1)


@njit(cache=True, nogil=True)
def melkman_hull(vx, vy, i, dx, dy, hx, hy, xs, ys):
    """Convex hull of simple polygon ``i`` (Melkman 1987, linear time), counter-clockwise from
    its lowest-left vertex, into ``hx``/``hy``; returns its length. ``dx``/``dy``: the deque,
    ``xs``/``ys``: scratch for the distinct vertices."""
    n = vx.shape[1]
    xs, ys, m = distinct_vertices(vx, vy, i, xs, ys)
    first = 0                                    # a start not collinear with the next two
    for k in range(m):
        a, b = (k + 1) % m, (k + 2) % m
        if orient(xs[k], ys[k], xs[a], ys[a], xs[b], ys[b]) != 0:
            first = k
            break
    bottom = n
    top = n + 3
    a, b = (first + 1) % m, (first + 2) % m
    dx[n], dy[n] = xs[b], ys[b]
    if orient(xs[first], ys[first], xs[a], ys[a], xs[b], ys[b]) > 0:
        dx[n + 1], dy[n + 1], dx[n + 2], dy[n + 2] = xs[first], ys[first], xs[a], ys[a]
    else:
        dx[n + 1], dy[n + 1], dx[n + 2], dy[n + 2] = xs[a], ys[a], xs[first], ys[first]
    dx[n + 3], dy[n + 3] = xs[b], ys[b]
    for step in range(3, m):
        k = (first + step) % m
        x, y = xs[k], ys[k]
        if orient(dx[top - 1], dy[top - 1], dx[top], dy[top], x, y) > 0 and \
                orient(dx[bottom], dy[bottom], dx[bottom + 1], dy[bottom + 1], x, y) > 0:
            continue
        while top - bottom > 2 and orient(dx[top - 1], dy[top - 1], dx[top], dy[top], x, y) <= 0:
            top -= 1
        top += 1
        dx[top], dy[top] = x, y
        while top - bottom > 2 and orient(x, y, dx[bottom], dy[bottom], dx[bottom + 1], dy[bottom + 1]) <= 0:
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
def empty_shapes(n, n_rays):
    """Room for ``shapes`` of ``n`` polygons, none computed yet (hull count -1): the NMS
    fills a polygon's only when a pair of it reaches the hull test (``shape_of``)."""
    return (np.empty((n, n_rays + 1), np.int64), np.empty((n, n_rays + 1), np.int64),
            np.full(n, -1, np.int64), np.zeros(n, np.int64), np.zeros(n))


@njit(cache=True, nogil=True)
def shape_of(vx, vy, regular, i, shapes, scratch):
    """Fill polygon ``i``'s entry of ``shapes`` (once): its convex hull's vertices sorted by
    (x, y) and their number, twice its exact area (int), its perimeter. ``scratch``: 6 rows."""
    hull_x, hull_y, hull_n, twice, perimeter = shapes
    if hull_n[i] >= 0:
        return
    n_rays = vx.shape[1]
    xs, ys, hx, hy, dx, dy = scratch[0], scratch[1], scratch[2], scratch[3], scratch[4], scratch[5]
    twice[i] = 0
    perimeter[i] = 0.0
    for k in range(n_rays):
        k1 = k + 1 if k + 1 < n_rays else 0
        twice[i] += vx[i, k] * vy[i, k1] - vy[i, k] * vx[i, k1]
        perimeter[i] += math.sqrt(float((vx[i, k1] - vx[i, k]) ** 2 + (vy[i, k1] - vy[i, k]) ** 2))
    if regular[i]:             # a simple outline: Melkman's hull in one pass, no sort
        h = melkman_hull(vx, vy, i, dx, dy, hx, hy, xs, ys)
    else:
        for k in range(n_rays):
            x, y = vx[i, k], vy[i, k]            # insertion sort by (x, y)
            m = k - 1
            while m >= 0 and (xs[m] > x or (xs[m] == x and ys[m] > y)):
                xs[m + 1], ys[m + 1] = xs[m], ys[m]
                m -= 1
            xs[m + 1], ys[m + 1] = x, y
        h = hull_chain(xs, ys, n_rays, hx, hy)
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


@njit(cache=True, nogil=True)
def shape_scratch(n_rays):
    return np.empty((6, 2 * n_rays + 4), np.int64)


@njit(cache=True, nogil=True)
def shapes(vx, vy, regular):
    """``shape_of`` every polygon."""
    n, n_rays = vx.shape
    result = empty_shapes(n, n_rays)
    scratch = shape_scratch(n_rays)
    for i in range(n):
        shape_of(vx, vy, regular, i, result, scratch)
    return result


@njit(cache=True, nogil=True)
def hull_twice_area(shapes, i, j, xs, ys, hx, hy):
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
    h = hull_chain(xs, ys, m, hx, hy)
    twice = 0
    for k in range(h):
        k1 = k + 1 if k + 1 < h else 0
        twice += hx[k] * hy[k1] - hy[k] * hx[k1]
    return twice


@njit(cache=True, nogil=True)
def lens_area(r1, r2, d):
    """Area of the intersection of two discs."""
    if r1 <= 0 or r2 <= 0 or d >= r1 + r2:
        return 0.0
    if d <= abs(r1 - r2):
        r = min(r1, r2)
        return math.pi * r * r
    a1 = (d * d + r1 * r1 - r2 * r2) / (2 * d * r1)
    a2 = (d * d + r2 * r2 - r1 * r1) / (2 * d * r2)
    c1, c2 = min(1.0, max(-1.0, a1)), min(1.0, max(-1.0, a2))
    # each disc's segment: r^2 (a - sin(2a) / 2), with sin(2a) / 2 = cos(a) sin(a)
    return (r1 * r1 * (math.acos(c1) - c1 * math.sqrt(1.0 - c1 * c1))
            + r2 * r2 * (math.acos(c2) - c2 * math.sqrt(1.0 - c2 * c2)))


@njit(cache=True, nogil=True)
def overlap_rectangle_area(vx, vy, i, j, ux, uy, grow):
    """Area of the rectangle, in the frame of unit axis (ux, uy), where the extents of polygons
    ``i`` and ``j`` along both axes overlap, each side widened by ``grow``: their intersection
    (and anything within ``grow`` of it) lies inside."""
    n = vx.shape[1]
    overlap_s = overlap_t = math.inf
    low_s = low_t = -math.inf
    for p in (i, j):
        s0 = t0 = math.inf
        s1 = t1 = -math.inf
        for k in range(n):
            s = vx[p, k] * ux + vy[p, k] * uy
            t = vy[p, k] * ux - vx[p, k] * uy
            s0, s1, t0, t1 = min(s0, s), max(s1, s), min(t0, t), max(t1, t)
        overlap_s, low_s = min(overlap_s, s1), max(low_s, s0)
        overlap_t, low_t = min(overlap_t, t1), max(low_t, t0)
    width = max(0.0, overlap_s - low_s + 2 * grow)
    height = max(0.0, overlap_t - low_t + 2 * grow)
    return width * height
