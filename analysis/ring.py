"""The ring around each nucleus: scikit-image's ``expand_labels``, compiled, same pixels.

``expand_labels`` gives every background pixel within ``distance`` of a nucleus the label
of the nearest nucleus pixel, found by scipy's exact Euclidean feature transform over the
whole plane (Maurer's two passes: nearest feature per column, then a lower envelope per
row). On a crowded 1024 x 1024 plane that is ~0.1 s, more than half of measuring it. Here
the same two passes run in numba for 2D planes: the first as two row-major sweeps, the
second a line-for-line port of scipy's ``_VoronoiFT`` (the same site order, the same
removal test, the same scan), so equidistant nuclei resolve as scipy resolves them, and
the distance test is scipy's (``sqrt`` of the squared distance in float64, ``<=``).
Tests hold the result to ``expand_labels`` on random, crowded and tie-rich planes.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _nearest_row_in_column(labels):
    """Per pixel, the row of the nearest nucleus pixel in its column (-1: none); ties go up."""
    h, w = labels.shape
    above = np.full((h, w), -1, np.int32)
    for y in range(h):
        for x in range(w):
            if labels[y, x] != 0:
                above[y, x] = y
            elif y > 0:
                above[y, x] = above[y - 1, x]
    nearest = above                      # overwritten in place from the bottom up
    below = np.full(w, -1, np.int32)
    for y in range(h - 1, -1, -1):
        for x in range(w):
            if labels[y, x] != 0:
                below[x] = y
            b = below[x]
            if b >= 0:
                a = nearest[y, x]
                if a < 0 or (b - y) < (y - a):
                    nearest[y, x] = b
    return nearest


@njit(cache=True, nogil=True)
def _ring(labels, fy, distance):
    """scipy's ``_VoronoiFT`` along each row over the column features ``fy``; background
    pixels within ``distance`` take the label of their feature."""
    h, w = labels.shape
    ring = np.zeros((h, w), labels.dtype)
    g = np.empty(w, np.int64)
    for y in range(h):
        l = -1
        for ii in range(w):
            if fy[y, ii] < 0:
                continue
            fd = ii
            t = fy[y, ii] - y
            wr = t * t
            while l >= 1:
                idx1 = g[l]
                idx2 = g[l - 1]
                a = idx1 - idx2
                b = fd - idx1
                c = a + b
                tu = fy[y, idx2] - y
                tv = fy[y, idx1] - y
                ur = tu * tu
                vr = tv * tv
                if c * vr - b * ur - a * wr - a * b * c <= 0:
                    break
                l -= 1
            l += 1
            g[l] = ii
        maxl = l
        if maxl < 0:
            continue
        l = 0
        for ii in range(w):
            t0 = fy[y, g[l]] - y
            t1 = g[l] - ii
            delta1 = t0 * t0 + t1 * t1
            while l < maxl:
                t0 = fy[y, g[l + 1]] - y
                t1 = g[l + 1] - ii
                delta2 = t0 * t0 + t1 * t1
                if delta1 <= delta2:
                    break
                delta1 = delta2
                l += 1
            if labels[y, ii] == 0 and np.sqrt(np.float64(delta1)) <= distance:
                ring[y, ii] = labels[fy[y, g[l]], g[l]]
    return ring


def grown_ring(labels: np.ndarray, distance: float) -> np.ndarray:
    """``expand_labels(labels, distance)`` with every nucleus pixel set to 0: the rings alone."""
    labels = np.ascontiguousarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be one (Y, X) plane, not shape {labels.shape}")
    if not labels.any():
        return np.zeros_like(labels)
    return _ring(labels, _nearest_row_in_column(labels), float(distance))
