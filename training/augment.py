"""Training-time augmentation for normalized ``(Y, X)`` nuclei images.

The transformations a microscope can produce without changing what a nucleus is:
flips and 90-degree rotations (no preferred orientation), intensity scale and shift
(exposure, offset), and additive noise. Geometric changes are applied to image and
labels alike; intensity changes to the image only.

Optional, off by default: scaling (another pixel size: the same nuclei larger or
smaller, with their noise grain and blur resampled) and extra blur (another focus or
objective). They widen what a model has seen beyond what its training images hold.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


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


def rescale(image: np.ndarray, labels: np.ndarray, factor: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """Zoom both about the centre by ``factor``, keeping the shape.

    Labels are resampled by nearest neighbour (ids stay ids). Zooming out leaves a
    border the patch has no data for: labels 0 there, the image at its 1st percentile
    (background), rather than a mirror that would double a nucleus at the edge.
    """
    matrix = np.full(2, 1 / factor)
    centre = (np.asarray(image.shape) - 1) / 2
    offset = centre - matrix * centre
    background = float(np.percentile(image, 1))
    zoomed = ndi.affine_transform(image, matrix, offset, order=1, mode="constant", cval=background)
    zoomed_labels = ndi.affine_transform(labels, matrix, offset, order=0, mode="constant", cval=0)
    return zoomed.astype(np.float32), zoomed_labels.astype(labels.dtype)


class Augmenter:
    """Callable ``(x, y) -> (x, y)`` as StarDist's ``train(augmenter=...)`` expects.

    ``scale=(low, high)`` zooms half of the patches by a log-uniform factor in that
    range; ``blur`` > 0 blurs half of them with a Gaussian of sigma up to ``blur`` px.
    """

    def __init__(self, seed: int | None = None, scale: tuple[float, float] | None = None,
                 blur: float = 0.0) -> None:
        self.rng = np.random.default_rng(seed)
        self.scale, self.blur = scale, blur

    def __call__(self, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image, labels = flip_rotate(image, labels, self.rng)
        if self.scale is not None and self.rng.random() < 0.5:
            factor = float(np.exp(self.rng.uniform(*np.log(self.scale))))
            image, labels = rescale(image, labels, factor)
        if self.blur > 0 and self.rng.random() < 0.5:
            image = ndi.gaussian_filter(image, self.rng.uniform(0.3, self.blur))
        return intensity_jitter(image, self.rng), labels
