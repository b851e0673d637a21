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
