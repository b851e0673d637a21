"""A TIFF stack as a host, for headless runs and tests.

Input is one TIFF (ImageJ hyperstack, OME-TIFF or plain multi-page) with any
subset and order of the T, Z, C, Y, X axes, read one plane at a time by
``tiff_reader.TiffStack`` (opened read-only; never loaded whole).

Output is a new OME-TIFF ``TZCYX`` holding every input channel plus the label
channel last. It is written through a memory map to ``OUTPUT.partial`` and
renamed to ``OUTPUT`` only when the run completes, so a crash or a stop never
leaves a file that looks finished, and every plane written before it is kept.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import tifffile
from tqdm import tqdm

from .base import DatasetInfo, Host, Nucleus, OutputTarget
from .imagej_rois import RoiSidecar, sidecar_path
from .tiff_metadata import output_metadata, read_run_description
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
                 overwrite: bool = False, time_point: int = 0, show_progress: bool = True) -> None:
        self.input_path = Path(input_path)
        self.output_path = Path(output_path)
        self.partial_path = Path(str(self.output_path) + PARTIAL_SUFFIX)
        self.show_progress = show_progress
        self._check_paths(overwrite)
        self._out: np.memmap | None = None
        self._label_channel = -1
        self._written: set[tuple[int, int]] = set()
        self._finished: OutputTarget | None = None
        self._bar: tqdm | None = None
        self._rois: RoiSidecar | None = None
        self._stack = TiffStack(self.input_path, time_point)
        self._info = self._stack.dataset_info()

    # ------------------------------------------------------------------ input
    def _check_paths(self, overwrite: bool) -> None:
        """Refuse to touch the input or an existing file; fail before any work."""
        if not self.input_path.is_file():
            raise FileNotFoundError(f"Input file {self.input_path} does not exist.")
        same = (self.output_path.exists() and os.path.samefile(self.input_path, self.output_path)
                ) or self.input_path.resolve() == self.output_path.resolve()
        if same or self.partial_path.resolve() == self.input_path.resolve():
            raise ValueError(f"Output path {self.output_path} is the input file; choose another "
                             "output path (the input is never modified).")
        if not self.output_path.parent.is_dir():
            raise FileNotFoundError(f"Output folder {self.output_path.parent} does not exist.")
        for path, why in ((self.output_path, ""), (self.partial_path, " (kept from a stopped run)")):
            if path.exists() and not overwrite:
                raise FileExistsError(f"Output {path} already exists{why}; "
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
    def add_channel(self, name: str, dtype: np.dtype,
                    description: Mapping[str, str] | None = None) -> OutputTarget:
        """Create ``OUTPUT.partial``: input channels copied, then label channel ``name``.

        The copy is numerically exact, so ``dtype`` must hold every input value;
        ``description`` (run settings, model, versions) is stored as an OME
        MapAnnotation, read back by ``read_run_description``.
        """
        if self._out is not None or self._label_channel >= 0:
            raise RuntimeError("add_channel was already called; a TiffHost writes one label channel.")
        info = self._info
        dtype = np.dtype(dtype)
        if not np.can_cast(info.dtype, dtype, "safe"):
            raise ValueError(f"Output type {dtype} cannot hold the input's {info.dtype} values.")
        shape = (info.size_t, info.size_z, info.size_c + 1, info.size_y, info.size_x)
        metadata = output_metadata(info.channel_names + (name,), info.pixel_size_um,
                                   self.output_path.name, description, info.time_increment_s)
        metadata["Description"] = (f"Channels of {self.input_path.name} and StarDist labels "
                                   f"'{name}' (channel {info.size_c}).")
        self._out = tifffile.memmap(
            self.partial_path, shape=shape, dtype=dtype, ome=True, photometric="minisblack",
            bigtiff=math.prod(shape) * dtype.itemsize > BIGTIFF_BYTES, metadata=metadata)
        self._copy_input(self._out)
        self._label_channel = info.size_c
        return OutputTarget(location=str(self.partial_path), channel=self._label_channel)

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
        out[time_point, z, channel] = labels
        out.flush()
        self._written.add((time_point, z))

    def add_objects(self, time_point: int, z: int, nuclei: Sequence[Nucleus], tag: str) -> None:
        """Outlines go to an ImageJ ROI zip beside the output (``OUT_rois.zip``)."""
        if self._rois is None:
            self._rois = RoiSidecar(sidecar_path(self.output_path), self._label_channel)
        self._rois.append(time_point, z, nuclei, tag)

    def measurements_place(self) -> tuple[Path, str]:
        """Beside the output, with the ROI zip's stem: ``OUT_nuclei.csv`` for ``OUT.ome.tif``."""
        stem = sidecar_path(self.output_path).name[: -len("_rois.zip")]
        return self.output_path.parent, stem

    def report_progress(self, done: int, total: int) -> None:
        """A progress bar with rate and time left, when ``show_progress``."""
        if not self.show_progress:
            return
        if self._bar is None:
            self._bar = tqdm(total=total, unit="plane", desc="segmenting")
        self._bar.total = total
        self._bar.update(done - self._bar.n)

    def log(self, message: str) -> None:
        """Print one line; above the progress bar (``tqdm.write``) while one is shown."""
        if self._bar is not None:
            tqdm.write(message)
        else:
            print(message, flush=True)

    def cancelled(self) -> bool:
        """A headless run has no stop button (Ctrl+C aside); tests override this."""
        return False

    def finish(self, completed: bool) -> OutputTarget:
        """Close the output; a completed run renames ``.partial`` to the output path.

        A stopped run keeps ``.partial`` (every plane written so far) and leaves any
        existing output untouched.
        """
        if self._finished is not None:
            return self._finished
        if self._out is None:              # stopped before add_channel: nothing was written
            self._close_output()
            return OutputTarget(str(self.output_path), -1, complete=False,
                                notes=["The run stopped before any output was created."])
        self._close_output()
        self._finished = self._closing_target(completed)
        if self._rois is not None:
            rois = self._rois.finish(completed)
            if rois is not None:
                self._finished.notes.append(f"{self._rois.count} nucleus outlines (ImageJ ROIs) in {rois}")
        return self._finished

    def _closing_target(self, completed: bool) -> OutputTarget:
        """Rename a completed output into place; describe a stopped one."""
        if completed:
            os.replace(self.partial_path, self.output_path)
            return OutputTarget(str(self.output_path), self._label_channel, complete=True)
        notes = [f"The run stopped early: {len(self._written)} label plane(s) were written.",
                 f"The completed planes are kept in {self.partial_path}; "
                 f"{self.output_path} was not written."]
        return OutputTarget(str(self.partial_path), self._label_channel, complete=False,
                            notes=notes)

    def _require_output(self) -> np.memmap:
        if self._out is None:
            raise RuntimeError("No open output: call add_channel first (and not after finish).")
        return self._out

    def _close_output(self) -> None:
        """Flush and drop the output memory map (the mapping closes with its last reference)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._out is not None:
            self._out.flush()
            self._out = None

    def close(self) -> None:
        """Release the input file and any open output (a ``.partial`` stays as it is)."""
        self._close_output()
        self._stack.close()

    def __enter__(self) -> TiffHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
