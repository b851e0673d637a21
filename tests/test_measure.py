"""Nuclei measurements, held to geometry (scikit-image and brute-force hulls: test_measure_exactness.py; tables and tracks: test_tables_tracks.py).

Every expected value here is derived independently of ``analysis/measure.py``: from
the geometry of the shapes drawn (pi r^2, 2 pi r, an ellipse's axes and angle), from
scikit-image's own ``regionprops_table`` on the same labels, from a brute-force
convex hull (scipy), or from arithmetic by hand.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk, ellipse

from stardist_v4d.analysis.measure import Calibration, column_names, measure_plane, ring_labels
from stardist_v4d.analysis.tables import format_column

HALF_UM = Calibration((0.5, 0.5))                 # 0.5 um pixels, ring 2 um = 4 px
RING_PX = 4                                       # 2 um / 0.5 um

# (row, col) centres (non-integer) and radii of well separated discs on a 220 x 220 plane
DISCS = (((40.3, 45.7), 8), ((42.6, 150.2), 10), ((150.4, 50.5), 15), ((155.2, 160.8), 25))


def disc_plane(discs=DISCS, shape=(220, 220)) -> np.ndarray:
    labels = np.zeros(shape, np.uint16)
    for label, (centre, radius) in enumerate(discs, start=1):
        labels[disk(centre, radius, shape=shape)] = label
    return labels


def row_of(columns: dict, label: int) -> dict:
    """One nucleus' values, by label."""
    (index,) = np.flatnonzero(np.asarray(columns["label"]) == label)
    return {name: values[index] for name, values in columns.items()}


def angle_difference(a, b):
    """Distance of two axis angles in degrees on the 180-degree circle."""
    d = np.mod(np.asarray(a, float) - np.asarray(b, float), 180.0)
    return np.minimum(d, 180.0 - d)


# ------------------------------------------------------------- discs: area, perimeter
def test_disc_area_is_pi_r_squared_within_two_percent():
    columns = measure_plane(disc_plane(), [], None, HALF_UM)
    assert list(columns["label"]) == [1, 2, 3, 4]
    for label, (_, radius) in enumerate(DISCS, start=1):
        expected = math.pi * radius ** 2 * 0.25
        assert row_of(columns, label)["area_um2"] == pytest.approx(expected, rel=0.02)


def test_disc_perimeter_is_two_pi_r_within_four_percent():
    columns = measure_plane(disc_plane(), [], None, HALF_UM)
    for label, (_, radius) in enumerate(DISCS, start=1):
        expected = 2 * math.pi * radius * 0.5
        assert row_of(columns, label)["perimeter_um"] == pytest.approx(expected, rel=0.04)


def test_disc_roundness_is_near_one_for_radius_of_eight_px_and_more():
    columns = measure_plane(disc_plane(), [], None, HALF_UM)
    assert np.all((columns["roundness"] >= 0.9) & (columns["roundness"] <= 1.1))


def test_disc_centroid_is_its_centre_times_pixel_size_within_005_um():
    columns = measure_plane(disc_plane(), [], None, HALF_UM)
    for label, ((row, col), _) in enumerate(DISCS, start=1):
        values = row_of(columns, label)
        assert values["centroid_x_um"] == pytest.approx(col * 0.5, abs=0.05)
        assert values["centroid_y_um"] == pytest.approx(row * 0.5, abs=0.05)


# ------------------------------------------------------------- ellipse: axes, angle
def test_rotated_ellipse_axes_are_twice_its_semi_axes_within_three_percent():
    shape = (200, 200)
    labels = np.zeros(shape, np.uint16)
    labels[ellipse(100.3, 99.6, 20, 8, shape=shape, rotation=0.4)] = 1
    labels[ellipse(60.5, 40.2, 8, 20, shape=shape, rotation=-1.1)] = 2
    for pixel in (0.5, 1.0):
        columns = measure_plane(labels, [], None, Calibration((pixel, pixel)))
        unit = "um"
        assert columns[f"major_axis_{unit}"] == pytest.approx([40 * pixel] * 2, rel=0.03)
        assert columns[f"minor_axis_{unit}"] == pytest.approx([16 * pixel] * 2, rel=0.03)


def test_elongated_ellipse_roundness_matches_ramanujan_perimeter():
    labels = np.zeros((200, 200), np.uint16)
    labels[ellipse(100.3, 99.6, 20, 8, shape=labels.shape, rotation=0.4)] = 1
    a, b = 20.0, 8.0
    perimeter = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
    expected = 4 * math.pi * (math.pi * a * b) / perimeter ** 2          # ~0.75
    roundness = measure_plane(labels, [], None, HALF_UM)["roundness"][0]
    assert roundness == pytest.approx(expected, rel=0.04)


def screen_ellipse(shape, centre, semi_major, semi_minor, angle_deg) -> np.ndarray:
    """Mask of an ellipse whose major axis points ``angle_deg`` counter-clockwise from x, as shown.

    Built from formulas alone: on screen x = column and "up" = -row, so the major
    axis' direction is (dx, d_up) = (cos a, sin a).
    """
    rows, cols = np.indices(shape, dtype=np.float64)
    dx, d_up = cols - centre[1], -(rows - centre[0])
    t = math.radians(angle_deg)
    along = dx * math.cos(t) + d_up * math.sin(t)
    across = -dx * math.sin(t) + d_up * math.cos(t)
    return (along / semi_major) ** 2 + (across / semi_minor) ** 2 <= 1.0


@pytest.mark.parametrize("angle", [0, 30, 45, 90, 120, 135, 160])
def test_orientation_is_fijis_angle_counter_clockwise_from_x_as_shown(angle):
    mask = screen_ellipse((120, 120), (60.2, 59.7), 20, 8, angle)
    labels = mask.astype(np.uint16)
    orientation = measure_plane(labels, [], None, HALF_UM)["orientation_deg"][0]
    assert 0.0 <= orientation < 180.0
    assert angle_difference(orientation, angle) < 1.0


def test_orientation_of_bottom_left_to_top_right_diagonal_is_45_degrees():
    # hand-made: as x (column) increases, the row index decreases
    labels = np.zeros((60, 60), np.uint16)
    for step in range(30):
        row, col = 45 - step, 15 + step
        labels[row, col - 1:col + 2] = 1
    orientation = measure_plane(labels, [], None, Calibration(None))["orientation_deg"][0]
    assert angle_difference(orientation, 45) < 0.5
    assert angle_difference(orientation, 135) > 80                    # not the mirror image


def test_orientation_of_horizontal_and_vertical_bars_is_0_and_90_degrees():
    labels = np.zeros((80, 80), np.uint16)
    labels[10:14, 10:50] = 1           # long in x
    labels[30:75, 60:64] = 2           # long in y
    orientation = measure_plane(labels, [], None, Calibration(None))["orientation_deg"]
    assert angle_difference(orientation[0], 0) < 1e-6
    assert angle_difference(orientation[1], 90) < 1e-6


# ------------------------------------------------------------- channel statistics, ring
def distance_channel(labels: np.ndarray) -> np.ndarray:
    """Distance of each pixel to the nearest nucleus pixel (0 inside), by scipy."""
    return ndi.distance_transform_edt(labels == 0)


def test_channel_inside_disc_gives_exact_mean_min_max_sum_and_zero_std():
    labels = disc_plane()
    d = distance_channel(labels)
    inside, ring, outside = 7.25, 3.5, 11.0
    c1 = np.where(labels > 0, inside, np.where(d <= RING_PX, ring, outside))
    c0 = np.zeros(labels.shape)
    columns = measure_plane(labels, [c0, c1], None, HALF_UM)
    pixels = np.bincount(labels.ravel())[1:]
    np.testing.assert_array_equal(columns["mean_c1"], inside)
    np.testing.assert_array_equal(columns["min_c1"], inside)
    np.testing.assert_array_equal(columns["max_c1"], inside)
    np.testing.assert_allclose(columns["sum_c1"], inside * pixels, rtol=1e-12)
    np.testing.assert_allclose(columns["std_c1"], 0.0, atol=1e-9)


def test_ring_mean_is_the_ring_value_of_ring_um_over_pixel_size():
    labels = disc_plane()
    d = distance_channel(labels)
    inside, ring, outside = 7.25, 3.5, 11.0
    c1 = np.where(labels > 0, inside, np.where(d <= RING_PX, ring, outside))
    # c0 encodes the distance: its ring mean reveals the ring's width (4 px, not 2 or 8)
    columns = measure_plane(labels, [d, c1], None, HALF_UM)
    np.testing.assert_allclose(columns["ring_mean_c1"], ring, rtol=1e-12)
    for label in range(1, len(DISCS) + 1):
        own = ndi.distance_transform_edt(labels != label)
        mine = (labels == 0) & (own <= RING_PX)            # discs are far apart: one owner
        assert row_of(columns, label)["ring_mean_c0"] == pytest.approx(d[mine].mean(), rel=1e-12)
        sy, sx = HALF_UM.spacing
        assert row_of(columns, label)["ring_area_um2"] == pytest.approx(mine.sum() * sx * sy, rel=1e-12)


def test_ring_width_follows_the_calibration_ring_um():
    labels = disc_plane()
    d = distance_channel(labels)
    # 3 um with 0.25 um pixels is 12 px
    columns = measure_plane(labels, [d], None, Calibration((0.25, 0.25), ring_um=3.0))
    for label in range(1, len(DISCS) + 1):
        own = ndi.distance_transform_edt(labels != label)
        mine = (labels == 0) & (own <= 12)
        assert row_of(columns, label)["ring_mean_c0"] == pytest.approx(d[mine].mean(), rel=1e-12)


CLOSE_DISCS = (((60.3, 50.2), 12), ((61.7, 78.6), 10))     # gap ~6.4 px < two rings (8 px)


def close_pair():
    shape = (120, 130)
    labels = disc_plane(CLOSE_DISCS, shape)
    d_a = ndi.distance_transform_edt(labels != 1)
    d_b = ndi.distance_transform_edt(labels != 2)
    background = labels == 0
    reach = background & (np.minimum(d_a, d_b) <= RING_PX)
    # the geometry is chosen so that no ring pixel is as near to one nucleus as to the other
    assert not np.any(reach & (d_a == d_b)), "test geometry has ties; move a disc"
    ring_a, ring_b = reach & (d_a < d_b), reach & (d_b < d_a)
    assert np.any(ring_a & (d_b <= RING_PX))                   # the rings do compete
    return labels, d_a, d_b, ring_a, ring_b


def test_ring_pixel_between_close_nuclei_belongs_to_the_nearer_nucleus_only():
    labels, d_a, d_b, ring_a, ring_b = close_pair()
    ring = ring_labels(labels, HALF_UM.ring_px)
    np.testing.assert_array_equal(ring == 1, ring_a)
    np.testing.assert_array_equal(ring == 2, ring_b)
    # ring mean of a channel that differs on the two sides of the midline
    side = np.where(labels == 0, d_a - d_b, 0.0)
    columns = measure_plane(labels, [side], None, HALF_UM)
    assert columns["ring_mean_c0"][0] == pytest.approx(side[ring_a].mean(), rel=1e-12)
    assert columns["ring_mean_c0"][1] == pytest.approx(side[ring_b].mean(), rel=1e-12)


def test_pixel_inside_a_neighbouring_nucleus_is_never_part_of_a_ring():
    labels, d_a, d_b, ring_a, ring_b = close_pair()
    ring_value = 3.0
    c1 = np.full(labels.shape, 11.0)
    c1[ring_a | ring_b] = ring_value
    c1[labels == 1], c1[labels == 2] = 70.0, 90.0
    columns = measure_plane(labels, [np.zeros(labels.shape), c1], None, HALF_UM)
    np.testing.assert_allclose(columns["ring_mean_c1"], ring_value, rtol=1e-12)
    np.testing.assert_array_equal(columns["mean_c1"], [70.0, 90.0])
    # touching nuclei too: the ring never enters the neighbour
    touching = np.zeros((40, 60), np.uint16)
    touching[10:30, 10:30], touching[10:30, 30:50] = 1, 2
    ring = ring_labels(touching, RING_PX)
    assert not np.any(ring[touching > 0])
    assert np.all(ring[6:10, 12:28] == 1) and np.all(ring[6:10, 32:48] == 2)   # 4 px above
    assert not np.any(ring[:6])


# ------------------------------------------------------------- units, column order
def test_uncalibrated_column_names_are_pixels_in_their_order():
    expected = ["time_point", "z", "label", "centroid_x_px", "centroid_y_px", "area_px2",
                "perimeter_px", "roundness", "major_axis_px", "minor_axis_px", "orientation_deg",
                "solidity", "probability",
                "mean_c0", "min_c0", "max_c0", "sum_c0", "std_c0",
                "mean_c1", "min_c1", "max_c1", "sum_c1", "std_c1",
                "ring_mean_c0", "ring_mean_c1", "ring_area_px2"]
    assert column_names(2, Calibration(None)) == expected
    columns = measure_plane(disc_plane(), [np.ones((220, 220))] * 2, None, Calibration(None),
                            time_point=3, z=5)
    assert list(columns) == expected
    np.testing.assert_array_equal(columns["time_point"], 3)
    np.testing.assert_array_equal(columns["z"], 5)


def test_calibrated_column_names_are_micrometres():
    names = column_names(1, HALF_UM)
    assert names[3:10] == ["centroid_x_um", "centroid_y_um", "area_um2", "perimeter_um",
                           "roundness", "major_axis_um", "minor_axis_um"]
    assert names[-2:] == ["ring_mean_c0", "ring_area_um2"]


def test_anisotropic_pixels_scale_area_and_each_centroid_axis():
    labels = np.zeros((60, 80), np.uint16)
    labels[10:20, 30:50] = 4                 # mean row 14.5, mean column 39.5, 200 px
    columns = measure_plane(labels, [], None, Calibration((0.5, 0.25)))   # (x, y)
    assert columns["area_um2"][0] == pytest.approx(200 * 0.125, rel=1e-12)
    assert columns["centroid_x_um"][0] == pytest.approx(39.5 * 0.5, rel=1e-12)
    assert columns["centroid_y_um"][0] == pytest.approx(14.5 * 0.25, rel=1e-12)
    # 20 px * 0.5 um wide, 10 px * 0.25 um high: major axis along x
    assert columns["major_axis_um"][0] > columns["minor_axis_um"][0]
    assert angle_difference(columns["orientation_deg"][0], 0) < 1e-6


def test_mismatched_channel_and_non_plane_labels_are_rejected():
    with pytest.raises(ValueError):
        measure_plane(np.zeros((10, 10), np.uint16), [np.zeros((10, 11))], None, HALF_UM)
    with pytest.raises(ValueError):
        measure_plane(np.zeros((2, 10, 10), np.uint16), [], None, HALF_UM)


# ------------------------------------------------------------- probabilities, empty plane
def test_probability_is_reported_per_label_and_missing_labels_give_nan():
    labels = disc_plane()
    columns = measure_plane(labels, [], {1: 0.91, 3: 0.55, 99: 0.1}, HALF_UM)
    np.testing.assert_array_equal(columns["label"], [1, 2, 3, 4])
    np.testing.assert_array_equal(columns["probability"], [0.91, np.nan, 0.55, np.nan])
    assert np.all(np.isnan(measure_plane(labels, [], None, HALF_UM)["probability"]))


def test_empty_label_image_gives_zero_rows_with_every_column():
    labels = np.zeros((50, 60), np.uint16)
    columns = measure_plane(labels, [np.ones((50, 60)), np.ones((50, 60))], {}, HALF_UM)
    assert list(columns) == column_names(2, HALF_UM)
    assert all(len(values) == 0 for values in columns.values())


def test_run_wide_ids_in_the_billions_are_measured_as_given():
    labels = np.zeros((40, 40), np.uint32)
    labels[5:15, 5:15] = 4_000_000_000
    labels[20:30, 20:35] = 7
    columns = measure_plane(labels, [labels.astype(np.float32)], {7: 0.9}, Calibration(None))
    assert columns["label"].tolist() == [7, 4_000_000_000]
    assert columns["area_px2"].tolist() == [150.0, 100.0]
    assert columns["mean_c0"].tolist() == [7.0, 4e9]
    assert columns["probability"][0] == 0.9 and np.isnan(columns["probability"][1])


def test_uint64_ids_above_two_to_the_63_stay_positive():
    labels = np.zeros((40, 40), np.uint64)
    labels[5:15, 5:15] = 2 ** 63 + 5
    labels[20:30, 20:35] = 2 ** 64 - 1
    columns = measure_plane(labels, [np.ones((40, 40))], None, Calibration(None))
    assert [int(v) for v in columns["label"]] == [2 ** 63 + 5, 2 ** 64 - 1]
    assert format_column("label", columns["label"]) == [str(2 ** 63 + 5), str(2 ** 64 - 1)]
