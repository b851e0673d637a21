"""Nuclei density over the field: centroids binned per time point, Z planes pooled, smoothed.

One chunked pass over the nuclei table makes every time point's map (a run can have
hundreds), so memory holds the bins, not the table. For the pictures the counts are
binned finely (about one nucleus diameter) and smoothed with a Gaussian kernel two
diameters wide (``smoothed``): a kernel density estimate in nuclei per mm², not blocky
counts of 0, 1 or 2 nuclei per bin.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .table_reading import CHUNKSIZE, _chunks, read_planes, table_units


def _grid(field_size: tuple[float, float], bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges: ``bins`` along the field's longer side, near-square bins covering it exactly.

    The bins are as square as a whole number of them per side allows, so no bin
    hangs over the field's edge and dilutes its density.
    """
    width, height = (float(v) for v in field_size)
    if not (width > 0 and height > 0):
        raise ValueError(f"field_size must be positive (width, height), not {field_size}")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, not {bins}")
    side = max(width, height) / bins
    nx, ny = max(1, round(width / side)), max(1, round(height / side))
    return np.linspace(0.0, width, nx + 1), np.linspace(0.0, height, ny + 1)


def density_maps(nuclei_csv: Path, planes_csv: Path, field_size: tuple[float, float],
                 bins: int = 20, chunksize: int = CHUNKSIZE
                 ) -> tuple[dict[int, np.ndarray], dict[int, int], np.ndarray, np.ndarray]:
    """Nuclei per mm² (or per 10⁶ px²) over the field, for every time point, in one pass.

    Returns ``(maps, n_planes, x_edges, y_edges)``: ``maps[t]`` is ``(ny, nx)``,
    row 0 at y = 0 (the image's top), counts of centroids summed over the Z
    planes of ``t`` and divided by the number of segmented planes of ``t`` (from
    the planes table, planes without nuclei included) and by the bin area. That
    makes it the mean density of one plane, comparable between time points with
    different Z ranges. Time points are those of the planes table; nuclei of
    other time points, or outside the field, are ignored. One pass for all time
    points, because a run can have hundreds of them and the table is large.
    """
    units = table_units(nuclei_csv, planes_csv)
    x_edges, y_edges = _grid(field_size, bins)
    nx, ny = x_edges.size - 1, y_edges.size - 1
    width, height = x_edges[-1], y_edges[-1]
    planes = read_planes(planes_csv)
    per_time = planes.groupby("time_point").size()
    times = per_time.index.to_numpy(np.int64)
    counts = np.zeros(times.size * ny * nx, np.int64)
    columns = ("time_point", f"centroid_x_{units.length}", f"centroid_y_{units.length}")
    for chunk in _chunks(nuclei_csv, columns, chunksize) if times.size else ():
        t, x, y = (chunk[c].to_numpy() for c in columns)
        inside = (np.isfinite(t) & (x >= 0) & (x <= width) & (y >= 0) & (y <= height))
        t, x, y = t[inside].astype(np.int64), x[inside], y[inside]
        k = np.minimum(np.searchsorted(times, t), times.size - 1)
        known = times[k] == t
        ix = np.minimum((x[known] * (nx / width)).astype(np.int64), nx - 1)
        iy = np.minimum((y[known] * (ny / height)).astype(np.int64), ny - 1)
        counts += np.bincount((k[known] * ny + iy) * nx + ix, minlength=counts.size)
    bin_area = (width / nx) * (height / ny) / units.density_area
    counts = counts.reshape(times.size, ny, nx)
    maps = {int(t): counts[i] / (per_time.iloc[i] * bin_area) for i, t in enumerate(times)}
    return maps, {int(t): int(n) for t, n in per_time.items()}, x_edges, y_edges


def density_map(nuclei_csv: Path, planes_csv: Path, time_point: int,
                field_size: tuple[float, float], bins: int = 20, chunksize: int = CHUNKSIZE
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Density of one time point as in :func:`density_maps`: ``(density, x_edges, y_edges)``.

    ``density[iy, ix]`` is nuclei per mm² (per 10⁶ px² in pixel units) in the bin
    ``[x_edges[ix], x_edges[ix+1]) x [y_edges[iy], y_edges[iy+1])``, the mean
    over the time point's segmented planes. A time point without a segmented
    plane raises ``ValueError`` (there is nothing to average over).
    """
    maps, _, x_edges, y_edges = density_maps(nuclei_csv, planes_csv, field_size, bins, chunksize)
    if int(time_point) not in maps:
        raise ValueError(f"time point {time_point} has no segmented plane in {planes_csv}")
    return maps[int(time_point)], x_edges, y_edges


#: Kernel width of the smoothed density, in median nucleus diameters.
SMOOTHING_DIAMETERS = 2.0


def smoothing_grid(field_size: tuple[float, float], median_area: float) -> tuple[int, float]:
    """``(bins along the longer side, kernel sigma)`` for a smoothed map: bins about one
    nucleus diameter (10 to 150), sigma ``SMOOTHING_DIAMETERS`` diameters (in the length unit)."""
    if not median_area or not median_area > 0:
        return 40, max(field_size) / 20
    diameter = 2 * math.sqrt(median_area / math.pi)
    return int(np.clip(round(max(field_size) / diameter), 10, 150)), SMOOTHING_DIAMETERS * diameter


def smoothed(density: np.ndarray, x_edges: np.ndarray, y_edges: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian kernel density of a binned map (``sigma`` in the length unit), edge-corrected.

    Divided by the kernel's weight inside the field, so the field's mean density is kept
    and bins at the edge are not diluted by the empty outside.
    """
    widths = (sigma / (y_edges[1] - y_edges[0]), sigma / (x_edges[1] - x_edges[0]))
    inside = ndi.gaussian_filter(np.ones_like(density, dtype=np.float64), widths, mode="constant")
    return ndi.gaussian_filter(density.astype(np.float64), widths, mode="constant") / inside
