"""Pictures of cells rather than slices: counts and sizes per time point, and tracks.

- ``cells_over_time.png``: nuclei per time point, each nucleus counted once (an object
  through Z, or a nucleus of a one-plane run), and the histogram of their (projected)
  areas, one line per time point, so a shift in size over time shows.
- ``tracks.png``: every track drawn over the last time point's maximum projection
  (colour by track, divisions marked where the daughters start), beside the histogram of
  the tracks' displacements.

Built on Agg figures like ``plots.py`` (no pyplot); the tables are the run's finished
CSVs (objects and tracks are small: one row per nucleus and time point, per track).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .figures import RC, agg_figure, save_png
from .table_reading import Units

#: Above this many time points the area histogram shows quartiles per time point, not one line each.
MAX_HISTOGRAM_LINES = 8


def plot_cells_over_time(table: pd.DataFrame, area_column: str, units: Units, path: Path,
                         what: str = "nuclei") -> Path:
    """Counts per time point and the area histogram per time point, side by side."""
    import matplotlib

    with matplotlib.rc_context(RC):
        figure = agg_figure(12.0, 4.5)
        ax_n, ax_a = figure.subplots(1, 2)
        counts = table.groupby("time_point").size()
        ax_n.plot(counts.index, counts.to_numpy(), marker="o" if counts.size <= 60 else None, ms=4,
                  color="#24476b")
        ax_n.set_ylim(0, None)
        ax_n.xaxis.get_major_locator().set_params(integer=True)
        ax_n.grid(alpha=0.3)
        ax_n.set_xlabel("Time point")
        ax_n.set_ylabel(f"Nuclei ({what}, each once)")
        ax_n.set_title("Nuclei over time")
        areas = table[area_column].to_numpy(np.float64)
        finite = areas[np.isfinite(areas)]
        edges = np.histogram_bin_edges(finite, bins=40) if finite.size else np.linspace(0, 1, 41)
        times = counts.index.to_numpy()
        if times.size <= MAX_HISTOGRAM_LINES:
            colours = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, max(times.size, 1)))
            for colour, t in zip(colours, times):
                values = table.loc[table["time_point"] == t, area_column].dropna().to_numpy()
                ax_a.stairs(np.histogram(values, edges)[0], edges, color=colour, lw=1.5,
                            label=f"time point {t} ({values.size})")
            ax_a.legend(loc="upper right", fontsize=8)
            ax_a.set_ylabel("Nuclei")
        else:
            quartiles = table.groupby("time_point")[area_column].quantile([0.25, 0.5, 0.75]).unstack()
            ax_a.fill_between(quartiles.index, quartiles[0.25], quartiles[0.75], color="#4878a8", alpha=0.3, lw=0,
                              label="quartiles")
            ax_a.plot(quartiles.index, quartiles[0.5], color="#24476b", label="median")
            ax_a.set_xlabel("Time point")
            ax_a.legend(loc="best")
        label = f"{'Projected area' if what == 'through Z' else 'Area'} ({units.area_label})"
        if times.size <= MAX_HISTOGRAM_LINES:
            ax_a.set_xlabel(label)
        else:
            ax_a.set_ylabel(label)
        ax_a.set_title("Nuclear size per time point")
        ax_a.grid(alpha=0.3)
        figure.tight_layout()
        return save_png(figure, path)


def plot_tracks(spots: pd.DataFrame, tracks: pd.DataFrame, projection: np.ndarray | None,
                pixel_size: tuple[float, float], units: Units, path: Path) -> Path:
    """Tracks over the last time point's projection (positions in the tables' unit) and displacements."""
    import matplotlib

    length = units.length
    with matplotlib.rc_context(RC):
        figure = agg_figure(13.0, 6.0)
        ax_map, ax_d = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
        sx, sy = pixel_size
        if projection is not None:
            extent = (0, projection.shape[1] * sx, projection.shape[0] * sy, 0)
            low, high = np.percentile(projection, (1, 99.8)) if projection.size else (0, 1)
            ax_map.imshow(projection, cmap="gray", vmin=low, vmax=max(high, low + 1e-9), extent=extent,
                          interpolation="nearest")
        colours = matplotlib.colormaps["tab20"]
        x, y = f"x_{length}", f"y_{length}"
        for k, (track_id, points) in enumerate(spots.sort_values("time_point").groupby("track_id")):
            ax_map.plot(points[x], points[y], "-", color=colours(k % 20), lw=1.2)
            ax_map.plot(points[x].iloc[-1], points[y].iloc[-1], "o", color=colours(k % 20), ms=2.5)
        daughters = tracks[tracks["parent_track_id"].notna()]
        starts = spots.sort_values("time_point").groupby("track_id").first()
        if len(daughters):
            first = starts.loc[daughters["track_id"]]
            ax_map.plot(first[x], first[y], "*", color="#ffdd00", ms=9, mec="k", mew=0.5, ls="none",
                        label=f"division ({len(daughters) // 2})")
            ax_map.legend(loc="upper right", fontsize=8)
        ax_map.set_aspect("equal")
        if projection is None:
            ax_map.invert_yaxis()
        ax_map.set_xlabel(f"x ({units.length_label})")
        ax_map.set_ylabel(f"y ({units.length_label})")
        last = int(spots["time_point"].max()) if len(spots) else 0
        ax_map.set_title(f"{len(tracks)} tracks over the projection of time point {last}")
        moved = tracks[f"displacement_{length}"].to_numpy(np.float64)
        moved = moved[np.isfinite(moved) & (tracks["spots"].to_numpy() > 1)]
        if moved.size:
            ax_d.hist(moved, bins=min(40, max(5, moved.size // 3)), color="#4878a8", edgecolor="#24476b")
            ax_d.axvline(np.median(moved), color="#d62728", ls="--", lw=1.5,
                         label=f"median {np.median(moved):.3g} {units.length_label}")
            ax_d.legend(loc="upper right")
        ax_d.set_xlabel(f"Displacement, start to end ({units.length_label})")
        ax_d.set_ylabel("Tracks (of 2+ time points)")
        ax_d.set_title("How far nuclei moved")
        ax_d.grid(alpha=0.3)
        figure.tight_layout()
        return save_png(figure, path)


def make_cell_plots(folder: Path, cells_csv: Path, through_z: bool, units: Units, pixel_size: tuple[float, float],
                    spots_csv: Path | None = None, tracks_csv: Path | None = None,
                    projection=None) -> list[Path]:
    """``cells_over_time.png`` from the objects table (``through_z``) or the nuclei table of a one-plane
    run, and ``tracks.png`` when the run has tracks; ``projection(t)`` gives time point t's projection."""
    folder = Path(folder)
    table = pd.read_csv(cells_csv)
    area = f"projected_area_{units.area}" if through_z else f"area_{units.area}"
    written = []
    if table["time_point"].nunique() > 1 or through_z:
        written.append(plot_cells_over_time(table, area, units, folder / "cells_over_time.png",
                                            "through Z" if through_z else "nuclei"))
    if spots_csv is not None and tracks_csv is not None:
        spots, tracks = pd.read_csv(spots_csv), pd.read_csv(tracks_csv)
        last = int(spots["time_point"].max()) if len(spots) else 0
        image = projection(last) if projection is not None and len(spots) else None
        written.append(plot_tracks(spots, tracks, image, pixel_size, units, folder / "tracks.png"))
    return written
