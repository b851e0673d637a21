"""A Z stack of crowded synthetic nuclei planes (~1,000 nuclei per 1024 x 1024 plane).

Cached by its parameters in the given folder: generating a 1024 x 1024 plane takes
about a second, and every benchmark run should see the same planes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from stardist_v4d.training.synthetic import CROWDED, synthetic_nuclei


def crowded_stack(folder: Path, planes: int, size: int = 1024, seed: int = 0) -> Path:
    """``folder/crowded_{planes}x{size}_{seed}.ome.tif`` (ZYX, uint16), made once."""
    path = Path(folder) / f"crowded_{planes}x{size}_{seed}.ome.tif"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    stack = np.empty((planes, size, size), np.uint16)
    for z in range(planes):
        image, _ = synthetic_nuclei((size, size), rng, CROWDED)
        stack[z] = np.clip(image / image.max() * 60000, 0, 65535)
    partial = path.with_suffix(".partial")
    tifffile.imwrite(partial, stack, ome=True, metadata={"axes": "ZYX"})
    partial.replace(path)
    return path
