"""Training-time augmentation for normalized ``(Y, X)`` nuclei images.

The transformations a microscope can produce without changing what a nucleus is:
flips and 90-degree rotations (no preferred orientation), intensity scale and shift
(exposure, offset), and additive noise. Geometric changes are applied to image and
labels alike; intensity changes to the image only.
"""
from __future__ import annotations

import numpy as np


def flip_rotate(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """Same random flip / 90-degree rotation for image and labels."""
    k = int(rng.integers(4))
    image, labels = np.rot90(image, k), np.rot90(labels, k)
    if rng.random() < 0.5:
        image, labels = image[:, ::-1], labels[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def intensity_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random gain (0.6-1.6x), offset (+-0.1) and Gaussian noise (sigma up to 0.03)."""
    image = image * rng.uniform(0.6, 1.6) + rng.uniform(-0.1, 0.1)
    sigma = rng.uniform(0, 0.03)
    return (image + rng.normal(0, sigma, image.shape)).astype(np.float32)


class Augmenter:
    """Callable ``(x, y) -> (x, y)`` as StarDist's ``train(augmenter=...)`` expects."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image, labels = flip_rotate(image, labels, self.rng)
        return intensity_jitter(image, self.rng), labels
