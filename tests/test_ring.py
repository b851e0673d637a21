"""The compiled ring gives scikit-image's ``expand_labels`` pixels, ties included."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import expand_labels

from stardist_v4d.analysis.ring import grown_ring


def expected(labels: np.ndarray, distance: float) -> np.ndarray:
    grown = expand_labels(labels, distance)
    grown[labels > 0] = 0
    return grown


def random_plane(rng: np.random.Generator, kind: int) -> np.ndarray:
    h, w = (int(v) for v in rng.integers(1, 70, 2))
    labels = np.zeros((h, w), np.int32)
    if kind == 0:                                        # scattered single pixels
        n = int(rng.integers(0, 12))
        labels[rng.integers(0, h, n), rng.integers(0, w, n)] = rng.integers(1, 9, n)
    elif kind == 1:                                      # a regular lattice: equidistant nuclei everywhere
        step = int(rng.integers(2, 7))
        labels[::step, ::step] = rng.integers(1, 50, labels[::step, ::step].shape)
    elif kind == 2:                                      # blobs with holes
        n = int(rng.integers(1, 15))
        labels[rng.integers(0, h, n), rng.integers(0, w, n)] = np.arange(1, n + 1)
        labels = expand_labels(labels, int(rng.integers(1, 6))) * (rng.uniform(size=(h, w)) > 0.1)
    else:                                                # salt noise of a few labels
        labels = (rng.integers(0, 6, (h, w)) * (rng.uniform(size=(h, w)) > 0.8)).astype(np.int32)
    return labels


@pytest.mark.parametrize("kind", range(4))
def test_rings_equal_expand_labels_on_random_planes(kind):
    rng = np.random.default_rng(kind)
    for _ in range(60):
        labels = random_plane(rng, kind)
        distance = float(rng.choice([1, 1.5, 2, 2.5, 3, 4, 4.5, 7, 30]))
        np.testing.assert_array_equal(grown_ring(labels, distance), expected(labels, distance))


def test_rings_equal_expand_labels_on_a_crowded_stardist_plane():
    from stardist_v4d.training.synthetic import synthetic_dataset

    _, masks = synthetic_dataset(1, shape=(256, 256), seed=4)
    labels = masks[0].astype(np.uint16)
    assert labels.max() > 20
    for distance in (2.0, 4.0, 9.5):
        np.testing.assert_array_equal(grown_ring(labels, distance), expected(labels, distance))


def test_no_nuclei_no_ring_and_the_dtype_kept():
    assert not grown_ring(np.zeros((5, 7), np.uint16), 3).any()
    ring = grown_ring(np.eye(6, dtype=np.uint16) * 3, 1)
    assert ring.dtype == np.uint16 and set(np.unique(ring)) == {0, 3}
    with pytest.raises(ValueError, match="one \\(Y, X\\) plane"):
        grown_ring(np.zeros((2, 3, 4), np.int32), 1)
