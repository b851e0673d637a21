"""The embedded demo: a small TZCYX OME-TIFF of real fluorescence nuclei, with its ground truth.

Why real: the first thing a user sees is the model on real nuclei, not on shapes a
generator drew. The XY content is a real, annotated image (``data/``, from the 2018
Data Science Bowl stage 1 set, BBBC038, CC0 1.0; one the shipped model was validated
on, never trained on). The rest is built around it so the demo exercises every axis:

- time: a 256 x 256 window that drifts a few pixels per time point across the
  520 x 696 image, so nuclei move (and some enter or leave) as in a live recording;
- Z: each nucleus gets its own focal depth; a plane shows it sharp where it is in
  focus, blurred and dimmer one plane away, as faint haze two planes away. It
  counts as present (ground truth) where sharp or blurred, not in the haze: 2-3 planes;
- channels: channel 0 the nuclei; channel 1 a ring (membrane) around each, so
  segmenting the wrong channel visibly fails.

A nucleus keeps its label ID across t and z. ``SEED`` picks the window and the depths.
Usage: ``python -m stardist_v4d.demo.demo_stack OUT.ome.tif [SEED]``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels, find_boundaries

DATA = Path(__file__).resolve().parent / "data"
SOURCE = "1c8b905c9519061d"                      # 520 x 696, 136 annotated nuclei
ATTRIBUTION = "Real nuclei from BBBC038 (2018 Data Science Bowl), CC0 1.0."
SIZE_T, SIZE_Z, SIZE_Y, SIZE_X = 3, 5, 256, 256
CHANNEL_NAMES = ("Nuclei", "Membrane")
PIXEL_SIZE_UM = (0.5, 0.5, 2.0)          # x, y, z
#: Out-of-focus rendering by distance (planes) from a nucleus' focus: blur sigma (px) and brightness.
_FOCUS_BINS = ((0.5, 0.0, 1.0), (1.5, 1.6, 0.7), (np.inf, 3.5, 0.3))
PRESENT_WITHIN = 1.5                     # planes from its focus where a nucleus is ground truth (sharp or blurred)


def real_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, image, mask)`` of the embedded real images (the demo's source and two more)."""
    return [(path.stem, tifffile.imread(path), tifffile.imread(path.with_name(f"{path.stem}_mask.tif")))
            for path in sorted(DATA.glob("*.tif")) if not path.stem.endswith("_mask")]


def _source() -> tuple[np.ndarray, np.ndarray]:
    return tifffile.imread(DATA / f"{SOURCE}.tif").astype(np.float32), tifffile.imread(DATA / f"{SOURCE}_mask.tif")


def _windows(seed: int, shape: tuple[int, int]) -> list[tuple[int, int]]:
    """Top-left corners of the window at each time point: a start and a drift of ~4 px per step."""
    rng = np.random.default_rng([seed, 0])
    drift = np.array([3.0, 4.0]) * rng.choice([-1, 1], 2) + rng.normal(0, 0.5, 2)
    room = np.array(shape) - (SIZE_Y, SIZE_X) - np.abs(drift) * (SIZE_T - 1) - 2
    start = rng.uniform(0, room) + np.where(drift < 0, np.abs(drift) * (SIZE_T - 1), 0)
    return [tuple(int(round(v)) for v in start + drift * t) for t in range(SIZE_T)]


def _focus_depths(seed: int, n_labels: int) -> np.ndarray:
    """Focal plane (fractional) of every label ID of the source; index 0 unused."""
    return np.random.default_rng([seed, 1]).uniform(1.2, SIZE_Z - 2.2, n_labels + 1)


def _labels(seed: int) -> np.ndarray:
    """``(T, Z, Y, X) uint16``: the source's IDs where a nucleus is sharp or blurred (not haze)."""
    _, mask = _source()
    depth = _focus_depths(seed, int(mask.max()))
    labels = np.zeros((SIZE_T, SIZE_Z, SIZE_Y, SIZE_X), np.uint16)
    for t, (y, x) in enumerate(_windows(seed, mask.shape)):
        window = mask[y:y + SIZE_Y, x:x + SIZE_X]
        for z in range(SIZE_Z):
            present = np.abs(z - depth) < PRESENT_WITHIN
            present[0] = False
            labels[t, z] = np.where(present[window], window, 0)
    return labels


def demo_ground_truth(seed: int = 0) -> np.ndarray:
    """The ``(T, Z, Y, X) uint16`` instance labels of the demo's nuclei channel."""
    return _labels(seed)


def _render(seed: int, labels: np.ndarray) -> np.ndarray:
    """``(T, Z, C, Y, X) uint16``: the real nuclei at their focus, haze elsewhere, and membrane rings."""
    image, mask = _source()
    depth = _focus_depths(seed, int(mask.max()))
    rng = np.random.default_rng([seed, 2])
    grown = expand_labels(mask, 2)                     # the nucleus' own glow belongs to it
    nuclei_light = np.where(grown > 0, image, 0)
    background = ndi.gaussian_filter(np.where(grown > 0, np.percentile(image, 5), image), 2.0)
    out = np.zeros((SIZE_T, SIZE_Z, 2, SIZE_Y, SIZE_X), np.float32)
    for t, (y, x) in enumerate(_windows(seed, mask.shape)):
        window = np.s_[y:y + SIZE_Y, x:x + SIZE_X]
        for z in range(SIZE_Z):
            distance = np.abs(z - depth)
            plane = background[window].copy()
            lower = 0.0
            for upper, sigma, brightness in _FOCUS_BINS:
                in_bin = (distance >= lower) & (distance < upper)
                in_bin[0] = False
                part = np.where(in_bin[grown[window]], nuclei_light[window], 0) * brightness
                plane += ndi.gaussian_filter(part, sigma) if sigma else part
                lower = upper
            cells = expand_labels(labels[t, z], 5)
            ring = find_boundaries(cells, mode="inner") & (cells > 0)
            membrane = ndi.gaussian_filter(ring.astype(np.float32), 1.0) * 60 + 8 * ((cells > 0) & (labels[t, z] == 0))
            out[t, z, 0] = 12 * plane
            out[t, z, 1] = 20 * (membrane + 2)
    noisy = rng.poisson(np.clip(out, 0, None)) + rng.normal(100, 3, out.shape)
    return np.clip(noisy, 0, np.iinfo(np.uint16).max).astype(np.uint16)


def demo_stack(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(T, Z, C, Y, X) uint16`` image and ``(T, Z, Y, X) uint16`` ground truth."""
    labels = _labels(seed)
    return _render(seed, labels), labels


def make_demo_stack(path: str | os.PathLike, seed: int = 0) -> Path:
    """Write the demo stack as an OME-TIFF (TZCYX, named channels, pixel size); return its path."""
    path = Path(path)
    image, _ = demo_stack(seed)
    x, y, z = PIXEL_SIZE_UM
    tifffile.imwrite(path, image, ome=True, photometric="minisblack", metadata={
        "axes": "TZCYX", "Name": f"stardist-v4d demo (seed {seed}); {ATTRIBUTION}",
        "Channel": {"Name": list(CHANNEL_NAMES)},
        "PhysicalSizeX": x, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": y,
        "PhysicalSizeYUnit": "µm", "PhysicalSizeZ": z, "PhysicalSizeZUnit": "µm"})
    return path


if __name__ == "__main__":
    if not 2 <= len(sys.argv) <= 3:
        sys.exit("usage: python -m stardist_v4d.demo.demo_stack OUT.ome.tif [SEED]")
    print(make_demo_stack(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else 0))
