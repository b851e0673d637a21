"""The held-out-domain generator: seeded, exact visible labels, and the looks it promises."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from stardist_v4d.training.domain_shift import _sphere_profile, packed_monolayer, shifted_dataset
from stardist_v4d.training.synthetic import contrast_to_noise


@pytest.fixture(scope="module")
def shifted():
    return shifted_dataset(8, shape=(128, 128), seed=5)


def test_same_seed_same_images(shifted):
    again = shifted_dataset(8, shape=(128, 128), seed=5)
    other = shifted_dataset(8, shape=(128, 128), seed=6)
    assert all(np.array_equal(a, b) for a, b in zip(shifted[0], again[0]))
    assert not np.array_equal(shifted[0][0], other[0][0])


def test_labels_are_visible_connected_instances_numbered_from_one(shifted):
    for image, labels in zip(*shifted):
        assert labels.dtype == np.uint16 and image.shape == labels.shape
        ids = np.unique(labels)[1:]
        assert ids.size and np.array_equal(ids, np.arange(1, ids.size + 1))
        for label in ids[:20]:
            assert ndi.label(labels == label)[1] == 1
        # invisible nuclei were unlabelled (against surroundings that then still held them,
        # so a few kept ones measure lower now that those neighbours count as background)
        assert np.mean(contrast_to_noise(image, labels) >= 1.0) > 0.9


def test_packed_monolayer_fills_the_field_evenly():
    labels = packed_monolayer((192, 192), np.random.default_rng(2))
    assert labels.max() >= 20
    # even packing: every 64 x 64 tile holds nuclei (a random layout leaves empty tiles)
    tiles = labels.reshape(3, 64, 3, 64).swapaxes(1, 2).reshape(9, -1)
    assert all((tile > 0).mean() > 0.1 for tile in tiles)


def test_sphere_profile_is_brightest_inside_and_zero_outside():
    labels = np.zeros((40, 40), np.int32)
    yy, xx = np.mgrid[:40, :40]
    labels[(yy - 20) ** 2 + (xx - 20) ** 2 <= 10 ** 2] = 1
    profile = _sphere_profile(labels)
    assert profile[labels == 0].max() == 0 and profile.max() == pytest.approx(1.0)
    assert profile[20, 20] > profile[20, 12] > profile[20, 10] > 0     # falls towards the rim
