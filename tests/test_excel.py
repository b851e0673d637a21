"""The CSV tables -> Excel workbook: sheets, headers in words, cell types, overflow, safe writing."""
from __future__ import annotations

import csv
from pathlib import Path

import openpyxl
import pytest

from stardist_v4d.analysis.excel import EXCEL_MAX_ROWS, human_header, write_workbook

CHANNELS = ("Nuclei", "Membrane")
NUCLEI_COLUMNS = ["time_point", "z", "label", "centroid_x_um", "area_um2", "probability",
                  "mean_c0", "ring_mean_c1"]


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def sheet_rows(workbook, name: str) -> list[tuple]:
    return list(workbook[name].iter_rows(values_only=True))


@pytest.fixture
def run_tables(tmp_path: Path) -> dict[str, Path]:
    nuclei = write_csv(tmp_path / "nuclei.csv", NUCLEI_COLUMNS, [
        [0, 0, 1, 12.5, 80.25, 0.93, 101.5, 40.75],
        [0, 0, 2, 30.0, 64.0, "", 99.0, ""],
        [1, 0, 1, 13.0, 81.0, 0.9, 100.0, "=SUM(A1)"],
    ])
    planes = write_csv(tmp_path / "planes.csv",
                       ["time_point", "z", "nuclei", "density_per_mm2", "mean_area_um2", "covered_fraction"],
                       [[0, 0, 2, 1234.5, 72.125, 0.25], [1, 0, 1, 617.25, 81.0, 0.125]])
    tracks = write_csv(tmp_path / "tracks.csv",
                       ["track_id", "first_time_point", "last_time_point", "time_points",
                        "displacement_um", "mean_speed_um_per_s"],
                       [[1, 0, 1, 2, 0.5, 0.01], [2, 0, 0, 1, 0.0, ""]])
    return {"Nuclei": nuclei, "Planes": planes, "Tracks": tracks}


SETTINGS = {"Model": "2D_versatile_fluo", "Probability threshold": "0.5", "Pixel size (um)": "0.325"}


def test_sheets_come_in_table_order_then_settings(tmp_path, run_tables):
    out = tmp_path / "run.xlsx"
    notes = write_workbook(out, run_tables, SETTINGS, CHANNELS)
    workbook = openpyxl.load_workbook(out)
    assert workbook.sheetnames == ["Nuclei", "Planes", "Tracks", "Settings"]
    assert notes == []


def test_tracks_sheet_is_absent_when_not_given(tmp_path, run_tables):
    out = tmp_path / "run.xlsx"
    tables = {name: path for name, path in run_tables.items() if name != "Tracks"}
    write_workbook(out, tables, SETTINGS, CHANNELS)
    assert openpyxl.load_workbook(out).sheetnames == ["Nuclei", "Planes", "Settings"]


def test_header_row_is_in_words_and_frozen(tmp_path, run_tables):
    out = tmp_path / "run.xlsx"
    write_workbook(out, run_tables, SETTINGS, CHANNELS)
    workbook = openpyxl.load_workbook(out)
    assert sheet_rows(workbook, "Nuclei")[0] == (
        "Time point", "Z", "Label", "Centroid X (um)", "Area (um2)", "Probability",
        "Mean Nuclei", "Ring mean Membrane")
    assert sheet_rows(workbook, "Planes")[0] == (
        "Time point", "Z", "Nuclei", "Density (per mm2)", "Mean area (um2)", "Covered fraction")
    assert sheet_rows(workbook, "Tracks")[0] == (
        "Track ID", "First time point", "Last time point", "Time points", "Displacement (um)",
        "Mean speed (um per s)")
    for name in workbook.sheetnames:
        assert workbook[name].freeze_panes == "A2"
    widths = workbook["Nuclei"].column_dimensions
    assert widths["H"].width >= len("Ring mean Membrane")


def test_numbers_stay_numbers_and_empty_fields_stay_empty(tmp_path, run_tables):
    out = tmp_path / "run.xlsx"
    write_workbook(out, run_tables, SETTINGS, CHANNELS)
    rows = sheet_rows(openpyxl.load_workbook(out), "Nuclei")
    assert rows[1] == (0, 0, 1, 12.5, 80.25, 0.93, 101.5, 40.75)
    assert all(type(value) is int for value in rows[1][:3])
    # (.xlsx has one number type: a whole float such as 30.0 is stored as "30" and reads back as int)
    assert all(type(value) is float for value in rows[1][3:])
    assert rows[2][5] is None and rows[2][7] is None  # NaN in the CSV -> empty cell
    assert rows[2][3] == 30.0


def test_text_that_looks_like_a_formula_is_kept_as_text(tmp_path, run_tables):
    out = tmp_path / "run.xlsx"
    write_workbook(out, run_tables, SETTINGS, CHANNELS)
    cell = openpyxl.load_workbook(out)["Nuclei"]["H4"]
    assert cell.value == "=SUM(A1)" and cell.data_type == "s"


def test_settings_sheet_holds_each_setting_in_order(tmp_path, run_tables):
    out = tmp_path / "run.xlsx"
    write_workbook(out, run_tables, SETTINGS, CHANNELS)
    assert sheet_rows(openpyxl.load_workbook(out), "Settings") == [
        ("Setting", "Value"), ("Model", "2D_versatile_fluo"), ("Probability threshold", "0.5"),
        ("Pixel size (um)", "0.325")]


def test_rows_beyond_a_sheet_continue_on_numbered_sheets(tmp_path):
    rows = [[i, 0, i + 1, i * 1.5] for i in range(12)]
    nuclei = write_csv(tmp_path / "nuclei.csv", ["time_point", "z", "label", "area_um2"], rows)
    out = tmp_path / "run.xlsx"
    notes = write_workbook(out, {"Nuclei": nuclei}, {}, CHANNELS, max_rows=5)
    workbook = openpyxl.load_workbook(out)
    assert workbook.sheetnames == ["Nuclei", "Nuclei 2", "Nuclei 3", "Settings"]
    header = ("Time point", "Z", "Label", "Area (um2)")
    written = []
    for name in ["Nuclei", "Nuclei 2", "Nuclei 3"]:
        sheet = sheet_rows(workbook, name)
        assert sheet[0] == header
        assert 1 < len(sheet) <= 5
        written += [list(row) for row in sheet[1:]]
    assert written == rows
    assert len(notes) == 1
    assert notes[0].startswith("Nuclei: 12 rows on sheets Nuclei .. Nuclei 3")


def test_a_table_that_exactly_fills_its_sheets_gets_no_empty_extra_sheet(tmp_path):
    rows = [[i] for i in range(8)]
    nuclei = write_csv(tmp_path / "nuclei.csv", ["label"], rows)
    out = tmp_path / "run.xlsx"
    notes = write_workbook(out, {"Nuclei": nuclei}, {}, CHANNELS, max_rows=5)
    workbook = openpyxl.load_workbook(out)
    assert workbook.sheetnames == ["Nuclei", "Nuclei 2", "Settings"]
    assert [row[0] for row in sheet_rows(workbook, "Nuclei 2")] == ["Label", 4, 5, 6, 7]
    assert notes and "Nuclei .. Nuclei 2" in notes[0]


def test_a_table_that_fits_gives_no_note(tmp_path):
    nuclei = write_csv(tmp_path / "nuclei.csv", ["label"], [[i] for i in range(4)])
    out = tmp_path / "run.xlsx"
    assert write_workbook(out, {"Nuclei": nuclei}, {}, CHANNELS, max_rows=5) == []
    assert openpyxl.load_workbook(out).sheetnames == ["Nuclei", "Settings"]


def test_a_header_only_table_gives_a_sheet_with_just_the_header(tmp_path):
    nuclei = write_csv(tmp_path / "nuclei.csv", ["label", "area_px2"], [])
    out = tmp_path / "run.xlsx"
    write_workbook(out, {"Nuclei": nuclei}, {}, CHANNELS)
    assert sheet_rows(openpyxl.load_workbook(out), "Nuclei") == [("Label", "Area (px2)")]


def test_no_partial_file_is_left_and_an_existing_workbook_is_replaced(tmp_path, run_tables):
    out = tmp_path / "run.xlsx"
    out.write_bytes(b"not a workbook")
    write_workbook(out, run_tables, SETTINGS, CHANNELS)
    assert openpyxl.load_workbook(out).sheetnames[0] == "Nuclei"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("run")) == ["run.xlsx"]


def test_a_failed_write_leaves_neither_partial_nor_a_changed_workbook(tmp_path):
    out = tmp_path / "run.xlsx"
    out.write_bytes(b"the previous workbook")
    with pytest.raises(FileNotFoundError):
        write_workbook(out, {"Nuclei": tmp_path / "missing.csv"}, {}, CHANNELS)
    assert out.read_bytes() == b"the previous workbook"
    assert not (tmp_path / "run.xlsx.partial").exists()


def test_bad_sheet_names_are_refused_before_writing(tmp_path, run_tables):
    out = tmp_path / "run.xlsx"
    with pytest.raises(ValueError):
        write_workbook(out, {"Nuclei/all": run_tables["Nuclei"]}, {}, CHANNELS)
    with pytest.raises(ValueError):
        write_workbook(out, {"settings": run_tables["Nuclei"]}, {}, CHANNELS)
    assert not out.exists()


@pytest.mark.parametrize("column, words", [
    ("time_point", "Time point"), ("z", "Z"), ("label", "Label"), ("track_id", "Track ID"),
    ("centroid_x_um", "Centroid X (um)"), ("centroid_y_um", "Centroid Y (um)"),
    ("area_um2", "Area (um2)"), ("perimeter_um", "Perimeter (um)"), ("roundness", "Roundness"),
    ("major_axis_um", "Major axis (um)"), ("minor_axis_um", "Minor axis (um)"),
    ("orientation_deg", "Orientation (deg)"), ("solidity", "Solidity"), ("probability", "Probability"),
    ("mean_c0", "Mean Nuclei"), ("min_c1", "Min Membrane"), ("max_c0", "Max Nuclei"),
    ("sum_c1", "Sum Membrane"), ("std_c0", "Std Nuclei"), ("ring_mean_c1", "Ring mean Membrane"),
    ("nuclei", "Nuclei"), ("density_per_mm2", "Density (per mm2)"),
    ("density_per_px2", "Density (per px2)"), ("mean_area_um2", "Mean area (um2)"),
    ("median_area_um2", "Median area (um2)"), ("covered_fraction", "Covered fraction"),
    ("first_time_point", "First time point"), ("last_time_point", "Last time point"),
    ("time_points", "Time points"), ("displacement_um", "Displacement (um)"),
    ("path_length_um", "Path length (um)"),
    ("mean_speed_um_per_time_point", "Mean speed (um per time point)"),
    ("mean_speed_um_per_s", "Mean speed (um per s)"),
])
def test_human_header_words_for_every_known_column(column, words):
    assert human_header(column, CHANNELS) == words


@pytest.mark.parametrize("column, words", [
    ("centroid_x_px", "Centroid X (px)"), ("area_px2", "Area (px2)"), ("perimeter_px", "Perimeter (px)"),
    ("major_axis_px", "Major axis (px)"), ("mean_area_px2", "Mean area (px2)"),
    ("path_length_px", "Path length (px)"),
])
def test_human_header_pixel_units(column, words):
    assert human_header(column, CHANNELS) == words


def test_human_header_falls_back_to_channel_index_and_plain_words():
    assert human_header("mean_c2", CHANNELS) == "Mean C2"
    assert human_header("ring_mean_c0", ()) == "Ring mean C0"
    assert human_header("mean_c1", ("Nuclei", "")) == "Mean C1"
    assert human_header("nearest_neighbour_distance", CHANNELS) == "Nearest neighbour distance"


def test_excel_row_limit_is_excels():
    assert EXCEL_MAX_ROWS == 2 ** 20


def test_every_sheet_prints_landscape_one_page_wide_with_the_header_on_each_page(tmp_path, run_tables):
    out = tmp_path / "run.xlsx"
    write_workbook(out, run_tables, SETTINGS, CHANNELS)
    for sheet in openpyxl.load_workbook(out).worksheets:
        assert sheet.print_title_rows == "$1:$1", sheet.title
        assert sheet.page_setup.orientation == "landscape"
        # fitToWidth 1 is the format's default (ECMA-376), which XlsxWriter leaves implicit
        assert (sheet.page_setup.fitToWidth or 1, sheet.page_setup.fitToHeight) == (1, 0)
        assert sheet.sheet_properties.pageSetUpPr.fitToPage


def test_numbers_show_their_meaningful_digits_and_keep_all_of_them(tmp_path, run_tables):
    out = tmp_path / "run.xlsx"
    write_workbook(out, run_tables, SETTINGS, CHANNELS)
    nuclei = openpyxl.load_workbook(out)["Nuclei"]
    formats = {nuclei.cell(1, i).value: nuclei.cell(2, i).number_format for i in range(1, 9)}
    assert formats["Area (um2)"] == formats["Centroid X (um)"] == "0.00"
    assert formats["Mean Nuclei"] == formats["Ring mean Membrane"] == "0.0"
    assert formats["Probability"] == "0.000" and formats["Label"] == "General"
    assert nuclei["E2"].value == 80.25                      # shown 80.25, kept whole
    planes = openpyxl.load_workbook(out)["Planes"]
    assert planes["D2"].number_format == "0.00" and planes["F2"].number_format == "0.000"


def test_the_workbook_written_in_a_second_process_equals_the_one_written_here(tmp_path, run_tables):
    from stardist_v4d.pipeline.run_pictures import _workbook_notes
    from stardist_v4d.pipeline.workbook_process import start_workbook_process
    here, beside = tmp_path / "here.xlsx", tmp_path / "beside.xlsx"
    write_workbook(here, run_tables, SETTINGS, CHANNELS)
    process = start_workbook_process(beside, CHANNELS)
    assert process is not None
    process.finish_later(run_tables, SETTINGS)
    assert _workbook_notes((beside, dict(run_tables), dict(SETTINGS), list(CHANNELS)), process) == \
        [f"Excel workbook: {beside}"]
    process.close()
    a, b = openpyxl.load_workbook(here), openpyxl.load_workbook(beside)
    assert a.sheetnames == b.sheetnames
    for name in a.sheetnames:
        assert sheet_rows(a, name) == sheet_rows(b, name)


def test_a_second_process_that_died_is_replaced_by_writing_here(tmp_path, run_tables):
    import os
    import signal

    from stardist_v4d.pipeline.run_pictures import _workbook_notes
    from stardist_v4d.pipeline.workbook_process import start_workbook_process
    out = tmp_path / "run.xlsx"
    process = start_workbook_process(out, CHANNELS)
    process.follow({"Nuclei": run_tables["Nuclei"]})
    process.grow({"Nuclei": 10})
    for pid in list(process._pool._processes):            # noqa: SLF001  (killed, as the OOM killer would)
        os.kill(pid, signal.SIGKILL)
    process.finish_later(run_tables, SETTINGS)
    assert _workbook_notes((out, dict(run_tables), dict(SETTINGS), list(CHANNELS)), process) == \
        [f"Excel workbook: {out}"]
    process.close()                                        # a broken pool closes too
    assert openpyxl.load_workbook(out).sheetnames == ["Nuclei", "Planes", "Tracks", "Settings"]
