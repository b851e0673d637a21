"""The headless run, end to end on small TIFF stacks with a tiny random-weight model.

Parity is the product's promise: for every selected plane, the labels equal
``model.predict_instances(normalize(plane, 1, 99.8), ...)``; every other plane is 0.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile

from model_factory import make_tiny_model, tiny_models_dir
from stardist_v4d.config import Config
from stardist_v4d.host_api.tiff import TiffHost
from stardist_v4d.pipeline.run import run
from stardist_v4d.training.synthetic import synthetic_nuclei

SIZE = 64


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tiny_models_dir(tmp_path_factory, SIZE)


@pytest.fixture(scope="session")
def model(models_dir):
    from stardist.models import StarDist2D
    return StarDist2D(None, name="tiny", basedir=str(models_dir))


def nuclei_stack(shape: tuple[int, ...], dtype=np.uint16, seed: int = 0) -> np.ndarray:
    """Synthetic nuclei planes filling an array of ``shape`` (last two axes Y, X)."""
    rng = np.random.default_rng(seed)
    planes = [synthetic_nuclei(shape[-2:], rng)[0] for _ in range(int(np.prod(shape[:-2])))]
    stack = np.stack(planes).reshape(shape)
    if np.dtype(dtype).kind in "ui":
        stack = np.clip(stack / stack.max() * np.iinfo(dtype).max * 0.9, 0, np.iinfo(dtype).max)
    return stack.astype(dtype)


def write_ome(path: Path, stack: np.ndarray, axes: str) -> Path:
    tifffile.imwrite(path, stack, ome=True, metadata={"axes": axes})
    return path


def read_tzcyx(path: Path) -> np.ndarray:
    """The whole output file as TZCYX, whatever singleton axes tifffile squeezes."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        data = series.asarray(squeeze=False)
        axes = series.get_axes(False)
    for axis in [a for a in axes if a not in "TZCYX"]:
        data, axes = data.squeeze(axes.index(axis)), axes.replace(axis, "")
    return to_tzcyx(data, axes)


def to_tzcyx(stack: np.ndarray, axes: str) -> np.ndarray:
    for axis in "TZCYX":
        if axis not in axes:
            stack, axes = stack[np.newaxis], axis + axes
    return np.transpose(stack, [axes.index(a) for a in "TZCYX"])


def segment(tmp_path: Path, stack: np.ndarray, axes: str, models_dir: Path, **settings):
    source = write_ome(tmp_path / "in.ome.tif", stack, axes)
    target = tmp_path / "out.ome.tif"
    config = Config(model2d_path=models_dir, model_name="tiny", input_path=source,
                    output_path=target, **settings)
    summary = run(config, TiffHost(source, target, time_point=config.time_point, show_progress=False))
    return summary, read_tzcyx(target)


def expected_labels(model, plane: np.ndarray, low=1, high=99.8) -> np.ndarray:
    from csbdeep.utils import normalize
    labels, _ = model.predict_instances(normalize(plane, low, high), prob_thresh=None,
                                        nms_thresh=None, n_tiles=None, scale=None)
    return labels


def test_labels_equal_predict_instances_on_selected_planes_and_zero_elsewhere(tmp_path, models_dir, model):
    stack = nuclei_stack((2, 4, 2, SIZE, SIZE))
    summary, out = segment(tmp_path, stack, "TZCYX", models_dir, current_time_point=False,
                           first_plane=1, last_plane=2)
    assert out.shape == (2, 4, 3, SIZE, SIZE)
    assert summary.completed and summary.planes_done == 4
    for t in range(2):
        for z in range(4):
            labels = out[t, z, 2]
            if z in (1, 2):
                np.testing.assert_array_equal(labels, expected_labels(model, stack[t, z, 0]))
                assert summary.nuclei_per_plane[(t, z)] == labels.max()
            else:
                assert not labels.any()
    assert any(summary.nuclei_per_plane.values())


def test_current_time_point_only_segments_the_active_one(tmp_path, models_dir, model):
    stack = nuclei_stack((3, 2, SIZE, SIZE))
    summary, out = segment(tmp_path, stack, "TZYX", models_dir, current_time_point=True, time_point=1)
    assert sorted(summary.nuclei_per_plane) == [(1, 0), (1, 1)]
    assert not out[[0, 2], :, 1].any()
    np.testing.assert_array_equal(out[1, 1, 1], expected_labels(model, stack[1, 1]))


@pytest.mark.parametrize("first, last, planes", [(-1, -1, [0, 1, 2, 3]), (2, -1, [2, 3]),
                                                  (-1, 1, [0, 1]), (3, 3, [3])])
def test_first_and_last_plane_minus_one_means_bottom_and_top(tmp_path, models_dir, first, last, planes):
    summary, _ = segment(tmp_path, nuclei_stack((4, SIZE, SIZE)), "ZYX", models_dir,
                         first_plane=first, last_plane=last)
    assert [z for _, z in summary.nuclei_per_plane] == planes


def test_channel_choice_segments_that_channel(tmp_path, models_dir, model):
    stack = nuclei_stack((2, SIZE, SIZE), seed=3)
    _, out = segment(tmp_path, stack, "CYX", models_dir, input_channel=1)
    np.testing.assert_array_equal(out[0, 0, 2], expected_labels(model, stack[1]))


@pytest.mark.parametrize("axes, shape", [("YX", (SIZE, SIZE)), ("ZYX", (2, SIZE, SIZE)),
                                         ("TYX", (2, SIZE, SIZE)), ("CYX", (2, SIZE, SIZE)),
                                         ("TZCYX", (2, 2, 2, SIZE, SIZE))])
def test_axes_subsets_become_tzcyx_with_labels_last(tmp_path, models_dir, model, axes, shape):
    stack = nuclei_stack(shape)
    _, out = segment(tmp_path, stack, axes, models_dir, current_time_point=False)
    full = to_tzcyx(stack, axes)
    assert out.shape == full.shape[:2] + (full.shape[2] + 1,) + full.shape[3:]
    np.testing.assert_array_equal(out[:, :, :-1], full)
    np.testing.assert_array_equal(out[-1, -1, -1], expected_labels(model, full[-1, -1, 0]))


def test_stack_normalization_uses_one_pair_of_percentiles(tmp_path, models_dir, model):
    from csbdeep.utils import normalize_mi_ma
    stack = nuclei_stack((3, SIZE, SIZE))
    stack[0] = stack[0] // 20          # a dim plane: per-plane would stretch it
    _, out = segment(tmp_path, stack, "ZYX", models_dir, normalize="stack")
    mi, ma = np.percentile(stack.astype(np.float32), [1, 99.8])
    for z in range(3):
        labels, _ = model.predict_instances(normalize_mi_ma(stack[z].astype(np.float32), mi, ma))
        np.testing.assert_array_equal(out[0, z, 1], labels)


@pytest.mark.parametrize("dtype, out_dtype", [(np.uint8, np.uint16), (np.uint16, np.uint16),
                                              (np.float32, np.float32)])
def test_input_values_come_out_identical(tmp_path, models_dir, dtype, out_dtype):
    stack = nuclei_stack((2, SIZE, SIZE), dtype=dtype)
    _, out = segment(tmp_path, stack, "ZYX", models_dir)
    assert out.dtype == out_dtype
    np.testing.assert_array_equal(out[0, :, 0], stack)


def test_input_file_is_never_modified(tmp_path, models_dir):
    stack = nuclei_stack((2, SIZE, SIZE))
    source = write_ome(tmp_path / "in.ome.tif", stack, "ZYX")
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    config = Config(model2d_path=models_dir, model_name="tiny", input_path=source,
                    output_path=tmp_path / "out.tif")
    run(config, TiffHost(source, config.output_path, show_progress=False))
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before


class StopAfter(TiffHost):
    """A TIFF host whose user presses cancel after ``planes`` planes."""

    def __init__(self, *args, planes: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.planes, self.done = planes, 0

    def report_progress(self, done: int, total: int) -> None:
        self.done = done

    def cancelled(self) -> bool:
        return self.done >= self.planes


def test_cancelled_run_keeps_completed_planes_in_partial_file(tmp_path, models_dir, model, capsys):
    stack = nuclei_stack((4, SIZE, SIZE))
    source = write_ome(tmp_path / "in.ome.tif", stack, "ZYX")
    target = tmp_path / "out.ome.tif"
    config = Config(model2d_path=models_dir, model_name="tiny", input_path=source, output_path=target)
    summary = run(config, StopAfter(source, target, planes=2, show_progress=False))
    partial = Path(str(target) + ".partial")
    assert not summary.completed and summary.planes_done == 2
    assert not target.exists() and partial.exists()
    printed = capsys.readouterr().out
    assert "Cancelled after 2 of 4 planes." in printed and str(partial) in printed
    out = read_tzcyx(partial)
    for z in range(2):
        np.testing.assert_array_equal(out[0, z, 1], expected_labels(model, stack[z]))
    assert not out[0, 2:, 1].any()


def test_label_channel_is_named_and_pixel_sizes_kept(tmp_path, models_dir):
    stack = nuclei_stack((2, SIZE, SIZE))
    source = tmp_path / "in.ome.tif"
    tifffile.imwrite(source, stack, ome=True, metadata={
        "axes": "CYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25, "Channel": {"Name": ["DAPI", "GFP"]}})
    config = Config(model2d_path=models_dir, model_name="tiny", input_path=source,
                    output_path=tmp_path / "out.ome.tif", output_ch_name="Nuclei labels")
    run(config, TiffHost(source, config.output_path, show_progress=False))
    info = TiffHost(config.output_path, tmp_path / "unused.tif", show_progress=False).dataset_info()
    assert info.channel_names == ("DAPI", "GFP", "Nuclei labels")
    assert info.pixel_size_um[:2] == pytest.approx((0.25, 0.25))


def test_run_settings_model_and_versions_are_recorded_in_the_output(tmp_path, models_dir):
    from importlib.metadata import version
    from stardist_v4d.host_api.tiff import read_run_description
    segment(tmp_path, nuclei_stack((1, SIZE, SIZE)), "ZYX", models_dir, prob_thresh=0.6)
    record = read_run_description(tmp_path / "out.ome.tif")
    assert record["model"] == "tiny" and record["setting.prob_thresh"] == "0.6"
    assert record["version.stardist"] == version("stardist")


def test_unique_ids_never_repeat_and_each_nucleus_has_one_imagej_roi(tmp_path, models_dir):
    import roifile
    stack = nuclei_stack((2, 2, SIZE, SIZE))
    summary, out = segment(tmp_path, stack, "TZYX", models_dir, current_time_point=False,
                           label_ids="unique")
    assert out.dtype == np.uint32
    labels = out[:, :, 1]
    per_plane = [set(np.unique(labels[t, z])) - {0} for t in range(2) for z in range(2)]
    assert sum(map(len, per_plane)) == len(set().union(*per_plane)) == summary.total_nuclei > 0
    rois = roifile.roiread(tmp_path / "out_rois.zip")
    assert len(rois) == summary.total_nuclei
    from matplotlib.path import Path as Polygon
    centres = np.stack(np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5), -1).reshape(-1, 2)
    for roi in rois:
        label = int(roi.name.rsplit("-", 1)[1])
        t, z = roi.t_position - 1, roi.z_position - 1
        assert roi.c_position == 2 and label in labels[t, z]
        # filled as ImageJ fills a polygon: pixel (x, y) is inside when its centre (x + 0.5, y + 0.5) is
        inside = Polygon(roi.coordinates()).contains_points(centres).reshape(SIZE, SIZE)
        own = labels[t, z] == label
        assert inside[own].mean() > 0.97      # StarDist drew this label from this polygon
        # and in the same place: half a pixel off (pixel centres taken as corners) moves it ~0.7 px
        assert np.hypot(*(np.argwhere(inside).mean(0) - np.argwhere(own).mean(0))) < 0.3


def test_no_objects_setting_writes_labels_only(tmp_path, models_dir):
    segment(tmp_path, nuclei_stack((1, SIZE, SIZE)), "ZYX", models_dir, write_objects=False)
    assert not (tmp_path / "out_rois.zip").exists()
