"""What every picture of a run shares: resolution, fonts, a pyplot-free Agg figure.

Why no pyplot: pyplot keeps global figure state and picks a GUI backend; this code
runs inside headless pipelines and host applications, so figures are plain
:class:`matplotlib.figure.Figure` objects on an Agg canvas, freed when dropped.
"""
from __future__ import annotations

#: Resolution of the PNGs; with it the overlay's figure size maps image pixels to PNG pixels.
DPI = 100

#: Font sizes of every picture.
RC = {"font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12,
      "xtick.labelsize": 10, "ytick.labelsize": 10, "legend.fontsize": 9}


def agg_figure(width_in: float, height_in: float):
    """A pyplot-free figure on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure, path):
    """Write ``figure`` as a PNG and release its artists.

    One drawing: the figure's tight layout is applied as it draws, where
    ``bbox_inches="tight"`` would draw it twice (once to measure, once to write);
    PNG compression level 1: a few hundred kB more per picture, half the time of
    the default level 6 on a map or an overlay.
    """
    from pathlib import Path

    if figure.get_layout_engine() is None:
        figure.set_layout_engine("tight", pad=0.6)
    figure.savefig(path, dpi=DPI, pil_kwargs={"compress_level": 1})
    figure.clear()
    return Path(path)
