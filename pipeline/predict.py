"""One plane's prediction in two halves: the CNN here, the instances anywhere.

Why split: ``predict_instances`` is a CNN call (TensorFlow, every core) followed by
non-maximum suppression and label rendering (``stardist.nms``/``stardist.geometry``,
no TensorFlow; here ``nms`` and ``rendering``, compiled, with the same results). Between the two sits a small sparse payload (the candidates above
``prob_thresh``), so the second half can run in a worker process while the CNN
predicts the next plane. Both halves replay stardist 0.9.2 step by step
(``_predict_instances_generator``: zoom, ``predict_sparse``; then
``StarDist2D._instances_from_prediction``), so their labels equal
``predict_instances``' exactly; tests/test_performance.py holds them to it.
One addition: a plane whose non-finite pixels the normalizer set to background
(``normalization.BackgroundFilled``) carries their mask to the rendering, which
keeps the labels 0 there.
This module imports neither TensorFlow nor ``stardist.models`` at import time:
worker processes import it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SparsePrediction:
    """What the CNN half hands to the instances half: candidates and how to judge them."""

    prob: np.ndarray                 # (n,) probability of each candidate
    dist: np.ndarray                 # (n, n_rays) ray lengths, in the scaled plane's pixels
    points: np.ndarray               # (n, 2) candidate centres (y, x), scaled plane
    shape: tuple[int, int]           # label image shape: the plane's, before scaling
    nms_thresh: float
    scale: float | None = None       # the plane was zoomed by this before the CNN
    #: ``np.packbits`` of the pixels (``shape``) that were not finite before normalization:
    #: labels stay 0 there. None (the usual case): every pixel was finite.
    non_finite_bits: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        extra = 0 if self.non_finite_bits is None else self.non_finite_bits.nbytes
        return self.prob.nbytes + self.dist.nbytes + self.points.nbytes + extra


def predict_sparse(model, image: np.ndarray, prob_thresh: float | None = None,
                   nms_thresh: float | None = None, n_tiles: tuple[int, int] | None = None,
                   scale: float | None = None) -> SparsePrediction:
    """The CNN half of ``model.predict_instances(image, ...)`` on a normalized plane.

    ``image`` may be a ``normalization.BackgroundFilled`` plane: its non-finite mask
    goes with the candidates.
    """
    from scipy import ndimage as ndi

    non_finite_bits = getattr(image, "non_finite_bits", None)
    image = np.asarray(image)                    # a plain view of a BackgroundFilled plane

    prob_thresh = model.thresholds.prob if prob_thresh is None else prob_thresh
    nms_thresh = model.thresholds.nms if nms_thresh is None else nms_thresh
    shape = tuple(image.shape)
    if scale is not None:
        image = ndi.zoom(image, (scale, scale), order=1)
    prob, dist, points = model.predict_sparse(image, prob_thresh=prob_thresh, n_tiles=n_tiles,
                                              show_tile_progress=False)
    return SparsePrediction(prob, dist, points, shape, float(nms_thresh), scale, non_finite_bits)


def instances(sparse: SparsePrediction) -> tuple[np.ndarray, dict]:
    """The NMS-and-rendering half: ``(labels, details)`` as ``predict_instances`` returns."""
    from .nms import non_maximum_suppression_sparse
    from .rendering import dist_to_coord, polygons_to_label

    points, prob, dist, _ = non_maximum_suppression_sparse(
        sparse.dist, sparse.prob, sparse.points, nms_thresh=sparse.nms_thresh)
    rescale = (1, 1)
    if sparse.scale is not None:
        rescale = (1 / sparse.scale, 1 / sparse.scale)
        points = points * np.array(rescale).reshape(1, 2)
    labels = polygons_to_label(dist, points, prob=prob, shape=sparse.shape, scale_dist=rescale)
    if sparse.non_finite_bits is not None:       # no data there: no nucleus either
        labels[non_finite_mask(sparse.non_finite_bits, labels.shape)] = 0
    coord = dist_to_coord(dist, points, scale_dist=rescale)
    return labels, dict(coord=coord, points=points, prob=prob)


def non_finite_mask(bits: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The boolean mask that ``bits`` (``non_finite_bits``, ``np.packbits`` of it) packs."""
    return np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape).view(bool)
