"""Measurements held to independent references: scikit-image and brute-force convex hulls.

``measure_plane`` equals ``regionprops`` column by column on crowded synthetic nuclei (and
where the two definitions differ, solidity and the perimeter, to a brute-force count).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull
from skimage.draw import disk

from stardist_v4d.analysis.measure import Calibration, measure_plane
from test_measure import HALF_UM, angle_difference, disc_plane


# ------------------------------------------------------------- exactness vs scikit-image
@pytest.fixture(scope="module")
def crowded():
    from stardist_v4d.training.synthetic import synthetic_nuclei

    image, labels = synthetic_nuclei((256, 256), np.random.default_rng(1))
    ids = np.unique(labels[labels > 0])
    assert len(ids) >= 30
    removed = ids[::5]                                   # gaps in the numbering
    labels = np.where(np.isin(labels, removed), 0, labels).astype(labels.dtype)
    kept = np.unique(labels[labels > 0])
    assert np.any(np.diff(kept) > 1)
    return image, labels


PROPERTIES = ("label", "area", "centroid", "perimeter_crofton", "axis_major_length",
              "axis_minor_length", "orientation", "intensity_mean", "intensity_min",
              "intensity_max", "intensity_std")


def test_measure_plane_equals_regionprops_on_crowded_synthetic_nuclei(crowded):
    from skimage.measure import regionprops_table

    image, labels = crowded
    # the reference in float64: regionprops sums a float32 image in float32 (~1e-7 off)
    ref = regionprops_table(labels, intensity_image=image.astype(np.float64), properties=PROPERTIES)
    columns = measure_plane(labels, [image], None, Calibration(None))
    np.testing.assert_array_equal(columns["label"], ref["label"])
    np.testing.assert_array_equal(columns["area_px2"], ref["area"])
    np.testing.assert_allclose(columns["centroid_y_px"], ref["centroid-0"], rtol=1e-9)
    np.testing.assert_allclose(columns["centroid_x_px"], ref["centroid-1"], rtol=1e-9)
    np.testing.assert_allclose(columns["perimeter_px"], ref["perimeter_crofton"], rtol=1e-9)
    np.testing.assert_allclose(columns["major_axis_px"], ref["axis_major_length"], rtol=1e-9)
    np.testing.assert_allclose(columns["minor_axis_px"], ref["axis_minor_length"], rtol=1e-9)
    np.testing.assert_allclose(columns["mean_c0"], ref["intensity_mean"], rtol=1e-9)
    np.testing.assert_allclose(columns["min_c0"], ref["intensity_min"], rtol=1e-9)
    np.testing.assert_allclose(columns["max_c0"], ref["intensity_max"], rtol=1e-9)
    np.testing.assert_allclose(columns["std_c0"], ref["intensity_std"], rtol=1e-9, atol=1e-12)
    pixel_sums = ndi.sum(image.astype(np.float64), labels, ref["label"])
    np.testing.assert_allclose(columns["sum_c0"], pixel_sums, rtol=1e-9)
    # orientation: every nucleus whose xx and yy moments differ (ties: the test below)
    fiji = fiji_angle(ref["orientation"])
    assert np.all((columns["orientation_deg"] >= 0) & (columns["orientation_deg"] < 180))
    untied = ~moments_tied(labels, ref["label"])
    assert untied.sum() >= len(untied) - 10
    assert np.max(angle_difference(columns["orientation_deg"][untied], fiji[untied])) < 1e-6


def fiji_angle(regionprops_orientation):
    """regionprops: from the rows axis, counter-clockwise, radians -> Fiji: from x, degrees."""
    return np.mod(np.degrees(regionprops_orientation) + 90.0, 180.0)


def moments_tied(labels, ids):
    """Labels whose row and column variances are equal (to rounding)."""
    tied = []
    for label in ids:
        rows, cols = np.nonzero(labels == label)
        tied.append(abs(rows.var() - cols.var()) <= 1e-9 * (rows.var() + cols.var()))
    return np.array(tied)


def test_orientation_equals_regionprops_for_every_crowded_nucleus(crowded):
    from skimage.measure import regionprops_table

    image, labels = crowded
    ref = regionprops_table(labels, properties=("label", "orientation"))
    columns = measure_plane(labels, [], None, Calibration(None))
    assert np.max(angle_difference(columns["orientation_deg"], fiji_angle(ref["orientation"]))) < 1e-6


def diagonal_band(shape, centre, half_length, half_width, rising):
    """Band along a screen diagonal, mirror-symmetric so its x and y variances are equal.

    ``rising``: from bottom-left to top-right (row falls as x grows), Fiji's 45 degrees;
    else from top-left to bottom-right, 135 degrees. The centre lies on the main
    diagonal (row == column), so rows and columns are the same numbers.
    """
    rows, cols = np.indices(shape)
    dr, dc = rows - centre, cols - centre
    along, across = (dc - dr, dc + dr) if rising else (dc + dr, dc - dr)
    return (np.abs(along) <= 2 * half_length) & (np.abs(across) <= half_width)


@pytest.mark.parametrize("rising,expected", [(True, 45.0), (False, 135.0)])
def test_orientation_of_diagonal_band_with_equal_x_and_y_variance(rising, expected):
    mask = diagonal_band((60, 60), 30, 12, 1, rising)
    rows, cols = np.nonzero(mask)
    assert rows.var() == cols.var()                        # the tie the special case handles
    orientation = measure_plane(mask.astype(np.uint16), [], None, Calibration(None))["orientation_deg"][0]
    assert angle_difference(orientation, expected) < 1e-6


def test_float32_label_image_gives_the_same_columns(crowded):
    image, labels = crowded
    as_int = measure_plane(labels, [image], None, HALF_UM)
    as_float = measure_plane(labels.astype(np.float32), [image], None, HALF_UM)
    assert list(as_float) == list(as_int)
    for name in as_int:
        np.testing.assert_array_equal(as_float[name], as_int[name], err_msg=name)


def test_scaled_axes_and_centroids_follow_an_isotropic_pixel_size(crowded):
    image, labels = crowded
    px = measure_plane(labels, [image], None, Calibration(None))
    um = measure_plane(labels, [image], None, HALF_UM)
    for length in ("centroid_x", "centroid_y", "perimeter", "major_axis", "minor_axis"):
        np.testing.assert_allclose(um[f"{length}_um"], px[f"{length}_px"] * 0.5, rtol=1e-9)
    np.testing.assert_allclose(um["area_um2"], px["area_px2"] * 0.25, rtol=1e-12)
    np.testing.assert_allclose(um["roundness"], px["roundness"], rtol=1e-9)


# ------------------------------------------------------------- solidity
def brute_force_hull_pixels(mask: np.ndarray) -> int:
    """Pixel centres inside or on the convex hull of the mask's pixel centres (scipy)."""
    points = np.argwhere(mask).astype(np.float64)
    (r0, c0), (r1, c1) = points.min(0).astype(int), points.max(0).astype(int)
    if r0 == r1 or c0 == c1:                        # a segment: its lattice points
        return (r1 - r0 + 1) * (c1 - c0 + 1)
    rows, cols = np.mgrid[r0:r1 + 1, c0:c1 + 1]
    grid = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.float64)
    try:
        hull = ConvexHull(points)
    except Exception:                               # collinear, not axis-aligned
        direction = points[-1] - points[0]
        offset = grid - points[0]
        on_line = np.abs(offset[:, 0] * direction[1] - offset[:, 1] * direction[0]) < 1e-9
        t = offset @ direction / (direction @ direction)
        return int(np.count_nonzero(on_line & (t >= -1e-9) & (t <= 1 + 1e-9)))
    inside = np.all(grid @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9, axis=1)
    return int(np.count_nonzero(inside))


def solidity_of(mask: np.ndarray) -> float:
    columns = measure_plane(mask.astype(np.uint16), [], None, Calibration(None))
    assert len(columns["label"]) == 1
    return float(columns["solidity"][0])


def test_solidity_of_digital_disc_and_filled_rectangle_is_one():
    columns = measure_plane(disc_plane(), [], None, HALF_UM)
    np.testing.assert_allclose(columns["solidity"], 1.0, rtol=1e-12)
    rectangle = np.zeros((40, 50), bool)
    rectangle[5:22, 8:41] = True
    assert solidity_of(rectangle) == pytest.approx(1.0, rel=1e-12)


def test_solidity_of_l_shape_is_area_over_brute_force_hull_pixels():
    mask = np.zeros((40, 40), bool)
    mask[5:30, 5:10] = True           # vertical bar
    mask[25:30, 5:32] = True          # foot
    expected = mask.sum() / brute_force_hull_pixels(mask)
    assert expected < 0.8
    assert solidity_of(mask) == pytest.approx(expected, rel=1e-12)


def test_solidity_of_annulus_is_area_over_brute_force_hull_pixels():
    mask = np.zeros((60, 60), bool)
    mask[disk((30.2, 29.6), 18)] = True
    mask[disk((30.2, 29.6), 9)] = False
    expected = mask.sum() / brute_force_hull_pixels(mask)
    assert expected < 0.85
    assert solidity_of(mask) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name,cells", [
    ("single pixel", (slice(7, 8), slice(9, 10))),
    ("one-row line", (slice(7, 8), slice(3, 19))),
    ("one-column line", (slice(2, 17), slice(9, 10))),
])
def test_solidity_of_single_pixel_and_lines_is_one(name, cells):
    mask = np.zeros((20, 20), bool)
    mask[cells] = True
    columns = measure_plane(mask.astype(np.uint16), [], None, Calibration(None))
    assert columns["solidity"][0] == pytest.approx(1.0, rel=1e-12), name
    assert columns["area_px2"][0] == mask.sum()


def test_solidity_of_dotted_diagonal_counts_the_lattice_points_between_its_pixels():
    mask = np.zeros((20, 20), bool)
    mask[[2, 4, 6], [3, 5, 7]] = True           # hull: the segment (2,3)-(6,7), 5 lattice points
    assert brute_force_hull_pixels(mask) == 5
    assert solidity_of(mask) == pytest.approx(3 / 5, rel=1e-12)


def test_solidity_of_thirty_random_blobs_matches_brute_force():
    rng = np.random.default_rng(7)
    cell = 24
    labels = np.zeros((5 * cell, 6 * cell), np.uint16)
    masks = {}
    for k in range(30):
        noise = ndi.gaussian_filter(rng.random((18, 18)), rng.uniform(1.0, 2.5))
        blob = noise > np.quantile(noise, rng.uniform(0.4, 0.85))
        r, c = divmod(k, 6)
        labels[r * cell + 3:r * cell + 21, c * cell + 3:c * cell + 21][blob] = k + 1
        masks[k + 1] = labels == k + 1
    columns = measure_plane(labels, [], None, Calibration(None))
    np.testing.assert_array_equal(columns["label"], np.arange(1, 31))
    expected = np.array([masks[k].sum() / brute_force_hull_pixels(masks[k]) for k in range(1, 31)])
    assert expected.min() < 0.95                       # the blobs are not all convex
    np.testing.assert_allclose(columns["solidity"], expected, rtol=1e-12)
