"""Every NMS candidate's facts, computed once: its integer outline, box, area, whether the
outline is simple, and the discs that hold it and lie inside it (``nms.py`` decides pairs with them).

StarDist's own arithmetic (float32 vertices from ``sinf``/``cosf`` of its ray angles, truncated to
integers as Clipper's ``IntPoint`` does) so that the outlines are StarDist's to the bit. One pass
per candidate (its vertices stay in the cache), split over ``thread_budget()`` threads (the
compiled code releases the GIL).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os
import threading

import numpy as np
from numba import njit

from .polygon_geometry import inside, is_regular, segment_distance2, star_around

#: Most threads for the per-candidate facts (two gain ~1.8x on them; more were not measured).
MAX_THREADS = 2
#: Fewer candidates than this per thread are not worth a thread's start.
CANDIDATES_PER_THREAD = 2048


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


def thread_budget() -> int:
    """Threads for one NMS: the process's OpenMP budget (worker processes, Dask's and ours,
    run single-threaded beside the CNN: ``OMP_NUM_THREADS=1``), else its cores, at most
    ``MAX_THREADS``."""
    budget = os.environ.get("OMP_NUM_THREADS", "")
    cores = int(budget) if budget.isdigit() and int(budget) > 0 else (os.cpu_count() or 1)
    return max(1, min(MAX_THREADS, cores))


def polygon_facts(dist: np.ndarray, points: np.ndarray, sin: np.ndarray, cos: np.ndarray,
                  threads: int = 1, rows: np.ndarray | None = None) -> tuple:
    """Per candidate, in one pass (its vertices stay in the cache): the integer vertices
    (x, y), int bounding box, float32 outer radius and area, as StarDist computes them; whether
    the integer outline is simple and counter-clockwise (``regular``); and two discs each as
    (y, x, radius), one holding the polygon and one inside it (radius -1 if none), around the
    candidate's centre or its vertices' mean, whichever is tighter (a candidate's centre may
    sit near its outline; the mean sits in the middle). ``threads`` > 1 splits the candidates
    (the compiled code releases the GIL). Candidate ``i`` is ``points[i]`` with the rays
    ``dist[rows[i]]`` (``rows``: all rows in order by default)."""
    rows = np.arange(len(dist)) if rows is None else rows
    n, n_rays = len(rows), dist.shape[1]
    facts = (np.empty((n, n_rays), np.int32),         # x; int32: half the memory to stream (numba
             np.empty((n, n_rays), np.int32),         # y  computes with them in int64)
             np.empty((n, 4), np.int64),              # box: x1, x2, y1, y2
             np.empty(n, np.float32), np.empty(n, np.float32),   # outer radius, area
             np.empty(n, np.bool_), np.empty((n, 3)), np.full((n, 3), -1.0))   # regular, outer, inner
    bounds = np.linspace(0, n, max(1, min(threads, n // CANDIDATES_PER_THREAD + 1)) + 1).astype(np.int64)
    if len(bounds) == 2:
        _facts_into(dist, rows, points, sin, cos, 0, n, *facts)
        return facts
    parts = [threading.Thread(target=_facts_into, args=(dist, rows, points, sin, cos, lo, hi, *facts))
             for lo, hi in zip(bounds[:-1], bounds[1:])]
    for part in parts:
        part.start()
    for part in parts:
        part.join()
    return facts


@njit(cache=True, nogil=True)
def _facts_into(dist, rows, points, sin, cos, lo, hi, vx, vy, box, radius, area, regular, outer, inner):
    """``polygon_facts`` of candidates ``lo`` .. ``hi - 1``, into the arrays given."""
    n_rays = dist.shape[1]
    for i in range(lo, hi):
        py, px = points[i, 0], points[i, 1]
        row = rows[i]
        x1 = x2 = y1 = y2 = np.float32(0)
        r = np.float32(0)
        for k in range(n_rays):
            d = dist[row, k]
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
        mx, my = 0.0, 0.0
        for k in range(n_rays):
            k1 = k + 1 if k + 1 < n_rays else 0
            a = np.float32(a + np.float32(vx[i, k] * vy[i, k1] - vy[i, k] * vx[i, k1]))
            mx += vx[i, k]
            my += vy[i, k]
        area[i] = np.float32(0.5) * abs(a)
        mx, my = mx / n_rays, my / n_rays
        # simple: star-shaped around the centre, else around the vertices' mean, else the quadratic test
        centred = star_around(vx, vy, i, float(px), float(py))
        regular[i] = centred or star_around(vx, vy, i, mx, my) or is_regular(vx, vy, i)
        for option in range(2):
            cy = np.float64(py) if option == 0 else my
            cx = np.float64(px) if option == 0 else mx
            r2 = 0.0
            for k in range(n_rays):
                r2 = max(r2, (vx[i, k] - cx) ** 2 + (vy[i, k] - cy) ** 2)
            rr = math.sqrt(r2)
            if option == 0 or rr < outer[i, 2]:
                outer[i, 0], outer[i, 1], outer[i, 2] = cy, cx, rr
            # a polygon star-shaped around its centre holds it: no crossing test needed
            if regular[i] and ((option == 0 and centred) or inside(vx, vy, i, cx, cy)):
                rho2 = math.inf
                for k in range(n_rays):
                    k1 = k + 1 if k + 1 < n_rays else 0
                    rho2 = min(rho2, segment_distance2(cx, cy, vx[i, k], vy[i, k], vx[i, k1], vy[i, k1]))
                rho = math.sqrt(rho2) * (1 - 1e-9)
                if rho > inner[i, 2]:
                    inner[i, 0], inner[i, 1], inner[i, 2] = cy, cx, rho
