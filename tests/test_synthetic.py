"""The training-data generator: exact labels, seeded, and the randomized looks it promises."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from stardist_v4d.training.synthetic import (RANDOMIZED, VISIBLE_RANDOMIZED, NucleiStyle, contrast_to_noise, draw_look,
                                             synthetic_dataset, visible_labels)


@pytest.fixture(scope="module")
def randomized():
    return synthetic_dataset(24, shape=(128, 128), seed=11, style=RANDOMIZED)


@pytest.mark.parametrize("style", [NucleiStyle(), RANDOMIZED], ids=["plain", "randomized"])
def test_same_seed_same_images_other_seed_other_images(style):
    a, b, c = (synthetic_dataset(2, (96, 96), seed=s, style=style) for s in (3, 3, 4))
    assert all(np.array_equal(x, y) for x, y in zip(a[0] + a[1], b[0] + b[1]))
    assert not np.array_equal(a[0][0], c[0][0])


def test_labels_are_connected_instances_numbered_from_one(randomized):
    for labels in randomized[1]:
        ids = np.unique(labels[labels > 0])
        assert labels.dtype == np.uint16
        assert np.array_equal(ids, np.arange(1, len(ids) + 1))
        for i in ids[:20]:
            assert ndi.label(labels == i)[1] == 1, f"label {i} is in pieces"


def test_nuclei_are_brighter_than_their_surroundings(randomized):
    for image, labels in zip(*randomized):
        if labels.max() == 0:
            continue
        assert np.median(image[labels > 0]) > np.median(image[labels == 0])


def test_randomized_looks_include_8_bit_storage_and_float_images(randomized):
    images = randomized[0]
    eight_bit = [im for im in images if im.max() <= 255 and np.array_equal(im, np.round(im))]
    assert 0 < len(eight_bit) < len(images)
    assert any((im == 255).sum() > 0 for im in eight_bit)          # some saturate


def test_randomized_style_covers_small_large_sparse_and_crowded_fields(randomized):
    labels = randomized[1]
    equivalent_radius = [np.sqrt(np.bincount(l.ravel())[1:].mean() / np.pi) for l in labels if l.max()]
    fill = [np.count_nonzero(l) / l.size for l in labels]
    assert min(equivalent_radius) < 5 and max(equivalent_radius) > 9
    assert min(fill) < 0.15 and max(fill) > 0.35


def test_drawn_looks_vary_from_image_to_image():
    rng = np.random.default_rng(0)
    looks = [draw_look(rng) for _ in range(50)]
    for name in ("blur", "gamma", "background", "photons", "brightness_spread"):
        values = [getattr(look, name) for look in looks]
        assert max(values) > 1.5 * min(values) + 1e-6, name
    assert 0 < sum(look.nucleoli > 0 for look in looks) < 50


def test_mix_takes_the_styles_in_turn_from_one_seed():
    from stardist_v4d.training.synthetic import synthetic_mix, synthetic_nuclei

    images, masks = synthetic_mix(4, (64, 64), seed=5)
    rng = np.random.default_rng(5)
    for i, (image, mask) in enumerate(zip(images, masks)):
        expected_image, expected_mask = synthetic_nuclei((64, 64), rng, (NucleiStyle(), RANDOMIZED)[i % 2])
        assert np.array_equal(image, expected_image) and np.array_equal(mask, expected_mask)


def _two_discs(faint_contrast: float) -> tuple[np.ndarray, np.ndarray]:
    """A bright and a faint disc on unit-std noise; labels 1 (bright) and 2 (faint)."""
    yy, xx = np.mgrid[:64, :64]
    labels = np.zeros((64, 64), np.int32)
    labels[(yy - 20) ** 2 + (xx - 20) ** 2 < 36] = 1
    labels[(yy - 44) ** 2 + (xx - 44) ** 2 < 36] = 2
    image = np.random.default_rng(0).normal(100, 1, (64, 64))
    image[labels == 1] += 10
    image[labels == 2] += faint_contrast
    return image, labels


def test_contrast_to_noise_measures_each_nucleus_against_its_surroundings():
    cnr = contrast_to_noise(*_two_discs(faint_contrast=0.3))
    assert cnr[0] > 8 and abs(cnr[1] - 0.3) < 0.4


def test_invisible_nuclei_lose_their_label_visible_ones_keep_it_renumbered():
    image, labels = _two_discs(faint_contrast=0.3)
    kept = visible_labels(image, labels, 1.0)
    assert kept.max() == 1 and np.array_equal(kept == 1, labels == 1)
    image, labels = _two_discs(faint_contrast=3.0)
    assert visible_labels(image, labels, 1.0).max() == 2


def test_visible_style_has_the_same_images_and_a_subset_of_the_labels():
    every = synthetic_dataset(6, (128, 128), seed=5, style=RANDOMIZED)
    visible = synthetic_dataset(6, (128, 128), seed=5, style=VISIBLE_RANDOMIZED)
    assert all(np.array_equal(a, b) for a, b in zip(every[0], visible[0]))
    dropped = 0
    for all_labels, kept in zip(every[1], visible[1]):
        assert np.all(all_labels[kept > 0] > 0)                    # nothing new is labelled
        dropped += int(all_labels.max()) - int(kept.max())
    assert dropped > 0
