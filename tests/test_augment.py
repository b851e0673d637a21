"""Training augmentation: what each transform keeps (ids, shape) and what it changes."""
from __future__ import annotations

import numpy as np
import pytest

from stardist_v4d.training.augment import Augmenter, rescale


def disk_image(shape=(96, 96), radius=10) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint16)
    labels[(yy - 30) ** 2 + (xx - 30) ** 2 <= radius ** 2] = 1
    labels[(yy - 62) ** 2 + (xx - 66) ** 2 <= radius ** 2] = 2
    image = 0.05 + 0.8 * (labels > 0) + np.random.default_rng(0).normal(0, 0.01, shape)
    return image.astype(np.float32), labels


@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_rescale_scales_areas_keeps_shape_ids_and_image_label_agreement(factor):
    image, labels = disk_image()
    zoomed, zoomed_labels = rescale(image, labels, factor)
    assert zoomed.shape == image.shape and zoomed_labels.shape == labels.shape
    assert zoomed_labels.dtype == labels.dtype and set(np.unique(zoomed_labels)) == {0, 1, 2}
    for label in (1, 2):
        ratio = (zoomed_labels == label).sum() / (labels == label).sum()
        assert ratio == pytest.approx(factor ** 2, rel=0.12)
    # the image moved with its labels: nuclei stay bright, the rest (and a zoomed-out border) dark
    assert zoomed[zoomed_labels > 0].mean() > 0.7 and zoomed[zoomed_labels == 0].mean() < 0.2


def test_zooming_out_leaves_a_background_border_without_labels():
    image, labels = disk_image()
    labels[:, :4] = 3                                    # a nucleus touching the left edge
    zoomed, zoomed_labels = rescale(image, labels, 0.8)
    assert not zoomed_labels[:, :5].any()                # no mirrored twin of the edge nucleus
    assert np.allclose(zoomed[:, :5], np.percentile(image, 1))


def test_augmenter_applies_scale_and_blur_only_when_asked():
    image, labels = disk_image()
    plain, wide = Augmenter(seed=3), Augmenter(seed=3, scale=(0.8, 1.25), blur=1.0)
    def steepest_edge(x: np.ndarray) -> float:      # relative to the contrast: gain jitter cancels
        return float(np.abs(np.diff(x, axis=1)).max() / np.ptp(np.percentile(x, [0.5, 99.5])))

    areas, sharp, soft = set(), [], []
    for _ in range(20):
        x, y = plain(image, labels)
        assert sorted(np.bincount(y.ravel())[1:]) == sorted(np.bincount(labels.ravel())[1:])   # rotations only
        sharp.append(steepest_edge(x))
        x, y = wide(image, labels)
        areas.add(int((y == 1).sum()))
        soft.append(steepest_edge(x))
    assert len(areas) > 3                                # the nucleus got zoomed to several sizes
    assert min(soft) < 0.5 * min(sharp)                  # some patches blurred
