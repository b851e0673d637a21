"""``segment(array, axes, **settings)``: the same run on an array a notebook already holds.

    from stardist_v4d import segment
    labels, table = segment(stack, axes="TZCYX", input_channel=1, current_time_point=False)

Settings are the constants of ``stardist_2d.py`` in lower case, checked by ``config.py``
(the same one-line ``ConfigError`` as the command line). The model is loaded once per
Python process and kept for later calls (``release_models()`` frees it). ``labels`` is
``(T, Z, Y, X)`` over the selected time points and planes: numpy, or a zarr array on disk
beyond ``memory_budget_mb``. ``table`` is a pandas DataFrame: one row per nucleus when
measuring (the run's nuclei table), else one row per plane (t, z, nuclei).
"""
from __future__ import annotations

import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: Config fields that are not settings of an in-memory run.
NOT_FOR_ARRAYS = ("input_path", "output_path", "extra")


def settings_config(settings: dict[str, Any]):
    """``Config`` from lower-case keyword settings; unknown names are one ConfigError line."""
    from .config import Config, ConfigError, build_config

    valid = [f.name for f in fields(Config) if f.name not in NOT_FOR_ARRAYS]
    if settings.get("scheduler") is not None:
        raise ConfigError(f"segment(): scheduler = {settings['scheduler']!r}: segment() runs in this process; for "
                          "Dask workers, write the array as OME-Zarr and run python -m stardist_v4d run --input "
                          "STACK.ome.zarr --scheduler ...")
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        import difflib
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"segment(): unknown setting {unknown[0]!r}; {hint}settings are the constants of "
                          f"stardist_2d.py in lower case: {', '.join(valid)}")
    return build_config({name.upper(): value for name, value in settings.items()})


def guess_axes(ndim: int) -> str:
    from .config import ConfigError
    if ndim in (2, 3):
        return "YX" if ndim == 2 else "ZYX"
    raise ConfigError(f"segment(): a {ndim}-dimensional array needs axes=..., e.g. axes='TZYX' or 'ZCYX'")


def segment(array: Any, axes: str | None = None, *, channel_names: Sequence[str] | None = None,
            time_increment_s: float | None = None, memory_budget_mb: float = 2048,
            labels_path: str | Path | None = None, show_progress: bool = True, **settings: Any):
    """Segment ``array`` (numpy, dask, zarr, memmap) plane by plane; returns ``(labels, table)``.

    ``axes``: T, Z, C, Y, X in any order and subset (default 'YX' / 'ZYX' for 2D / 3D).
    ``settings``: ``input_channel=0``, ``first_plane=-1``, ..., as the constants block, except
    that every time point is segmented unless ``current_time_point=True`` (with ``time_point``)
    says one: an array has no viewer whose time point would be meant. Tables and plots go to files only when ``measurements_dir`` is
    given (then ``plots`` works as in a run); otherwise measuring makes the table alone.
    """
    import pandas as pd

    from .host_api.arrays import ArrayHost
    from .analysis.tables import TablePaths
    from .pipeline.run import plan_for, run

    array = image_array(array)
    axes = guess_axes(len(array.shape)) if axes is None else axes
    settings.setdefault("current_time_point", False)
    keep_files = settings.get("measurements_dir") is not None
    if not keep_files:
        settings.setdefault("plots", False)       # no folder to keep a workbook or pictures in
    config = settings_config(settings)
    with tempfile.TemporaryDirectory(prefix="stardist-tables-") as scratch:
        folder = Path(config.measurements_dir) if keep_files else Path(scratch)
        host = ArrayHost(array, axes, channel_names=channel_names, pixel_size_um=None,
                         time_increment_s=time_increment_s, time_point=config.time_point,
                         memory_budget_mb=memory_budget_mb, labels_path=labels_path,
                         measurements_folder=folder if config.measure else None, keep_tables=keep_files,
                         show_progress=show_progress)
        host.select(plan_for(config, host).steps)
        summary = run(config, host, keep_model=True)
        nuclei = TablePaths(folder, "segment").nuclei
        if config.measure and nuclei.exists():
            table = pd.read_csv(nuclei)
        else:
            table = pd.DataFrame([(t, z, n) for (t, z), n in summary.nuclei_per_plane.items()],
                                 columns=["time_point", "z", "nuclei"])
    return host.labels, table


def image_array(array: Any):
    """``array`` as something with a shape and a pixel type; a nested list becomes numpy. One line otherwise."""
    from .config import ConfigError
    if isinstance(array, (list, tuple)):
        array = np.asarray(array)
    if not hasattr(array, "shape") or not hasattr(array, "dtype"):
        raise ConfigError(f"segment(): a {type(array).__name__} is not an image; give a numpy, dask or zarr array")
    if len(array.shape) < 2 or any(int(n) == 0 for n in array.shape):
        raise ConfigError(f"segment(): an array of shape {tuple(array.shape)} holds no image plane; "
                          "give at least Y x X pixels, e.g. shape (512, 512)")
    if np.dtype(array.dtype).kind not in "buif":
        raise ConfigError(f"segment(): pixels of type {np.dtype(array.dtype).name} are not intensities; "
                          "give integer, float or bool pixels")
    return array


def release_models() -> int:
    """Free the models ``segment`` kept; returns how many there were."""
    from .pipeline.backends.engine import release_models as release
    return release()
