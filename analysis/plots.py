"""The pictures a microscopist looks at after a run, made from the run's CSV tables.

A run writes two tables: the nuclei table (one row per nucleus, possibly tens of
millions of rows for a long time-lapse) and the planes table (one row per
segmented plane). From them this module draws PNGs that answer, in seconds,
"did the segmentation work, and what does the sample look like?":

- ``area_histogram.png``: nuclear areas of the whole run. Debris shows up as a
  pile at small areas, merged nuclei as a tail at large ones.
- ``density_tTTTT.png``: nuclei per mm² over the field, one map per time point,
  all Z planes of the time point pooled. Holes and edges with too few nuclei
  point at focus, illumination or tiling problems; all maps share one colour
  scale so time points can be compared by eye.
- ``nuclei_per_plane.png``: nuclei per plane over Z and nuclei over time; a
  plane or time point that drops out is visible at once.
- ``overlay_tTTTT_zZZZZ.png``: one input plane with every nucleus outline drawn
  on it, at one image pixel per screen pixel, the direct check of the masks.

Why chunks: the nuclei table is never loaded whole; every pass reads only the
columns it needs, ``chunksize`` rows at a time, and keeps running sums (a
histogram, bin counts), so memory is bounded by the chunk size and the number of
bins, not by the run's length. The planes table has one row per plane (thousands,
not millions) and is kept in memory, three columns of it.

Why no pyplot: pyplot keeps global figure state and picks a GUI backend; this
code runs inside headless pipelines and host applications, so it builds
:class:`matplotlib.figure.Figure` objects on an Agg canvas and never imports
pyplot. Such figures are not registered anywhere, so dropping them frees them.

Units follow the tables: micrometres when the nuclei table has ``area_um2``,
pixels when it has ``area_px2`` (no pixel size known). ``field_size`` is given in
the same unit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


import numpy as np
import pandas as pd

from .density import density_maps, smoothed, smoothing_grid
from .figures import RC as _RC, agg_figure as _figure, save_png
from .overlay import Overlay, plot_overlay
from .table_reading import CHUNKSIZE, Units, _chunks, read_planes, table_units

#: Above this many time points the Z profile shows mean and min-max band, not one line each.
MAX_PROFILE_LINES = 8


@dataclass(frozen=True)
class AreaHistogram:
    """Histogram of nuclear areas over a whole run.

    ``median`` is read off a fine histogram (``edges``' bins split 400-fold), so
    it is exact to 1/20,000 of the area range without holding every area.
    """

    counts: np.ndarray
    edges: np.ndarray
    n: int
    median: float
    units: Units


# ------------------------------------------------------------------ numbers
def area_histogram(nuclei_csv: Path, bins: int = 50, chunksize: int = CHUNKSIZE,
                   units: Units | None = None) -> AreaHistogram:
    """Histogram of every nucleus' area, in two chunked passes over the nuclei table.

    Pass one finds the range, pass two counts into ``bins`` equal bins over it
    (through a 400-fold finer histogram, for the median). Nuclei without an area
    are left out. An empty table gives zero counts, ``n == 0`` and a NaN median.
    ``units`` (default: from the header) lets a 0-byte file be plotted too.
    """
    units = units or table_units(nuclei_csv)
    column = f"area_{units.area}"
    lo, hi, n = math.inf, -math.inf, 0
    for chunk in _chunks(nuclei_csv, (column,), chunksize):
        values = chunk[column].to_numpy()
        values = values[np.isfinite(values)]
        if values.size:
            lo, hi, n = min(lo, values.min()), max(hi, values.max()), n + values.size
    if n == 0:
        return AreaHistogram(np.zeros(bins, np.int64), np.linspace(0.0, 1.0, bins + 1), 0,
                             math.nan, units)
    if hi <= lo:  # every nucleus the same size: one bin around it
        lo, hi = lo - 0.5, hi + 0.5
    split = 400
    fine = np.zeros(bins * split, np.int64)
    for chunk in _chunks(nuclei_csv, (column,), chunksize):
        values = chunk[column].to_numpy()
        values = values[np.isfinite(values)]
        fine += np.histogram(values, bins=fine.size, range=(lo, hi))[0]
    edges = np.linspace(lo, hi, bins + 1)
    counts = fine.reshape(bins, split).sum(axis=1)
    # median: the fine bin where the cumulative count passes n/2, interpolated inside it
    cumulative = np.cumsum(fine)
    k = int(np.searchsorted(cumulative, n / 2.0))
    before = cumulative[k - 1] if k else 0
    width = (hi - lo) / fine.size
    median = lo + width * (k + (n / 2.0 - before) / max(fine[k], 1))
    return AreaHistogram(counts, edges, n, float(median), units)


# ------------------------------------------------------------------ figures
def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=16,
            color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_area_histogram(hist: AreaHistogram, path: Path) -> Path:
    """Bar histogram of nuclear areas with the median marked; "no nuclei" for an empty run."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        figure = _figure(7.0, 4.5)
        ax = figure.add_subplot()
        if hist.n == 0:
            _no_data(ax, "no nuclei")
            ax.set_title("Nuclear area: no nuclei")
        else:
            ax.stairs(hist.counts, hist.edges, fill=True, color="#4878a8", edgecolor="#24476b")
            ax.axvline(hist.median, color="#d62728", lw=1.5, ls="--",
                       label=f"median {hist.median:.4g} {hist.units.area_label}")
            ax.set_xlim(hist.edges[0], hist.edges[-1])
            ax.set_ylim(0, None)
            ax.legend(loc="upper right")
            ax.set_title(f"Nuclear area: {hist.n:,} nuclei, median {hist.median:.4g} "
                         f"{hist.units.area_label}")
        ax.set_xlabel(f"Nuclear area ({hist.units.area_label})")
        ax.set_ylabel("Nuclei")
        return save_png(figure, path)


def plot_density(density: np.ndarray, x_edges: np.ndarray, y_edges: np.ndarray,
                 time_point: int, n_planes: int, units: Units, path: Path,
                 vmax: float | None = None) -> Path:
    """Heatmap of one density map, origin top-left like the image, axes in the length unit."""
    import matplotlib
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    width, height = float(x_edges[-1]), float(y_edges[-1])
    aspect = height / width
    with matplotlib.rc_context(_RC):
        figure = _figure(7.0, max(2.5, min(9.0, 6.0 * aspect + 1.0)))
        ax = figure.add_subplot()
        top = vmax if vmax and vmax > 0 else max(float(np.max(density, initial=0.0)), 1.0)
        mesh = ax.pcolormesh(x_edges, y_edges, density, cmap="viridis", vmin=0.0, vmax=top,
                             shading="flat", rasterized=True)
        ax.set_xlim(0.0, width)
        ax.set_ylim(height, 0.0)  # y down, as in the image
        ax.set_aspect("equal")
        ax.xaxis.set_ticks_position("top")
        ax.xaxis.set_label_position("top")
        ax.set_xlabel(f"x ({units.length_label})")
        ax.set_ylabel(f"y ({units.length_label})")
        plural = "plane" if n_planes == 1 else "planes"
        # a colour bar as tall as the map, whatever the field's aspect
        cax = make_axes_locatable(ax).append_axes("right", size=0.25, pad=0.15)
        figure.colorbar(mesh, cax=cax, label=f"Nuclei per {units.density_label} "
                                           f"(mean of {n_planes} {plural})")
        ax.set_title(f"Nuclei density (smoothed), time point {time_point}", pad=12)
        return save_png(figure, path)


def plot_nuclei_per_plane(planes: pd.DataFrame, path: Path) -> Path:
    """Nuclei per plane over Z (per time point, or mean with min-max band) and over time."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        figure = _figure(12.0, 4.5)
        ax_z, ax_t = figure.subplots(1, 2)
        times = np.unique(planes["time_point"].to_numpy())
        if times.size == 0:
            _no_data(ax_z, "no segmented planes")
            _no_data(ax_t, "no segmented planes")
        elif times.size <= MAX_PROFILE_LINES:
            colours = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, times.size))
            for colour, t in zip(colours, times):
                rows = planes[planes["time_point"] == t]
                ax_z.plot(rows["z"], rows["nuclei"], marker="o", ms=4, color=colour,
                          label=f"time point {t}")
            ax_z.legend(loc="best")
        else:
            table = planes.pivot(index="z", columns="time_point", values="nuclei")
            z = table.index.to_numpy()
            ax_z.fill_between(z, table.min(axis=1), table.max(axis=1), color="#4878a8",
                              alpha=0.3, lw=0, label=f"min-max of {times.size} time points")
            ax_z.plot(z, table.mean(axis=1), marker="o", ms=4, color="#24476b",
                      label="mean over time points")
            ax_z.legend(loc="best")
        if times.size:
            totals = planes.groupby("time_point")["nuclei"].sum()
            marker = "o" if totals.size <= 60 else None
            ax_t.plot(totals.index, totals.to_numpy(), marker=marker, ms=4, color="#24476b")
            ax_z.set_ylim(0, None)
            ax_t.set_ylim(0, None)
            for ax, values in ((ax_z, planes["z"]), (ax_t, totals.index)):
                ax.xaxis.get_major_locator().set_params(integer=True)
                ax.grid(alpha=0.3)
                if values.nunique() == 1:  # one plane or time point: a marker, one tick
                    only = int(values.iloc[0] if hasattr(values, "iloc") else values[0])
                    ax.set_xlim(only - 1, only + 1)
                    ax.set_xticks([only])
        ax_z.set_xlabel("Z plane")
        ax_z.set_ylabel("Nuclei per plane")
        ax_z.set_title("Nuclei per plane over Z")
        ax_t.set_xlabel("Time point")
        ax_t.set_ylabel("Nuclei (sum over segmented planes)")
        ax_t.set_title("Nuclei over time")
        figure.tight_layout()
        return save_png(figure, path)


# ------------------------------------------------------------------ entry point
#: Fewer nuclei than this in a run make no density map (noise, not density): said in one line.
MIN_DENSITY_NUCLEI = 200


def make_plots(folder: Path, nuclei_csv: Path, planes_csv: Path, field_size: tuple[float, float],
               overlay: Overlay | None = None, *, bins: int | None = None, area_bins: int = 50,
               chunksize: int = CHUNKSIZE, min_density_nuclei: int = MIN_DENSITY_NUCLEI,
               notes: list[str] | None = None, pixel_size: float | None = None) -> list[Path]:
    """Write the run's pictures into ``folder`` (created if missing); return their paths in order.

    ``area_histogram.png``, one ``density_tTTTT.png`` per time point of the
    planes table, ``nuclei_per_plane.png``, then ``overlay_tTTTT_zZZZZ.png`` when
    ``overlay`` is given. ``field_size`` is ``(width, height)`` of the image field
    in the tables' length unit (um, or px without a pixel size); ``bins`` is the
    number of density bins along its longer side (None: ``smoothing_grid``); runs of
    fewer than ``min_density_nuclei`` nuclei get no density maps, and a line in ``notes``
    says so. Memory stays bounded by
    ``chunksize`` rows whatever the nuclei table's length (three passes over it:
    two for the histogram, one for all density maps).
    """
    folder = Path(folder)
    folder.mkdir(exist_ok=True)
    units = table_units(nuclei_csv, planes_csv)
    areas = area_histogram(nuclei_csv, area_bins, chunksize, units)
    written = [plot_area_histogram(areas, folder / "area_histogram.png")]
    if areas.n >= min_density_nuclei:
        grid, sigma = smoothing_grid(field_size, areas.median)
        maps, n_planes, x_edges, y_edges = density_maps(nuclei_csv, planes_csv, field_size,
                                                        grid if bins is None else bins, chunksize)
        maps = {t: smoothed(m, x_edges, y_edges, sigma) for t, m in maps.items()}
        vmax = max((float(m.max(initial=0.0)) for m in maps.values()), default=0.0)
        for t, density in maps.items():
            written.append(plot_density(density, x_edges, y_edges, t, n_planes[t], units,
                                        folder / f"density_t{t:04d}.png", vmax=vmax))
    elif notes is not None:
        notes.append(f"No density maps: {areas.n} nuclei are too few to show a density "
                     f"(at least {min_density_nuclei}).")
    planes = read_planes(planes_csv, chunksize)
    if planes["z"].nunique() != 1:           # one plane: no one-dot profile over Z (cells_over_time has time)
        written.append(plot_nuclei_per_plane(planes, folder / "nuclei_per_plane.png"))
    if overlay is not None:
        name = f"overlay_t{int(overlay.time_point):04d}_z{int(overlay.z):04d}.png"
        written.append(plot_overlay(overlay, folder / name, pixel_size))
    return written
