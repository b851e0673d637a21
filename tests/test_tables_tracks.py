"""The run's CSV tables and tracks: written as planes complete, values derived by hand.

Nuclei columns come from ``measure_plane`` (held to geometry in test_measure.py);
what is checked here is what the tables and the track builder make of them.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk

from stardist_v4d.analysis.measure import Calibration, measure_plane
from stardist_v4d.analysis.tables import CsvTable, TablePaths, plane_summary, planes_columns

HALF_UM = Calibration((0.5, 0.5))                 # 0.5 um pixels


# ------------------------------------------------------------- tables.py
def test_csv_table_writes_header_into_partial_file_at_creation(tmp_path):
    path = tmp_path / "run_nuclei.csv"
    table = CsvTable(path, ["time_point", "label", "area_um2"])
    partial = Path(str(path) + ".partial")
    assert partial.read_text(encoding="utf-8") == "time_point,label,area_um2\n"
    assert not path.exists()
    frame = pd.read_csv(partial)
    assert list(frame.columns) == ["time_point", "label", "area_um2"] and len(frame) == 0
    table.finish(False)


def test_csv_table_appends_rows_plane_by_plane_readable_while_open(tmp_path):
    path = tmp_path / "run_nuclei.csv"
    names = ["time_point", "label", "area_um2"]
    table = CsvTable(path, names)
    table.append({"time_point": np.array([0, 0]), "label": np.array([1, 2]),
                  "area_um2": np.array([10.5, 20.25])})
    frame = pd.read_csv(table.partial_path)
    assert frame["label"].tolist() == [1, 2]
    table.append({"time_point": np.array([1]), "label": np.array([7]), "area_um2": np.array([3.0])})
    table.append({"time_point": np.zeros(0, int), "label": np.zeros(0, int), "area_um2": np.zeros(0)})
    frame = pd.read_csv(table.partial_path)
    assert frame["time_point"].tolist() == [0, 0, 1]
    assert frame["area_um2"].tolist() == [10.5, 20.25, 3.0]
    assert table.rows == 3
    table.finish(True)


def test_csv_table_finish_false_keeps_partial_and_true_puts_it_in_place_keeping_the_partial(tmp_path):
    stopped = CsvTable(tmp_path / "a.csv", ["label"])
    stopped.append({"label": np.array([5])})
    where = stopped.finish(False)
    assert where == tmp_path / "a.csv.partial" and where.exists()
    assert not (tmp_path / "a.csv").exists()
    done = CsvTable(tmp_path / "b.csv", ["label"])
    done.append({"label": np.array([5, 6])})
    where = done.finish(True)
    assert where == tmp_path / "b.csv" and where.exists()
    assert (tmp_path / "b.csv.partial").exists()          # until the run's output is in place
    done.drop_partial()
    assert not (tmp_path / "b.csv.partial").exists()
    assert where.read_text(encoding="utf-8") == "label\n5\n6\n"


def test_csv_integers_have_no_decimal_point_nan_is_empty_and_floats_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    floats = rng.uniform(-1, 1, 40) * 10.0 ** rng.uniform(-8, 8, 40)
    floats[[4, 17]] = np.nan
    names = ["time_point", "z", "label", "area_um2"]
    table = CsvTable(tmp_path / "n.csv", names)
    table.append({"time_point": np.full(40, 2, np.int64), "z": np.arange(40) % 3,
                  "label": np.arange(1, 41).astype(np.float64), "area_um2": floats})
    path = table.finish(True)
    lines = path.read_text(encoding="utf-8").splitlines()
    fields = [line.split(",") for line in lines[1:]]
    assert len(fields) == 40
    assert all("." not in row[0] and "." not in row[1] and "." not in row[2] for row in fields)
    assert [row[2] for row in fields[:3]] == ["1", "2", "3"]
    assert fields[4][3] == "" and fields[17][3] == ""
    back = pd.read_csv(path)
    assert back["label"].dtype.kind == "i"
    np.testing.assert_allclose(back["area_um2"].to_numpy(), floats, rtol=1e-9)
    assert np.isnan(back["area_um2"][4]) and np.isnan(back["area_um2"][17])


def hand_made_plane():
    labels = np.zeros((100, 200), np.uint16)
    labels[10:20, 10:20] = 1           # 100 px
    labels[40:45, 50:58] = 2           # 40 px
    labels[60:80, 150:153] = 5         # 60 px
    return labels


def test_plane_summary_counts_density_areas_and_covered_fraction():
    labels = hand_made_plane()
    nuclei = measure_plane(labels, [], None, HALF_UM, time_point=4, z=2)
    summary = plane_summary(4, 2, nuclei, HALF_UM, labels.shape)
    assert list(summary) == planes_columns(HALF_UM)
    # field: 100 x 200 px of 0.25 um2 = 5000 um2 = 0.005 mm2
    assert summary["time_point"][0] == 4 and summary["z"][0] == 2
    assert summary["nuclei"][0] == 3
    assert summary["density_per_mm2"][0] == pytest.approx(3 / 0.005, rel=1e-12)
    assert summary["mean_area_um2"][0] == pytest.approx((25 + 10 + 15) / 3, rel=1e-12)
    assert summary["median_area_um2"][0] == pytest.approx(15.0, rel=1e-12)
    assert summary["covered_fraction"][0] == pytest.approx(200 / 20000, rel=1e-12)


def test_plane_summary_uncalibrated_gives_density_per_px2():
    labels = hand_made_plane()
    calibration = Calibration(None)
    nuclei = measure_plane(labels, [], None, calibration)
    summary = plane_summary(0, 0, nuclei, calibration, labels.shape)
    assert "density_per_px2" in summary and "mean_area_px2" in summary
    assert summary["density_per_px2"][0] == pytest.approx(3 / 20000, rel=1e-12)
    assert summary["mean_area_px2"][0] == pytest.approx(200 / 3, rel=1e-12)
    assert summary["covered_fraction"][0] == pytest.approx(0.01, rel=1e-12)


def test_plane_summary_without_nuclei_is_count_zero_empty_means_covered_zero(tmp_path):
    labels = np.zeros((30, 40), np.uint16)
    nuclei = measure_plane(labels, [], None, HALF_UM)
    summary = plane_summary(1, 0, nuclei, HALF_UM, labels.shape)
    assert summary["nuclei"][0] == 0
    assert summary["density_per_mm2"][0] == 0
    assert np.isnan(summary["mean_area_um2"][0]) and np.isnan(summary["median_area_um2"][0])
    assert summary["covered_fraction"][0] == 0
    table = CsvTable(tmp_path / "p.csv", list(summary))
    table.append(summary)
    line = table.finish(True).read_text(encoding="utf-8").splitlines()[1]
    assert line == "1,0,0,0,,,0"


def test_table_paths_names_the_run_files(tmp_path):
    paths = TablePaths(tmp_path, "embryo_01")
    assert paths.nuclei == tmp_path / "embryo_01_nuclei.csv"
    assert paths.planes == tmp_path / "embryo_01_planes.csv"
    assert paths.tracks == tmp_path / "embryo_01_tracks.csv"
    assert paths.workbook == tmp_path / "embryo_01_measurements.xlsx"
    assert paths.plots == tmp_path / "embryo_01_plots"


def test_table_paths_existing_finds_earlier_finished_files_not_partial_ones(tmp_path):
    paths = TablePaths(tmp_path, "run")
    assert paths.existing() == []
    (tmp_path / "run_nuclei.csv").write_text("x\n")
    (tmp_path / "run_planes.csv.partial").write_text("x\n")
    (tmp_path / "run_tracks.csv").write_text("x\n")
    (tmp_path / "run_plots").mkdir()
    (tmp_path / "other_nuclei.csv").write_text("x\n")
    # .partial: the host's
    assert set(paths.existing()) == {tmp_path / "run_nuclei.csv", tmp_path / "run_plots", tmp_path / "run_tracks.csv"}


# ------------------------------------------------------------- tracks.py
