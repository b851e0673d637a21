"""``segment()`` on arrays in memory: the same labels as the TIFF route, any axes, one-line errors."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from model_factory import tiny_models_dir
from stardist_v4d import release_models, segment
from stardist_v4d.config import Config, ConfigError
from stardist_v4d.host_api.base import HostError
from stardist_v4d.host_api.tiff import TiffHost
from stardist_v4d.pipeline.backends import engine
from stardist_v4d.pipeline.run import run
from test_pipeline import nuclei_stack, read_tzcyx, write_ome

SIZE = 96


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tiny_models_dir(tmp_path_factory, SIZE)


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    """T=2, Z=3, C=2, Y, X: nuclei in channel 1, noise in channel 0."""
    nuclei = nuclei_stack((2, 3, SIZE, SIZE), seed=9)
    noise = np.random.default_rng(1).integers(0, 500, nuclei.shape).astype(nuclei.dtype)
    return np.stack([noise, nuclei], axis=2)


@pytest.fixture(scope="module")
def tiff_labels(stack, models_dir, tmp_path_factory) -> np.ndarray:
    """The TIFF route's labels of channel 1, every time point: (T, Z, Y, X)."""
    folder = tmp_path_factory.mktemp("tiff_route")
    source = write_ome(folder / "in.ome.tif", stack, "TZCYX")
    config = Config(model2d_path=models_dir, model_name="tiny", input_path=source, output_path=folder / "out.ome.tif",
                    input_channel=1, current_time_point=False, measure=False, workers=0)
    run(config, TiffHost(source, config.output_path, show_progress=False))
    labels = read_tzcyx(folder / "out.ome.tif")[:, :, 2]
    assert labels.max() > 3
    return labels


def settings(models_dir, **more):
    return dict(model2d_path=models_dir, model_name="tiny", show_progress=False, workers=0, **more)


def digest(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_numpy_array_gives_the_tiff_routes_labels_and_stays_unchanged(stack, models_dir, tiff_labels):
    before = digest(stack)
    labels, table = segment(stack, axes="TZCYX", input_channel=1, current_time_point=False,
                            **settings(models_dir))
    assert isinstance(labels, np.ndarray) and labels.shape == tiff_labels.shape
    np.testing.assert_array_equal(labels, tiff_labels)
    assert digest(stack) == before
    per_plane = table.groupby(["time_point", "z"]).size()
    for t in range(2):
        for z in range(3):
            assert per_plane[(t, z)] == len(np.unique(labels[t, z])) - 1
    assert {"label", "area_px2", "roundness"} <= set(table.columns)
    assert len(table) == sum(len(np.unique(plane)) - 1 for plane in labels.reshape(-1, SIZE, SIZE))


def test_dask_array_is_read_plane_by_plane_with_the_same_labels(stack, models_dir, tiff_labels):
    da = pytest.importorskip("dask.array")
    lazy = da.from_array(stack, chunks=(1, 1, 1, SIZE, SIZE))
    labels, _ = segment(lazy, axes="TZCYX", input_channel=1, current_time_point=False, measure=False,
                        **settings(models_dir))
    np.testing.assert_array_equal(labels, tiff_labels)


def test_zarr_and_memmap_arrays_are_read_plane_by_plane_too(stack, models_dir, tiff_labels, tmp_path):
    zarr = pytest.importorskip("zarr")
    stored = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=stack.shape, dtype=stack.dtype,
                             chunks=(1, 1, 1, SIZE, SIZE))
    stored[:] = stack
    mapped = np.lib.format.open_memmap(tmp_path / "in.npy", mode="w+", dtype=stack.dtype, shape=stack.shape)
    mapped[:] = stack
    for array in (stored, mapped):
        labels, _ = segment(array, axes="TZCYX", input_channel=1, current_time_point=False, measure=False,
                            **settings(models_dir))
        np.testing.assert_array_equal(labels, tiff_labels)


@pytest.mark.parametrize("axes", ["ZYX", "YXZ", "ZXY"])
def test_any_order_of_axes_gives_the_same_labels(stack, models_dir, tiff_labels, axes):
    zyx = stack[0, :, 1]
    array = np.transpose(zyx, ["ZYX".index(a) for a in axes])
    labels, table = segment(array, axes=axes, measure=False, **settings(models_dir))
    np.testing.assert_array_equal(labels, tiff_labels[:1])
    assert list(table.columns) == ["time_point", "z", "nuclei"] and len(table) == 3


def test_a_plane_selection_gives_only_those_planes(stack, models_dir, tiff_labels):
    labels, table = segment(stack[:, :, 1], axes="TZYX", current_time_point=True, time_point=1,
                            first_plane=1, last_plane=2, measure=False, **settings(models_dir))
    assert labels.shape == (1, 2, SIZE, SIZE)
    np.testing.assert_array_equal(labels, tiff_labels[1:2, 1:3])
    assert table[["time_point", "z"]].values.tolist() == [[1, 1], [1, 2]]


def test_an_array_with_time_points_is_segmented_at_every_one_unless_one_is_named(stack, models_dir, tiff_labels):
    labels, table = segment(stack[:, :2, 1], axes="TZYX", measure=False, **settings(models_dir))
    assert labels.shape == (stack.shape[0], 2, SIZE, SIZE)
    np.testing.assert_array_equal(labels, tiff_labels[:, :2])
    assert sorted(set(table["time_point"])) == list(range(stack.shape[0]))


def test_beyond_the_memory_budget_labels_go_to_zarr_on_disk(stack, models_dir, tiff_labels, tmp_path):
    pytest.importorskip("zarr")
    labels, _ = segment(stack[0, :, 1], axes="ZYX", measure=False, memory_budget_mb=0.01,
                        labels_path=tmp_path / "labels.zarr", **settings(models_dir))
    assert not isinstance(labels, np.ndarray) and (tmp_path / "labels.zarr").exists()
    assert labels.chunks == (1, 1, SIZE, SIZE)
    np.testing.assert_array_equal(np.asarray(labels[:]), tiff_labels[:1])


def test_the_model_is_loaded_once_across_calls_until_released(stack, models_dir, monkeypatch):
    release_models()
    loads = []
    real = engine.load_for
    monkeypatch.setattr(engine, "load_for", lambda *a, **k: loads.append(a) or real(*a, **k))
    plane = stack[0, 0, 1]
    first, _ = segment(plane, measure=False, **settings(models_dir))
    second, _ = segment(plane, measure=False, **settings(models_dir))
    assert len(loads) == 1
    np.testing.assert_array_equal(first, second)
    assert release_models() == 1
    segment(plane, measure=False, **settings(models_dir))
    assert len(loads) == 2


@pytest.mark.parametrize("call, error, words", [
    (dict(axes="ZYX", input_chanel=1), ConfigError, ["unknown setting 'input_chanel'", "did you mean 'input_channel'"]),
    (dict(axes="ZYX", prob_thresh=2), ConfigError, ["PROB_THRESH", "= 2", "between 0 and 1"]),
    (dict(axes="ZYX", input_channel=1), ConfigError, ["INPUT_CHANNEL", "1 channel"]),
    (dict(axes="ZQX"), HostError, ["axes = 'ZQX'", "Q unknown"]),
    (dict(axes="TZYX"), HostError, ["names 4 dimensions", "has 3"]),
    (dict(axes="ZYX", last_plane=7), ConfigError, ["LAST_PLANE", "3 Z plane"]),
    (dict(axes="ZYX", scheduler="local:2"), ConfigError, ["segment(): scheduler = 'local:2'", "--scheduler"]),
])
def test_bad_settings_and_axes_are_one_line(stack, models_dir, call, error, words):
    with pytest.raises(error) as raised:
        segment(stack[0, :, 1], **settings(models_dir), **call)
    message = str(raised.value)
    assert "\n" not in message and all(word in message for word in words), message


def test_four_dimensions_need_axes(stack, models_dir):
    with pytest.raises(ConfigError, match="needs axes="):
        segment(stack[:, :, 1], **settings(models_dir))


@pytest.mark.parametrize("array, words", [
    ("not an image", "a str is not an image"),
    (np.zeros((0, 64)), "an array of shape (0, 64) holds no image plane"),
    (np.zeros((64, 64), np.complex64), "pixels of type complex64 are not intensities"),
])
def test_what_is_not_an_image_is_one_line(models_dir, array, words):
    with pytest.raises(ConfigError) as error:
        segment(array, **settings(models_dir))
    assert words in str(error.value) and "\n" not in str(error.value)


def test_a_model_path_that_is_not_a_path_is_one_line(models_dir):
    with pytest.raises(ConfigError, match=r"MODEL2D_PATH \(--model-path\) = 123: must be None"):
        segment(np.zeros((64, 64)), **{**settings(models_dir), "model2d_path": 123})


def test_float64_beyond_float32_and_bool_planes_are_segmented(stack, models_dir):
    from stardist.matching import matching
    plane = stack[0, 0, 1].astype(np.float64)
    plain, _ = segment(plane, measure=False, **settings(models_dir))
    huge, _ = segment(plane * 1e300, measure=False, **settings(models_dir))    # inf as float32
    assert plain.max() > 3 and matching(plain[0, 0].astype(int), huge[0, 0].astype(int), thresh=0.5).f1 >= 0.99
    mask, _ = segment(plane > np.percentile(plane, 70), measure=False, **settings(models_dir))
    assert mask.shape == plain.shape and mask.dtype == np.uint16
