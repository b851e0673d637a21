"""OME-Zarr in and out: ``convert`` round-trips exactly; labels equal the TIFF route's."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ome_zarr")

from conftest import write_stack  # noqa: E402
from model_factory import tiny_models_dir  # noqa: E402
from stardist_v4d.config import Config, ConfigError, build_config  # noqa: E402
from stardist_v4d.convert import convert  # noqa: E402
from stardist_v4d.host_api.base import HostError  # noqa: E402
from stardist_v4d.host_api.ome_zarr import OmeZarrHost, OmeZarrImage, store_description  # noqa: E402
from stardist_v4d.host_api.tiff import TiffHost  # noqa: E402
from stardist_v4d.pipeline.run import run  # noqa: E402
from test_pipeline import nuclei_stack, read_tzcyx  # noqa: E402

SIZE = 96


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tiny_models_dir(tmp_path_factory, SIZE)


@pytest.fixture(scope="module")
def tiff(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """T=2, Z=3, C=2 OME-TIFF with names and a pixel size; nuclei in channel 1."""
    nuclei = nuclei_stack((2, 3, SIZE, SIZE), seed=3)
    noise = np.random.default_rng(2).integers(0, 300, nuclei.shape).astype(nuclei.dtype)
    stack = np.stack([noise, nuclei], axis=2)
    path = tmp_path_factory.mktemp("tiff") / "in.ome.tif"
    write_stack(path, stack, "TZCYX", channel_names=["noise", "DAPI"], pixel_size_um=(0.5, 0.25, 2.0))
    return path, stack


@pytest.fixture(scope="module")
def store(tiff, tmp_path_factory) -> Path:
    return convert(tiff[0], tmp_path_factory.mktemp("zarr") / "in.ome.zarr", progress=False)


def chunk_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_convert_round_trips_values_names_and_scale(tiff, store):
    _, stack = tiff
    image = OmeZarrImage(store)
    info = image.info
    assert (info.size_t, info.size_z, info.size_c, info.size_y, info.size_x) == (2, 3, 2, SIZE, SIZE)
    assert info.channel_names == ("noise", "DAPI") and info.dtype == stack.dtype
    assert info.pixel_size_um == (0.5, 0.25, 2.0)
    for t in range(2):
        for c in range(2):
            for z in range(3):
                np.testing.assert_array_equal(image.read_plane(c, t, z), stack[t, z, c])
    assert image.array.chunks == (1, 1, 1, SIZE, SIZE)
    assert not (store.parent / "in.ome.zarr.partial").exists()


def run_zarr(store: Path, output: Path, models_dir: Path, **settings):
    config = Config(model2d_path=models_dir, model_name="tiny", input_path=store, output_path=output,
                    input_channel=1, current_time_point=False, workers=0, **settings)
    host = OmeZarrHost(store, output, show_progress=False)
    try:
        return run(config, host)
    finally:
        host.close()


def test_zarr_in_zarr_out_labels_equal_the_tiff_route_and_the_input_is_untouched(tiff, store, models_dir, tmp_path):
    import zarr
    source, _ = tiff
    expected_path = tmp_path / "tiff_out.ome.tif"
    run(Config(model2d_path=models_dir, model_name="tiny", input_path=source, output_path=expected_path,
               input_channel=1, current_time_point=False, workers=0, measure=False),
        TiffHost(source, expected_path, show_progress=False))
    expected = read_tzcyx(expected_path)[:, :, 2]
    before = chunk_hashes(store)
    output = tmp_path / "labels.ome.zarr"
    summary = run_zarr(store, output, models_dir)
    assert summary.completed and expected.max() > 3
    labels = zarr.open_array(str(output / "0"), mode="r")
    np.testing.assert_array_equal(labels[:], expected)
    assert labels.chunks == (1, 1, SIZE, SIZE)
    assert chunk_hashes(store) == before
    attrs = json.loads((output / ".zattrs").read_text())
    multiscale = attrs["multiscales"][0]
    assert [a["name"] for a in multiscale["axes"]] == ["t", "z", "y", "x"]
    assert multiscale["datasets"][0]["coordinateTransformations"][0]["scale"][1:] == [2.0, 0.25, 0.5]
    assert "image-label" in attrs and store_description(output)["setting.model_name"] == "tiny"
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader          # what napari-ome-zarr reads with
    nodes = list(Reader(parse_url(str(output)))())          # the labels, and the image they name as source
    node = next(n for n in nodes if Path(n.zarr.path.rstrip("/")).name == output.name)
    assert node.load(Multiscales) is not None and node.data[0].shape == expected.shape
    assert any(Path(n.zarr.path.rstrip("/")).name == store.name for n in nodes)
    assert (tmp_path / "labels_nuclei.csv").exists() and (tmp_path / "labels_rois.zip").exists()


def test_the_cli_runs_on_a_store_with_the_default_output_name(store, models_dir):
    target = store.with_name("in_stardist.ome.zarr")
    done = subprocess.run([sys.executable, "-m", "stardist_v4d", "run", "--input", str(store), "--channel", "1",
                           "--model-path", str(models_dir), "--model", "tiny", "--no-measure", "--workers", "0",
                           "--overwrite"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"-> {target}" in done.stdout and (target / "0").is_dir()


def test_zarr_settings_are_one_line(store, tmp_path, models_dir):
    common = {"MODEL2D_PATH": models_dir, "MODEL_NAME": "tiny"}
    with pytest.raises(ConfigError, match=r"OUTPUT \(--output\) = .*out\.ome\.tif.*must end in \.ome\.zarr"):
        build_config(common, ["--input", str(store), "--output", str(tmp_path / "out.ome.tif")])
    with pytest.raises(ConfigError, match=r"INPUT \(--input\) = .*missing\.ome\.zarr.*no such OME-Zarr folder"):
        build_config(common, ["--input", str(tmp_path / "missing.ome.zarr")])
    with pytest.raises(ConfigError, match="is the input"):
        build_config(common, ["--input", str(store), "--output", str(store)])


def test_convert_command_refuses_in_one_line(tiff, tmp_path):
    done = subprocess.run([sys.executable, "-m", "stardist_v4d", "convert", str(tiff[0]), str(tmp_path / "x.tif")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"error: output {tmp_path / 'x.tif'} must end in .ome.zarr or .zarr"]


def test_every_store_we_write_is_valid_ngff_and_opens_as_napari_reads_it(store, models_dir, tmp_path):
    """ome-zarr-models validates the converted image and the label store; ome-zarr's Reader (what
    napari-ome-zarr reads with) finds colours and windows, and the labels' source image."""
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr_models.v04.image import Image
    from ome_zarr_models.v04.image_label import ImageLabel

    image = Image.from_zarr(zarr.open_group(str(store), mode="r"))
    channels = image.attributes.omero.channels
    assert [c.label for c in channels] == ["noise", "DAPI"] and all(c.color and c.window for c in channels)
    assert channels[1].window.end > channels[1].window.start >= 0
    node = next(iter(Reader(parse_url(str(store)))()))
    assert len(node.metadata["colormap"]) == 2 and node.metadata["contrast_limits"][1][1] > 0
    output = tmp_path / "labels.ome.zarr"
    assert run_zarr(store, output, models_dir, measure=False).completed
    labels = ImageLabel.from_zarr(zarr.open_group(str(output), mode="r"))
    source = labels.attributes.image_label.source.image
    assert (output / source).resolve() == store.resolve()


def test_a_damaged_chunk_and_an_impossible_plane_size_are_one_line(store, tmp_path):
    import shutil as sh

    import zarr
    damaged = tmp_path / "damaged.ome.zarr"
    sh.copytree(store, damaged)
    chunk = next(p for p in sorted((damaged / "0").rglob("*")) if p.is_file() and not p.name.startswith("."))
    chunk.write_bytes(b"garbage" * 10)
    image = OmeZarrImage(damaged)
    planes = [(c, t, z) for t in range(2) for c in range(2) for z in range(3)]
    errors = []
    for c, t, z in planes:
        try:
            image.read_plane(c, t, z)
        except HostError as error:
            errors.append(str(error))
    assert len(errors) == 1 and "cannot be read" in errors[0] and "\n" not in errors[0]
    huge = tmp_path / "huge.ome.zarr"
    sh.copytree(store, huge)
    meta = json.loads((huge / "0" / ".zarray").read_text())
    meta["shape"] = meta["shape"][:3] + [10 ** 7, 10 ** 7]
    (huge / "0" / ".zarray").write_text(json.dumps(meta))
    with pytest.raises(HostError, match=r"planes of 10,000,000 x 10,000,000 pixels .* larger than this machine's memory"):
        OmeZarrImage(huge)
    assert zarr.open_array(str(store / "0"), mode="r").shape[-1] == SIZE          # the original is untouched


def test_a_stopped_zarr_run_resumes_to_the_undisturbed_labels_and_tables(store, models_dir, tmp_path, monkeypatch):
    """With pyramid levels (PYRAMID_TOP_SIDE lowered): the resumed run writes the rest of every level."""
    import zarr
    from stardist_v4d.host_api import ngff_writer as module
    monkeypatch.setattr(module, "PYRAMID_TOP_SIDE", 30)

    class StopsAfterTwo(OmeZarrHost):
        done = 0

        def report_progress(self, done, total):
            self.done = done

        def cancelled(self):
            return self.done >= 2

    outputs = {}
    for name, host_class in (("undisturbed", OmeZarrHost), ("resumed", StopsAfterTwo)):
        folder = tmp_path / name
        folder.mkdir()
        output = folder / "labels.ome.zarr"
        config = Config(model2d_path=models_dir, model_name="tiny", input_path=store, output_path=output,
                        input_channel=1, current_time_point=False, workers=0, plots=False)
        host = host_class(store, output, show_progress=False)
        try:
            first = run(config, host)
        finally:
            host.close()
        if name == "resumed":
            assert not first.completed and first.planes_done == 2
            assert (folder / "labels.ome.zarr.journal").exists()
            host = OmeZarrHost(store, output, show_progress=False)
            try:
                again = run(config, host)
            finally:
                host.close()
            assert again.completed and again.planes_done == 6
        assert not (folder / "labels.ome.zarr.journal").exists()
        assert_pyramid(output, (1, 2, 4))
        outputs[name] = ([zarr.open_array(str(output / str(k)), mode="r")[:] for k in range(3)],
                         (folder / "labels_nuclei.csv").read_text())
    for resumed, undisturbed in zip(*(outputs[name][0] for name in ("resumed", "undisturbed"))):
        np.testing.assert_array_equal(resumed, undisturbed)
    assert outputs["resumed"][1] == outputs["undisturbed"][1]


# ------------------------------------------------------------------------- pyramids
def assert_pyramid(path: Path, factors: tuple[int, ...]) -> None:
    """Level k of the image at ``path`` is every 2^k-th pixel of level 0 (Y and X), one chunk
    per plane, with the NGFF scale of level 0 times 2^k in Y and X; ome-zarr's Reader (what
    napari-ome-zarr reads with) sees every level."""
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    group = zarr.open_group(str(path), mode="r")
    multiscale = group.attrs["multiscales"][0]
    axes = [a["name"] for a in multiscale["axes"]]
    datasets = multiscale["datasets"]
    assert [d["path"] for d in datasets] == [str(k) for k in range(len(factors))]
    level0 = group["0"][:]
    scale0 = datasets[0]["coordinateTransformations"][0]["scale"]
    for dataset, factor in zip(datasets, factors):
        level = group[dataset["path"]]
        np.testing.assert_array_equal(level[:], level0[..., ::factor, ::factor])
        assert level.chunks == (1,) * (level.ndim - 2) + level.shape[-2:]
        scale = dataset["coordinateTransformations"][0]["scale"]
        assert scale == [v * (factor if a in "yx" else 1) for v, a in zip(scale0, axes)]
    node = next(n for n in Reader(parse_url(str(path)))() if Path(n.zarr.path.rstrip("/")).name == path.name)
    assert [d.shape for d in node.data] == [group[d["path"]].shape for d in datasets]


def test_pyramid_levels_halve_until_a_screen_shows_the_smallest_whole():
    from stardist_v4d.host_api.ngff_writer import PYRAMID_TOP_SIDE, pyramid_factors
    assert PYRAMID_TOP_SIDE == 1024
    assert pyramid_factors(1024, 1024) == (1,) and pyramid_factors(256, 96) == (1,)
    assert pyramid_factors(1025, 8) == (1, 2) and pyramid_factors(2048, 2048) == (1, 2)
    assert pyramid_factors(3000, 4100) == (1, 2, 4, 8)          # 4100 -> 2050 -> 1025 -> 513


def test_a_reopened_store_writes_every_level_of_a_narrow_plane(tmp_path, monkeypatch):
    """A resumed run and Dask workers reopen the store: level k stays every 2^k-th pixel also
    where a side is short (5 px: 5, 3, 2 at levels 0-2, so the sizes' ratio is not the factor)."""
    import zarr
    from stardist_v4d.host_api import ngff_writer as module

    monkeypatch.setattr(module, "PYRAMID_TOP_SIDE", 30)
    path = tmp_path / "narrow.ome.zarr"
    module.create_labels_store(path, (1, 1, 96, 5), np.uint16, (1.0, 1.0, 1.0), None)
    plane = np.arange(96 * 5, dtype=np.uint16).reshape(96, 5)
    module.open_pyramid(path).write((0, 0), plane)
    for level, factor in enumerate((1, 2, 4)):
        written = zarr.open_array(str(path / str(level)), mode="r")[0, 0]
        np.testing.assert_array_equal(written, plane[::factor, ::factor])


def test_big_planes_get_pyramids_in_the_converted_image_and_the_label_store(tiff, models_dir, tmp_path,
                                                                            monkeypatch):
    """Planes larger than PYRAMID_TOP_SIDE (lowered here: 96 -> 48 -> 24 px): every level is
    written plane by plane, both stores stay valid NGFF, and level 0 is what it was."""
    import zarr
    from ome_zarr_models.v04.image import Image
    from ome_zarr_models.v04.image_label import ImageLabel
    from stardist_v4d.host_api import ngff_writer as module

    monkeypatch.setattr(module, "PYRAMID_TOP_SIDE", 30)
    source, stack = tiff
    image = convert(source, tmp_path / "in.ome.zarr", progress=False)
    assert_pyramid(image, (1, 2, 4))
    Image.from_zarr(zarr.open_group(str(image), mode="r"))
    read = OmeZarrImage(image)
    np.testing.assert_array_equal(read.read_plane(1, 1, 2), stack[1, 2, 1])         # level 0 is read

    output = tmp_path / "labels.ome.zarr"
    assert run_zarr(image, output, models_dir, measure=False).completed
    assert_pyramid(output, (1, 2, 4))
    ImageLabel.from_zarr(zarr.open_group(str(output), mode="r"))
    assert zarr.open_group(str(output), mode="r")["0"][:].max() > 3


def test_a_worker_that_outlives_a_run_writes_the_next_runs_store_as_it_is_now(tmp_path):
    """A cluster given by address keeps its workers between runs: a label store replaced at the
    same path (--overwrite, another label type) is written as it is now, not as the last run's
    worker opened it (an array object keeps its old type: the plane would go in as uint16, a
    chunk the new uint32 store cannot read)."""
    import zarr
    from stardist_v4d.host_api.ngff_writer import create_labels_store
    from stardist_v4d.host_api.ome_zarr import ZarrPlanes

    path = tmp_path / "labels.ome.zarr"
    create_labels_store(path, (1, 1, 8, 8), np.uint16, (1.0, 1.0, 1.0), None)
    ZarrPlanes("unused", "ZYX", str(path), "first run").write_plane(0, 0, np.full((8, 8), 7, np.uint16))
    create_labels_store(path, (1, 1, 8, 8), np.uint32, (1.0, 1.0, 1.0), None)
    many = np.full((8, 8), 70000, np.uint32)
    ZarrPlanes("unused", "ZYX", str(path), "second run").write_plane(0, 0, many)
    np.testing.assert_array_equal(zarr.open_array(str(path / "0"), mode="r")[0, 0], many)
