"""The arivis host adapter against fakes of the publicly documented call shapes.

Only ``test_pipeline_*`` tests start TensorFlow (one tiny random-weight model, one run).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from arivis_fakes import Bounds, FakeContext, arivis, install, make_context  # noqa: F401  (fixture)
from stardist_v4d.host_api import vision4d
from stardist_v4d.host_api.base import Nucleus
from stardist_v4d.host_api.vision4d import (OperationHost, OutputChannelExists, ScriptEditorHost,
                                            UnverifiedHostCall, read_bounds)

BOUNDS = Bounds(x1=8, x2=72, y1=4, y2=68, z1=1, z2=3, t1=2)    # 64 x 64, planes 1..3, t 2
HOST_SHAPE = (5, 80, 80)


def host_stack(seed: int = 0) -> np.ndarray:
    """Distinct uint16 planes in host coordinates (Z, Y, X), larger than the region."""
    return np.random.default_rng(seed).integers(0, 4000, HOST_SHAPE, dtype=np.uint16)


def operation(leading_axis: bool = False) -> tuple[OperationHost, FakeContext, np.ndarray]:
    stack = host_stack()
    context = make_context(stack, BOUNDS, leading_axis=leading_axis)
    return OperationHost(context), context, stack


def region_of(stack: np.ndarray, z_host: int) -> np.ndarray:
    return stack[z_host, BOUNDS.y1:BOUNDS.y2, BOUNDS.x1:BOUNDS.x2]


# -------------------------------------------------------------- operation route
def test_bounds_become_a_one_time_point_stack_of_the_region():
    host, _, _ = operation()
    info = host.dataset_info()
    assert (info.size_t, info.size_z, info.size_c, info.size_y, info.size_x) == (1, 3, 1, 64, 64)
    assert info.active_time_point == 0 and info.dtype == np.uint16
    assert host.plane_count() == 3


def test_read_bounds_width_is_x2_minus_x1_and_planes_z1_to_z2_inclusive():
    extent = read_bounds(BOUNDS)
    assert (extent.width, extent.height, extent.size_z, extent.time_point) == (64, 64, 3, 2)
    assert extent.region(3) == ((8, 4, 3), (64, 64, 1))


def test_empty_bounds_name_read_bounds_as_the_place_to_check():
    with pytest.raises(ValueError, match="read_bounds"):
        read_bounds(Bounds(x1=5, x2=5, y1=0, y2=9, z1=0, z2=0, t1=0))


def test_plane_z_is_host_plane_z1_plus_z_at_the_operation_time_point():
    host, context, stack = operation()
    plane = host.read_plane(0, 0, 2)
    np.testing.assert_array_equal(plane, region_of(stack, 3))
    assert context.input.reads[-1] == (((8, 4, 3), (64, 64, 1)), 0, 2)


@pytest.mark.parametrize("leading_axis", [False, True])
def test_read_squeezes_a_leading_axis_and_write_puts_it_back(leading_axis):
    host, context, stack = operation(leading_axis)
    plane = host.read_plane(0, 0, 1)
    assert plane.shape == (64, 64)
    target = host.add_channel("StarDist", np.uint16)
    labels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    host.write_plane(target.channel, 0, 1, labels)
    region, channel, timepoint = context.output.writes[-1]
    assert (region, channel, timepoint) == (((8, 4, 2), (64, 64, 1)), 0, 2)
    written = context.output.planes[(2, 0, 2)]
    assert written.shape == ((1, 64, 64) if leading_axis else (64, 64))
    np.testing.assert_array_equal(written.reshape(64, 64), labels)


def test_the_plane_read_for_the_pixel_type_is_not_read_again():
    host, context, stack = operation()
    host.dataset_info()
    np.testing.assert_array_equal(host.read_plane(0, 0, 0), region_of(stack, 1))
    host.read_plane(0, 0, 0)
    assert [read[0][0][2] for read in context.input.reads] == [1, 1]


@pytest.mark.parametrize("channel, time_point, z", [(1, 0, 0), (0, 1, 0), (0, 0, 3), (0, 0, -1)])
def test_planes_outside_the_region_are_refused(channel, time_point, z):
    host, _, _ = operation()
    with pytest.raises(IndexError, match="outside the operation's region"):
        host.read_plane(channel, time_point, z)


def test_output_channel_is_the_operation_output_and_its_name_is_the_pipelines(capsys):
    host, _, _ = operation()
    target = host.add_channel("Nuclei", np.uint16)
    assert (target.location, target.channel) == ("operation output", 0)
    assert "OUTPUT_CH_NAME" in capsys.readouterr().out


def test_contour_rows_become_points_in_image_coordinates_on_host_plane_and_time(arivis):
    host, context, _ = operation()
    contour = np.array([[1.0, 2.0], [1.5, 6.0], [5.0, 4.0]])      # (y, x)
    host.add_objects(0, 1, [Nucleus(1, contour), Nucleus(2, contour + 10)], "StarDist")
    first, second = context.output.objects
    assert first.vertices() == [(10.0, 5.0), (14.0, 5.5), (12.0, 9.0)]        # x + 8, y + 4
    assert second.vertices()[0] == (20.0, 15.0)
    assert (first.z, first.timepoint, first.tags) == (2, 2, ["StarDist"])


def test_progress_stays_below_100_until_a_completed_finish():
    host, context, _ = operation()
    for done in (1, 2, 3):
        host.report_progress(done, 3)
    assert context.progress == [33, 66, 99]
    assert host.finish(True).complete
    assert context.progress[-1] == 100


def test_a_stopped_run_does_not_report_100_and_says_what_stays():
    host, context, _ = operation()
    host.report_progress(1, 3)
    target = host.finish(False)
    assert context.progress == [33] and not target.complete and target.notes


def test_from_running_operation_takes_the_operation_context(arivis):
    arivis.context = make_context(host_stack(), BOUNDS)
    host = OperationHost.from_running_operation()
    assert host.context is arivis.context and host.extent.z1 == 1


def test_fakes_reject_call_shapes_the_docs_do_not_list():
    context = make_context(host_stack(), BOUNDS)
    with pytest.raises(AssertionError):
        context.input.read_imagedata([(8, 4, 1), (64, 64, 1)], 0, 2)          # list, not tuple
    with pytest.raises(AssertionError):
        context.input.read_imagedata(((8, 4, np.int64(1)), (64, 64, 1)), 0, 2)  # numpy int
    with pytest.raises(AssertionError):
        context.output.write_imagedata(np.zeros((2, 64, 64)), ((8, 4, 1), (64, 64, 1)), 0, 2)


def test_importing_the_adapter_needs_neither_arivis_nor_tensorflow():
    code = ("import sys, stardist_v4d.host_api.vision4d; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('arivis', 'arivis_core', 'arivis_objects', 'arivis_operation', 'tensorflow', 'stardist')]; "
            "sys.exit(', '.join(bad) or None)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ----------------------------------------------------------- Script Editor route
UNVERIFIED = [
    ("imageset_dimensions", lambda a: vision4d.imageset_dimensions(a.viewer.get_imageset())),
    ("viewer_time_point", lambda a: vision4d.viewer_time_point(a.viewer)),
    ("channel_names", lambda a: vision4d.channel_names(a.viewer.get_imageset())),
    ("read_imageset_plane", lambda a: vision4d.read_imageset_plane(a.viewer.get_imageset(), 0, 0, 0)),
    ("create_output_channel", lambda a: vision4d.create_output_channel(
        a.viewer.get_document(), a.viewer.get_imageset(), "StarDist", np.dtype(np.uint16))),
    ("write_imageset_plane", lambda a: vision4d.write_imageset_plane(
        a.viewer.get_imageset(), 1, 0, 0, np.zeros((4, 4), np.uint16))),
]


@pytest.mark.parametrize("name, call", UNVERIFIED, ids=[name for name, _ in UNVERIFIED])
def test_each_unverified_call_fails_naming_itself_and_where_to_fix_it(arivis, name, call):
    with pytest.raises(UnverifiedHostCall, match=rf"implement {name}\(\) in stardist_v4d/host_api/vision4d.py"):
        call(arivis)


@pytest.mark.parametrize("method, name", [("dataset_info", "imageset_dimensions"),
                                          ("read_plane", "read_imageset_plane"),
                                          ("add_channel", "channel_names")])
def test_script_editor_host_stops_at_the_first_unverified_call(arivis, method, name):
    host = ScriptEditorHost.from_active_viewer()
    args = {"dataset_info": (), "read_plane": (0, 0, 0), "add_channel": ("StarDist", np.uint16)}[method]
    with pytest.raises(UnverifiedHostCall, match=name):
        getattr(host, method)(*args)


@pytest.fixture
def checked(monkeypatch):
    """The unverified calls as a user would fill them in, recording channel creation."""
    created = []
    monkeypatch.setattr(vision4d, "channel_names", lambda imageset: ("DAPI", "StarDist"))
    monkeypatch.setattr(vision4d, "imageset_dimensions",
                        lambda imageset: vision4d.ImagesetDimensions(1, 2, 2, 8, 8, np.dtype(np.uint8)))
    monkeypatch.setattr(vision4d, "create_output_channel",
                        lambda document, imageset, name, dtype: created.append(name) or 2)
    return created


def test_existing_output_channel_without_overwrite_stops_with_a_message(arivis, checked):
    host = ScriptEditorHost.from_active_viewer()
    with pytest.raises(OutputChannelExists, match="OUTPUT_CH_NAME = 'StarDist'.*OVERWRITE = True"):
        host.add_channel("StarDist", np.uint16)
    assert checked == []


def test_overwrite_reuses_the_existing_channel_and_says_so(arivis, checked):
    host = ScriptEditorHost.from_active_viewer(overwrite=True)
    assert host.add_channel("StarDist", np.uint16).channel == 1
    assert checked == [] and "overwritten" in host.finish(True).notes[0]


def test_a_new_name_creates_the_channel(arivis, checked):
    assert ScriptEditorHost.from_active_viewer().add_channel("Nuclei", np.uint16).channel == 2
    assert checked == ["Nuclei"]


def test_script_editor_info_has_the_pixel_size_and_the_given_time_point(arivis, checked):
    info = ScriptEditorHost.from_active_viewer(time_point=0).dataset_info()
    assert info.pixel_size_um == (0.5, 0.25, None)
    assert (info.size_z, info.size_c, info.channel_names) == (2, 2, ("DAPI", "StarDist"))


def test_script_editor_objects_go_to_the_document_store_unshifted(arivis):
    host = ScriptEditorHost.from_active_viewer()
    host.add_objects(3, 5, [Nucleus(1, np.array([[1.0, 2.0], [1.5, 6.0], [5.0, 4.0]]))], "StarDist")
    (segment,) = arivis.viewer.get_document().store.objects
    assert segment.vertices()[0] == (2.0, 1.0) and (segment.z, segment.timepoint) == (5, 3)


def test_script_editor_prints_progress_every_ten_percent(capsys):
    host = ScriptEditorHost(None, None, None)
    for done in range(1, 21):
        host.report_progress(done, 20)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Progress")]
    assert len(lines) == 10 and lines[-1] == "Progress: 100% (20 of 20 planes)"


# --------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """One pipeline run through OperationHost on a synthetic stack, with the model to compare."""
    from model_factory import make_tiny_model
    from stardist.models import StarDist2D
    from stardist_v4d.config import Config
    from stardist_v4d.pipeline.run import run
    from stardist_v4d.training.synthetic import synthetic_nuclei

    rng = np.random.default_rng(3)
    planes = [synthetic_nuclei(HOST_SHAPE[1:], rng)[0] for _ in range(HOST_SHAPE[0])]
    stack = (np.stack(planes) / max(p.max() for p in planes) * 60000).astype(np.uint16)
    models_dir = tmp_path_factory.mktemp("models")
    make_tiny_model(models_dir, "tiny", probe=region_of(stack, BOUNDS.z1))
    model = StarDist2D(None, name="tiny", basedir=str(models_dir))
    context = make_context(stack, BOUNDS)
    with pytest.MonkeyPatch.context() as patch:
        install(patch).context = context
        summary = run(Config(model2d_path=Path(models_dir), model_name="tiny",
                                label_ids="per_plane"), OperationHost(context))
    return summary, context, stack, model


def predicted(model, plane: np.ndarray):
    from csbdeep.utils import normalize
    return model.predict_instances(normalize(plane, 1, 99.8), prob_thresh=None, nms_thresh=None,
                                   n_tiles=None, scale=None)


def test_pipeline_reads_each_plane_once_and_writes_the_models_labels(pipeline_run):
    summary, context, stack, model = pipeline_run
    host_planes = range(BOUNDS.z1, BOUNDS.z2 + 1)
    assert summary.completed and summary.planes_done == 3
    assert sorted(read[0][0][2] for read in context.input.reads) == list(host_planes)
    assert sorted(write[0][0][2] for write in context.output.writes) == list(host_planes)
    for z_host in host_planes:
        labels, _ = predicted(model, region_of(stack, z_host))
        np.testing.assert_array_equal(context.output.planes[(z_host, 0, BOUNDS.t1)], labels)
    assert context.progress[-1] == 100 and context.progress == sorted(context.progress)


def test_pipeline_adds_one_segment_per_nucleus_with_its_polygon(pipeline_run):
    summary, context, stack, model = pipeline_run
    for z_host in range(BOUNDS.z1, BOUNDS.z2 + 1):
        labels, details = predicted(model, region_of(stack, z_host))
        visible = [k for k in np.unique(labels) if k]          # polygons with pixels left
        segments = [s for s in context.output.objects if s.z == z_host]
        assert len(segments) == len(visible) > 0
        expected = sorted(tuple((round(float(x) + BOUNDS.x1, 3), round(float(y) + BOUNDS.y1, 3))
                                for y, x in details["coord"][k - 1].T) for k in visible)
        found = sorted(tuple((round(x, 3), round(y, 3)) for x, y in s.vertices()) for s in segments)
        assert found == expected
        assert all(s.timepoint == BOUNDS.t1 and len(s.tags) == 1 for s in segments)


# ------------------------------------------------------------------ measurements
def test_script_editor_attaches_each_nucleus_measurements_to_its_segment(arivis):
    store = arivis.viewer.get_document().store
    contour = np.array([[1.0, 2.0], [1.5, 6.0], [5.0, 4.0]])
    host = ScriptEditorHost.from_active_viewer()
    host.add_objects(0, 1, [Nucleus(1, contour, features={"Area (um2)": 12.5, "Mean DAPI": float("nan")}),
                            Nucleus(2, contour + 10, features={"Area (um2)": 3.0, "Mean DAPI": 7.0})],
                     "StarDist (demo)")
    first, second = store.objects
    assert store.features_of(first) == {"Area (um2)": 12.5}          # not a number: not set
    assert store.features_of(second) == {"Area (um2)": 3.0, "Mean DAPI": 7.0}
    assert sorted(store.descriptors) == ["StarDist (demo): Area (um2)", "StarDist (demo): Mean DAPI"]
    value = store.descriptors["StarDist (demo): Area (um2)"].get_values()[0]
    assert (value.get_name(), value.type) == ("Area (um2)", "TYPE_FLOAT")


def test_a_second_run_reuses_the_stored_feature_descriptors(arivis):
    store = arivis.viewer.get_document().store
    contour = np.array([[1.0, 2.0], [1.5, 6.0], [5.0, 4.0]])
    for area in (1.0, 2.0):                       # two runs, one store
        ScriptEditorHost.from_active_viewer().add_objects(
            0, 0, [Nucleus(1, contour, features={"Area (um2)": area})], "StarDist (demo)")
    assert len(store.descriptors) == 1
    assert [store.features_of(s)["Area (um2)"] for s in store.objects] == [1.0, 2.0]


@pytest.fixture(scope="module")
def script_editor_run(tmp_path_factory):
    """The Script Editor route end to end, its unverified calls filled in over an in-memory image set."""
    from model_factory import make_tiny_model
    from stardist_v4d.config import Config
    from stardist_v4d.pipeline.run import run
    from stardist_v4d.training.synthetic import synthetic_nuclei

    rng = np.random.default_rng(4)
    images = np.zeros((2, 2, 64, 64), np.uint16)                   # Z, C, Y, X
    for z in range(2):
        image, labels = synthetic_nuclei((64, 64), rng)
        images[z, 0] = image / image.max() * 60000
        images[z, 1] = 100 + 900 * (labels > 0)
    models_dir = tmp_path_factory.mktemp("models")
    make_tiny_model(models_dir, "tiny", probe=images[0, 0])
    tables = tmp_path_factory.mktemp("tables")
    written = {}
    with pytest.MonkeyPatch.context() as patch:
        state = install(patch)
        patch.setattr(vision4d, "channel_names", lambda imageset: ("DAPI", "GFP"))
        patch.setattr(vision4d, "imageset_dimensions",
                      lambda imageset: vision4d.ImagesetDimensions(1, 2, 2, 64, 64, np.dtype(np.uint16)))
        patch.setattr(vision4d, "viewer_time_point", lambda viewer: 0)
        patch.setattr(vision4d, "read_imageset_plane", lambda imageset, c, t, z: images[z, c])
        patch.setattr(vision4d, "create_output_channel", lambda document, imageset, name, dtype: 2)
        patch.setattr(vision4d, "write_imageset_plane",
                      lambda imageset, c, t, z, labels: written.__setitem__((t, z), labels.copy()))
        summary = run(Config(model2d_path=Path(models_dir), model_name="tiny", measurements_dir=tables,
                             plots=False), ScriptEditorHost.from_active_viewer())
    return summary, state.viewer.get_document().store, tables, written


def test_script_editor_segments_carry_the_same_measurements_as_the_table(script_editor_run):
    import pandas as pd

    summary, store, tables, written = script_editor_run
    table = pd.read_csv(tables / "StarDist_nuclei.csv")            # MEASUREMENTS_DIR set
    assert summary.completed and len(store.objects) == len(table) == summary.total_nuclei > 5
    found = sorted((s.z, round(store.features_of(s)["Area (um2)"], 6), round(store.features_of(s)["Mean GFP"], 6))
                   for s in store.objects)
    expected = sorted((r.z, round(r.area_um2, 6), round(r.mean_c1, 6)) for r in table.itertuples())
    assert found == expected
    assert {"Perimeter (um)", "Roundness", "Probability", "Mean DAPI"} <= set(store.features_of(store.objects[0]))
    # the image set's pixel size is 0.5 x 0.25 um: area = pixels * 0.125 um2
    pixels = sum(int((written[(0, z)] > 0).sum()) for z in range(2))
    assert table["area_um2"].sum() == pytest.approx(pixels * 0.125)


def test_operation_route_writes_tables_only_into_measurements_dir(tmp_path, pipeline_run, arivis, monkeypatch):
    from stardist_v4d.config import Config
    from stardist_v4d.pipeline.run import run

    summary, context, stack, model = pipeline_run
    monkeypatch.chdir(tmp_path)
    models_dir = Path(model.basedir)
    ctx = make_context(stack, BOUNDS)
    run(Config(model2d_path=models_dir, model_name="tiny", measure=True), OperationHost(ctx))
    assert list(tmp_path.iterdir()) == []                  # no MEASUREMENTS_DIR: no files
    ctx = make_context(stack, BOUNDS)
    run(Config(model2d_path=models_dir, model_name="tiny", measurements_dir=tmp_path / "m", plots=False),
        OperationHost(ctx))
    import pandas as pd
    table = pd.read_csv(tmp_path / "m" / "StarDist_nuclei.csv")
    assert len(table) == len(ctx.output.objects) and "area_px2" in table.columns   # no pixel size here
