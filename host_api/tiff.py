"""A TIFF stack as a host, for headless runs and tests.

Input is one TIFF (ImageJ hyperstack, OME-TIFF or plain multi-page) with any
subset and order of the T, Z, C, Y, X axes, read one plane at a time by
``tiff_reader.TiffStack`` (opened read-only; never loaded whole).

Output is a new OME-TIFF ``TZCYX`` holding every input channel plus the label
channel last. It is written through a memory map to ``OUTPUT.partial`` and
renamed to ``OUTPUT`` only when the run completes, so a crash or a stop never
leaves a file that looks finished, and every plane written before it is kept.

Nothing lost, nothing mixed: one run at a time writes an output (``OutputLock``);
the file's blocks are claimed before the first plane (``disk_space``); after each
plane the journal (``OUTPUT.journal``) records it as complete, so a rerun of the same
command after a crash resumes where the run stopped, and any other rerun refuses to
mix (``journal``). A run that stops before its first plane leaves nothing behind.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import tifffile
from tqdm import tqdm

from .base import DatasetInfo, Host, HostError, Nucleus, OutputTarget
from .console import ConsoleProgress
from .disk_space import check_free, reserve, write_error
from .imagej_rois import RoiSidecar, sidecar_path
from .journal import JOURNAL_SUFFIX, Journal, NOT_IDENTITY, differences, flat_identity, identity_uuid, input_identity
from .output_lock import OutputLock
from .tiff_metadata import output_metadata, read_run_description, tiff_stem
from .tiff_reader import TiffStack

__all__ = ["TiffHost", "read_run_description", "PARTIAL_SUFFIX"]

#: Suffix of the output while a run is writing it.
PARTIAL_SUFFIX = ".partial"
#: Outputs larger than this are written as BigTIFF (classic TIFF ends at 4 GiB,
#: and some readers mishandle offsets past 2 GiB).
BIGTIFF_BYTES = 2 ** 31


class TiffHost(Host):
    """One TIFF stack in, one OME-TIFF (input channels + labels) out.

    ``time_point`` is the time point a run segments; it is only recorded here
    (configuration validation checks its range). Use as a context manager, or
    call ``close()``, to release the input file.
    """

    def __init__(self, input_path: str | os.PathLike, output_path: str | os.PathLike, *,
                 overwrite: bool = False, time_point: int = 0, show_progress: bool = True,
                 axes: str | None = None) -> None:
        self.input_path = Path(input_path)
        self.output_path = Path(output_path)
        self.partial_path = Path(str(self.output_path) + PARTIAL_SUFFIX)
        self.journal_path = Path(str(self.output_path) + JOURNAL_SUFFIX)
        self.show_progress = show_progress
        self.overwrite = overwrite
        self._out: np.memmap | None = None
        self._label_channel = -1
        self._written: set[tuple[int, int]] = set()
        self._finished: OutputTarget | None = None
        self._console = ConsoleProgress(show_progress)
        self._rois: RoiSidecar | None = None
        self._journal: Journal | None = None
        self._earlier: Journal | None = None        # a stopped run's journal, to resume from
        self._check_paths(overwrite)
        self._lock = OutputLock(self.output_path)
        self._took_over = self._lock.acquire()      # before anything is written, or read twice
        try:
            self._stack = TiffStack(self.input_path, time_point, axes)
            self._info = self._stack.dataset_info()
            if not overwrite and self.partial_path.exists():
                self._earlier = Journal.load(self.journal_path)
        except BaseException:
            self._lock.release()
            raise

    # ------------------------------------------------------------------ input
    def _check_paths(self, overwrite: bool) -> None:
        """Refuse to touch the input or an existing file; fail before any work."""
        if self.input_path.is_dir():
            raise IsADirectoryError(f"Input {self.input_path} is a folder; give one TIFF file "
                                    "(.tif, .tiff, .ome.tif), not the folder that holds it.")
        if not self.input_path.is_file():
            raise FileNotFoundError(f"Input file {self.input_path} does not exist.")
        same = (self.output_path.exists() and os.path.samefile(self.input_path, self.output_path)
                ) or self.input_path.resolve() == self.output_path.resolve()
        if same or self.partial_path.resolve() == self.input_path.resolve():
            raise ValueError(f"Output path {self.output_path} is the input file; choose another "
                             "output path (the input is never modified).")
        if not self.output_path.parent.is_dir():
            raise FileNotFoundError(f"Output folder {self.output_path.parent} does not exist.")
        for path in (self.output_path, self.partial_path):
            if path.is_dir():
                raise IsADirectoryError(f"Output {path} is a folder; give a file name ending in "
                                        ".ome.tif (the folder is not replaced, even with --overwrite)")
        if self.output_path.exists() and not overwrite:
            raise FileExistsError(f"Output {self.output_path} already exists; "
                                  "use --overwrite to replace it.")

    def dataset_info(self) -> DatasetInfo:
        """Sizes, dtype, names and pixel size, read from the file once at opening."""
        return self._stack.dataset_info()

    def read_plane(self, channel: int, time_point: int, z: int) -> np.ndarray:
        """One ``(Y, X)`` input plane in the input dtype (see ``TiffStack.read_plane``)."""
        return self._stack.read_plane(channel, time_point, z)

    def _check_index(self, time_point: int, z: int, channel: int, size_c: int) -> None:
        self._stack._check_index(time_point, z, channel, size_c)

    # ----------------------------------------------------------------- output
    def check_output(self, name: str, description: Mapping[str, str] | None = None) -> None:
        """Say now (before the model loads) whether an earlier stopped run can be resumed.

        A ``.partial`` with a journal made by the same settings, model and input is
        resumed; one made otherwise stops the run naming the difference (only
        ``--overwrite`` starts afresh); one without a journal holds no plane that can
        be trusted and is replaced.
        """
        if self._took_over:
            self.log(self._took_over)
            self._took_over = None
        for note in self._stack.notes:
            self.log(note)
        if self.overwrite or not self.partial_path.exists():
            self._check_room((description or {}).get("output_dtype"))
            return
        if self._earlier is None or not self._earlier.prepared:
            self.log(f"{self.partial_path} has no journal of complete planes (a run from before "
                     "resuming existed, or one stopped while starting): starting afresh.")
            self._earlier = None
            return
        found = differences(flat_identity(self._earlier.identity), flat_identity(self._identity(name, description)))
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise HostError(
                f"{self.partial_path} holds {len(self._earlier.planes)} complete plane(s) of a run with "
                f"other settings or input: {found[0]}{more}; rerun with the same settings to resume, "
                "or with --overwrite to start afresh")

    def _check_room(self, dtype: str | None) -> None:
        """A disk too small for the output stops the run now, before the model loads."""
        if dtype:
            check_free(self.output_path.parent, self._output_bytes(np.dtype(dtype)))

    def _output_bytes(self, dtype: np.dtype) -> int:
        return math.prod(self._output_shape()) * dtype.itemsize + 2 ** 20     # + header, slack

    def _identity(self, name: str, description: Mapping[str, str] | None) -> dict:
        """What made an output: the run record, the input file, the output's layout.

        Made once per run (it reads and hashes two input planes); ``check_output`` and
        ``add_channel`` get the same record.
        """
        key = (name, tuple(sorted((description or {}).items())))
        if getattr(self, "_identity_for", (None,))[0] != key:
            self._identity_for = (key, self._make_identity(name, description))
        return self._identity_for[1]

    def _make_identity(self, name: str, description: Mapping[str, str] | None) -> dict:
        info = self._info
        record = {k: v for k, v in (description or {}).items() if k not in NOT_IDENTITY}
        return {"record": record,
                "input": input_identity(self.input_path, self.read_plane, info.size_c, info.size_t,
                                        info.size_z),
                "output": {"channel": name, "shape": list(self._output_shape())}}

    def _output_shape(self) -> tuple[int, ...]:
        info = self._info
        return (info.size_t, info.size_z, info.size_c + 1, info.size_y, info.size_x)

    def add_channel(self, name: str, dtype: np.dtype,
                    description: Mapping[str, str] | None = None) -> OutputTarget:
        """Create ``OUTPUT.partial``: input channels copied, then label channel ``name``.

        The copy is numerically exact, so ``dtype`` must hold every input value;
        ``description`` (run settings, model, versions) is stored as an OME
        MapAnnotation, read back by ``read_run_description``. A resumable earlier
        run's ``.partial`` is reopened instead (see ``check_output``).
        """
        if self._out is not None or self._label_channel >= 0:
            raise RuntimeError("add_channel was already called; a TiffHost writes one label channel.")
        info = self._info
        dtype = np.dtype(dtype)
        if not np.can_cast(info.dtype, dtype, "safe"):
            raise ValueError(f"Output type {dtype} cannot hold the input's {info.dtype} values.")
        self.check_output(name, description)
        self._label_channel = info.size_c
        if self._earlier is not None:
            return self._reopen(dtype)
        shape = self._output_shape()
        for stale in (self.journal_path, self.partial_path):
            stale.unlink(missing_ok=True)
        check_free(self.output_path.parent, self._output_bytes(dtype))
        identity = self._identity(name, description)
        metadata = output_metadata(info.channel_names + (name,), info.pixel_size_um,
                                   self.output_path.name, description, info.time_increment_s,
                                   uuid=identity_uuid(identity))
        metadata["Description"] = (f"Channels of {self.input_path.name} and StarDist labels "
                                   f"'{name}' (channel {info.size_c}).")
        self._out = tifffile.memmap(
            self.partial_path, shape=shape, dtype=dtype, ome=True, photometric="minisblack",
            bigtiff=math.prod(shape) * dtype.itemsize > BIGTIFF_BYTES, metadata=metadata)
        try:
            reserve(self.partial_path)
            self._copy_input(self._out)            # a damaged input page fails here
            self._journal = Journal(self.journal_path, identity, prepared=True)
            self._journal.save()
        except BaseException:                      # nothing of this run is left behind
            self._out = None
            for path in (self.partial_path, self.journal_path):
                path.unlink(missing_ok=True)
            raise
        return OutputTarget(location=str(self.partial_path), channel=self._label_channel)

    def _reopen(self, dtype: np.dtype) -> OutputTarget:
        """Continue an earlier run's ``.partial``: its complete planes stay as they are."""
        out = tifffile.memmap(self.partial_path, mode="r+")
        expected = self._output_shape()
        if out.shape != expected and [n for n in out.shape if n != 1] == [n for n in expected if n != 1]:
            out = out.reshape(expected)          # tifffile drops length-1 axes (one time point, one plane)
        if out.shape != expected or out.dtype != dtype:
            raise HostError(f"{self.partial_path} has shape {out.shape} {out.dtype}, not "
                            f"{self._output_shape()} {dtype}; rerun with --overwrite to start afresh")
        self._out, self._journal = out, self._earlier
        self._written = set(self._journal.done)
        if "rois" in self._journal.files:
            self._rois = RoiSidecar(sidecar_path(self.output_path), self._label_channel,
                                    resume_bytes=self._journal.files["rois"])
        return OutputTarget(location=str(self.partial_path), channel=self._label_channel)

    def completed_planes(self) -> dict[tuple[int, int], int]:
        """Planes an earlier run completed (``{(t, z): nuclei}``); empty for a fresh run."""
        return dict(self._earlier.done) if self._earlier is not None else {}

    def resume_state(self) -> dict:
        """The run's own state recorded with the last complete plane (empty for a fresh run)."""
        return dict(self._earlier.state) if self._earlier is not None else {}

    def commit_plane(self, time_point: int, z: int, nuclei: int, state: Mapping) -> None:
        """Record the plane as complete: its labels, outlines and table rows are on disk."""
        files = {"rois": self._rois.size} if self._rois is not None else {}
        try:
            self._journal.add_plane(time_point, z, nuclei, files, state)
        except OSError as error:
            raise write_error(error, self.journal_path) from None

    def read_output_plane(self, time_point: int, z: int) -> np.ndarray:
        """Labels as written for plane ``(t, z)`` (a resumed run links to the plane before)."""
        return np.array(self._require_output()[time_point, z, self._label_channel])

    def _copy_input(self, out: np.memmap) -> None:
        """Copy every input plane into the output, one plane in memory at a time."""
        info = self._info
        planes = [(t, z, c) for t in range(info.size_t) for z in range(info.size_z)
                  for c in range(info.size_c)]
        for t, z, c in tqdm(planes, desc="copying input channels", unit="plane", leave=False,
                            disable=not self.show_progress):
            out[t, z, c] = self.read_plane(c, t, z)
        out.flush()

    def write_plane(self, channel: int, time_point: int, z: int, labels: np.ndarray) -> None:
        """Write one ``(Y, X)`` label plane and flush it to disk before returning."""
        out = self._require_output()
        if channel != self._label_channel:
            raise ValueError(f"Channel {channel} holds input data; labels go to channel "
                             f"{self._label_channel}.")
        self._check_index(time_point, z, channel, self._label_channel + 1)
        labels = np.asarray(labels)
        if labels.shape != self._info.plane_shape:
            raise ValueError(f"Label plane has shape {labels.shape}, expected "
                             f"{self._info.plane_shape}.")
        try:
            out[time_point, z, channel] = labels
            out.flush()
        except OSError as error:
            raise write_error(error, self.partial_path) from None
        self._written.add((time_point, z))

    def add_objects(self, time_point: int, z: int, nuclei: Sequence[Nucleus], tag: str) -> None:
        """Outlines go to an ImageJ ROI zip beside the output (``OUT_rois.zip``)."""
        if self._rois is None:
            self._rois = RoiSidecar(sidecar_path(self.output_path), self._label_channel)
        try:
            self._rois.append(time_point, z, nuclei, tag)
        except OSError as error:
            raise write_error(error, self._rois.parts_path) from None

    def renumber_objects(self, new_id: Callable[[int], int]) -> None:
        """The ROI names (``tTTTT-zZZZZ-ID``) take the new IDs when the zip is made."""
        if self._rois is not None:
            self._rois.renumber = new_id

    def measurements_place(self) -> tuple[Path, str]:
        """Beside the output, with the ROI zip's stem: ``OUT_nuclei.csv`` for ``OUT.ome.tif``."""
        return self.output_path.parent, tiff_stem(self.output_path.name)

    def report_progress(self, done: int, total: int) -> None:
        """A progress bar with rate and time left, when ``show_progress``."""
        self._console.report(done, total)

    def log(self, message: str) -> None:
        """Print one line; above the progress bar while one is shown."""
        self._console.write(message)

    def cancelled(self) -> bool:
        """A headless run has no stop button (Ctrl+C aside); tests override this."""
        return False

    def finish(self, completed: bool) -> OutputTarget:
        """Close the output and let go of the lock; a completed run renames ``.partial``.

        A stopped run keeps ``.partial`` (every complete plane), its journal and the
        outline stream, so the same command resumes it; one that completed no plane
        leaves nothing behind. An existing output is left untouched until a run completes.
        """
        if self._finished is not None:
            return self._finished
        try:
            self._close_output()
            if self._journal is None:          # stopped before add_channel: nothing was written
                self._finished = OutputTarget(str(self.output_path), -1, complete=False,
                                              notes=["The run stopped before any output was created."])
            elif not completed and not self._journal.planes:
                self._finished = self._discard()
            else:
                # outlines first, their stream kept: a kill before the output is renamed (the
                # journal still there) resumes and writes them again; after it, nothing is missing
                rois = None
                if self._rois is not None and not completed:     # outlines of complete planes only
                    self._rois.cut_back(self._journal.files.get("rois", 0))
                if self._rois is not None:
                    rois = self._rois.finish(completed, keep_parts=True)
                self._finished = self._closing_target(completed)
                if self._rois is not None and completed:
                    self._rois.discard()                         # the stream, now that all is in place
                if rois is not None:
                    self._finished.notes.append(f"{self._rois.count} nucleus outlines (ImageJ ROIs) in {rois}")
            return self._finished
        finally:
            self._lock.release()

    def _discard(self) -> OutputTarget:
        """A run that completed no plane: remove what it created."""
        for path in (self.partial_path, self.journal_path):
            path.unlink(missing_ok=True)
        if self._rois is not None:
            self._rois.discard()
        return OutputTarget(str(self.output_path), self._label_channel, complete=False,
                            notes=["The run stopped before its first plane was complete; nothing was kept."])

    def _closing_target(self, completed: bool) -> OutputTarget:
        """Rename a completed output into place; describe a stopped one."""
        if completed:
            os.replace(self.partial_path, self.output_path)
            self._journal.remove()
            return OutputTarget(str(self.output_path), self._label_channel, complete=True)
        notes = [f"The run stopped early: {len(self._journal.planes)} label plane(s) are complete.",
                 f"The completed planes are kept in {self.partial_path}; {self.output_path} was not "
                 "written. Rerun the same command to resume (or with --overwrite to start afresh)."]
        return OutputTarget(str(self.partial_path), self._label_channel, complete=False,
                            notes=notes)

    def _require_output(self) -> np.memmap:
        if self._out is None:
            raise RuntimeError("No open output: call add_channel first (and not after finish).")
        return self._out

    def _close_output(self) -> None:
        """Flush and drop the output memory map (the mapping closes with its last reference)."""
        self._console.close()
        if self._out is not None:
            self._out.flush()
            self._out = None

    def close(self) -> None:
        """Release the input file, any open output (a ``.partial`` stays as it is) and the lock.

        The lock goes whatever fails before it (a flush on a full disk): a stale lock would
        keep the next run out."""
        try:
            self._close_output()
        finally:
            try:
                self._stack.close()
            finally:
                self._lock.release()

    def __enter__(self) -> TiffHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
