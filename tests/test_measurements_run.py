"""Measurements as a run writes them: tables, workbook, plots, tracks (the measure command: test_remeasure.py).

Every value is checked against an independent ``regionprops`` of the labels as
written in the output file, not against the code that wrote it.
"""
from __future__ import annotations

import json
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import roifile
import tifffile
from skimage.measure import regionprops_table

from model_factory import tiny_models_dir
from stardist_v4d.config import Config, ConfigError, build_config
from stardist_v4d.host_api.tiff import TiffHost
from stardist_v4d.pipeline.run import run
from stardist_v4d.training.synthetic import synthetic_nuclei
from test_pipeline import StopAfter

SIZE = 96
PIXEL = 0.5
CHANNELS = ("Hoechst", "GFP")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tiny_models_dir(tmp_path_factory, SIZE)


def two_channel_stack(size_t: int = 2, size_z: int = 3, seed: int = 0) -> np.ndarray:
    """TZCYX uint16: nuclei in channel 0, a second stain (brighter inside nuclei) in channel 1."""
    rng = np.random.default_rng(seed)
    stack = np.zeros((size_t, size_z, 2, SIZE, SIZE), np.uint16)
    for t in range(size_t):
        for z in range(size_z):
            image, labels = synthetic_nuclei((SIZE, SIZE), rng)
            stack[t, z, 0] = np.clip(image / image.max() * 50000, 0, 65535)
            stack[t, z, 1] = rng.integers(100, 200, (SIZE, SIZE)) + 1000 * (labels > 0)
    return stack


def write_input(folder: Path, stack: np.ndarray, pixel: float | None = PIXEL, **meta) -> Path:
    path = folder / "in.ome.tif"
    metadata = {"axes": "TZCYX", "Channel": {"Name": list(CHANNELS)}, **meta}
    if pixel is not None:
        metadata.update(PhysicalSizeX=pixel, PhysicalSizeY=pixel, PhysicalSizeXUnit="µm",
                        PhysicalSizeYUnit="µm")
    tifffile.imwrite(path, stack, ome=True, photometric="minisblack", metadata=metadata)
    return path


def segment(folder: Path, models_dir: Path, stack: np.ndarray | None = None, host=TiffHost,
            pixel: float | None = PIXEL, host_kwargs: dict | None = None, **settings):
    stack = two_channel_stack() if stack is None else stack
    source = write_input(folder, stack, pixel)
    target = folder / "out.ome.tif"
    config = Config(model2d_path=models_dir, model_name="tiny", input_path=source,
                    output_path=target, current_time_point=False, **{"workers": 0, **settings})
    summary = run(config, host(source, target, show_progress=False, **(host_kwargs or {})))
    return summary, stack, target


def written_labels(path: Path) -> np.ndarray:
    """TZYX labels: the last channel of an output (or .partial) file."""
    with tifffile.TiffFile(path) as tif:
        return tif.series[0].asarray()[:, :, -1]


@pytest.fixture(scope="module")
def measured_run(tmp_path_factory, models_dir):
    folder = tmp_path_factory.mktemp("run")
    summary, stack, target = segment(folder, models_dir)
    return summary, stack, target, folder


def test_every_csv_value_equals_regionprops_of_the_written_labels(measured_run):
    summary, stack, target, folder = measured_run
    table = pd.read_csv(folder / "out_nuclei.csv")
    labels = written_labels(target)
    assert len(table) == summary.total_nuclei > 20
    for (t, z), rows in table.groupby(["time_point", "z"]):
        image = np.moveaxis(stack[t, z], 0, -1)
        ref = pd.DataFrame(regionprops_table(labels[t, z], intensity_image=image,
                                             properties=("label", "area", "centroid", "intensity_mean")))
        rows = rows.set_index("label").loc[ref["label"]]
        np.testing.assert_allclose(rows["area_um2"], ref["area"] * PIXEL ** 2, rtol=1e-9)
        np.testing.assert_allclose(rows["centroid_x_um"], ref["centroid-1"] * PIXEL, rtol=1e-9)
        np.testing.assert_allclose(rows["centroid_y_um"], ref["centroid-0"] * PIXEL, rtol=1e-9)
        for k in range(2):
            np.testing.assert_allclose(rows[f"mean_c{k}"], ref[f"intensity_mean-{k}"], rtol=1e-9)


def test_every_nucleus_has_its_stardist_probability(measured_run):
    table = pd.read_csv(measured_run[3] / "out_nuclei.csv")
    assert table["probability"].between(0, 1).all()
    assert table["probability"].min() >= 0.49        # the tiny model's threshold is near 0.5


def test_plane_counts_equal_the_run_summary_and_every_plane_has_a_row(measured_run):
    summary, stack, target, folder = measured_run
    planes = pd.read_csv(folder / "out_planes.csv")
    assert len(planes) == summary.planes_done == 6
    counts = {(r.time_point, r.z): r.nuclei for r in planes.itertuples()}
    assert counts == summary.nuclei_per_plane
    labels = written_labels(target)
    for r in planes.itertuples():
        covered = (labels[r.time_point, r.z] > 0).mean()
        assert r.covered_fraction == pytest.approx(covered, rel=1e-9)
        field_mm2 = SIZE * SIZE * PIXEL ** 2 / 1e6
        assert r.density_per_mm2 == pytest.approx(r.nuclei / field_mm2, rel=1e-9)


def test_workbook_has_the_tables_in_words_and_the_run_settings(measured_run):
    folder = measured_run[3]
    book = openpyxl.load_workbook(folder / "out_measurements.xlsx", read_only=True)
    assert book.sheetnames == ["Objects", "Nuclei", "Planes", "Tracks", "Spots", "Settings"]   # objects: through Z
    objects_header = [c.value for c in next(book["Objects"].iter_rows(max_row=1))]
    assert {"Projected area (um2)", "Projected roundness", "Volume (voxels)", "Integrated GFP"} <= set(objects_header)  # no Z step in the file
    header = [c.value for c in next(book["Nuclei"].iter_rows(max_row=1))]
    assert {"Area (um2)", "Mean Hoechst", "Mean GFP", "Ring mean GFP", "Roundness"} <= set(header)
    rows = list(book["Nuclei"].iter_rows(min_row=2, values_only=True))
    assert len(rows) == len(pd.read_csv(folder / "out_nuclei.csv"))
    settings = dict(book["Settings"].iter_rows(min_row=2, values_only=True))
    assert settings["model"] == "tiny" and settings["setting.measure"] == "True"
    # the values the run used where the settings said None, and where each came from
    assert settings["setting.prob_thresh"] == "None"
    thresholds_file = Path(settings["used.thresholds"].split("(")[1].split(")")[0])
    thresholds = json.loads(thresholds_file.read_text())
    assert settings["used.thresholds"].startswith(f"probability {thresholds['prob']:.3g} (")
    assert "thresholds.json" in settings["used.thresholds"] and "overlap (NMS)" in settings["used.thresholds"]
    assert settings["used.pixel_size_um"] == f"{PIXEL:g} x {PIXEL:g} (from {folder / 'in.ome.tif'})"
    assert settings["input.path"] == str((folder / "in.ome.tif").resolve())
    started = datetime.fromisoformat(settings["run.started"])
    assert started.tzinfo is not None and abs((datetime.now(started.tzinfo) - started).days) < 1


def test_the_workbook_written_beside_the_run_as_it_goes_equals_the_one_from_its_csvs(tmp_path, models_dir,
                                                                                     monkeypatch):
    """Default WORKERS: the workbook's own process follows the tables plane by plane (objects
    through Z, two time points, then tracks); its cells equal the workbook made from the
    finished CSVs."""
    from test_excel_stream import workbook_contents

    from stardist_v4d.analysis.excel import write_workbook
    from stardist_v4d.pipeline import workbook_process
    grown: list[dict] = []
    grow = workbook_process.WorkbookProcess.grow
    monkeypatch.setattr(workbook_process.WorkbookProcess, "grow",
                        lambda self, sizes: (grown.append(dict(sizes)), grow(self, sizes))[1])
    summary, _, _ = segment(tmp_path, models_dir, workers=None)
    assert summary.completed and len(grown) == 1 + summary.planes_done     # opened, then every plane
    assert grown[-1]["Nuclei"] > grown[0]["Nuclei"] and list(grown[-1]) == ["Objects", "Nuclei", "Planes"]
    streamed = tmp_path / "out_measurements.xlsx"
    settings = dict(openpyxl.load_workbook(streamed)["Settings"].iter_rows(min_row=2, values_only=True))
    tables = {sheet: tmp_path / f"out_{sheet.lower()}.csv" for sheet in ("Objects", "Nuclei", "Planes", "Tracks", "Spots")}
    write_workbook(tmp_path / "from_csv.xlsx", tables, settings, ("Hoechst", "GFP"))
    assert workbook_contents(streamed) == workbook_contents(tmp_path / "from_csv.xlsx")
    assert not list(tmp_path.glob("*.partial"))


def test_plots_are_non_empty_pictures(measured_run):
    import matplotlib.image as mpimg
    plots = measured_run[3] / "out_plots"
    names = sorted(p.name for p in plots.iterdir())
    nuclei = len(pd.read_csv(measured_run[3] / "out_nuclei.csv"))
    density = ["density_t0000.png", "density_t0001.png"] if nuclei >= 200 else []     # too few: no map
    assert names == sorted(["area_histogram.png", "cells_over_time.png", *density,
                            "nuclei_per_plane.png", "overlay_t0000_z0001.png", "overlay_t0001_z0001.png", "tracks.png"])
    assert (nuclei >= 200) or any(n.startswith("No density maps") for n in measured_run[0].output.notes)
    for path in plots.iterdir():
        picture = mpimg.imread(path)
        assert picture.shape[0] > 100 and picture.shape[1] > 100 and picture.std() > 0


def test_measurement_files_are_listed_at_the_end_of_the_run(measured_run):
    summary, _, _, folder = measured_run
    notes = summary.output.notes
    objects, slices = len(pd.read_csv(folder / "out_objects.csv")), len(pd.read_csv(folder / "out_nuclei.csv"))
    assert any(f"{objects} nuclei through Z ({slices} slices) measured: out_objects.csv, out_nuclei.csv, "
               "out_planes.csv" in n for n in notes)
    assert objects < slices
    assert any("out_measurements.xlsx" in n for n in notes)


def test_a_run_over_time_tracks_its_objects_into_spots_and_tracks(measured_run):
    folder = measured_run[3]
    objects = pd.read_csv(folder / "out_objects.csv")
    spots = pd.read_csv(folder / "out_spots.csv")
    tracks = pd.read_csv(folder / "out_tracks.csv")
    assert len(spots) == len(objects)                  # every object is a spot of one track
    assert set(zip(spots["time_point"], spots["object_id"])) == set(zip(objects["time_point"], objects["object_id"]))
    assert sorted(tracks["track_id"]) == sorted(spots["track_id"].unique())
    assert (tracks["spots"] == spots.groupby("track_id").size().loc[tracks["track_id"]].to_numpy()).all()
    assert list(tracks.columns[:5]) == ["track_id", "parent_track_id", "start_time_point", "end_time_point", "spots"]


def test_measure_false_writes_no_table_workbook_or_plot(tmp_path, models_dir):
    segment(tmp_path, models_dir, measure=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ome.tif", "out.ome.tif", "out_rois.zip"]


def test_plots_false_writes_the_csv_tables_only(tmp_path, models_dir):
    segment(tmp_path, models_dir, plots=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.ome.tif", "out.ome.tif", "out_nuclei.csv", "out_objects.csv", "out_planes.csv", "out_rois.zip",
        "out_spots.csv", "out_tracks.csv"]


def test_unknown_pixel_size_is_said_once_and_columns_are_in_pixels(tmp_path, models_dir, capsys):
    segment(tmp_path, models_dir, pixel=None, plots=False)
    out = capsys.readouterr().out
    assert out.count("Pixel size unknown") == 1 and "PIXEL_SIZE_UM" in out
    columns = pd.read_csv(tmp_path / "out_nuclei.csv", nrows=0).columns
    assert {"area_px2", "centroid_x_px", "perimeter_px"} <= set(columns)
    assert "density_per_px2" in pd.read_csv(tmp_path / "out_planes.csv", nrows=0).columns


def test_pixel_size_setting_overrides_the_files(tmp_path, models_dir, measured_run, capsys):
    segment(tmp_path, models_dir, pixel_size_um=(2.0, 2.0), plots=False)
    assert "pixel size 2 x 2 um (PIXEL_SIZE_UM)" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "out_nuclei.csv")
    file_calibrated = pd.read_csv(measured_run[3] / "out_nuclei.csv")      # same stack, 0.5 um
    np.testing.assert_allclose(table["area_um2"], file_calibrated["area_um2"] * 16, rtol=1e-9)
    np.testing.assert_allclose(table["perimeter_um"], file_calibrated["perimeter_um"] * 4, rtol=1e-9)


def test_measurements_dir_takes_the_files(tmp_path, models_dir):
    elsewhere = tmp_path / "tables"
    segment(tmp_path, models_dir, plots=False, measurements_dir=elsewhere)
    assert (elsewhere / "out_nuclei.csv").exists() and not (tmp_path / "out_nuclei.csv").exists()


def test_existing_tables_stop_the_run_before_the_model_loads(tmp_path, models_dir):
    (tmp_path / "out_nuclei.csv").write_text("earlier\n")
    with pytest.raises(FileExistsError, match="out_nuclei.csv exist already; set OVERWRITE"):
        segment(tmp_path, models_dir)
    assert (tmp_path / "out_nuclei.csv").read_text() == "earlier\n"
    assert not (tmp_path / "out.ome.tif.partial").exists()


@pytest.mark.parametrize("workers", [0, None])      # None: with the workbook's own process
def test_stopped_run_keeps_partial_tables_with_exactly_the_rows_of_written_planes(tmp_path, models_dir, workers,
                                                                                   capsys):
    summary, _, target = segment(tmp_path, models_dir, host=StopAfter, host_kwargs={"planes": 4}, workers=workers)
    # 4 planes: time point 0 (3 planes) complete, its objects built; time point 1 open
    objects = len(pd.read_csv(tmp_path / "out_objects.csv.partial"))
    assert objects > 0
    assert (f"Stopped: 4 of 6 planes, {summary.total_nuclei} nucleus slices ({objects} nuclei through Z in "
            "complete time points)") in capsys.readouterr().out
    assert not summary.completed and summary.planes_done == 4
    nuclei = pd.read_csv(tmp_path / "out_nuclei.csv.partial")
    planes = pd.read_csv(tmp_path / "out_planes.csv.partial")
    labels = written_labels(Path(str(target) + ".partial"))
    assert len(planes) == 4 and len(nuclei) == summary.total_nuclei
    for (t, z), rows in nuclei.groupby(["time_point", "z"]):
        assert sorted(rows["label"]) == sorted(np.unique(labels[t, z])[1:])
    done = {(r.time_point, r.z) for r in planes.itertuples()}
    assert done == set(summary.nuclei_per_plane)
    assert not (tmp_path / "out_nuclei.csv").exists() and not (tmp_path / "out_measurements.xlsx").exists()
    assert not (tmp_path / "out_measurements.xlsx.partial").exists()


def test_track_t_writes_the_lap_track_ids_into_every_slice_of_the_channel(tmp_path, models_dir):
    """The channel's IDs are the tracks table's; the regions are link_z's objects, renamed."""
    base = two_channel_stack(size_t=1, size_z=2)
    stack = np.concatenate([base, np.roll(base, 2, axis=-1), np.roll(base, 4, axis=-1)])  # 2 px per t
    (tmp_path / "z").mkdir()
    _, _, linked = segment(tmp_path / "z", models_dir, stack=stack, label_ids="link_z", plots=False)
    summary, _, target = segment(tmp_path, models_dir, stack=stack, label_ids="track_t", plots=False)
    assert summary.completed
    labels, objects_ids = written_labels(target), written_labels(linked)
    objects = pd.read_csv(tmp_path / "out_objects.csv")
    spots = pd.read_csv(tmp_path / "out_spots.csv")
    tracks = pd.read_csv(tmp_path / "out_tracks.csv")
    nuclei = pd.read_csv(tmp_path / "out_nuclei.csv")
    assert len(tracks) < len(objects) and (tracks.spots == 3).sum() > 5          # nuclei followed over time
    track_of = spots.set_index(["time_point", "object_id"])["track_id"]
    assert (objects.set_index(["time_point", "object_id"])["label_id"] == track_of).all()
    for t in range(3):
        ids = set(np.unique(labels[t])) - {0}
        assert ids == set(objects.label_id[objects.time_point == t]) <= set(tracks.track_id)
        assert ids == set(nuclei.label[nuclei.time_point == t])
        # same regions as link_z's objects, one-to-one
        pairs = {(a, b) for a, b in zip(labels[t].ravel(), objects_ids[t].ravel()) if a or b}
        assert len(pairs) == len(ids) == len({b for _, b in pairs}) and all(a and b for a, b in pairs)
    assert labels.max() == len(tracks) and labels.dtype == np.uint32
    with zipfile.ZipFile(tmp_path / "out_rois.zip") as rois:
        named = {int(name[:-4].rsplit("-", 1)[1]) for name in rois.namelist()}
        assert named == set(nuclei.label)
        first = roifile.ImagejRoi.frombytes(rois.read(rois.namelist()[0]))
        assert first.name == rois.namelist()[0][:-4]


def test_track_t_without_measurements_is_a_one_line_error(models_dir):
    with pytest.raises(ConfigError, match="LABEL_IDS .* 'track_t' .* needs MEASURE = True"):
        build_config({"LABEL_IDS": "track_t", "MEASURE": False})


@pytest.mark.parametrize("flags, message", [
    (["--ring-um", "0"], "RING_UM (--ring-um) = 0.0: must be a width in um above 0"),
    (["--pixel-size-um", "0.5", "-1"], "PIXEL_SIZE_UM (--pixel-size-um) = [0.5, -1.0]: must be None"),
    (["--track-max-distance-um", "0"], "TRACK_MAX_DISTANCE_UM (--track-max-distance-um) = 0.0: must be None"),
    (["--track-max-distance-um", "nan"], "TRACK_MAX_DISTANCE_UM (--track-max-distance-um) = nan: must be None"),
    (["--track-gap-frames", "11"], "TRACK_GAP_FRAMES (--track-gap-frames) = 11: must be a whole number from 0"),
])
def test_measurement_settings_are_checked_with_one_line(models_dir, flags, message):
    with pytest.raises(ConfigError) as error:
        build_config({"MODEL2D_PATH": models_dir, "MODEL_NAME": "tiny"}, flags)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_track_settings_from_constants_are_checked_too(models_dir):
    with pytest.raises(ConfigError) as error:
        build_config({"MODEL2D_PATH": models_dir, "MODEL_NAME": "tiny", "TRACK_DIVISIONS": "False"})
    assert str(error.value) == "TRACK_DIVISIONS (--track-divisions/--no-track-divisions) = 'False': must be True or False"
    config = build_config({"MODEL2D_PATH": models_dir, "MODEL_NAME": "tiny"},
                          ["--track-max-distance-um", "7.5", "--track-gap-frames", "0", "--no-track-divisions"])
    assert (config.track_max_distance_um, config.track_gap_frames, config.track_divisions) == (7.5, 0, False)


def test_measure_flags_reach_the_config(models_dir):
    config = build_config({"MODEL2D_PATH": models_dir, "MODEL_NAME": "tiny"},
                          ["--no-measure", "--no-plots", "--ring-um", "3", "--pixel-size-um", "0.2", "0.3"])
    assert (config.measure, config.plots, config.ring_um, tuple(config.pixel_size_um)) == (False, False, 3.0, (0.2, 0.3))


# ------------------------------------------------------------------ measure command
