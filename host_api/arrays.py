"""A host over an array already in memory: numpy, dask, zarr, a memmap, anything sliceable.

For notebooks, napari and any Python code (``stardist_v4d.segment``). Planes are read by
slicing (``np.asarray(array[index])``), so a dask or zarr array is computed or read one
plane at a time and never whole. Labels go into an array of the *selected* planes,
``(T, Z, Y, X)``: numpy in memory, or a zarr array on disk when it would exceed the memory
budget (``labels_path``, else a temporary folder). The input is never written.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .base import DatasetInfo, Host, HostError, OutputTarget, plane_from
from .console import ConsoleProgress

AXES = "TZCYX"


def check_axes(axes: str, shape: Sequence[int]) -> str:
    """``axes`` in upper case, one letter per dimension of ``shape``, or a one-line HostError."""
    if not isinstance(axes, str):
        raise HostError(f"axes = {axes!r}: must be a string of the letters T, Z, C, Y, X, e.g. 'ZYX'")
    axes = axes.upper()
    unknown = sorted(set(axes) - set(AXES))
    repeated = sorted({a for a in axes if axes.count(a) > 1})
    if unknown or repeated or not {"Y", "X"} <= set(axes):
        problem = (f"{', '.join(unknown)} unknown" if unknown else f"{', '.join(repeated)} twice"
                   if repeated else "no Y and X")
        raise HostError(f"axes = {axes!r}: {problem}; use T, Z, C, Y, X in any order and subset, "
                        f"with Y and X, e.g. 'ZYX' or 'TCZYX'")
    if len(axes) != len(shape):
        raise HostError(f"axes = {axes!r} names {len(axes)} dimensions, but the array has {len(shape)} "
                        f"(shape {tuple(shape)}); give one letter per dimension")
    return axes


class ArrayHost(Host):
    """One array seen as a T, Z, C stack of (Y, X) planes; labels into a new array.

    ``planes`` are the ``(t, z)`` steps the run will write (``segment`` knows them from
    the plan): the output holds those planes only, in a ``(T, Z, Y, X)`` array over the
    selected time points and Z planes.
    """

    def __init__(self, array: Any, axes: str, *, channel_names: Sequence[str] | None = None,
                 pixel_size_um: tuple[float | None, float | None, float | None] | None = None,
                 time_increment_s: float | None = None, time_point: int = 0,
                 memory_budget_mb: float = 2048, labels_path: str | Path | None = None,
                 measurements_folder: str | Path | None = None, keep_tables: bool = True,
                 show_progress: bool = True) -> None:
        if not all(hasattr(array, name) for name in ("shape", "dtype", "__getitem__")):
            raise HostError(f"array: a {type(array).__name__} has no shape, dtype and slicing; "
                            "give a numpy, dask or zarr array")
        self._array = array
        self._axes = check_axes(axes, array.shape)
        sizes = dict(zip(self._axes, (int(n) for n in array.shape)))
        size_c = sizes.get("C", 1)
        names = tuple(channel_names) if channel_names is not None else tuple(f"Channel {c + 1}" for c in range(size_c))
        if len(names) != size_c:
            raise HostError(f"channel_names: {len(names)} names for {size_c} channel(s)")
        self._info = DatasetInfo(
            size_t=sizes.get("T", 1), size_z=sizes.get("Z", 1), size_c=size_c, size_y=sizes["Y"],
            size_x=sizes["X"], dtype=np.dtype(array.dtype), channel_names=names,
            pixel_size_um=tuple(pixel_size_um) if pixel_size_um is not None else (None, None, None),
            active_time_point=time_point, source=f"{type(array).__name__} {tuple(array.shape)}",
            time_increment_s=time_increment_s)
        self._budget_mb = memory_budget_mb
        self._labels_path = None if labels_path is None else Path(labels_path)
        self._console = ConsoleProgress(show_progress, notebook=True)
        self._planes: Sequence[tuple[int, int]] = ()
        self.labels: Any = None
        self._where: dict[tuple[int, int], tuple[int, int]] = {}
        self._measurements = None if measurements_folder is None else Path(measurements_folder)
        self._keep_tables = keep_tables          # False: the folder is scratch, never named to the user

    # ------------------------------------------------------------------ reading
    def dataset_info(self) -> DatasetInfo:
        return self._info

    def read_plane(self, channel: int, time_point: int, z: int) -> np.ndarray:
        plane = plane_from(self._array, self._axes, channel, time_point, z)
        return np.array(plane)                     # a copy: the input is never written through it

    # ------------------------------------------------------------------ writing
    def select(self, planes: Sequence[tuple[int, int]]) -> None:
        """The ``(t, z)`` planes the run will write: the output is made for them only."""
        self._planes = list(planes)

    def add_channel(self, name: str, dtype: np.dtype,
                    description: Mapping[str, str] | None = None) -> OutputTarget:
        planes = self._planes or [(t, z) for t in range(self._info.size_t) for z in range(self._info.size_z)]
        times = sorted({t for t, _ in planes})
        zs = sorted({z for _, z in planes})
        self._where = {(t, z): (times.index(t), zs.index(z)) for t, z in planes}
        shape = (len(times), len(zs), self._info.size_y, self._info.size_x)
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if nbytes <= self._budget_mb * 2 ** 20 and self._labels_path is None:
            self.labels = np.zeros(shape, dtype)
        else:
            self.labels = self._zarr_labels(shape, dtype)
        return OutputTarget(location=self._location(), channel=self._info.size_c)

    def _location(self) -> str:
        return "memory" if isinstance(self.labels, np.ndarray) else str(self._labels_path)

    def _zarr_labels(self, shape: tuple[int, ...], dtype: np.dtype):
        """Labels on disk, one chunk per plane, for selections bigger than the memory budget."""
        try:
            import zarr
        except ImportError:
            raise HostError(f"the labels ({np.prod(shape) * np.dtype(dtype).itemsize / 2 ** 30:.1f} GB) exceed "
                            f"memory_budget_mb ({self._budget_mb}) and go to a zarr array on disk, but zarr "
                            "is not installed: pip install zarr, or raise memory_budget_mb") from None
        if self._labels_path is None:                # kept: the caller holds the array
            self._labels_path = Path(tempfile.mkdtemp(prefix="stardist-labels-")) / "labels.zarr"
            self.log(f"The labels ({np.prod(shape) * np.dtype(dtype).itemsize / 2 ** 20:.0f} MB) exceed "
                     f"memory_budget_mb ({self._budget_mb}): written to {self._labels_path} (delete it when done)")
        return zarr.open_array(str(self._labels_path), mode="w", shape=shape, dtype=dtype,
                               chunks=(1, 1, shape[2], shape[3]), fill_value=0)

    def write_plane(self, channel: int, time_point: int, z: int, labels: np.ndarray) -> None:
        i, j = self._where[(time_point, z)]
        self.labels[i, j] = labels

    def read_output_plane(self, time_point: int, z: int) -> np.ndarray:
        i, j = self._where[(time_point, z)]
        return np.asarray(self.labels[i, j])

    # ------------------------------------------------------------------ the rest
    def measurements_place(self) -> tuple[Path, str] | None:
        return None if self._measurements is None else (self._measurements, "segment")

    def report_progress(self, done: int, total: int) -> None:
        self._console.report(done, total)

    def log(self, message: str) -> None:
        if not self._keep_tables and self._measurements is not None and str(self._measurements) in message:
            return
        self._console.write(message)

    def finish(self, completed: bool) -> OutputTarget:
        self._console.close()
        return OutputTarget(location=self._location(), channel=self._info.size_c, complete=completed)
