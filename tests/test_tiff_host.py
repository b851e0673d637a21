"""What the TIFF host promises: reading any TZCYX stack plane by plane, and writing
an OME-TIFF that keeps the input and adds the labels, safely. No TensorFlow here."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from stardist_v4d.demo.demo_stack import make_demo_stack, demo_ground_truth
from stardist_v4d.host_api.tiff import TiffHost, read_run_description

AXES_SUBSETS = ["YX", "ZYX", "TYX", "CYX", "TZCYX", "CZYX"]


def as_tzcyx(array: np.ndarray, axes: str) -> np.ndarray:
    """``array`` with axes reordered to TZCYX, missing axes of length 1."""
    for axis in "TZCYX":
        if axis not in axes:
            array, axes = array[np.newaxis], axis + axes
    return np.transpose(array, [axes.index(a) for a in "TZCYX"])


def assert_every_plane_matches(host: TiffHost, expected: np.ndarray) -> None:
    info = host.dataset_info()
    assert (info.size_t, info.size_z, info.size_c, info.size_y, info.size_x) == expected.shape
    for t in range(info.size_t):
        for z in range(info.size_z):
            for c in range(info.size_c):
                plane = host.read_plane(c, t, z)
                assert plane.dtype == expected.dtype and plane.shape == info.plane_shape
                np.testing.assert_array_equal(plane, expected[t, z, c])


def run(host: TiffHost, dtype=np.uint16, description=None):
    """A stand-in pipeline: label plane (t, z) is filled with ``t * 10 + z + 1``."""
    info = host.dataset_info()
    target = host.add_channel("StarDist labels", dtype, description)
    for t in range(info.size_t):
        for z in range(info.size_z):
            host.write_plane(target.channel, t, z, np.full(info.plane_shape, t * 10 + z + 1))
    return target, host.finish(True)


# ---------------------------------------------------------------------- input
@pytest.mark.parametrize("compression", [None, "zlib"], ids=["contiguous", "compressed"])
@pytest.mark.parametrize("fmt", ["ome", "imagej"])
@pytest.mark.parametrize("axes", AXES_SUBSETS)
def test_axes_subsets_are_read_plane_by_plane(tmp_path, write_stack, random_stack, axes, fmt,
                                              compression):
    array = random_stack(axes)
    path = write_stack(tmp_path / "in.tif", array, axes, fmt, compression=compression)
    with TiffHost(path, tmp_path / "out.ome.tif", show_progress=False) as host:
        assert_every_plane_matches(host, as_tzcyx(array, axes))


@pytest.mark.parametrize("compression", [None, "zlib"], ids=["memmap", "pages"])
def test_read_plane_never_loads_the_whole_stack(tmp_path, write_stack, random_stack,
                                                monkeypatch, compression):
    array = random_stack("TZCYX")
    path = write_stack(tmp_path / "in.ome.tif", array, "TZCYX", compression=compression)

    def whole_stack(*args, **kwargs):
        raise AssertionError("the whole stack was read")
    monkeypatch.setattr(tifffile.TiffFile, "asarray", whole_stack)
    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", whole_stack)
    monkeypatch.setattr(tifffile, "imread", whole_stack)
    with TiffHost(path, tmp_path / "out.ome.tif", show_progress=False) as host:
        assert (host._stack._memmap is not None) == (compression is None)   # the path under test
        assert_every_plane_matches(host, array)


def test_truncated_imagej_hyperstack_is_read_through_a_memory_map(tmp_path, write_stack,
                                                                  random_stack):
    array = random_stack("TZCYX")
    path = write_stack(tmp_path / "big.tif", array, "TZCYX", "imagej", truncate=True)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1          # only the first IFD, as ImageJ writes > 4 GiB
    with TiffHost(path, tmp_path / "out.ome.tif", show_progress=False) as host:
        assert_every_plane_matches(host, array)


def test_plain_multipage_tiff_pages_are_z_planes(tmp_path, random_stack):
    array = random_stack("ZYX")
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tif:
        for plane in array:
            tif.write(plane, photometric="minisblack", metadata=None)
    with TiffHost(path, tmp_path / "out.ome.tif", show_progress=False) as host:
        assert_every_plane_matches(host, as_tzcyx(array, "ZYX"))


@pytest.mark.parametrize("planar", ["contig", "separate"])
def test_rgb_samples_are_read_as_channels(tmp_path, random_stack, planar):
    array = random_stack("ZYXS", "uint8")
    data, axes = (array, "ZYXS") if planar == "contig" else (np.moveaxis(array, -1, 1), "ZSYX")
    path = tmp_path / "rgb.ome.tif"
    tifffile.imwrite(path, data, photometric="rgb", planarconfig=planar, metadata={"axes": axes})
    with TiffHost(path, tmp_path / "out.ome.tif", show_progress=False) as host:
        assert_every_plane_matches(host, as_tzcyx(np.moveaxis(array, -1, 0), "CZYX"))


def test_big_endian_input_is_read_in_native_byte_order(tmp_path, random_stack):
    array = random_stack("ZCYX")
    path = tmp_path / "be.ome.tif"
    tifffile.imwrite(path, array, byteorder=">", photometric="minisblack",
                     metadata={"axes": "ZCYX"})
    with TiffHost(path, tmp_path / "out.ome.tif", show_progress=False) as host:
        assert host.dataset_info().dtype == np.dtype("=u2")
        assert_every_plane_matches(host, as_tzcyx(array, "ZCYX"))


def test_unsupported_axes_are_named_in_the_error(tmp_path, random_stack):
    path = tmp_path / "lambda.tif"
    tifffile.imwrite(path, random_stack("ZYX"), photometric="minisblack",
                     metadata={"axes": "EYX"})
    with pytest.raises(ValueError, match=r"'EYX'.*E not supported.*T, Z, C, Y, X"):
        TiffHost(path, tmp_path / "out.ome.tif")


def test_read_plane_rejects_out_of_range_indices(tmp_path, write_stack, random_stack):
    path = write_stack(tmp_path / "in.ome.tif", random_stack("ZYX"), "ZYX")
    with TiffHost(path, tmp_path / "out.ome.tif") as host:
        with pytest.raises(IndexError, match="z 3 is out of range 0..2"):
            host.read_plane(0, 0, 3)
        with pytest.raises(IndexError, match="channel 1"):
            host.read_plane(1, 0, 0)


@pytest.mark.parametrize("fmt", ["ome", "imagej"])
def test_channel_names_and_pixel_sizes_are_read(tmp_path, write_stack, random_stack, fmt):
    path = write_stack(tmp_path / "in.tif", random_stack("TZCYX"), "TZCYX", fmt,
                       channel_names=["DAPI", "GFP"], pixel_size_um=(0.25, 0.5, 2.0))
    with TiffHost(path, tmp_path / "out.ome.tif", time_point=1) as host:
        info = host.dataset_info()
    assert info.channel_names == ("DAPI", "GFP")
    assert info.pixel_size_um == pytest.approx((0.25, 0.5, 2.0))
    assert info.active_time_point == 1 and info.source == str(path)


@pytest.mark.parametrize("fmt", ["ome", "imagej"])
def test_missing_names_and_pixel_sizes_have_defaults(tmp_path, write_stack, random_stack, fmt):
    path = write_stack(tmp_path / "in.tif", random_stack("CYX"), "CYX", fmt)
    with TiffHost(path, tmp_path / "out.ome.tif") as host:
        info = host.dataset_info()
    assert info.channel_names == ("C0", "C1")
    assert info.pixel_size_um == (None, None, None)


def test_pixel_size_units_are_converted_to_micrometres(tmp_path, random_stack):
    ome = tmp_path / "nm.ome.tif"
    tifffile.imwrite(ome, random_stack("ZYX"), metadata={
        "axes": "ZYX", "PhysicalSizeX": 250, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 250,
        "PhysicalSizeYUnit": "nm", "PhysicalSizeZ": 0.001, "PhysicalSizeZUnit": "mm"})
    imagej = tmp_path / "ij.tif"
    tifffile.imwrite(imagej, random_stack("ZYX"), imagej=True, resolution=(0.004, 0.004),
                     metadata={"axes": "ZYX", "unit": "nm", "spacing": 1000})
    for path in (ome, imagej):
        with TiffHost(path, tmp_path / "out.ome.tif") as host:
            assert host.dataset_info().pixel_size_um == pytest.approx((0.25, 0.25, 1.0))


# --------------------------------------------------------------------- output
@pytest.mark.parametrize("in_dtype, out_dtype", [("uint8", "uint16"), ("uint16", "uint16"),
                                                 ("float32", "float32")])
def test_output_keeps_input_values_and_appends_named_label_channel(
        tmp_path, write_stack, random_stack, in_dtype, out_dtype):
    array = random_stack("TZCYX", in_dtype)
    path = write_stack(tmp_path / "in.tif", array, "TZCYX", "imagej", channel_names=["a", "b"])
    out = tmp_path / "out.ome.tif"
    with TiffHost(path, out, show_progress=False) as host:
        target, result = run(host, out_dtype)
    assert target.channel == 2 and result.channel == 2
    assert result.complete and result.location == str(out)
    with tifffile.TiffFile(out) as tif:
        written, axes = tif.series[0].asarray(), tif.series[0].axes
    assert axes == "TZCYX" and written.dtype == np.dtype(out_dtype)
    np.testing.assert_array_equal(written[:, :, :2], array)
    expected = np.arange(2)[:, None] * 10 + np.arange(3)[None, :] + 1
    np.testing.assert_array_equal(written[:, :, 2, 0, 0], expected)
    with TiffHost(out, tmp_path / "again.ome.tif") as host:
        assert host.dataset_info().channel_names == ("a", "b", "StarDist labels")


def test_output_is_tzcyx_even_for_a_single_plane(tmp_path, write_stack, random_stack):
    array = random_stack("YX")
    path = write_stack(tmp_path / "in.ome.tif", array, "YX")
    out = tmp_path / "out.ome.tif"
    with TiffHost(path, out, show_progress=False) as host:
        run(host)
    with tifffile.TiffFile(out) as tif:
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        written = tif.series[0].asarray()
    sizes = tuple(pixels[f"Size{axis}"] for axis in "TZCYX")
    assert sizes == (1, 1, 2) + array.shape
    np.testing.assert_array_equal(written[0], array)


def test_output_keeps_pixel_sizes(tmp_path, write_stack, random_stack):
    path = write_stack(tmp_path / "in.tif", random_stack("ZYX"), "ZYX", "imagej",
                       pixel_size_um=(0.3, 0.3, 1.5))
    out = tmp_path / "out.ome.tif"
    with TiffHost(path, out, show_progress=False) as host:
        run(host)
    with TiffHost(out, tmp_path / "again.ome.tif") as host:
        assert host.dataset_info().pixel_size_um == pytest.approx((0.3, 0.3, 1.5))


def test_large_outputs_are_written_as_bigtiff(tmp_path, write_stack, random_stack, monkeypatch):
    monkeypatch.setattr("stardist_v4d.host_api.tiff.BIGTIFF_BYTES", 0)   # "large" = any size
    array = random_stack("ZCYX")
    path = write_stack(tmp_path / "in.ome.tif", array, "ZCYX")
    out = tmp_path / "out.ome.tif"
    with TiffHost(path, out, show_progress=False) as host:
        run(host)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff and tif.is_ome
        np.testing.assert_array_equal(tif.series[0].asarray()[:, :2], array)


def test_output_dtype_must_hold_the_input_values(tmp_path, write_stack, random_stack):
    path = write_stack(tmp_path / "in.ome.tif", random_stack("YX", "float32"), "YX")
    with TiffHost(path, tmp_path / "out.ome.tif") as host:
        with pytest.raises(ValueError, match="cannot hold"):
            host.add_channel("labels", np.uint16)


def test_labels_only_go_to_the_label_channel(tmp_path, write_stack, random_stack):
    path = write_stack(tmp_path / "in.ome.tif", random_stack("CYX"), "CYX")
    with TiffHost(path, tmp_path / "out.ome.tif", show_progress=False) as host:
        host.add_channel("labels", np.uint16)
        with pytest.raises(ValueError, match="holds input data"):
            host.write_plane(0, 0, 0, np.zeros((8, 6)))
        with pytest.raises(IndexError, match="time point -1"):
            host.write_plane(2, -1, 0, np.zeros((8, 6)))
        with pytest.raises(ValueError, match="shape"):
            host.write_plane(2, 0, 0, np.zeros((6, 8)))
        first = host.finish(False)
        assert host.finish(False) is first       # finishing twice is harmless


def test_input_file_is_never_modified(tmp_path, write_stack, random_stack):
    path = write_stack(tmp_path / "in.tif", random_stack("TZCYX"), "TZCYX", "imagej")
    def sha256() -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    before, mtime = sha256(), path.stat().st_mtime_ns
    with TiffHost(path, tmp_path / "out.ome.tif", show_progress=False) as host:
        run(host)
    assert sha256() == before and path.stat().st_mtime_ns == mtime


def test_output_path_equal_to_input_is_refused(tmp_path, write_stack, random_stack):
    path = write_stack(tmp_path / "in.ome.tif", random_stack("YX"), "YX")
    for output in (path, tmp_path / "." / "in.ome.tif"):
        with pytest.raises(ValueError, match="is the input file"):
            TiffHost(path, output, overwrite=True)


def test_existing_output_needs_overwrite(tmp_path, write_stack, random_stack):
    path = write_stack(tmp_path / "in.ome.tif", random_stack("ZYX"), "ZYX")
    out = tmp_path / "out.ome.tif"
    out.write_bytes(b"previous result")
    with pytest.raises(FileExistsError) as error:
        TiffHost(path, out)
    message = str(error.value)
    assert str(out) in message and "--overwrite" in message and "\n" not in message
    with TiffHost(path, out, overwrite=True, show_progress=False) as host:
        run(host)
    assert tifffile.imread(out).shape == (3, 2, 8, 6)


def test_stopped_run_keeps_partial_file_with_written_planes(tmp_path, write_stack, random_stack):
    path = write_stack(tmp_path / "in.ome.tif", random_stack("TZCYX"), "TZCYX")
    out = tmp_path / "out.ome.tif"
    host = TiffHost(path, out, show_progress=False)
    target = host.add_channel("labels", np.uint16)
    assert target.location == str(out) + ".partial"
    host.write_plane(target.channel, 0, 0, np.full((8, 6), 7))
    host.commit_plane(0, 0, 1, {})
    host.write_plane(target.channel, 1, 2, np.full((8, 6), 9))
    host.commit_plane(1, 2, 1, {})
    on_disk = tifffile.imread(target.location)   # written planes are on disk before finish
    assert on_disk[0, 0, 2, 0, 0] == 7 and on_disk[1, 2, 2, 0, 0] == 9
    result = host.finish(completed=False)
    host.close()
    assert not out.exists() and not result.complete
    assert result.location == target.location
    assert any("stopped" in note for note in result.notes)
    assert any(target.location in note for note in result.notes)
    labels = tifffile.imread(target.location)[:, :, 2]
    assert labels[0, 0].min() == 7 and labels[1, 2].min() == 9
    assert np.count_nonzero(labels.reshape(6, -1).any(axis=1)) == 2
    with TiffHost(path, out) as again:        # the kept planes are resumed, not replaced
        again.check_output("labels")
        assert again.completed_planes() == {(0, 0): 1, (1, 2): 1}


def test_a_run_that_completes_no_plane_leaves_nothing_behind(tmp_path, write_stack, random_stack):
    path = write_stack(tmp_path / "in.ome.tif", random_stack("TZCYX"), "TZCYX")
    out = tmp_path / "out.ome.tif"
    with TiffHost(path, out, show_progress=False) as host:
        target = host.add_channel("labels", np.uint16)
        host.write_plane(target.channel, 0, 0, np.full((8, 6), 7))     # written, never committed
        result = host.finish(completed=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ome.tif"]
    assert "nothing was kept" in result.notes[0]


def test_run_stopped_before_any_output_reports_it(tmp_path, write_stack, random_stack):
    path = write_stack(tmp_path / "in.ome.tif", random_stack("YX"), "YX")
    with TiffHost(path, tmp_path / "out.ome.tif") as host:
        result = host.finish(False)
    assert not result.complete and "before any output" in result.notes[0]
    assert list(tmp_path.iterdir()) == [path]


def test_run_description_is_recorded(tmp_path, write_stack, random_stack):
    path = write_stack(tmp_path / "in.ome.tif", random_stack("ZYX"), "ZYX")
    out = tmp_path / "out.ome.tif"
    description = {"model": "2D_demo", "prob_thresh": "0.5", "Description": "a <b> & 'c'",
                   "stardist": "0.9.2"}
    with TiffHost(path, out, show_progress=False) as host:
        run(host, description=description)
    assert read_run_description(out) == description
    assert read_run_description(path) == {}


def test_progress_bar_shows_only_when_asked(tmp_path, write_stack, random_stack, capsys):
    path = write_stack(tmp_path / "in.ome.tif", random_stack("ZYX"), "ZYX")
    for show, out in ((False, "quiet.ome.tif"), (True, "loud.ome.tif")):
        with TiffHost(path, tmp_path / out, show_progress=show) as host:
            host.add_channel("labels", np.uint16)
            for done in range(1, 4):
                host.report_progress(done, 3)
                host.log(f"plane {done} done")
            assert not host.cancelled()
            host.finish(True)
        captured = capsys.readouterr()
        assert ("3/3" in captured.err) == show
        assert "plane 3 done" in captured.out


def test_tiff_host_does_not_import_tensorflow():
    code = ("import sys, stardist_v4d.host_api.tiff, stardist_v4d.demo.demo_stack; "
            "print(any(m.split('.')[0] in ('tensorflow', 'stardist', 'csbdeep') "
            "for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


# ----------------------------------------------------------------------- demo
def test_demo_stack_is_seeded_and_tzcyx(tmp_path):
    first = make_demo_stack(tmp_path / "a.ome.tif", seed=3)
    second = make_demo_stack(tmp_path / "b.ome.tif", seed=3)
    np.testing.assert_array_equal(tifffile.imread(first), tifffile.imread(second))
    with TiffHost(first, tmp_path / "out.ome.tif") as host:
        info = host.dataset_info()
        assert (info.size_t, info.size_z, info.size_c, info.size_y, info.size_x) == (3, 5, 2, 256, 256)
        assert info.dtype == np.uint16 and info.channel_names == ("Nuclei", "Membrane")
        assert info.pixel_size_um == pytest.approx((0.5, 0.5, 2.0))
        nuclei = host.read_plane(0, 1, 2)
    truth = demo_ground_truth(seed=3)
    assert truth.shape == (3, 5, 256, 256) and truth.dtype == np.uint16
    ids = np.unique(truth[truth > 0])
    assert 20 <= len(ids) <= 60                # the real image's nuclei inside the 256 x 256 window
    for label in ids:                          # each nucleus spans 2-3 neighbouring planes where it is seen
        for t in range(3):
            planes = [z for z in range(5) if (truth[t, z] == label).any()]
            assert not planes or (2 <= len(planes) <= 3 and planes == list(range(planes[0], planes[-1] + 1)))
    inside = truth[1, 2] > 0
    assert nuclei[inside].mean() > 2 * nuclei[~inside].mean()
    # the window drifts: the same nucleus sits elsewhere at the next time point
    first = ids[len(ids) // 2]
    centres = [np.argwhere(truth[t].max(axis=0) == first).mean(axis=0) for t in range(3)
               if (truth[t] == first).any()]
    assert len(centres) >= 2 and np.linalg.norm(centres[1] - centres[0]) > 2
    assert not np.array_equal(truth, demo_ground_truth(seed=4))
