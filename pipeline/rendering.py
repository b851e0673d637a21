"""StarDist's label rendering (``polygons_to_label``) in one compiled pass: the same pixels.

``stardist.geometry.polygons_to_label`` draws the kept polygons one by one, lowest
probability first, each with ``skimage.draw.polygon``: a Python call per polygon that
tests every pixel of its bounding box with scikit-image's crossing-number rule and
returns the inside pixels as Python lists. Here the same rule (``point_in_polygon`` of
scikit-image 0.26: inside, on an edge or on a vertex counts) runs over every polygon's
box in one numba function, in the same order, on the same float64 coordinates
(``stardist.geometry.dist_to_coord``), so later polygons overwrite earlier ones exactly
as there. Tests hold the labels to ``polygons_to_label`` pixel for pixel (crowded,
touching, tiny, huge and cut-off polygons, zoomed planes).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _draw(coord: np.ndarray, values: np.ndarray, out: np.ndarray) -> None:
    """Draw polygon k (``coord[k]``: rows, cols) with ``values[k]`` into ``out``, in order, each
    over its bounding box clipped as ``skimage.draw.polygon(r, c, shape)`` clips it.

    Per pixel this is scikit-image's ``point_in_polygon`` (0.26; inside, on an edge or on a
    vertex counts), operation for operation. Whether an edge straddles the pixel's row and
    whether a vertex sits on it depend on the row alone, so they are found once per row
    and only those edges and vertices are tested along it; the others add nothing there.
    """
    eps = 1e-12
    height, width = out.shape
    n = coord.shape[2]
    edges = np.empty(n, np.int64)
    kinds = np.empty(n, np.int64)           # 1: right crossing test, 2: left, 3: both
    vertices = np.empty(n, np.int64)
    for k in range(coord.shape[0]):
        yp = coord[k, 0]
        xp = coord[k, 1]
        min_r = int(max(0.0, yp.min()))
        max_r = min(height - 1, int(math.ceil(yp.max())))
        min_c = int(max(0.0, xp.min()))
        max_c = min(width - 1, int(math.ceil(xp.max())))
        for row in range(min_r, max_r + 1):
            y = float(row)
            n_edges = 0
            n_vertices = 0
            for i in range(n):
                j = i - 1 if i > 0 else n - 1
                y0 = yp[i] - y
                y1 = yp[j] - y
                kind = 0
                if (y0 > 0) != (y1 > 0):
                    kind += 1
                if (y0 < 0) != (y1 < 0):
                    kind += 2
                if kind:
                    edges[n_edges] = i
                    kinds[n_edges] = kind
                    n_edges += 1
                if -eps < y0 < eps:
                    vertices[n_vertices] = i
                    n_vertices += 1
            if n_edges == 0 and n_vertices == 0:
                continue
            for col in range(min_c, max_c + 1):
                x = float(col)
                hit = False
                for v in range(n_vertices):
                    x0 = xp[vertices[v]] - x
                    if -eps < x0 < eps:
                        hit = True
                        break
                if not hit:
                    right = 0
                    left = 0
                    for e in range(n_edges):
                        i = edges[e]
                        j = i - 1 if i > 0 else n - 1
                        x0 = xp[i] - x
                        y0 = yp[i] - y
                        x1 = xp[j] - x
                        y1 = yp[j] - y
                        cross = (x0 * y1 - x1 * y0) / (y1 - y0)
                        if kinds[e] & 1 and cross > 0:
                            right += 1
                        if kinds[e] & 2 and cross < 0:
                            left += 1
                    hit = (right & 1) != (left & 1) or (right & 1) == 1
                if hit:
                    out[row, col] = values[k]


def dist_to_coord(dist: np.ndarray, points: np.ndarray, scale_dist: tuple[float, float] = (1, 1)) -> np.ndarray:
    """``stardist.geometry.dist_to_coord``, the same float32 arithmetic: polygon vertices
    ``(n, 2, n_rays)`` from ray lengths. Here so that worker processes need not import
    stardist (a second per worker) for two lines of numpy."""
    dist, points = np.asarray(dist), np.asarray(points)
    phis = np.linspace(0, 2 * np.pi, dist.shape[1], endpoint=False)      # stardist's ray_angles
    coord = (dist[:, np.newaxis] * np.array([np.sin(phis), np.cos(phis)])).astype(np.float32)
    coord *= np.asarray(scale_dist).reshape(1, 2, 1)
    coord += points[..., np.newaxis]
    return coord


def polygons_to_label(dist: np.ndarray, points: np.ndarray, shape: tuple[int, int], prob: np.ndarray | None = None,
                      thr: float = -np.inf, scale_dist: tuple[float, float] = (1, 1)) -> np.ndarray:
    """``stardist.geometry.polygons_to_label`` with the same arguments and the same result."""
    dist, points = np.asarray(dist), np.asarray(points)
    prob = np.inf * np.ones(len(points)) if prob is None else np.asarray(prob)
    keep = prob > thr
    dist, points, prob = dist[keep], points[keep], prob[keep]
    order = np.argsort(prob, kind="stable")
    labels = np.zeros(shape, np.int32)
    if len(order) == 0:
        return labels
    coord = dist_to_coord(dist[order], points[order], scale_dist=scale_dist)
    _draw(np.ascontiguousarray(coord, np.float64), (order + 1).astype(np.int32), labels)
    return labels
