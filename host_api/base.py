"""The narrow interface every host implements, and what is derived from it once.

A host is where planes come from and where labels go: the arivis Vision4D
application, or a TIFF file for headless runs and tests. The pipeline talks only to
this interface; a host knows nothing of StarDist. Adding a host (napari, OME-Zarr,
...) means one new module beside this one.

Axes are always named in the user's words: ``time_point`` (t), ``z`` (plane),
``channel`` (c); a plane is a ``(Y, X)`` array.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np


class HostError(RuntimeError):
    """The host cannot do what the run needs; the message is one line for the user."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a run needs to know of the data before reading any plane.

    ``dtype`` is the pixel type of the input channels; ``pixel_size_um`` is
    ``(x, y, z)`` in micrometres, each ``None`` where unknown; ``time_increment_s``
    is the time between time points in seconds, ``None`` where unknown.
    """

    size_t: int
    size_z: int
    size_c: int
    size_y: int
    size_x: int
    dtype: np.dtype
    channel_names: tuple[str, ...]
    pixel_size_um: tuple[float | None, float | None, float | None] = (None, None, None)
    active_time_point: int = 0
    source: str = ""               # shown in messages: a file path, an image set name
    time_increment_s: float | None = None

    @property
    def plane_shape(self) -> tuple[int, int]:
        return (self.size_y, self.size_x)


@dataclass(frozen=True)
class Nucleus:
    """One detected object in one plane, as hosts that store objects want it.

    ``contour`` is ``(N, 2)`` float ``(y, x)`` vertices in plane pixel coordinates;
    ``label`` is the ID it carries in the label channel; ``features`` are its
    measurements in words with units (``{"Area (um2)": 42.0, ...}``) when the run
    measures, for hosts that attach features to objects.
    """

    label: int
    contour: np.ndarray
    probability: float = 1.0
    features: Mapping[str, float] = field(default_factory=dict)


@dataclass
class OutputTarget:
    """Where a run's labels went, for the closing message."""

    location: str
    channel: int
    complete: bool = False
    notes: list[str] = field(default_factory=list)


class Host(ABC):
    """One image set seen through the six operations a run needs."""

    @abstractmethod
    def dataset_info(self) -> DatasetInfo:
        """Sizes, pixel type, channel names, pixel size, active time point."""

    @abstractmethod
    def read_plane(self, channel: int, time_point: int, z: int) -> np.ndarray:
        """One input plane, ``(Y, X)`` in the input's dtype. Never the whole stack."""

    def check_output(self, name: str, description: Mapping[str, str] | None = None) -> None:
        """Fail early, before the model loads, if output ``name`` cannot be created.

        ``description`` is the run record ``add_channel`` will get: a host that can
        resume a stopped run compares it with the one that made the earlier planes.
        """

    @abstractmethod
    def add_channel(self, name: str, dtype: np.dtype,
                    description: Mapping[str, str] | None = None) -> OutputTarget:
        """Create the output channel ``name`` holding ``dtype`` labels; zero until written.

        ``description`` (run settings, model name, package versions) is recorded
        with the output where the host can store it.
        """

    @abstractmethod
    def write_plane(self, channel: int, time_point: int, z: int, labels: np.ndarray) -> None:
        """Write one ``(Y, X)`` label plane; once this returns, the plane survives a crash."""

    def add_objects(self, time_point: int, z: int, nuclei: Sequence[Nucleus], tag: str) -> None:
        """Store one object per nucleus (hosts without an object store ignore this)."""

    def renumber_objects(self, new_id: Callable[[int], int]) -> None:
        """The label IDs written so far change (``track_t``'s last pass): objects stored under
        the old IDs take the new ones. Hosts whose objects carry no ID ignore this."""

    # resuming a stopped run (hosts that cannot resume keep these defaults)
    def completed_planes(self) -> dict[tuple[int, int], int]:
        """``{(t, z): nuclei}`` an earlier, stopped run completed in this output; the run skips them."""
        return {}

    def resume_state(self) -> dict:
        """The pipeline's state recorded with the earlier run's last complete plane."""
        return {}

    def commit_plane(self, time_point: int, z: int, nuclei: int, state: Mapping) -> None:
        """The plane's labels, objects and table rows are written: record it as complete."""

    def read_output_plane(self, time_point: int, z: int) -> np.ndarray:
        """Labels as written (a resumed run links its next plane to them)."""
        raise NotImplementedError(f"{type(self).__name__} cannot read back its output")

    def plane_access(self):
        """A picklable reader/writer of planes (``read_plane``, ``write_plane``) for workers on
        other machines (``SCHEDULER``), or None: this host's planes do not leave the process."""
        return None

    def report_progress(self, done: int, total: int) -> None:
        """Tell the user how far the run is; called after every plane."""

    def log(self, message: str) -> None:
        """One line for the user: the console here, ``tqdm.write`` under a progress bar."""
        print(message, flush=True)

    def cancelled(self) -> bool:
        """True when the user asked to stop; checked between planes."""
        return False

    def measurements_place(self) -> tuple[Path, str] | None:
        """``(folder, stem)`` where a run's tables and plots go by default; None = nowhere.

        MEASUREMENTS_DIR overrides the folder. A host that writes no files (inside
        arivis) returns None.
        """
        return None

    def keeps_features(self) -> bool:
        """Whether ``add_objects`` attaches each Nucleus' ``features`` to its object."""
        return False

    def allows_worker_processes(self) -> bool:
        """Whether the run may start worker processes (not inside a host application)."""
        return True

    def finish(self, completed: bool) -> OutputTarget:
        """Close the output. ``completed`` is False for a stopped run, whose planes stay."""
        raise NotImplementedError

    # conveniences derived once from dataset_info(), as bioio's Reader does
    def can_read_output(self) -> bool:
        """Whether ``read_output_plane`` is implemented (a final pass can rewrite the output)."""
        return type(self).read_output_plane is not Host.read_output_plane

    def plane_count(self) -> int:
        info = self.dataset_info()
        return info.size_t * info.size_z


def plane_from(array, axes: str, channel: int, time_point: int, z: int) -> np.ndarray:
    """The ``(Y, X)`` plane of a sliceable ``array`` whose axes are ``axes`` (letters of TZCYX).

    Slicing reads only that plane from a zarr or dask array; X-before-Y layouts are turned.
    """
    where = {"T": time_point, "Z": z, "C": channel}
    index = tuple(slice(None) if axis in "YX" else where[axis] for axis in axes)
    plane = np.asarray(array[index])
    return plane.T if axes.index("Y") > axes.index("X") else plane
