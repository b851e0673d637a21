"""The run's pictures: files, their content, and the numbers behind them (analysis/plots.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from stardist_v4d.analysis.overlay import Overlay, overlay_rgb, plot_overlay
from stardist_v4d.analysis.density import density_map, density_maps, smoothed, smoothing_grid
from stardist_v4d.analysis.plots import (area_histogram, make_plots,
                                         plot_nuclei_per_plane, read_planes, table_units)

NUCLEI_HEADER = {
    "um": "time_point,z,label,centroid_x_um,centroid_y_um,area_um2,perimeter_um,roundness,"
          "major_axis_um,mean_c0",
    "px": "time_point,z,label,centroid_x_px,centroid_y_px,area_px2,perimeter_px,roundness,"
          "major_axis_px,mean_c0",
}
PLANES_HEADER = {
    "um": "time_point,z,nuclei,density_per_mm2,mean_area_um2,median_area_um2,covered_fraction",
    "px": "time_point,z,nuclei,density_per_px2,mean_area_px2,median_area_px2,covered_fraction",
}


def fmt(value) -> str:
    """CSV field: NaN as an empty field, as the pipeline writes it."""
    return "" if isinstance(value, float) and np.isnan(value) else repr(value)


def write_tables(tmp_path: Path, nuclei: list[tuple], planes: list[tuple[int, int]],
                 unit: str = "um") -> tuple[Path, Path]:
    """Nuclei rows ``(t, z, x, y, area)`` and segmented planes ``(t, z)``, counted per plane."""
    nuclei_csv, planes_csv = tmp_path / "nuclei.csv", tmp_path / "planes.csv"
    lines = [NUCLEI_HEADER[unit]]
    for label, (t, z, x, y, area) in enumerate(nuclei, start=1):
        lines.append(",".join(fmt(v) for v in (t, z, label, x, y, area, 30.0, 0.9, 8.0, 100.0)))
    nuclei_csv.write_text("\n".join(lines) + "\n")
    lines = [PLANES_HEADER[unit]]
    for t, z in planes:
        areas = [n[4] for n in nuclei if (n[0], n[1]) == (t, z)]
        mean = float(np.mean(areas)) if areas else float("nan")
        median = float(np.median(areas)) if areas else float("nan")
        lines.append(",".join(fmt(v) for v in (t, z, len(areas), 1.0, mean, median, 0.1)))
    planes_csv.write_text("\n".join(lines) + "\n")
    return nuclei_csv, planes_csv


def random_run(rng, times: int, zs: int, field=(300.0, 200.0)) -> tuple[list, list]:
    nuclei, planes = [], []
    for t in range(times):
        for z in range(zs):
            planes.append((t, z))
            for _ in range(5 + 3 * z + t):
                nuclei.append((t, z, float(rng.uniform(0, field[0])),
                               float(rng.uniform(0, field[1])), float(rng.normal(60, 12))))
    return nuclei, planes


def assert_picture(path: Path, min_size: int = 100) -> np.ndarray:
    """A readable PNG of some size that is not one flat colour; returns its RGB pixels."""
    assert path.is_file() and path.stat().st_size > 0, path
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4), pixels.shape
    assert pixels.shape[0] >= min_size and pixels.shape[1] >= min_size, pixels.shape
    rgb = pixels[..., :3]
    codes = np.round(rgb * 255).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32)
    assert np.unique(codes).size > 10, f"{path.name} is nearly flat"
    return rgb


def disc_overlay(labelled: bool = True) -> tuple[Overlay, np.ndarray]:
    """120 x 100 noisy plane with one bright disc; returns the overlay and its boundary mask."""
    from skimage.draw import disk
    from skimage.segmentation import find_boundaries

    rng = np.random.default_rng(3)
    image = rng.normal(200, 20, (100, 120)).astype(np.uint16)
    labels = np.zeros((100, 120), np.uint16)
    rr, cc = disk((50, 60), 20, shape=labels.shape)
    image[rr, cc] += 300
    if labelled:
        labels[rr, cc] = 7
    return Overlay(image, labels, time_point=1, z=2), find_boundaries(labels, mode="inner")


def yellow(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] > 0.8) & (rgb[..., 1] > 0.8) & (rgb[..., 2] < 0.3)


# ------------------------------------------------------------------ files
def test_make_plots_writes_every_picture_in_order(tmp_path):
    rng = np.random.default_rng(0)
    nuclei, planes = random_run(rng, times=3, zs=4)
    nuclei_csv, planes_csv = write_tables(tmp_path, nuclei, planes)
    overlay, _ = disc_overlay()
    folder = tmp_path / "plots"  # does not exist yet
    written = make_plots(folder, nuclei_csv, planes_csv, (300.0, 200.0), overlay, min_density_nuclei=0)
    names = [p.name for p in written]
    assert names == ["area_histogram.png", "density_t0000.png", "density_t0001.png",
                     "density_t0002.png", "nuclei_per_plane.png", "overlay_t0001_z0002.png"]
    assert all(p.parent == folder for p in written)
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)
    for path in written:
        assert_picture(path)


def test_make_plots_without_overlay_and_sparse_time_points(tmp_path):
    """One density picture per time point of the planes table, named by its number (px tables)."""
    nuclei = [(0, 0, 10.0, 10.0, 50.0), (3, 1, 20.0, 20.0, 60.0), (12, 0, 5.0, 5.0, 70.0)]
    nuclei_csv, planes_csv = write_tables(tmp_path, nuclei, [(0, 0), (3, 1), (12, 0), (12, 1)],
                                          unit="px")
    written = make_plots(tmp_path / "out", nuclei_csv, planes_csv, (50.0, 40.0), min_density_nuclei=0)
    assert [p.name for p in written] == ["area_histogram.png", "density_t0000.png",
                                         "density_t0003.png", "density_t0012.png",
                                         "nuclei_per_plane.png"]
    assert not list((tmp_path / "out").glob("overlay_*"))


@pytest.mark.parametrize("times, zs", [(1, 1), (1, 5), (12, 1), (12, 3)])
def test_nuclei_per_plane_renders_single_planes_and_many_time_points(tmp_path, times, zs):
    """Single Z or time point: a marker; > 8 time points: mean and min-max band."""
    nuclei, planes = random_run(np.random.default_rng(times * 10 + zs), times, zs)
    _, planes_csv = write_tables(tmp_path, nuclei, planes)
    table = read_planes(planes_csv, chunksize=4)
    assert len(table) == times * zs
    assert_picture(plot_nuclei_per_plane(table, tmp_path / "nuclei_per_plane.png"))


def test_empty_nuclei_table_gives_pictures_not_a_crash(tmp_path):
    nuclei_csv, planes_csv = write_tables(tmp_path, [], [(0, 0), (0, 1), (1, 0)])
    assert planes_csv.read_text().splitlines()[1] == "0,0,0,1.0,,,0.1"  # empty means
    written = make_plots(tmp_path / "out", nuclei_csv, planes_csv, (100.0, 100.0), min_density_nuclei=0)
    assert [p.name for p in written] == ["area_histogram.png", "density_t0000.png",
                                         "density_t0001.png", "nuclei_per_plane.png"]
    for path in written:
        assert_picture(path)
    hist = area_histogram(nuclei_csv)
    assert hist.n == 0 and hist.counts.sum() == 0 and np.isnan(hist.median)
    density, _, _ = density_map(nuclei_csv, planes_csv, 0, (100.0, 100.0))
    assert not density.any()


def test_aborted_run_with_empty_files_does_not_crash(tmp_path):
    """A 0-byte nuclei file and a header-only planes table: units from the planes header."""
    nuclei_csv, planes_csv = tmp_path / "nuclei.csv", tmp_path / "planes.csv"
    nuclei_csv.write_text("")
    planes_csv.write_text(PLANES_HEADER["px"] + "\n")
    assert table_units(nuclei_csv, planes_csv).length == "px"
    written = make_plots(tmp_path / "out", nuclei_csv, planes_csv, (64.0, 64.0))
    assert [p.name for p in written] == ["area_histogram.png", "nuclei_per_plane.png"]
    for path in written:
        assert_picture(path)


def test_unknown_units_are_an_error(tmp_path):
    path = tmp_path / "nuclei.csv"
    path.write_text("time_point,z,label,centroid_x,centroid_y,area\n0,0,1,1,1,1\n")
    with pytest.raises(ValueError, match="area_um2"):
        table_units(path)


def test_module_does_not_touch_pyplot(tmp_path):
    """Importing and plotting leave pyplot (global state, GUI backends) alone."""
    nuclei_csv, planes_csv = write_tables(tmp_path, [(0, 0, 1.0, 1.0, 5.0)], [(0, 0)])
    code = ("import sys; from pathlib import Path\n"
            "from stardist_v4d.analysis.plots import make_plots\n"
            f"make_plots(Path({str(tmp_path / 'out')!r}), Path({str(nuclei_csv)!r}), "
            f"Path({str(planes_csv)!r}), (10.0, 10.0))\n"
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------ density numbers
def test_density_map_known_centroids_um(tmp_path):
    """10 nuclei in one 10 x 10 um bin over 2 planes -> 5 per 1e-4 mm² there, 0 elsewhere."""
    nuclei = [(0, i % 2, 70.0 + i, 20.5 + 0.5 * i, 50.0) for i in range(10)]  # x 70-79, y 20-25
    # time point 1: 6 nuclei in bin (row 9, col 0) over 3 planes, one of them empty
    nuclei += [(1, i % 2, 3.0, 95.0, 50.0) for i in range(6)]
    nuclei += [(5, 0, 50.0, 50.0, 50.0)]  # a time point without a segmented plane: ignored
    nuclei += [(0, 0, 150.0, 50.0, 50.0)]  # outside the field: ignored
    nuclei_csv, planes_csv = write_tables(tmp_path, nuclei,
                                          [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)])
    bin_area_mm2 = 10.0 * 10.0 / 1e6
    density, x_edges, y_edges = density_map(nuclei_csv, planes_csv, 0, (100.0, 100.0), bins=10,
                                            chunksize=3)
    np.testing.assert_allclose(x_edges, np.arange(0, 101, 10))
    np.testing.assert_allclose(y_edges, np.arange(0, 101, 10))
    expected = np.zeros((10, 10))
    expected[2, 7] = 5 / bin_area_mm2  # row = y bin (image orientation), column = x bin
    np.testing.assert_allclose(density, expected)
    density, _, _ = density_map(nuclei_csv, planes_csv, 1, (100.0, 100.0), bins=10)
    expected = np.zeros((10, 10))
    expected[9, 0] = 2 / bin_area_mm2  # 6 nuclei / 3 segmented planes
    np.testing.assert_allclose(density, expected)
    with pytest.raises(ValueError, match="time point 5"):
        density_map(nuclei_csv, planes_csv, 5, (100.0, 100.0), bins=10)


def test_density_map_px_units_non_square_field(tmp_path):
    """Pixel tables: per 10⁶ px²; square bins, 20 along the longer side, covering the field."""
    nuclei = [(2, z, 195.0, 5.0, 40.0) for z in (0, 1) for _ in range(5)]  # top-right bin
    nuclei += [(2, 0, 200.0, 100.0, 40.0)]  # on the far corner: the last bin
    nuclei_csv, planes_csv = write_tables(tmp_path, nuclei, [(2, 0), (2, 1)], unit="px")
    maps, n_planes, x_edges, y_edges = density_maps(nuclei_csv, planes_csv, (200.0, 100.0),
                                                    bins=20, chunksize=2)
    assert list(maps) == [2] and n_planes == {2: 2}
    assert x_edges.size == 21 and y_edges.size == 11
    assert x_edges[-1] == 200.0 and y_edges[-1] == 100.0
    per_bin = 1e6 / (10.0 * 10.0)  # one nucleus per plane in a 10 x 10 px bin, per 10⁶ px²
    expected = np.zeros((10, 20))
    expected[0, 19] = 5 * per_bin
    expected[9, 19] = 0.5 * per_bin
    np.testing.assert_allclose(maps[2], expected)


def test_density_grid_is_near_square_on_odd_fields(tmp_path):
    nuclei_csv, planes_csv = write_tables(tmp_path, [(0, 0, 1.0, 1.0, 5.0)], [(0, 0)])
    density, x_edges, y_edges = density_map(nuclei_csv, planes_csv, 0, (300.0, 200.0), bins=20)
    assert density.shape == (13, 20)
    assert (x_edges[0], x_edges[-1], y_edges[0], y_edges[-1]) == (0.0, 300.0, 0.0, 200.0)
    assert np.diff(y_edges)[0] / np.diff(x_edges)[0] == pytest.approx(1.0, abs=0.05)
    assert density.sum() * np.diff(x_edges)[0] * np.diff(y_edges)[0] / 1e6 == pytest.approx(1.0)


# ------------------------------------------------------------------ area histogram
def test_area_histogram_counts_each_nucleus_once_across_chunks(tmp_path):
    rng = np.random.default_rng(1)
    areas = rng.gamma(8.0, 10.0, 37)
    nuclei = [(i % 3, i % 2, 5.0, 5.0, float(a)) for i, a in enumerate(areas)]
    nuclei.append((0, 0, 5.0, 5.0, float("nan")))  # no area: not counted
    nuclei_csv, _ = write_tables(tmp_path, nuclei, [(0, 0)])
    whole = area_histogram(nuclei_csv, bins=50)
    for chunksize in (1, 3, 7):
        chunked = area_histogram(nuclei_csv, bins=50, chunksize=chunksize)
        np.testing.assert_array_equal(chunked.counts, whole.counts)
        assert chunked.n == 37 and chunked.counts.sum() == 37
    reference, edges = np.histogram(areas, bins=50)
    np.testing.assert_allclose(whole.edges, edges)
    np.testing.assert_array_equal(whole.counts, reference)
    assert whole.median == pytest.approx(np.median(areas), abs=np.ptp(areas) / 2000)
    assert whole.units.area_label == "µm²" and whole.units.length_label == "µm"


def test_area_histogram_of_identical_areas(tmp_path):
    nuclei_csv, _ = write_tables(tmp_path, [(0, 0, 1.0, 1.0, 42.0)] * 4, [(0, 0)], unit="px")
    hist = area_histogram(nuclei_csv, bins=10, chunksize=1)
    assert hist.n == 4 and hist.counts.sum() == 4
    assert hist.edges[0] < 42.0 < hist.edges[-1]
    assert hist.median == pytest.approx(42.0, abs=0.01)
    assert hist.units.area_label == "px²"


# ------------------------------------------------------------------ overlay
def test_overlay_outlines_are_coloured_at_full_resolution(tmp_path):
    overlay, boundary = disc_overlay()
    rgb = assert_picture(plot_overlay(overlay, tmp_path / "overlay.png", annotate=False))
    zoom = 500 // 120  # small planes are enlarged by a whole factor, pixels stay square
    assert rgb.shape[1] >= 120 * zoom and rgb.shape[0] >= 100 * zoom
    # the plane sits below the title; every outline pixel shows as zoom x zoom yellow
    # pixels in its place, and nothing else is yellow
    plane = rgb[-100 * zoom:]
    np.testing.assert_array_equal(yellow(plane), np.kron(boundary, np.ones((zoom, zoom), bool)))
    assert not yellow(rgb[:-100 * zoom]).any()
    inside = plane[~yellow(plane)]
    assert (np.ptp(inside, axis=1) == 0).all()  # the image itself is grey
    assert inside[:, 0].min() == 0.0 and inside[:, 0].max() == 1.0  # and contrast-stretched


def test_overlay_names_each_nucleus_and_has_a_scale_bar(tmp_path):
    overlay, _ = disc_overlay()
    plain = assert_picture(plot_overlay(overlay, tmp_path / "plain.png", annotate=False))
    marked = assert_picture(plot_overlay(overlay, tmp_path / "marked.png", pixel_size=0.5))
    assert plain.shape == marked.shape
    cyan = (marked[..., 0] < 0.3) & (marked[..., 1] > 0.9) & (marked[..., 2] > 0.9)
    assert cyan.sum() > 5                                     # the label IDs, in cyan
    white = (marked.min(axis=-1) > 0.99) & ~(plain.min(axis=-1) > 0.99)
    assert white[-40:].sum() > 50                             # the scale bar and its words, at the bottom


def test_overlay_without_nuclei_has_no_outline(tmp_path):
    overlay, _ = disc_overlay(labelled=False)
    assert not yellow(assert_picture(plot_overlay(overlay, tmp_path / "overlay.png"))).any()


def test_overlay_rgb_stretches_and_keeps_outlines_when_downscaled():
    overlay, boundary = disc_overlay()
    rgb = overlay_rgb(overlay)
    assert rgb.shape == (100, 120, 3) and rgb.dtype == np.uint8
    outline = np.all(rgb == (255, 255, 0), axis=2)
    np.testing.assert_array_equal(outline, boundary)
    grey = rgb[~outline]
    assert (grey[:, 0] == grey[:, 2]).all()
    assert grey[:, 0].min() == 0 and grey[:, 0].max() == 255  # stretched to 1-99.8 percentiles
    big = Overlay(np.tile(overlay.image, (1, 40)), np.tile(overlay.labels, (1, 40)), 0, 0)
    small = overlay_rgb(big)  # 4800 px wide -> block-reduced by 3
    assert small.shape == (34, 1600, 3)
    assert np.all(small == (255, 255, 0), axis=2).sum() >= 40 * 20


def test_overlay_rgb_in_strips_equals_the_whole_plane():
    """Strip-wise work (bounded memory) gives the same picture as one strip, halo included."""
    overlay, boundary = disc_overlay()
    whole = overlay_rgb(overlay, strip_rows=10_000)
    for strip_rows in (1, 7, 31):
        np.testing.assert_array_equal(overlay_rgb(overlay, strip_rows=strip_rows), whole)
    big = Overlay(np.tile(overlay.image, (1, 40)), np.tile(overlay.labels, (1, 40)), 0, 0)
    np.testing.assert_array_equal(overlay_rgb(big, strip_rows=5), overlay_rgb(big))


def test_overlay_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same"):
        overlay_rgb(Overlay(np.zeros((10, 10)), np.zeros((10, 11), np.int32), 0, 0))


def test_density_grid_is_one_diameter_and_the_kernel_two():
    area = np.pi * 5.0 ** 2                        # diameter 10 um
    assert smoothing_grid((600.0, 300.0), area) == (60, pytest.approx(20.0))
    assert smoothing_grid((50.0, 50.0), area)[0] == 10          # never fewer than 10 bins
    assert smoothing_grid((10_000.0, 50.0), area)[0] == 150     # never more than 150


def test_smoothed_density_keeps_the_mean_and_spreads_a_spike():
    x_edges, y_edges = np.linspace(0, 100, 51), np.linspace(0, 60, 31)
    uniform = np.full((30, 50), 7.0)
    np.testing.assert_allclose(smoothed(uniform, x_edges, y_edges, 10.0), 7.0)   # edges not diluted
    spike = np.zeros((30, 50))
    spike[15, 25] = 100.0
    smooth = smoothed(spike, x_edges, y_edges, 6.0)
    assert smooth.max() < 10 and smooth[15, 25] == smooth.max() and smooth[15, 28] > 0
    assert smooth.sum() == pytest.approx(100.0, rel=0.01)


def test_too_few_nuclei_make_no_density_map_and_say_so(tmp_path):
    rng = np.random.default_rng(0)
    nuclei, planes = random_run(rng, times=2, zs=2)
    nuclei_csv, planes_csv = write_tables(tmp_path, nuclei, planes)
    notes: list[str] = []
    written = make_plots(tmp_path / "plots", nuclei_csv, planes_csv, (300.0, 200.0), notes=notes)
    assert not [p for p in written if p.name.startswith("density")]
    assert len(notes) == 1 and notes[0].startswith(f"No density maps: {len(nuclei)} nuclei are too few")

