"""What we write, opened by the readers users' tools are built on.

bioio (with its OME-TIFF and OME-Zarr plugins) is what napari-bioio and many notebooks read
with; ome-types is the OME data model, and its ``validate=True`` checks the OME-XML against
the OME schema that Bio-Formats (Fiji, QuPath, OMERO) follows. Both install from the
package registries (the ``test`` extra); these tests fail, not skip, where they are missing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stardist_v4d.config import Config
from stardist_v4d.convert import convert
from stardist_v4d.host_api.ome_zarr import OmeZarrHost
from stardist_v4d.host_api.tiff import TiffHost
from stardist_v4d.pipeline.run import run
from test_ome_zarr import SIZE, models_dir, tiff  # noqa: F401  (fixtures: T2 Z3 C2, nuclei in channel 1)
from test_pipeline import read_tzcyx

pytestmark = pytest.mark.filterwarnings(          # bioio-ome-tiff's call into ome-types, not ours
    "ignore:As of version 0.4.0, the parser argument is ignored")

PIXEL_SIZE_UM = (0.5, 0.25, 2.0)                # x, y, z: what the ``tiff`` fixture wrote
NAMES = ["noise", "DAPI"]


def settings(models_dir: Path, source: Path, output: Path) -> Config:
    return Config(model2d_path=models_dir, model_name="tiny", input_path=source, output_path=output,
                  input_channel=1, current_time_point=False, workers=0, measure=False)


def test_the_ome_tiff_output_is_schema_valid_ome_and_bioio_reads_every_channel(tiff, models_dir, tmp_path):
    import ome_types
    import tifffile
    from bioio import BioImage

    path, stack = tiff
    output = tmp_path / "out.ome.tif"
    assert run(settings(models_dir, path, output), TiffHost(path, output, show_progress=False)).completed
    written = read_tzcyx(output)

    with tifffile.TiffFile(output) as tif:
        ome = ome_types.from_xml(tif.ome_metadata, validate=True)       # the OME schema: raises if invalid
    pixels = ome.images[0].pixels
    assert (pixels.size_t, pixels.size_z, pixels.size_c, pixels.size_y, pixels.size_x) == (2, 3, 3, SIZE, SIZE)
    assert [c.name for c in pixels.channels] == NAMES + ["StarDist"]
    assert (pixels.physical_size_x, pixels.physical_size_y, pixels.physical_size_z) == PIXEL_SIZE_UM
    assert pixels.type.value == "uint16"

    image = BioImage(output)
    assert (image.dims.T, image.dims.C, image.dims.Z, image.dims.Y, image.dims.X) == (2, 3, 3, SIZE, SIZE)
    assert list(image.channel_names) == NAMES + ["StarDist"]
    assert tuple(image.physical_pixel_sizes) == PIXEL_SIZE_UM[::-1]          # (Z, Y, X)
    data = image.get_image_data("TCZYX")
    np.testing.assert_array_equal(data[:, :2], stack.transpose(0, 2, 1, 3, 4))   # the input, untouched
    np.testing.assert_array_equal(data[:, 2], written[:, :, 2])               # the labels
    assert data[:, 2].max() > 3


def test_bioio_reads_the_zarr_image_and_label_store_with_every_pyramid_level(tiff, models_dir, tmp_path,
                                                                              monkeypatch):
    """PYRAMID_TOP_SIDE lowered (96 -> 48 -> 24 px): each level is a resolution level with its scale."""
    from bioio import BioImage
    from stardist_v4d.host_api import ngff_writer as module

    monkeypatch.setattr(module, "PYRAMID_TOP_SIDE", 30)
    path, stack = tiff
    store = convert(path, tmp_path / "in.ome.zarr", progress=False)
    labels = tmp_path / "labels.ome.zarr"
    host = OmeZarrHost(store, labels, show_progress=False)
    try:
        assert run(settings(models_dir, store, labels), host).completed
    finally:
        host.close()

    x, y, z = PIXEL_SIZE_UM
    for where, channels in ((store, NAMES), (labels, None)):
        image = BioImage(where)
        assert tuple(image.resolution_levels) == (0, 1, 2)
        if channels:
            assert list(image.channel_names) == channels
        for level, factor in enumerate((1, 2, 4)):
            image.set_resolution_level(level)
            assert image.shape[-2:] == (SIZE // factor, SIZE // factor)
            assert tuple(image.physical_pixel_sizes) == (z, y * factor, x * factor)
        image.set_resolution_level(0)
        data = image.get_image_data("TCZYX")
        if channels:
            np.testing.assert_array_equal(data, stack.transpose(0, 2, 1, 3, 4))
        else:
            tiff = tmp_path / "out.ome.tif"
            run(settings(models_dir, path, tiff), TiffHost(path, tiff, show_progress=False))
            np.testing.assert_array_equal(data[:, 0], read_tzcyx(tiff)[:, :, 2])   # the TIFF route's labels
