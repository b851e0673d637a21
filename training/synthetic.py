"""Synthetic fluorescence nuclei with exact instance labels.

Why generated data: the project ships a demo model that must be trained on data we
are free to make and to redistribute, and the real images with ground truth are kept
for evaluation only. The generator follows what widefield/confocal nuclei images
look like in general (see ``shared/docs/demo-model-notes.md``):

- nuclei from ~3 to ~15 px radius in the same field, smooth and nearly convex;
- crowded clusters where neighbours touch, with a faint dark seam between them;
- most nuclei of ordinary brightness, a few (mitotic) many times brighter, so that
  after percentile normalization ordinary nuclei sit low (0.2-0.3);
- mild interior texture, a slightly domed profile, soft edges (optical blur);
- out-of-focus haze: large, dim, blurred blobs that are *not* nuclei;
- uneven background, Poisson (shot) and Gaussian (read) noise.

Everything is driven by a ``numpy.random.Generator`` so a seed reproduces an image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import polygon as draw_polygon
from skimage.segmentation import find_boundaries


@dataclass(frozen=True)
class NucleiStyle:
    """Ranges the generator samples from; one image samples one value of each."""

    typical_radius: tuple[float, float] = (3.5, 11.0)   # log-uniform per image
    radius_spread: float = 0.25                          # log-normal sigma around it
    fill_fraction: tuple[float, float] = (0.08, 0.45)    # share of the field covered
    cluster_share: tuple[float, float] = (0.0, 0.8)      # nuclei placed in clusters
    mitotic_share: tuple[float, float] = (0.0, 0.04)     # very bright nuclei
    haze_blobs: tuple[int, int] = (0, 8)                 # unlabelled out-of-focus blobs
    blur_sigma: tuple[float, float] = (0.6, 1.6)         # optical blur, pixels
    photons: tuple[float, float] = (30.0, 600.0)         # photons for an ordinary nucleus
    read_noise: tuple[float, float] = (0.5, 4.0)         # Gaussian noise, photon units


def nucleus_outline(center: tuple[float, float], radius: float, rng: np.random.Generator,
                    n_points: int = 48) -> np.ndarray:
    """Smooth, nearly convex outline as (n_points, 2) array of (y, x) vertices.

    An ellipse (axis ratio 0.6-1) with small low-order Fourier wobble: real nuclei
    are rounded; wobbly outlines made an earlier demo model worse.
    """
    angles = np.linspace(0, 2 * np.pi, n_points, endpoint=False)
    ratio = rng.uniform(0.6, 1.0)
    a, b = radius / np.sqrt(ratio), radius * np.sqrt(ratio)
    theta = rng.uniform(0, np.pi)
    r = a * b / np.sqrt((b * np.cos(angles)) ** 2 + (a * np.sin(angles)) ** 2)
    for k in (2, 3):
        r *= 1 + rng.normal(0, 0.03) * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
    y = center[0] + r * np.sin(angles + theta)
    x = center[1] + r * np.cos(angles + theta)
    return np.stack([y, x], axis=1)


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std smooth random field."""
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return (field - field.mean()) / (field.std() + 1e-9)


def _place_nuclei(shape: tuple[int, int], style: NucleiStyle, rng: np.random.Generator
                  ) -> tuple[np.ndarray, list[float]]:
    """Label image with nuclei placed freely or in touching clusters."""
    height, width = shape
    labels = np.zeros(shape, np.int32)
    typical = np.exp(rng.uniform(*np.log(style.typical_radius)))
    target_fill = rng.uniform(*style.fill_fraction)
    cluster_share = rng.uniform(*style.cluster_share)
    n_clusters = max(1, int(rng.integers(1, 6)))
    cluster_centers = rng.uniform((0, 0), (height, width), size=(n_clusters, 2))
    radii: list[float] = []
    filled, attempts = 0, 0
    while filled < target_fill * labels.size and attempts < 4000:
        attempts += 1
        radius = float(np.clip(typical * np.exp(rng.normal(0, style.radius_spread)), 2.5, 17))
        if rng.random() < cluster_share:
            c = cluster_centers[rng.integers(n_clusters)]
            center = c + rng.normal(0, 4 * typical, size=2)
        else:
            center = rng.uniform((-radius, -radius), (height + radius, width + radius))
        outline = nucleus_outline(tuple(center), radius, rng)
        rr, cc = draw_polygon(outline[:, 0], outline[:, 1], shape)
        if rr.size < 5:
            continue
        overlap = np.count_nonzero(labels[rr, cc]) / rr.size
        if overlap > 0.15:          # touching and slightly squeezed, never piled up
            continue
        free = labels[rr, cc] == 0
        label = len(radii) + 1
        labels[rr[free], cc[free]] = label
        radii.append(radius)
        filled += int(free.sum())
    return _drop_fragments(labels), radii


def _drop_fragments(labels: np.ndarray, min_pixels: int = 6) -> np.ndarray:
    """Keep only each label's largest connected part; drop slivers; relabel 1..n."""
    out = np.zeros_like(labels)
    next_label = 1
    for label, region in enumerate(ndi.find_objects(labels), start=1):
        if region is None:
            continue
        parts, n = ndi.label(labels[region] == label)
        if n == 0:
            continue
        sizes = np.bincount(parts.ravel())[1:]
        keep = parts == (np.argmax(sizes) + 1)
        if keep.sum() < min_pixels:
            continue
        out[region][keep] = next_label
        next_label += 1
    return out


def render_nuclei(labels: np.ndarray, rng: np.random.Generator,
                  style: NucleiStyle = NucleiStyle()) -> np.ndarray:
    """Fluorescence image (float32, photon-like units) for an instance label image."""
    shape = labels.shape
    n = int(labels.max())
    brightness = np.exp(rng.normal(0, 0.35, size=n + 1))          # dim and bright nuclei
    mitotic = rng.random(n + 1) < rng.uniform(*style.mitotic_share)
    brightness[mitotic] *= rng.uniform(3, 8, size=int(mitotic.sum()))
    brightness[0] = 0.0
    signal = brightness[labels]

    # domed profile: brighter towards each nucleus' centre, soft towards the rim
    inside = labels > 0
    dist = ndi.distance_transform_edt(inside & ~find_boundaries(labels, mode="inner"))
    signal *= 0.75 + 0.25 * np.tanh(dist / 3.0)
    # mild chromatin texture
    signal *= 1 + rng.uniform(0.03, 0.15) * _smooth_noise(shape, rng.uniform(1.0, 2.0), rng)
    # faint dark seam where neighbours touch
    seam = find_boundaries(labels, mode="inner") & inside
    signal[seam] *= rng.uniform(0.55, 0.9)

    haze = np.zeros(shape)
    for _ in range(int(rng.integers(style.haze_blobs[0], style.haze_blobs[1] + 1))):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        sigma = rng.uniform(6, 20)
        yy, xx = np.ogrid[:shape[0], :shape[1]]
        haze += rng.uniform(0.1, 0.4) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    background = rng.uniform(0.02, 0.2) * (1 + 0.5 * _smooth_noise(shape, shape[0] / 4, rng))

    clean = ndi.gaussian_filter(signal, rng.uniform(*style.blur_sigma)) + haze + np.clip(background, 0, None)
    photons = rng.uniform(*style.photons)
    noisy = rng.poisson(np.clip(clean, 0, None) * photons).astype(np.float64)
    noisy += rng.normal(0, rng.uniform(*style.read_noise), size=shape)
    offset = rng.uniform(0, 100)      # camera offset: absolute values do not matter
    return (noisy + offset).astype(np.float32)


def synthetic_nuclei(shape: tuple[int, int], rng: np.random.Generator,
                     style: NucleiStyle = NucleiStyle()) -> tuple[np.ndarray, np.ndarray]:
    """One image and its labels: ``(Y, X) float32`` image, ``(Y, X) uint16`` labels."""
    labels, _ = _place_nuclei(shape, style, rng)
    image = render_nuclei(labels, rng, style)
    return image, labels.astype(np.uint16)


def synthetic_dataset(n_images: int, shape: tuple[int, int] = (256, 256), seed: int = 0,
                      style: NucleiStyle = NucleiStyle()) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n_images`` image/label pairs from one seed."""
    rng = np.random.default_rng(seed)
    pairs = [synthetic_nuclei(shape, rng, style) for _ in range(n_images)]
    return [p[0] for p in pairs], [p[1] for p in pairs]
