"""How a TIFF's layout is read: axes declared or assumed (and said), pages beyond the declared
planes, X stored before Y, absurd plane counts refused at once."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile


def test_plain_pages_are_said_to_be_taken_as_z_and_axes_declares_them(tmp_path):
    """A multi-page TIFF without metadata: Z assumed in one line; AXES makes them time points."""
    from stardist_v4d.config import ConfigError, build_config
    from stardist_v4d.host_api.tiff_reader import TiffStack
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.arange(4 * 16 * 16, dtype=np.uint16).reshape(4, 16, 16), metadata=None,
                    photometric="minisblack")
    with TiffStack(path) as stack:
        info = stack.dataset_info()
        assert (info.size_t, info.size_z) == (1, 4)
        assert len(stack.notes) == 1
        assert "does not say what its 4 pages are" in stack.notes[0] and "'TYX' or 'CYX'" in stack.notes[0]
    with TiffStack(path, axes="TYX") as stack:
        info = stack.dataset_info()
        assert (info.size_t, info.size_z, stack.notes) == (4, 1, [])
        assert stack.read_plane(0, 2, 0)[0, 0] == 2 * 256
    with TiffStack(path, axes="cyx") as stack:
        assert stack.dataset_info().size_c == 4
    with pytest.raises(Exception, match=r"AXES \(--axes\) = 'TZCYX' names 5 axes, but the image .* has 3 \(4 x 16 x 16"):
        TiffStack(path, axes="TZCYX")
    with pytest.raises(ConfigError, match=r"AXES \(--axes\) = 'TZQYX': must be None or the TIFF's axes"):
        build_config({}, ["--input", str(path), "--axes", "TZQYX"])


@pytest.mark.parametrize("compression", [None, "zlib"])          # memory-mapped and decoded pages
def test_a_tiff_stored_x_before_y_is_read_as_y_x_planes(tmp_path, compression):
    from stardist_v4d.host_api.tiff_reader import TiffStack
    zxy = np.arange(3 * 30 * 20, dtype=np.uint16).reshape(3, 30, 20)
    path = tmp_path / "zxy.tif"
    tifffile.imwrite(path, zxy, photometric="minisblack", metadata={"axes": "ZXY"}, compression=compression)
    with TiffStack(path) as stack:
        info = stack.dataset_info()
        assert (info.size_z, info.size_y, info.size_x) == (3, 20, 30)
        for z in range(3):
            np.testing.assert_array_equal(stack.read_plane(0, 0, z), zxy[z].T)


def test_pages_beyond_what_the_metadata_declares_are_said(tmp_path):
    """An ImageJ file saying images=2 that holds 4 pages: 2 planes are read, and a line says so."""
    from stardist_v4d.host_api.tiff_reader import TiffStack
    path = tmp_path / "short.tif"
    tifffile.imwrite(path, np.zeros((4, 16, 16), np.uint16), imagej=True, metadata={"axes": "ZYX"})
    with tifffile.TiffFile(path, mode="r+b") as tif:     # the description now says 2 planes; 4 pages stay
        tag = tif.pages[0].tags["ImageDescription"]
        tag.overwrite(tag.value.replace("images=4", "images=2").replace("slices=4", "slices=2"))
    with TiffStack(path) as stack:
        assert stack.dataset_info().size_z == 2
        assert [n for n in stack.notes if "holds 4 pages but its metadata describes 2 plane(s)" in n]


def test_a_compressed_file_declaring_a_billion_planes_is_refused_at_once(tmp_path):
    import time
    from stardist_v4d.host_api.tiff_problems import BadTiffError
    from stardist_v4d.host_api.tiff_reader import TiffStack
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, np.zeros((4, 16, 16), np.uint16), imagej=True, metadata={"axes": "ZYX"}, compression="zlib")
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tag = tif.pages[0].tags["ImageDescription"]
        tag.overwrite(tag.value.replace("images=4", "images=999999999").replace("slices=4", "slices=999999999"))
    started = time.monotonic()
    with pytest.raises(BadTiffError, match=r"declares 999999999 planes but holds 4 compressed page\(s\); copy or export"):
        TiffStack(path)
    assert time.monotonic() - started < 30                  # not tifffile's minutes-long series walk
