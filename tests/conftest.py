"""Shared fixtures: small TIFF stacks written the way microscopy software writes them."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest
import tifffile

IMAGEJ_ORDER = "TZCYXS"


def write_stack(path: str | Path, array: np.ndarray, axes: str, fmt: str = "ome", *,
                channel_names: Sequence[str] | None = None,
                pixel_size_um: tuple[float, float, float | None] | None = None,
                compression: str | None = None, truncate: bool = False) -> Path:
    """Write ``array`` (axes named by ``axes``) as an OME-TIFF or an ImageJ hyperstack.

    ``fmt="imagej"`` reorders the axes to ImageJ's TZCYX(S) order, as ImageJ
    does; channel names become per-plane ``Labels``, pixel size the resolution
    tags plus ``spacing`` in µm. ``truncate`` writes a single-IFD hyperstack,
    the layout ImageJ uses for stacks over 4 GiB.
    """
    path = Path(path)
    axes = axes.upper()
    if fmt == "ome":
        metadata: dict = {"axes": axes}
        if channel_names is not None:
            metadata["Channel"] = {"Name": list(channel_names)}
        if pixel_size_um is not None:
            for axis, size in zip("XYZ", pixel_size_um):
                if size is not None:
                    metadata[f"PhysicalSize{axis}"] = size
                    metadata[f"PhysicalSize{axis}Unit"] = "µm"
        tifffile.imwrite(path, array, ome=True, photometric="minisblack", metadata=metadata,
                         compression=compression)
        return path
    if fmt != "imagej":
        raise ValueError(f"fmt must be 'ome' or 'imagej', not {fmt!r}")
    order = sorted(range(len(axes)), key=lambda i: IMAGEJ_ORDER.index(axes[i]))
    array, axes = np.transpose(array, order), "".join(axes[i] for i in order)
    metadata = {"axes": axes}
    kwargs: dict = {}
    if channel_names is not None:
        sizes = dict(zip(axes, array.shape))
        planes = sizes.get("T", 1) * sizes.get("Z", 1)
        metadata["Labels"] = [str(name) for _ in range(planes) for name in channel_names]
    if pixel_size_um is not None:
        x, y, z = pixel_size_um
        kwargs["resolution"] = (1 / x, 1 / y)
        metadata["unit"] = "um"
        if z is not None:
            metadata["spacing"] = z
    tifffile.imwrite(path, array, imagej=True, metadata=metadata, compression=compression,
                     truncate=truncate, **kwargs)
    return path


@pytest.fixture(name="write_stack")
def write_stack_fixture() -> Callable[..., Path]:
    """``write_stack(path, array, axes, fmt="ome"|"imagej", **meta) -> Path``."""
    return write_stack


def random_stack(axes: str, dtype: str | np.dtype = "uint16", seed: int = 0,
                 sizes: dict[str, int] | None = None) -> np.ndarray:
    """Small random array with the given axes (default sizes T2 Z3 C2 Y8 X6 S3)."""
    sizes = {"T": 2, "Z": 3, "C": 2, "Y": 8, "X": 6, "S": 3, **(sizes or {})}
    shape = tuple(sizes[a] for a in axes.upper())
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return (rng.random(shape) * 1000).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


@pytest.fixture(name="random_stack")
def random_stack_fixture() -> Callable[..., np.ndarray]:
    """``random_stack(axes, dtype="uint16", seed=0, sizes=None) -> ndarray``."""
    return random_stack


def pytest_sessionstart(session) -> None:
    """Compile the numba post-processing (NMS, label rendering) once, before any test starts
    worker processes: on a fresh checkout each worker would otherwise compile it itself
    (~30 s each), beside the CNN, within the workers' start-up timeout."""
    from stardist_v4d.pipeline.nms import non_maximum_suppression_sparse
    from stardist_v4d.pipeline.rendering import polygons_to_label

    polygons_to_label(np.ones((1, 8), np.float32), np.zeros((1, 2), np.float32), (2, 2))
    non_maximum_suppression_sparse(np.ones((2, 8), np.float32), np.ones(2, np.float32), np.zeros((2, 2), np.float32))
