"""Generated nuclei in a look no training stage draws: a held-out *domain* for selection.

Why: a held-out set from the training generator measures how well a model fits that
generator, not how it does on a microscope it has never seen (twice the last,
low-learning-rate training stage raised that score and lowered the real one). This
module renders nuclei with choices ``synthetic.py`` never makes, each one a way real
microscopes differ from each other:

- layout: half the images are a confluent monolayer (nuclei evenly packed on a
  jittered hexagonal lattice), the other half the training generator's layouts;
- profile: intensity follows the thickness of a sphere-like nucleus seen from above
  (``sqrt(1 - rho**2)``), not the training's flat/domed/rim-bright profiles;
- optics: a defocus disk convolved with a small Gaussian, not a pure Gaussian blur;
- field: vignetting (bright centre, darker corners) and cytoplasmic autofluorescence
  around each nucleus;
- camera: EMCCD (gamma-amplified shot noise) or sCMOS (per-pixel gain, hot pixels).

Labels follow the same convention as the training data: only nuclei an annotator could
see (``visible_labels``). Used by ``bench/select_demo_model.py --style shifted`` only;
never train on it, or it stops being held out.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import polygon as draw_polygon

from .synthetic import (RANDOMIZED, draw_look, drop_fragments, nucleus_outline, place_nuclei, smooth_noise,
                        visible_labels)

MIN_CONTRAST_TO_NOISE = 1.0     # the annotator convention of the training labels


def packed_monolayer(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Confluent cells: one nucleus per node of a jittered hexagonal lattice."""
    radius = float(np.exp(rng.uniform(np.log(3.5), np.log(12.0))))
    spacing = 2 * radius * rng.uniform(1.1, 1.5)
    angle = rng.uniform(0, np.pi)
    labels = np.zeros(shape, np.int32)
    label = 0
    extent = int(max(shape) / spacing) + 3
    for row in range(-extent, extent + 1):
        for col in range(-extent, extent + 1):
            u, v = (col + 0.5 * (row % 2)) * spacing, row * spacing * np.sqrt(3) / 2
            y = shape[0] / 2 + u * np.sin(angle) + v * np.cos(angle)
            x = shape[1] / 2 + u * np.cos(angle) - v * np.sin(angle)
            y, x = y + rng.normal(0, 0.12 * spacing), x + rng.normal(0, 0.12 * spacing)
            r = radius * float(np.exp(rng.normal(0, 0.15)))
            if not (-r < y < shape[0] + r and -r < x < shape[1] + r):
                continue
            outline = nucleus_outline((y, x), r, rng, axis_ratio=(0.55, 1.0))
            rr, cc = draw_polygon(outline[:, 0], outline[:, 1], shape)
            free = labels[rr, cc] == 0
            label += 1
            labels[rr[free], cc[free]] = label
    return drop_fragments(labels)


def _sphere_profile(labels: np.ndarray) -> np.ndarray:
    """Per pixel, the thickness of a sphere-like nucleus: ``sqrt(1 - rho**2)``, 0 outside."""
    dist = ndi.distance_transform_edt(labels > 0)
    index = np.arange(1, int(labels.max()) + 1)
    peak = np.concatenate([[1.0], np.asarray(ndi.maximum(dist, labels, index), float)])
    rho = 1 - dist / np.maximum(peak[labels], 1.0)
    return np.sqrt(np.clip(1 - rho ** 2, 0, 1)) * (labels > 0)


def _defocus(image: np.ndarray, disk_radius: float, sigma: float) -> np.ndarray:
    """A defocus disk (pillbox) of ``disk_radius`` px, then a Gaussian of ``sigma`` px."""
    r = int(np.ceil(disk_radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disk = (yy ** 2 + xx ** 2 <= disk_radius ** 2).astype(float)
    return ndi.gaussian_filter(ndi.convolve(image, disk / disk.sum(), mode="reflect"), sigma)


def _vignetting(shape: tuple[int, int], strength: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative field: 1 at an off-centre optical axis, ``1 - strength`` at the far corner."""
    cy, cx = rng.uniform(0.3, 0.7) * shape[0], rng.uniform(0.3, 0.7) * shape[1]
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    r2 = (yy - cy) ** 2 + (xx - cx) ** 2
    return 1 - strength * r2 / r2.max()


def _emccd(clean: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    """Electron-multiplying camera: shot noise, then gamma-distributed gain (excess noise)."""
    counts = rng.poisson(np.clip(clean, 0, None) * photons)
    gain = rng.uniform(20, 200)
    amplified = np.where(counts > 0, rng.gamma(np.maximum(counts, 1), gain), 0.0)
    return amplified + rng.normal(0, rng.uniform(10, 60), size=clean.shape) + 500


def _scmos(clean: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    """sCMOS camera: shot noise, per-pixel gain and offset, a few hot pixels."""
    counts = rng.poisson(np.clip(clean, 0, None) * photons).astype(np.float64)
    gain = 1 + rng.normal(0, 0.04, size=clean.shape)
    image = counts * gain + rng.normal(100, rng.uniform(1, 3), size=clean.shape)
    hot = rng.random(clean.shape) < 3e-4
    image[hot] += rng.uniform(20, 200, size=int(hot.sum())) * photons / 100
    return image


def shifted_nuclei(shape: tuple[int, int], rng: np.random.Generator, packed: bool
                   ) -> tuple[np.ndarray, np.ndarray]:
    """One held-out-domain image ``(Y, X) float32`` and its visible labels ``uint16``."""
    if packed:
        labels = packed_monolayer(shape, rng)
    else:
        labels, _ = place_nuclei(shape, RANDOMIZED, rng, draw_look(rng))
    n = int(labels.max())
    brightness = np.exp(rng.normal(0, rng.uniform(0.15, 0.45), size=n + 1))
    mitotic = rng.random(n + 1) < rng.uniform(0.0, 0.04)
    brightness[mitotic] *= rng.uniform(3, 8, size=int(mitotic.sum()))
    brightness[0] = 0.0
    signal = brightness[labels] * _sphere_profile(labels)
    signal *= np.clip(1 + rng.uniform(0.02, 0.15) * smooth_noise(shape, rng.uniform(0.8, 2.0), rng), 0.3, None)

    cytoplasm = ndi.gaussian_filter(ndi.grey_dilation(brightness[labels], size=int(rng.integers(5, 15))), 3.0)
    cytoplasm *= rng.uniform(0.03, 0.15)
    clean = _defocus(signal, rng.uniform(0.5, 2.5), rng.uniform(0.4, 1.0)) + cytoplasm
    clean = (clean + rng.uniform(0.01, 0.15)) * _vignetting(shape, rng.uniform(0.2, 0.5), rng)

    photons = float(np.exp(rng.uniform(np.log(20), np.log(1000))))
    camera = _emccd if rng.random() < 0.5 else _scmos
    image = camera(clean, photons, rng).astype(np.float32)
    return image, visible_labels(image, labels, MIN_CONTRAST_TO_NOISE).astype(np.uint16)


def shifted_dataset(n_images: int, shape: tuple[int, int] = (256, 256), seed: int = 0
                    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n_images`` held-out-domain pairs from one seed: packed monolayers and free layouts in turn."""
    rng = np.random.default_rng(seed)
    pairs = [shifted_nuclei(shape, rng, packed=i % 2 == 0) for i in range(n_images)]
    return [p[0] for p in pairs], [p[1] for p in pairs]
