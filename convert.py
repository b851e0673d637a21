"""``convert`` command: a TIFF stack to an OME-Zarr image, plane by plane, values exact.

For users whose data is TIFF and who want to run on a cluster (``SCHEDULER``): workers read
planes straight from a Zarr store. Memory holds one plane: each is read from the TIFF
(``TiffStack``) and written to its own chunk (t, c, z, Y, X). Axes, channel names, pixel
size and time step go into the NGFF 0.4 metadata. Written to ``OUTPUT.partial`` and renamed
when complete, so a stopped conversion never looks finished.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def convert(source: Path, target: Path, overwrite: bool = False, progress: bool = True) -> Path:
    """Write ``target`` (an OME-Zarr image, axes t, c, z, y, x) from the TIFF ``source``."""
    from tqdm import tqdm

    from .host_api.ome_zarr import create_image
    from .host_api.tiff_reader import TiffStack

    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists already; use --overwrite to replace it")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with TiffStack(source) as stack:
        info = stack.dataset_info()
        shape = (info.size_t, info.size_c, info.size_z, info.size_y, info.size_x)
        group, array = create_image(partial, "TCZYX", shape, info.dtype, info.pixel_size_um,
                                    info.time_increment_s, source.name)
        group.attrs["omero"] = {"version": "0.4", "channels": [{"label": name, "active": True}
                                                               for name in info.channel_names]}
        planes = [(t, c, z) for t in range(info.size_t) for c in range(info.size_c) for z in range(info.size_z)]
        for t, c, z in tqdm(planes, desc="converting", unit="plane", disable=not progress, leave=False):
            array[t, c, z] = stack.read_plane(c, t, z)
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return target


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
