"""``convert`` command: a TIFF stack to an OME-Zarr image, plane by plane, values exact.

For users whose data is TIFF and who want to run on a cluster (``SCHEDULER``): workers read
planes straight from a Zarr store. Memory holds one plane: each is read from the TIFF
(``TiffStack``) and written to its own chunk (t, c, z, Y, X), at every pyramid level when the
planes are big (viewers zoomed out read a small level). Axes, channel names, pixel
size and time step go into the NGFF 0.4 metadata. Written to ``OUTPUT.partial`` and renamed
when complete, so a stopped conversion never looks finished.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np


def convert(source: Path, target: Path, overwrite: bool = False, progress: bool = True) -> Path:
    """Write ``target`` (an OME-Zarr image, axes t, c, z, y, x) from the TIFF ``source``."""
    from tqdm import tqdm

    from .host_api.ngff_writer import create_image
    from .host_api.tiff_reader import TiffStack

    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists already; use --overwrite to replace it")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with TiffStack(source) as stack:
        info = stack.dataset_info()
        shape = (info.size_t, info.size_c, info.size_z, info.size_y, info.size_x)
        group, pyramid = create_image(partial, "TCZYX", shape, info.dtype, info.pixel_size_um,
                                      info.time_increment_s, source.name)
        planes = [(t, c, z) for t in range(info.size_t) for c in range(info.size_c) for z in range(info.size_z)]
        ranges = [[np.inf, -np.inf] for _ in range(info.size_c)]       # each channel's values, for its window
        for t, c, z in tqdm(planes, desc="converting", unit="plane", disable=not progress, leave=False):
            plane = stack.read_plane(c, t, z)
            pyramid.write((t, c, z), plane)
            finite = plane[np.isfinite(plane)] if plane.dtype.kind == "f" else plane
            if finite.size:
                ranges[c] = [min(ranges[c][0], float(finite.min())), max(ranges[c][1], float(finite.max()))]
        group.attrs["omero"] = omero_block(info.channel_names, ranges, info.dtype)
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return target


#: Channel colours (hex RGB) in order, as viewers show multi-channel fluorescence; one channel: white.
COLOURS = ("FFFFFF",) + ("00FF00", "FF00FF", "00FFFF", "FFFF00", "FF0000", "0000FF")


def omero_block(names, ranges, dtype) -> dict:
    """NGFF 0.4 ``omero`` rendering metadata with every field viewers need: per channel a label,
    a colour and a window (the data's range within the pixel type's): napari-ome-zarr builds its
    colormaps from them, ome-zarr-models requires them."""
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "ui" else None
    channels = []
    for k, (name, (low, high)) in enumerate(zip(names, ranges)):
        low, high = (0.0, 1.0) if not np.isfinite(low) else (low, high)
        colour = "FFFFFF" if len(names) == 1 else COLOURS[1 + k % (len(COLOURS) - 1)]
        channels.append({"label": str(name), "active": True, "color": colour, "coefficient": 1.0,
                         "family": "linear", "inverted": False,
                         "window": {"start": low, "end": high if high > low else low + 1,
                                    "min": float(info.min) if info else low, "max": float(info.max) if info else high}})
    return {"version": "0.4", "channels": channels, "rdefs": {"model": "color", "defaultT": 0, "defaultZ": 0}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stardist_v4d convert", allow_abbrev=False,
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path, help="TIFF stack (ImageJ hyperstack, OME-TIFF, multi-page)")
    parser.add_argument("output", type=Path, help="OME-Zarr image to write, e.g. stack.ome.zarr")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    from .host_api.ome_zarr import is_zarr_path
    if not is_zarr_path(args.output):
        print(f"error: output {args.output} must end in .ome.zarr or .zarr", file=sys.stderr)
        return 2
    if not args.input.is_file():
        print(f"error: input {args.input}: no such TIFF file", file=sys.stderr)
        return 2
    if not args.output.parent.is_dir():
        print(f"error: output folder {args.output.parent} does not exist", file=sys.stderr)
        return 2
    try:
        target = convert(args.input, args.output, args.overwrite)
    except (FileExistsError, ValueError, OSError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(f"Converted {args.input} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
