"""OME-Zarr (NGFF) images as a host: level 0 read plane by plane, labels into a new store.

Input: an OME-Zarr image (NGFF 0.4 or 0.5, as ``ome-zarr`` reads them): axes, channel names
and the physical scale come from its metadata (``ome_zarr.reader``); planes are read from
level 0 of the multiscale image with ``zarr``, opened read-only, so its arrays are never
written. Output: a *new* store (default ``NAME_stardist.ome.zarr`` beside the input), NGFF
0.4 in zarr format 2 (what napari-ome-zarr and Fiji's N5/Zarr reader open), axes t, z, y,
x with the input's scale, one chunk per (t, z) plane, so writers of different planes
(Dask workers) never touch the same chunk, a pyramid for big planes (``ngff_writer``) and
``image-label`` metadata so viewers show it as labels. Why a new store rather than the
input's ``labels/`` group: the input stays untouched and read-only (it may be on a shared,
read-only volume); the store is self-contained and can be moved beside the input's
``labels/`` by hand.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .base import DatasetInfo, Host, HostError, Nucleus, OutputTarget, plane_from
from .console import ConsoleProgress
from .ngff_writer import create_labels_store, open_pyramid

ZARR_SUFFIXES = (".ome.zarr", ".zarr")
MICROMETRES = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "meter": 1e6, "angstrom": 1e-4}
SECONDS = {"second": 1.0, "millisecond": 1e-3, "minute": 60.0, "hour": 3600.0}


def is_zarr_path(path: str | Path) -> bool:
    return str(path).lower().rstrip("/").endswith(ZARR_SUFFIXES)


def zarr_stem(name: str) -> str:
    lower = name.lower().rstrip("/")
    for suffix in ZARR_SUFFIXES:
        if lower.endswith(suffix):
            return name.rstrip("/")[: -len(suffix)]
    return name


class OmeZarrImage:
    """Level 0 of an OME-Zarr image, read plane by plane (``read_plane``), and its metadata."""

    def __init__(self, path: str | Path, time_point: int = 0) -> None:
        import zarr

        self.path = Path(path)
        if not self.path.is_dir():
            raise HostError(f"Input {self.path}: no such OME-Zarr folder")
        try:
            meta = image_metadata(self.path)
        except HostError:
            raise
        except Exception as error:
            raise HostError(f"Input {self.path}: not a readable OME-Zarr image ({type(error).__name__}: "
                            f"{' '.join(str(error).split())[:150]})") from None
        self.axes = "".join(axis["name"].upper() for axis in meta["axes"])
        if not {"Y", "X"} <= set(self.axes) or set(self.axes) - set("TCZYX"):
            raise HostError(f"Input {self.path}: axes {self.axes!r}; OME-Zarr images with t, c, z, y, x are read")
        self.level0 = self.path / meta["path"]
        self.array = zarr.open_array(str(self.level0), mode="r")
        sizes = dict(zip(self.axes, self.array.shape))
        scale = dict(zip(self.axes, meta["scale"]))
        units = {axis["name"].upper(): axis.get("unit") for axis in meta["axes"]}

        def micrometres(axis: str) -> float | None:
            factor = MICROMETRES.get(units.get(axis) or "")
            return None if axis not in scale or factor is None else float(scale[axis]) * factor
        step = SECONDS.get(units.get("T") or "")
        size_c = sizes.get("C", 1)
        names = tuple(meta.get("channel_names") or ())
        self.info = DatasetInfo(
            size_t=sizes.get("T", 1), size_z=sizes.get("Z", 1), size_c=size_c, size_y=sizes["Y"],
            size_x=sizes["X"], dtype=np.dtype(self.array.dtype),
            channel_names=names if len(names) == size_c else tuple(f"Channel {c + 1}" for c in range(size_c)),
            pixel_size_um=(micrometres("X"), micrometres("Y"), micrometres("Z")),
            active_time_point=time_point, source=str(self.path),
            time_increment_s=None if step is None or "T" not in scale else float(scale["T"]) * step)
        plane_bytes = self.info.size_y * self.info.size_x * self.info.dtype.itemsize
        if plane_bytes > machine_memory():
            raise HostError(f"Input {self.path}: its planes of {self.info.size_y:,} x {self.info.size_x:,} pixels "
                            f"({plane_bytes / 2 ** 30:,.0f} GiB each) are larger than this machine's memory "
                            f"({machine_memory() / 2 ** 30:,.0f} GiB); is the metadata right?")

    def read_plane(self, channel: int, time_point: int, z: int) -> np.ndarray:
        """One (Y, X) plane; a chunk that cannot be decoded is one line naming the plane."""
        try:
            return plane_from(self.array, self.axes, channel, time_point, z)
        except (HostError, MemoryError, KeyboardInterrupt):
            raise
        except Exception as error:              # blosc/zlib errors of a damaged chunk, a missing file
            raise HostError(f"Input {self.path}: plane t={time_point} z={z} channel {channel} cannot be read "
                            f"({type(error).__name__}: {' '.join(str(error).split())[:150]}); the store may be "
                            "damaged: convert or copy it again") from None


def machine_memory() -> int:
    """Bytes of physical memory (a large default where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2 ** 40


def image_metadata(path: Path) -> dict:
    """Axes, level-0 path and scale, channel names of an OME-Zarr image (``ome_zarr.reader``)."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    logging.getLogger("ome_zarr").setLevel(logging.ERROR)     # its format probing is not news
    location = parse_url(str(path), mode="r")
    if location is None:
        raise HostError(f"Input {path}: not an OME-Zarr image (no .zattrs / zarr.json)")
    nodes = [node for node in Reader(location)() if node.load(Multiscales) is not None]
    if not nodes:
        raise HostError(f"Input {path}: holds no multiscale image (NGFF 'multiscales' metadata)")
    meta = nodes[0].metadata
    multiscales = nodes[0].load(Multiscales)
    transforms = (meta.get("coordinateTransformations") or [[]])[0]
    scale = next((t["scale"] for t in transforms if t.get("type") == "scale"), [1.0] * len(meta["axes"]))
    return dict(axes=meta["axes"], path=multiscales.datasets[0], scale=scale,
                channel_names=meta.get("channel_names"))


@dataclass(frozen=True)
class ZarrPlanes:
    """Plane access that travels to Dask workers: paths, not open arrays; opened on first use.

    Workers read input planes and write label planes straight into the stores, each
    plane its own chunk, so no two workers ever write the same chunk.
    """

    input_array: str                 # level 0 of the input image
    axes: str                        # its axes, e.g. "TCZYX"
    output_store: str                # the label store (t, z, y, x), every level
    run: str = ""                    # this run's token: a worker of a cluster that outlives runs opens anew

    def read_plane(self, channel: int, time_point: int, z: int) -> np.ndarray:
        return plane_from(_opened(self.input_array, "r", self.run), self.axes, channel, time_point, z)

    def write_plane(self, time_point: int, z: int, labels: np.ndarray) -> None:
        _opened(self.output_store, "pyramid", self.run).write((time_point, z), labels)


_OPEN: dict[tuple[str, str, str], object] = {}


def _opened(path: str, mode: str, run: str):
    """A zarr array (``mode`` "r"), or a label store's levels (``mode`` "pyramid"), opened once
    per process and run (a worker reads and writes many planes). Why per run: an array
    object keeps the shape and type it was opened with, and a later run may have replaced
    the store at that path (``--overwrite``, another label type); only this run's are kept."""
    import zarr
    if (path, mode, run) not in _OPEN:
        for key in [key for key in _OPEN if key[2] != run]:
            del _OPEN[key]
        _OPEN[(path, mode, run)] = open_pyramid(Path(path)) if mode == "pyramid" else zarr.open_array(path, mode=mode)
    return _OPEN[(path, mode, run)]


class OmeZarrHost(Host):
    """An OME-Zarr image in, a new OME-Zarr label store out (see the module's docstring)."""

    def __init__(self, input_path: str | Path, output_path: str | Path, *, overwrite: bool = False,
                 time_point: int = 0, show_progress: bool = True) -> None:
        self.input_path, self.output_path = Path(input_path), Path(output_path)
        if self.output_path.resolve() == self.input_path.resolve():
            raise HostError(f"Output {self.output_path} is the input; the input is never written")
        from .journal import Journal
        self.journal_path = self.output_path.with_name(self.output_path.name + ".journal")
        self._earlier = None if overwrite else Journal.load(self.journal_path)   # a stopped run to resume
        if self.output_path.exists() and not overwrite and self._earlier is None:
            raise HostError(f"Output {self.output_path} exists already; use --overwrite to replace it")
        self._journal = None
        self._image = OmeZarrImage(self.input_path, time_point)
        self._console = ConsoleProgress(show_progress)
        from .output_lock import OutputLock
        self._lock = OutputLock(self.output_path)
        self._lock.acquire()
        self._labels = None
        self._committed = False                  # a plane complete: a stopped run keeps the store
        self._rois = None                   # imagej_rois.RoiSidecar, made with the first outlines

    def dataset_info(self) -> DatasetInfo:
        return self._image.info

    def read_plane(self, channel: int, time_point: int, z: int) -> np.ndarray:
        return self._image.read_plane(channel, time_point, z)

    def _identity(self, name: str, description: Mapping[str, str] | None) -> dict:
        """What made the output (record, input, channel); made once per run: it hashes two planes."""
        key = (name, tuple(sorted((description or {}).items())))
        if getattr(self, "_identity_for", (None,))[0] != key:
            self._identity_for = (key, self._make_identity(name, description))
        return self._identity_for[1]

    def _make_identity(self, name: str, description: Mapping[str, str] | None) -> dict:
        from .journal import NOT_IDENTITY, input_identity
        info = self._image.info
        record = {k: str(v) for k, v in (description or {}).items() if k not in NOT_IDENTITY}
        stamp = input_identity(self._image.level0 / ".zarray" if (self._image.level0 / ".zarray").exists()
                               else self._image.level0 / "zarr.json", self.read_plane, info.size_c, info.size_t,
                               info.size_z)
        return {"record": record, "input": {k: v for k, v in stamp.items() if k != "file"} |
                {"store": str(self.input_path.resolve())}, "output": {"channel": name}}

    def check_output(self, name: str, description: Mapping[str, str] | None = None) -> None:
        """A stopped run of this output (its journal) is resumed when the same settings and input made it."""
        from .journal import differences, flat_identity
        if self._earlier is None:
            return
        found = differences(flat_identity(self._earlier.identity), flat_identity(self._identity(name, description)))
        if found or not self.output_path.exists():
            why = found[0] if found else "its label store is gone"
            raise HostError(f"{self.output_path} holds {len(self._earlier.planes)} complete plane(s) of a run with "
                            f"other settings or input: {why}; rerun with the same settings to resume, or with "
                            "--overwrite to start afresh")

    def completed_planes(self) -> dict[tuple[int, int], int]:
        return dict(self._earlier.done) if self._earlier is not None else {}

    def resume_state(self) -> dict:
        return dict(self._earlier.state) if self._earlier is not None else {}

    def add_channel(self, name: str, dtype: np.dtype,
                    description: Mapping[str, str] | None = None) -> OutputTarget:
        from .journal import Journal
        info = self._image.info
        if self._earlier is not None:             # resume: the store's complete planes stay
            self._labels = open_pyramid(self.output_path)
            self._journal, self._committed = self._earlier, True
            if "rois" in self._journal.files:
                from .imagej_rois import RoiSidecar
                self._rois = RoiSidecar(self._rois_path(), info.size_c, resume_bytes=self._journal.files["rois"])
            return OutputTarget(location=str(self.output_path), channel=info.size_c)
        if self.output_path.exists():
            shutil.rmtree(self.output_path)
        self._journal = Journal(self.journal_path, self._identity(name, description))
        self._journal.save()
        self._labels = create_labels_store(self.output_path, (info.size_t, info.size_z, info.size_y, info.size_x),
                                           np.dtype(dtype), info.pixel_size_um, info.time_increment_s,
                                           {**(description or {}), "channel": name}, source_image=self.input_path)
        return OutputTarget(location=str(self.output_path), channel=info.size_c)

    def write_plane(self, channel: int, time_point: int, z: int, labels: np.ndarray) -> None:
        self._labels.write((time_point, z), labels)

    def commit_plane(self, time_point: int, z: int, nuclei: int, state: Mapping) -> None:
        """Record the plane complete (Dask workers write the labels; the run commits here)."""
        self._committed = True
        files = {"rois": self._rois.size} if self._rois is not None else {}
        self._journal.add_plane(time_point, z, nuclei, files, state)

    def read_output_plane(self, time_point: int, z: int) -> np.ndarray:
        return np.asarray(self._labels.arrays[0][time_point, z])

    def plane_access(self) -> ZarrPlanes:
        """What Dask workers need to read and write planes themselves (after ``add_channel``)."""
        import uuid
        return ZarrPlanes(str(self._image.level0), self._image.axes, str(self.output_path), uuid.uuid4().hex)

    def add_objects(self, time_point: int, z: int, nuclei: Sequence[Nucleus], tag: str) -> None:
        if self._rois is None:           # out.ome.zarr -> out_rois.zip, as beside a TIFF output
            from .imagej_rois import RoiSidecar
            self._rois = RoiSidecar(self._rois_path(), self._image.info.size_c)
        self._rois.append(time_point, z, nuclei, tag)

    def _rois_path(self) -> Path:
        return self.output_path.with_name(zarr_stem(self.output_path.name) + "_rois.zip")

    def measurements_place(self) -> tuple[Path, str] | None:
        return self.output_path.parent, zarr_stem(self.output_path.name)

    def report_progress(self, done: int, total: int) -> None:
        self._console.report(done, total)

    def log(self, message: str) -> None:
        self._console.write(message)

    def finish(self, completed: bool) -> OutputTarget:
        """A completed run loses its journal; a stopped one keeps it (the same command resumes)."""
        self._console.close()
        notes = []
        if self._rois is not None and not completed and self._journal is not None:
            self._rois.cut_back(self._journal.files.get("rois", 0))      # outlines of complete planes only
        if self._rois is not None:
            zipped = self._rois.finish(completed, keep_parts=not completed)
            if zipped is not None:
                notes.append(f"{self._rois.count} nucleus outlines (ImageJ ROIs) in {zipped}")
        if not completed and not self._committed and self._labels is not None:
            shutil.rmtree(self.output_path, ignore_errors=True)    # nothing done: nothing left behind
            self.journal_path.unlink(missing_ok=True)
        elif completed and self._journal is not None:
            self._journal.remove()
        elif not completed and self._committed:
            notes.append(f"The run stopped early: {len(self._journal.planes)} plane(s) are complete in "
                         f"{self.output_path}; rerun the same command to resume (or with --overwrite to start afresh).")
        self._lock.release()
        return OutputTarget(location=str(self.output_path), channel=self._image.info.size_c,
                            complete=completed, notes=notes)

    def close(self) -> None:
        self._lock.release()


def store_description(path: Path) -> dict:
    """The run record a label store carries (``stardist_v4d`` attribute), for tests and tools."""
    attrs = json.loads((Path(path) / ".zattrs").read_text())
    return attrs.get("stardist_v4d", {})
