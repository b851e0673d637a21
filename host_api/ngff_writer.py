"""Writing OME-Zarr (NGFF 0.4, zarr format 2): images, label stores and their pyramids.

The one writer of NGFF metadata: ``convert``'s images and the runs' label stores both come
from ``create_image``. Every array has one chunk per plane, at every pyramid level, so
writers of different planes (Dask workers) never touch the same chunk.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np


#: Pyramid levels halve Y and X until the smallest fits in this many pixels a side (what a
#: screen shows whole), so a viewer zoomed out reads a small level, not the full planes.
PYRAMID_TOP_SIDE = 1024


def pyramid_factors(size_y: int, size_x: int) -> tuple[int, ...]:
    """Each level's downsampling factor in Y and X: 1, 2, 4, ... (1 alone for planes that fit)."""
    factors = [1]
    while _level_side(max(size_y, size_x), factors[-1]) > PYRAMID_TOP_SIDE:
        factors.append(factors[-1] * 2)
    return tuple(factors)


def _level_side(side: int, factor: int) -> int:
    """A side's length at a level: every ``factor``-th pixel, the first included."""
    return -(-side // factor)


@dataclass(frozen=True)
class Pyramid:
    """The levels of one multiscale image; a plane written to it goes to every level.

    Level k holds every 2^k-th pixel of level 0 in Y and X (nearest neighbour: label IDs stay
    IDs), so pixel i of level k sits where pixel i * 2^k of level 0 does, as the NGFF scale
    alone says; one chunk per plane at every level, so writers of different planes never meet.
    """

    arrays: tuple                    # level 0, 1, ...: level k is 2^k times smaller

    def write(self, index: tuple[int, ...], plane: np.ndarray) -> None:
        for level, array in enumerate(self.arrays):
            array[index] = plane[:: 2 ** level, :: 2 ** level]


def open_pyramid(path: Path, mode: str = "r+") -> Pyramid:
    """The levels of an image this module wrote, from its ``multiscales`` metadata."""
    import zarr
    group = zarr.open_group(str(path), mode=mode)
    arrays = tuple(group[d["path"]] for d in group.attrs["multiscales"][0]["datasets"])
    return Pyramid(arrays)


def create_image(path: Path, axes: str, shape: tuple[int, ...], dtype: np.dtype, scale_um,
                 time_increment_s: float | None, name: str):
    """A new NGFF 0.4 image (zarr format 2) with ``axes`` (letters of "TCZYX", Y and X last),
    one chunk per plane, the physical scale in its metadata, levels of ``pyramid_factors``;
    returns ``(group, Pyramid)``.

    The one writer of NGFF metadata: label stores and ``convert`` both use it.
    """
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscales_metadata

    x, y, z = scale_um
    sizes = {"T": time_increment_s, "Z": z, "Y": y, "X": x}
    units = {"T": "second", "Z": "micrometer", "Y": "micrometer", "X": "micrometer"}
    kinds = {"T": "time", "C": "channel"}
    ngff_axes = [{"name": axis.lower(), "type": kinds.get(axis, "space"),
                  **({"unit": units[axis]} if sizes.get(axis) else {})} for axis in axes]
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    factors = pyramid_factors(*shape[-2:])
    arrays, datasets = [], []
    for level, factor in enumerate(factors):
        plane = tuple(_level_side(side, factor) for side in shape[-2:])
        arrays.append(group.create_array(str(level), shape=tuple(shape[:-2]) + plane, dtype=dtype, fill_value=0,
                                         chunks=(1,) * (len(shape) - 2) + plane))
        scale = [float(sizes.get(axis) or 1.0) * (factor if axis in "YX" else 1) for axis in axes]
        datasets.append({"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    write_multiscales_metadata(group, datasets, fmt=FormatV04(), axes=ngff_axes, name=name)
    return group, Pyramid(tuple(arrays))


def create_labels_store(path: Path, shape: tuple[int, int, int, int], dtype: np.dtype,
                        scale_um, time_increment_s, description: Mapping[str, str] | None = None,
                        source_image: Path | None = None):
    """A new NGFF 0.4 label image (t, z, y, x), one chunk per plane; returns its ``Pyramid``.

    ``source_image``: the image segmented; the store's ``image-label.source.image`` is its
    path relative to the store (``../in.ome.zarr`` beside it), so a viewer finds it.
    """
    group, pyramid = create_image(path, "TZYX", shape, dtype, scale_um, time_increment_s, path.name)
    source = {"image": os.path.relpath(Path(source_image).resolve(), Path(path).resolve())} \
        if source_image is not None else {}
    group.attrs["image-label"] = {"version": "0.4", "source": source}
    if description:
        group.attrs["stardist_v4d"] = dict(description)
    return pyramid
