"""One TIFF stack, read plane by plane: the input side of the TIFF host.

Any subset and order of the T, Z, C, Y, X axes (ImageJ hyperstack, OME-TIFF or
plain multi-page). Opened read-only once and read one plane at a time: through a
memory map when its pixels are contiguous and uncompressed (this covers ImageJ
hyperstacks over 4 GiB, whose file holds a single IFD), through the TIFF pages
otherwise. The stack is never loaded whole. Used by ``TiffHost`` for the image and
by the ``measure`` command for an image and a label file.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import tifffile

from .base import DatasetInfo
from .tiff_metadata import channel_names, normalize_axes, pixel_size_um, time_increment_s


class TiffStack:
    """A TIFF's planes by (channel, time point, z); ``time_point`` is recorded as the active one."""

    def __init__(self, path: str | os.PathLike, time_point: int = 0) -> None:
        self.input_path = Path(path)
        if not self.input_path.is_file():
            raise FileNotFoundError(f"Input file {self.input_path} does not exist.")
        self._memmap: np.memmap | None = None
        self._tif = tifffile.TiffFile(self.input_path)      # opened "rb": never written
        try:
            self._info = self._open_input(time_point)
        except BaseException:
            self._tif.close()
            raise

    def _open_input(self, time_point: int) -> DatasetInfo:
        """Work out how planes are laid out in the file, once."""
        series = self._tif.series[0]
        source = str(self.input_path)
        self._axes = normalize_axes(series.axes, source)
        self._shape = tuple(int(n) for n in series.shape)
        self._dtype = np.dtype(series.dtype).newbyteorder("=")
        sizes = dict(zip(self._axes, self._shape))
        self._samples = sizes.get("S", 1)
        size_c = sizes.get("C", 1) * self._samples
        self._pages = series.pages
        if series.dataoffset is not None:
            self._memmap = np.memmap(self.input_path, mode="r", offset=series.dataoffset,
                                     shape=self._shape,
                                     dtype=np.dtype(self._tif.byteorder + self._dtype.char))
        else:
            page_axes = "".join(a for a in series.keyframe.axes if a in "YXS")
            self._page_ndim = len(page_axes)
            n_pages = math.prod(self._shape[:-self._page_ndim])
            if self._axes[-self._page_ndim:] != page_axes or len(self._pages) != n_pages:
                raise ValueError(f"Cannot read planes of {source}: its pages ({page_axes}) do not "
                                 f"match its axes {series.axes!r}.")
        return DatasetInfo(
            size_t=sizes.get("T", 1), size_z=sizes.get("Z", 1), size_c=size_c,
            size_y=sizes["Y"], size_x=sizes["X"], dtype=self._dtype,
            channel_names=channel_names(self._tif, size_c),
            pixel_size_um=pixel_size_um(self._tif), time_increment_s=time_increment_s(self._tif),
            active_time_point=time_point, source=source)

    def dataset_info(self) -> DatasetInfo:
        """Sizes, dtype, names and pixel size, read from the file once at opening."""
        return self._info

    def read_plane(self, channel: int, time_point: int, z: int) -> np.ndarray:
        """One ``(Y, X)`` plane in the input dtype; RGB sample ``s`` of channel ``c`` is
        channel ``c * S + s``."""
        info = self._info
        self._check_index(time_point, z, channel, info.size_c)
        where = {"T": time_point, "Z": z}
        where["C"], where["S"] = divmod(channel, self._samples)
        index = tuple(slice(None) if ax in "YX" else where[ax] for ax in self._axes)
        if self._memmap is not None:
            plane = self._memmap[index]
        else:
            n = len(self._axes) - self._page_ndim
            number = int(np.ravel_multi_index(index[:n], self._shape[:n])) if n else 0
            page = self._pages[number]
            if page is None:           # plane missing from the file: tifffile reads it as 0
                return np.zeros(info.plane_shape, self._dtype)
            plane = page.asarray()[index[n:]]
        return np.array(plane, dtype=self._dtype)   # a copy in native byte order

    def _check_index(self, time_point: int, z: int, channel: int, size_c: int) -> None:
        """IndexError naming the axis; numpy would wrap negative indices silently."""
        info = self._info
        for what, value, size in (("channel", channel, size_c),
                                  ("time point", time_point, info.size_t), ("z", z, info.size_z)):
            if not 0 <= value < size:
                raise IndexError(f"{what} {value} is out of range 0..{size - 1} in {info.source}")

    def close(self) -> None:
        """Release the file."""
        self._memmap = None
        self._tif.close()

    def __enter__(self) -> TiffStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
