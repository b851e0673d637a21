"""One TIFF stack, read plane by plane: the input side of the TIFF host.

Any subset and order of the T, Z, C, Y, X axes (ImageJ hyperstack, OME-TIFF or
plain multi-page). Opened read-only once and read one plane at a time: through a
memory map when its pixels are contiguous and uncompressed (this covers ImageJ
hyperstacks over 4 GiB, whose file holds a single IFD), through the TIFF pages
otherwise. The stack is never loaded whole. Used by ``TiffHost`` for the image and
by the ``measure`` command for an image and a label file.

A file is checked when it is opened, from its IFDs only (no pixel data is decoded),
so that a run stops before its model loads rather than segmenting part of a file:

- damaged: fewer planes readable than the file declares (ImageJ ``images=``, OME
  ``SizeT*SizeZ*SizeC``, the series shape), a page whose data lie past the end of the
  file, a page list that breaks off, a tag tifffile cannot read (unless it is a tag no
  plane depends on, such as a vendor's private tag);
- pages of two sizes or pixel types, or more than one image series: refused, never a
  silent first part;
- palette (indexed-colour) pages: refused, except in ImageJ files (ImageJ saves an
  8-bit image with a colour LUT that way; its pixel values are the intensities, as in Fiji);
- pixel types: bool is read as uint8 (0/1); complex and non-numeric types are refused.
  64-bit integers are read as they are (``measure`` takes such label files); a run
  refuses them in ``pipeline.plan.output_dtype``, since OME-TIFF has no 64-bit integers.

Each refusal is one line naming the file, what is wrong and what to do
(``BadTiffError``). A page that is undecodable when read (a corrupt compressed
stream) is a ``BadTiffError`` naming the plane.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import tifffile

from .base import DatasetInfo
from .tiff_problems import (  # noqa: F401  (BadTiffError: the error this module raises)
    BadTiffError, _Problems, _breaks_off, _describe, _error_text, _one_line, _page_name, _plural, _tifffile_log, file_size_text)
from .tiff_metadata import (UNKNOWN_PAGE_AXES, channel_names, declared_planes, normalize_axes, pixel_size_um,
                            time_increment_s)

class TiffStack:
    """A TIFF's planes by (channel, time point, z); ``time_point`` is recorded as the active one."""

    def __init__(self, path: str | os.PathLike, time_point: int = 0, axes: str | None = None) -> None:
        """``axes``: the image's axes as the user declares them (``AXES``), one letter per axis
        of the file's image, replacing what its metadata says or what is assumed without any."""
        self.input_path = Path(path)
        self.declared_axes = axes
        self.notes: list[str] = []              # said once by the host: axes assumed, pages left out
        if self.input_path.is_dir():
            raise IsADirectoryError(f"Input {self.input_path} is a folder; give one TIFF file "
                                    "(.tif, .tiff, .ome.tif), not the folder that holds it.")
        if not self.input_path.is_file():
            raise FileNotFoundError(f"Input file {self.input_path} does not exist.")
        self._memmap: np.memmap | None = None
        source = str(self.input_path)
        with _tifffile_log() as problems:
            try:
                self._tif = tifffile.TiffFile(self.input_path)      # opened "rb": never written
            except OSError:                  # permission denied, ...: its own words
                raise
            except Exception as error:       # tifffile raises TiffFileError, struct.error, ...
                what = ("is empty (0 bytes)" if self.input_path.stat().st_size == 0
                        else f"is not a readable TIFF file ({_one_line(error)})")
                raise BadTiffError(f"{source} {what}; give a TIFF stack (.tif, .tiff, .ome.tif)") from None
            try:
                self._info = self._open_input(time_point, problems)
            except BaseException:
                self._tif.close()
                raise
        problems.replay()

    # ------------------------------------------------------------ opening checks
    def _open_input(self, time_point: int, problems: _Problems) -> DatasetInfo:
        """Check the file, then work out how planes are laid out in it, once."""
        source = str(self.input_path)
        try:
            n_pages = len(self._tif.pages)   # walks the whole IFD chain: headers only, no pixels
            self._refuse_impossible_count(n_pages, source)
            all_series = self._tif.series
        except BadTiffError:
            raise
        except Exception as error:
            raise BadTiffError(f"{source} is damaged ({_error_text(error)}); copy or export "
                               "the file again") from None
        if not all_series or not all_series[0].shape:
            raise BadTiffError(f"{source} holds no image (no page with pixels); give a TIFF stack")
        series = all_series[0]
        self._check_complete(series, problems)
        self._check_one_series(all_series)
        self._check_photometric(series)
        self._axes = self._axes_of(series, source)
        used = math.prod(series.shape) // max(1, math.prod(series.keyframe.shape))
        held = len(self._tif.pages)
        if held > used:
            self.notes.append(f"{source} holds {held} pages but its metadata describes {used} plane(s) "
                              f"({' x '.join(map(str, series.shape))}, axes {series.axes}): only those are read; "
                              "if the other pages belong to the stack, save it again from its source")
        self._shape = tuple(int(n) for n in series.shape)
        self._dtype = self._pixel_type(np.dtype(series.dtype))
        sizes = dict(zip(self._axes, self._shape))
        self._samples = sizes.get("S", 1)
        size_c = sizes.get("C", 1) * self._samples
        self._pages = series.pages
        if series.dataoffset is not None and series.dtype != np.bool_:
            self._memmap = np.memmap(self.input_path, mode="r", offset=series.dataoffset,
                                     shape=self._shape,
                                     dtype=np.dtype(self._tif.byteorder + self._dtype.char))
        else:
            page_axes = "".join(a for a in series.keyframe.axes if a in "YXS")
            self._page_ndim = len(page_axes)
            n_pages = math.prod(self._shape[:-self._page_ndim])
            page_part = self._axes[-self._page_ndim:]         # "XY" where the series says X before Y
            if sorted(page_part) != sorted(page_axes) or len(self._pages) != n_pages:
                raise BadTiffError(f"Cannot read planes of {source}: its pages ({page_axes}) do not "
                                   f"match its axes {series.axes!r}.")
        return DatasetInfo(
            size_t=sizes.get("T", 1), size_z=sizes.get("Z", 1), size_c=size_c,
            size_y=sizes["Y"], size_x=sizes["X"], dtype=self._dtype,
            channel_names=channel_names(self._tif, size_c),
            pixel_size_um=pixel_size_um(self._tif), time_increment_s=time_increment_s(self._tif),
            active_time_point=time_point, source=source)

    def _refuse_impossible_count(self, n_pages: int, source: str) -> None:
        """Compressed planes each need a page: a file declaring far more planes than it has pages
        is damaged, and building its series would take minutes (ImageJ ``images=999999999``).
        Uncompressed ImageJ stacks above 4 GB legitimately keep one page for many planes."""
        declared = declared_planes(self._tif) if self._tif.imagej_metadata else None
        first = self._tif.pages.first
        if declared is not None and declared > 4 * n_pages + 1000 and first.compression != 1:  # a cut file: below
            raise BadTiffError(f"{source} declares {declared} planes but holds {n_pages} compressed page(s); "
                               "copy or export the file again")

    def _axes_of(self, series: tifffile.TiffPageSeries, source: str) -> str:
        """The declared axes, else the file's; a plain stack of pages is taken as Z, and said."""
        if self.declared_axes is not None:
            declared = self.declared_axes.upper()
            if len(declared) != len(series.shape):
                shape = " x ".join(str(n) for n in series.shape)
                raise BadTiffError(
                    f"AXES (--axes) = {self.declared_axes!r} names {len(declared)} axes, but the image in {source} "
                    f"has {len(series.shape)} ({shape}, read as {series.axes!r}): give one letter per axis, "
                    f"e.g. {'Z' * (len(series.shape) - 2) + 'YX'!r}")
            return normalize_axes(declared, source)
        axes = normalize_axes(series.axes, source)
        guessed = [a for a in series.axes if a in UNKNOWN_PAGE_AXES]
        if guessed:
            n = series.shape[series.axes.index(guessed[0])]
            self.notes.append(f"{source} does not say what its {n} pages are (no axis metadata): taken as Z "
                              f"planes, axes {axes}; if they are time points or channels, set AXES (--axes), "
                              f"e.g. {axes.replace('Z', 'T')!r} or {axes.replace('Z', 'C')!r}.")
        return axes

    def _check_complete(self, series: tifffile.TiffPageSeries, problems: _Problems) -> None:
        """Every declared plane has a page whose data lie inside the file; else one line.

        Offsets and byte counts only: no page is decoded here (files can be far bigger
        than memory). A page whose compressed data are corrupt is found when it is read.
        """
        source, tif = str(self.input_path), self._tif
        size = tif.filehandle.size
        keyframe = series.keyframe
        per_page = max(1, math.prod(keyframe.shape))
        n_planes = math.prod(series.shape) // per_page
        declared = declared_planes(tif) if keyframe.samplesperpixel == 1 else None
        expected = max(n_planes, declared or 0)
        absent: list[int] = []                   # planes no page holds
        cut = 0                                  # pages whose data run past the end
        if series.dataoffset is not None:        # contiguous: planes follow each other
            whole = max(0, (size - series.dataoffset) // (per_page * np.dtype(series.dtype).itemsize))
            readable = min(expected, whole)
            cut = expected - readable
        else:
            pages, readable = series.pages, 0
            for i in range(n_planes):
                try:
                    page = pages[i]
                except IndexError:               # tifffile's view of a shaped series past its pages
                    page = None
                if page is None:
                    absent.append(i)
                elif any(offset + count > page.parent.filehandle.size   # (an OME companion's own)
                         for offset, count in zip(page.dataoffsets, page.databytecounts) if count):
                    cut += 1
                else:
                    readable += 1
            absent.extend(range(n_planes, expected))
        damage = problems.damage()
        broken = any(_breaks_off(line) for line in damage)
        ends = f"the file ends at {file_size_text(size)}; it may be cut short"
        if readable == expected and not damage:
            return
        if declared is not None or series.kind != "generic":    # the file says how many planes
            if readable < expected:
                why = ends if cut or broken or damage else (
                    f"no page holds plane {absent[0]}" if len(absent) == 1
                    else f"no page holds planes {absent[0]}-{absent[-1]}")
                raise BadTiffError(f"{source} declares {expected} planes, {readable} readable "
                                   f"({why}); copy or export the file again")
        listed = _plural(len(tif.pages), "page")
        if broken:
            what = f"its list of pages breaks off after {listed}"
            what += f", {cut} of them incomplete" if cut else f" ({damage[0]})"
        elif cut:
            what = f"{cut} of its {listed} {'is' if cut == 1 else 'are'} incomplete"
        else:
            what = damage[0] if damage else f"no page holds {_plural(len(absent), 'plane')}"
        where = f" ({ends})" if cut or broken or "offset" in what else ""
        raise BadTiffError(f"{source} is damaged: {what}; {_plural(readable, 'plane')} readable"
                           f"{where}; copy or export the file again")

    def _check_one_series(self, all_series: list[tifffile.TiffPageSeries]) -> None:
        """One stack per file: pages of another size or type, or a second series, are refused.

        tifffile groups pages into series by shape and type; reduced-resolution pages
        (pyramid levels, previews) are levels of their series, not series, and are ignored.
        """
        if len(all_series) < 2:
            return
        source, first = str(self.input_path), all_series[0]

        def first_page(series: tifffile.TiffPageSeries):
            return next((p for p in series.pages if p is not None), series.keyframe)

        def order(series: tifffile.TiffPageSeries) -> tuple[int, ...]:
            index = first_page(series).index
            return index if isinstance(index, tuple) else (index,)

        looks = lambda s: (_describe(s.keyframe), np.dtype(s.dtype))  # noqa: E731
        different = sorted((s for s in all_series[1:] if looks(s) != looks(first)), key=order)
        if different:
            page = first_page(different[0])
            raise BadTiffError(
                f"{source}: {_page_name(page.index)} is {_describe(page)} but page 0 is "
                f"{_describe(first.keyframe)}; the pages of a stack must share one size and pixel "
                "type: save the pages of each size as their own TIFF")
        planes = [math.prod(s.shape) // max(1, math.prod(s.keyframe.shape)) for s in all_series]
        raise BadTiffError(
            f"{source} holds {len(all_series)} image series ({planes[0]} plane(s) in the first, "
            f"{sum(planes)} in all, the second from {_page_name(first_page(all_series[1]).index)}); "
            "a run reads one stack per file: save each series as its own TIFF")

    def _check_photometric(self, series: tifffile.TiffPageSeries) -> None:
        """Palette pages hold colour-table indices; only ImageJ's are intensities."""
        if series.keyframe.photometric != tifffile.PHOTOMETRIC.PALETTE or self._tif.is_imagej:
            return
        raise BadTiffError(
            f"{self.input_path} is a palette (indexed-colour) image: its pixel values are "
            "colour-table indices, not intensities; convert it first (Fiji: Image > Type > "
            "8-bit for grey values, or Image > Type > RGB Color) and save it as TIFF")

    def _pixel_type(self, dtype: np.dtype) -> np.dtype:
        """The type planes are read in: bool widens to uint8; complex and non-numbers are refused."""
        dtype = dtype.newbyteorder("=")
        if dtype.kind == "b":
            return np.dtype(np.uint8)       # 0 and 1, exactly
        if dtype.kind in "ui" or (dtype.kind == "f" and dtype.itemsize <= 8):
            return dtype
        if dtype.kind == "c":
            raise BadTiffError(
                f"{self.input_path} has complex pixels ({dtype.name}); StarDist segments real "
                "intensities: save the magnitude or the real part as float32 (numpy: "
                "np.abs(image).astype('float32'))")
        raise BadTiffError(
            f"{self.input_path} has pixels of type {dtype.name}, which are not intensities; save "
            "it as uint8, uint16, int32 or float32")

    # ------------------------------------------------------------------ reading
    def dataset_info(self) -> DatasetInfo:
        """Sizes, dtype, names and pixel size, read from the file once at opening."""
        return self._info

    def read_plane(self, channel: int, time_point: int, z: int) -> np.ndarray:
        """One ``(Y, X)`` plane in the input dtype (bool as uint8); RGB sample ``s`` of channel
        ``c`` is channel ``c * S + s``. A page that cannot be decoded is a ``BadTiffError``
        naming the plane."""
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
            if page is None:           # refused at opening; kept as a guard
                raise self._undecodable(channel, time_point, z, "no page holds it")
            with _tifffile_log() as problems:
                try:
                    data = page.asarray()
                except MemoryError:
                    raise
                except Exception as error:   # zlib.error, imagecodecs errors, TiffFileError, ...
                    raise self._undecodable(channel, time_point, z,
                                            _error_text(error)) from None
            damage = problems.damage()
            if damage:
                raise self._undecodable(channel, time_point, z, damage[0])
            problems.replay()
            plane = data[index[n:]]
        if [ax for ax in self._axes if ax in "YX"] == ["X", "Y"]:
            plane = plane.T                         # stored X before Y (axes ...XY): handed over as (Y, X)
        return np.array(plane, dtype=self._dtype)   # a copy in native byte order

    def _undecodable(self, channel: int, time_point: int, z: int, why: str) -> BadTiffError:
        which = f" channel {channel}" if self._info.size_c > 1 else ""
        return BadTiffError(
            f"{self.input_path}: plane t={time_point} z={z}{which} cannot be decoded ({why}); "
            "the file is damaged there: copy or export it again")

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
