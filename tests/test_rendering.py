"""Label rendering in one compiled pass: pixel for pixel StarDist's ``polygons_to_label``.

Random polygons of every kind a plane holds (crowded and overlapping, touching, tiny,
huge, reaching past every border, vertices on whole pixels, tied probabilities, zoomed
planes' ``scale_dist``) are rendered by both; the label images must be equal, dtype too.
"""
from __future__ import annotations

import numpy as np
import pytest
from stardist.geometry import polygons_to_label as stardists

from stardist_v4d.pipeline.rendering import polygons_to_label


def random_polygons(rng: np.random.Generator, case: int):
    n = int(rng.integers(0, 150))
    rays = int(rng.choice([8, 32, 64]))
    height, width = int(rng.integers(16, 160)), int(rng.integers(16, 160))
    points = rng.uniform(-10, [height + 10, width + 10], (n, 2)).astype(np.float32)
    if case % 3 == 0:
        points = np.round(points)                                 # vertices on whole pixels
    size = rng.uniform(0.3, 25, (n, 1)) * (rng.uniform(size=(n, 1)) < 0.9) + rng.uniform(0, 2, (n, 1))
    dist = (size * rng.uniform(0.6, 1.4, (n, rays))).astype(np.float32)
    if case % 5 == 0:
        dist = np.round(dist * 2) / 2
    prob = rng.uniform(0.5, 1, n).astype(np.float32)
    if case % 2 == 0:
        prob = np.round(prob, 1)                                  # ties: drawing order by index
    scale = (1, 1) if case % 4 else (float(rng.uniform(0.5, 2)),) * 2
    return dist, points, (height, width), prob, scale


@pytest.mark.parametrize("seed", range(4))
def test_labels_equal_stardists_polygons_to_label(seed):
    rng = np.random.default_rng(seed)
    for case in range(25):
        dist, points, shape, prob, scale = random_polygons(rng, case)
        expected = stardists(dist, points, shape, prob=prob, scale_dist=scale)
        labels = polygons_to_label(dist, points, shape, prob=prob, scale_dist=scale)
        assert labels.dtype == expected.dtype and np.array_equal(labels, expected), (seed, case)


def test_threshold_and_no_polygons():
    rng = np.random.default_rng(9)
    dist, points, shape, prob, _ = random_polygons(rng, 1)
    assert np.array_equal(polygons_to_label(dist, points, shape, prob=prob, thr=0.8),
                          stardists(dist, points, shape, prob=prob, thr=0.8))
    empty = polygons_to_label(np.zeros((0, 32), np.float32), np.zeros((0, 2), np.float32), (5, 7))
    assert empty.shape == (5, 7) and empty.dtype == np.int32 and not empty.any()


def test_dist_to_coord_equals_stardists_bit_for_bit():
    """Worker processes take the polygon vertices from our copy, not from stardist."""
    from stardist.geometry import dist_to_coord as stardists

    from stardist_v4d.pipeline.rendering import dist_to_coord

    rng = np.random.default_rng(2)
    for n_rays, scale in ((8, (1, 1)), (32, (1, 1)), (64, (0.5, 0.5)), (32, (2.0, 1.5))):
        dist = rng.uniform(0, 40, (50, n_rays)).astype(np.float32)
        points = rng.uniform(0, 500, (50, 2)).astype(np.float32)
        ours, theirs = dist_to_coord(dist, points, scale_dist=scale), stardists(dist, points, scale_dist=scale)
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)


def test_worker_start_up_needs_neither_stardist_nor_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from stardist_v4d.pipeline import workers; workers._ready(); "
            "print(sorted(m for m in ('stardist', 'tensorflow', 'keras', 'skimage', 'csbdeep') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
