"""Unusual pixels in TIFF inputs: palettes, bool, small, signed, 64-bit and complex types.

Palette images are refused unless ImageJ wrote them (then read as their values), bool is read
as uint8, small and signed types are widened and copied exactly, 64-bit integers and complex
values are refused in one line naming the file and the type.
"""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

from stardist_v4d.host_api.tiff import TiffHost
from stardist_v4d.host_api.tiff_reader import TiffStack
from stardist_v4d.pipeline.plan import output_dtype
from test_bad_inputs_tiff import PLANES, colormap, decodes_fixture, refused, stack  # noqa: F401 (a fixture)


# ------------------------------------------------------------------- palette
def test_a_palette_image_is_refused_with_how_to_convert_it(tmp_path, decodes):
    bad = tmp_path / "in.tif"
    tifffile.imwrite(bad, stack("uint8"), photometric="palette", colormap=colormap())
    message = refused(bad, decodes)
    assert "is a palette (indexed-colour) image" in message
    assert "Image > Type > 8-bit" in message and "RGB Color" in message


def test_an_imagej_palette_image_is_read_as_its_pixel_values(tmp_path):
    """ImageJ saves an 8-bit image with a colour LUT as a palette TIFF; its values are the data."""
    array = stack("uint8")
    path = tmp_path / "lut.tif"
    tifffile.imwrite(path, array, imagej=True, photometric="palette", colormap=colormap(),
                     metadata={"axes": "ZYX"})
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.pages.first.photometric == tifffile.PHOTOMETRIC.PALETTE
    with TiffStack(path) as tif:
        assert tif.dataset_info().dtype == np.uint8
        for z in range(PLANES):
            np.testing.assert_array_equal(tif.read_plane(0, 0, z), array[z])


# --------------------------------------------------------------- pixel types
def test_bool_input_is_read_as_uint8_and_written_as_uint16(tmp_path):
    array = stack() > 30000
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, array, photometric="minisblack")
    with TiffStack(path) as tif:
        info = tif.dataset_info()
        assert info.dtype == np.uint8
        for z in range(PLANES):
            plane = tif.read_plane(0, 0, z)
            assert plane.dtype == np.uint8
            np.testing.assert_array_equal(plane, array[z].astype(np.uint8))
    assert output_dtype(info.dtype) == np.uint16
    assert output_dtype(np.dtype(bool)) == np.uint16


@pytest.mark.parametrize("dtype, expected", [("float16", "float32"), ("int8", "int32"),
                                             ("int16", "int32"), ("uint32", "uint32")])
def test_small_and_signed_types_are_widened_and_copied_exactly(tmp_path, dtype, expected):
    array = (stack("int32") - 30000).astype(dtype) if dtype[0] == "i" else stack(dtype)
    path = tmp_path / f"{dtype}.tif"
    tifffile.imwrite(path, array, photometric="minisblack", metadata={"axes": "ZYX"})
    out = tmp_path / "out.ome.tif"
    with TiffHost(path, out, show_progress=False) as host:
        info = host.dataset_info()
        assert info.dtype == np.dtype(dtype)
        target = output_dtype(info.dtype)
        assert target == np.dtype(expected)
        host.add_channel("labels", target)
        host.finish(True)
    with tifffile.TiffFile(out) as tif:
        written, axes = tif.series[0].asarray(), tif.series[0].axes
    assert axes == "ZCYX" and written.dtype == np.dtype(expected)
    np.testing.assert_array_equal(written[:, 0], array)          # the input, exactly


@pytest.mark.parametrize("dtype", ["int64", "uint64"])
def test_64_bit_integers_are_read_exactly_but_a_run_refuses_them(tmp_path, dtype):
    """``measure`` reads numpy's int64 label files; no output type holds them, so a run refuses."""
    array = stack(dtype) * (2 ** 40)
    path = tmp_path / f"{dtype}.tif"
    tifffile.imwrite(path, array, photometric="minisblack", metadata={"axes": "ZYX"})
    with TiffStack(path) as tif:
        info = tif.dataset_info()
        np.testing.assert_array_equal(tif.read_plane(0, 0, 2), array[2])
    for label_dtype in ("auto", "float32", "uint32"):
        with pytest.raises(ValueError) as error:
            output_dtype(info.dtype, label_dtype, source=info.source)
        message = str(error.value)
        assert message.startswith(f"{path} has {dtype} pixels") and "\n" not in message
        assert "OME-TIFF has no 64-bit integers" in message and "uint16, uint32 or int32" in message


def test_complex_input_is_refused_naming_the_type(tmp_path, decodes):
    bad = tmp_path / "fft.tif"
    tifffile.imwrite(bad, stack("complex64"), photometric="minisblack")
    message = refused(bad, decodes)
    assert "has complex pixels (complex64)" in message and "float32" in message
    with pytest.raises(ValueError, match="complex pixels"):
        output_dtype(np.dtype("complex64"))


def test_a_folder_is_named_as_a_folder(tmp_path):
    with pytest.raises(IsADirectoryError) as error:
        TiffStack(tmp_path)
    assert str(error.value) == (f"Input {tmp_path} is a folder; give one TIFF file "
                                "(.tif, .tiff, .ome.tif), not the folder that holds it.")
