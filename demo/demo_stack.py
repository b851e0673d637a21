"""A small, seeded TZCYX OME-TIFF to try the plugin on, with its ground truth.

Why generated: users (and tests) need a stack that exercises every axis (time
points, Z planes, a channel to choose) without shipping microscopy data. The
nuclei are ellipsoids: each spans 2-4 Z planes, its cross-section shrinks and
dims away from its centre plane, and it drifts a few pixels between time points.
Channel 1 stains a ring (membrane) around each nucleus, so segmenting the wrong
channel visibly fails. A nucleus keeps its label ID across t and z.

Usage: ``python -m stardist_v4d.demo.demo_stack OUT.ome.tif [SEED]``.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi
from skimage.draw import ellipse
from skimage.segmentation import expand_labels, find_boundaries

SIZE_T, SIZE_Z, SIZE_Y, SIZE_X = 3, 5, 256, 256
CHANNEL_NAMES = ("Nuclei", "Membrane")
PIXEL_SIZE_UM = (0.5, 0.5, 2.0)          # x, y, z


@dataclass(frozen=True)
class _Nucleus:
    """One ellipsoid: centre ``(y, x)`` per time point, ``z`` centre, radii, brightness."""

    yx: np.ndarray              # (T, 2) centre in each time point
    z: float                    # centre plane (fractional)
    half_span: float            # planes with |z - zc| < half_span show it (2-4 planes)
    radii: tuple[float, float]  # (ry, rx) at the centre plane, pixels
    angle: float
    brightness: float


def _layout(seed: int) -> list[_Nucleus]:
    """40-60 nuclei that do not overlap where they share Z planes, with their drift."""
    rng = np.random.default_rng([seed, 0])
    stage = np.cumsum(np.vstack([[0, 0], rng.normal(0, 2.0, (SIZE_T - 1, 2))]), axis=0)
    target = int(rng.integers(40, 61))
    nuclei: list[_Nucleus] = []
    for _ in range(5000):
        if len(nuclei) == target:
            break
        radii = (float(rng.uniform(6, 12)), float(rng.uniform(6, 12)))
        z, half_span = float(rng.uniform(1.0, 3.0)), float(rng.uniform(1.05, 1.95))
        start = rng.uniform(14, SIZE_Y - 14, 2)
        jitter = np.cumsum(np.vstack([[0, 0], rng.normal(0, 0.7, (SIZE_T - 1, 2))]), axis=0)
        clash = any(
            np.linalg.norm(start - other.yx[0]) < max(radii) + max(other.radii) + 4
            and abs(z - other.z) < half_span + other.half_span
            for other in nuclei)
        if not clash:
            nuclei.append(_Nucleus(start + stage + jitter, z, half_span, radii,
                                   float(rng.uniform(0, np.pi)),
                                   float(np.exp(rng.normal(0, 0.3)))))
    return nuclei


def _cross_section(nucleus: _Nucleus, z: int) -> float:
    """Relative XY radius of ``nucleus`` in plane ``z``; 0 where it is absent."""
    dz = abs(z - nucleus.z)
    if dz >= nucleus.half_span:
        return 0.0
    return float(np.sqrt(1 - (dz / (1.15 * nucleus.half_span)) ** 2))


def _labels(nuclei: list[_Nucleus]) -> np.ndarray:
    """``(T, Z, Y, X) uint16`` instance labels; ID ``i + 1`` for ``nuclei[i]`` everywhere."""
    labels = np.zeros((SIZE_T, SIZE_Z, SIZE_Y, SIZE_X), np.uint16)
    for i, nucleus in enumerate(nuclei, start=1):
        for z in range(SIZE_Z):
            scale = _cross_section(nucleus, z)
            if scale == 0:
                continue
            for t in range(SIZE_T):
                rr, cc = ellipse(*nucleus.yx[t], nucleus.radii[0] * scale, nucleus.radii[1] * scale,
                                 shape=(SIZE_Y, SIZE_X), rotation=nucleus.angle)
                free = labels[t, z, rr, cc] == 0          # never overwrite a neighbour
                labels[t, z, rr[free], cc[free]] = i
    return labels


def demo_ground_truth(seed: int = 0) -> np.ndarray:
    """The ``(T, Z, Y, X) uint16`` instance labels channel 0 of the demo is drawn from."""
    return _labels(_layout(seed))


def _render(labels: np.ndarray, nuclei: list[_Nucleus], rng: np.random.Generator) -> np.ndarray:
    """``(T, Z, C, Y, X) uint16``: nuclei with out-of-focus light, and membrane rings."""
    image = np.zeros((SIZE_T, SIZE_Z, 2, SIZE_Y, SIZE_X), np.float32)
    background = 0.04 * (1 + 0.5 * np.tanh(ndi.gaussian_filter(
        rng.standard_normal((SIZE_Y, SIZE_X)), 40) * 40))
    texture = 1 + 0.12 * ndi.gaussian_filter(rng.standard_normal((SIZE_Y, SIZE_X)), 1.5) * 4
    for t in range(SIZE_T):
        focused = np.empty((SIZE_Z, SIZE_Y, SIZE_X), np.float32)
        for z in range(SIZE_Z):
            weight = np.array([0.0] + [n.brightness * np.exp(-0.5 * ((z - n.z) / 1.2) ** 2)
                                       for n in nuclei], np.float32)
            plane = labels[t, z]
            dome = np.tanh(ndi.distance_transform_edt(plane > 0) / 3.0)
            focused[z] = weight[plane] * (0.7 + 0.3 * dome) * texture
        for z in range(SIZE_Z):
            nuclei_light = ndi.gaussian_filter(focused[z], 1.0)
            for other in range(SIZE_Z):            # light from planes above and below
                if 0 < abs(other - z) <= 2:
                    nuclei_light += 0.15 / abs(other - z) * ndi.gaussian_filter(
                        focused[other], 3.0 * abs(other - z))
            cells = expand_labels(labels[t, z], 5)
            ring = find_boundaries(cells, mode="inner") & (cells > 0)
            membrane = ndi.gaussian_filter(ring.astype(np.float32), 1.0) + 0.15 * (
                (cells > 0) & (labels[t, z] == 0))
            image[t, z, 0] = 300 * (nuclei_light + background)
            image[t, z, 1] = 200 * (membrane + background)
    noisy = rng.poisson(np.clip(image, 0, None)) + rng.normal(100, 3, image.shape)
    return np.clip(noisy, 0, np.iinfo(np.uint16).max).astype(np.uint16)


def demo_stack(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(T, Z, C, Y, X) uint16`` image and ``(T, Z, Y, X) uint16`` ground truth."""
    nuclei = _layout(seed)
    labels = _labels(nuclei)
    return _render(labels, nuclei, np.random.default_rng([seed, 1])), labels


def make_demo_stack(path: str | os.PathLike, seed: int = 0) -> Path:
    """Write the demo stack as an OME-TIFF (TZCYX, named channels, pixel size); return its path."""
    path = Path(path)
    image, _ = demo_stack(seed)
    x, y, z = PIXEL_SIZE_UM
    tifffile.imwrite(path, image, ome=True, photometric="minisblack", metadata={
        "axes": "TZCYX", "Name": f"stardist-v4d demo (seed {seed})",
        "Channel": {"Name": list(CHANNEL_NAMES)},
        "PhysicalSizeX": x, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": y,
        "PhysicalSizeYUnit": "µm", "PhysicalSizeZ": z, "PhysicalSizeZUnit": "µm"})
    return path


if __name__ == "__main__":
    if not 2 <= len(sys.argv) <= 3:
        sys.exit("usage: python -m stardist_v4d.demo.demo_stack OUT.ome.tif [SEED]")
    print(make_demo_stack(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else 0))
