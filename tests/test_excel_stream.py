"""The workbook written while the tables grow: the same cells as the one written from the finished CSVs."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import openpyxl
import pytest

from stardist_v4d.analysis.excel import write_workbook
from stardist_v4d.analysis.excel_stream import StreamedWorkbook

CHANNELS = ("Nuclei", "Membrane")
SETTINGS = {"Model": "fluo_nuclei", "Probability threshold": "0.543"}


def workbook_contents(path: Path) -> dict:
    """Every sheet's cells with their number formats, and the column widths (what a reader sees)."""
    book = openpyxl.load_workbook(path)
    return {name: ([[(cell.value, cell.number_format) for cell in row] for row in book[name].iter_rows()],
                   {key: dim.width for key, dim in book[name].column_dimensions.items()},
                   book[name].freeze_panes)
            for name in book.sheetnames} | {"order": book.sheetnames}


def random_rows(rng, n: int, start: int) -> list[list]:
    return [[0, int(rng.integers(0, 5)), start + i, f"{rng.random() * 100:.10g}", f"{rng.random():.10g}",
             "" if rng.random() < 0.1 else f"{rng.random() * 1000:.10g}"] for i in range(n)]


class Growing:
    """A CSV written in chunks, as the run's tables are (flushed after each plane)."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path = path
        self.file = open(path, "w", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file, lineterminator="\n")
        self.writer.writerow(header)
        self.file.flush()

    def add(self, rows: list[list]) -> int:
        self.writer.writerows(rows)
        self.file.flush()
        return self.file.tell()

    def close(self) -> Path:
        self.file.close()
        return self.path


HEADER = ["time_point", "z", "label", "area_um2", "roundness", "mean_c1"]


@pytest.mark.parametrize("max_rows", [1_048_576, 60])
def test_streamed_workbook_equals_the_one_written_from_the_finished_csvs(tmp_path, max_rows):
    """Rows come in chunks (sizes also mid-line, as a reader may see them), a sheet given only at the
    end (tracks) goes after the followed ones; with a tiny sheet limit the stream gives up and the
    whole workbook is written from the CSVs (numbered sheets next to their first)."""
    rng = np.random.default_rng(0)
    objects, nuclei = Growing(tmp_path / "objects.csv", HEADER), Growing(tmp_path / "nuclei.csv", HEADER)
    streamed = StreamedWorkbook(tmp_path / "streamed.xlsx", CHANNELS, max_rows=max_rows)
    streamed.follow({"Objects": objects.path, "Nuclei": nuclei.path})
    done = 0
    for plane in range(12):
        size = nuclei.add(random_rows(rng, int(rng.integers(0, 30)), done))
        done += 30
        streamed.grow({"Nuclei": size - (7 if plane % 3 == 0 else 0), "Objects": objects.file.tell()})
    objects.add(random_rows(rng, 40, 0))            # objects complete at the end of the time point
    tracks = tmp_path / "tracks.csv"
    tracks.write_text("track_id,first_time_point,displacement_um\n1,0,0.5\n2,0,\n")
    tables = {"Objects": objects.close(), "Nuclei": nuclei.close(), "Tracks": tracks}
    notes = streamed.finish(tables, SETTINGS)
    expected_notes = write_workbook(tmp_path / "from_csv.xlsx", tables, SETTINGS, CHANNELS, max_rows=max_rows)
    assert notes == expected_notes
    assert workbook_contents(tmp_path / "streamed.xlsx") == workbook_contents(tmp_path / "from_csv.xlsx")
    order = workbook_contents(tmp_path / "streamed.xlsx")["order"]
    assert order[:2] == ["Objects", "Nuclei"] and order[-2:] == ["Tracks", "Settings"]
    assert (max_rows < 100) == ("Nuclei 2" in order)
    assert not (tmp_path / "streamed.xlsx.partial").exists()


def test_an_empty_followed_table_is_a_header_only_sheet(tmp_path):
    nuclei = Growing(tmp_path / "nuclei.csv", HEADER)
    streamed = StreamedWorkbook(tmp_path / "streamed.xlsx", CHANNELS)
    streamed.follow({"Nuclei": nuclei.path})
    streamed.grow({"Nuclei": nuclei.file.tell()})
    streamed.finish({"Nuclei": nuclei.close()}, SETTINGS)
    write_workbook(tmp_path / "from_csv.xlsx", {"Nuclei": nuclei.path}, SETTINGS, CHANNELS)
    assert workbook_contents(tmp_path / "streamed.xlsx") == workbook_contents(tmp_path / "from_csv.xlsx")


def test_an_abandoned_workbook_leaves_no_file_and_no_scratch(tmp_path):
    nuclei = Growing(tmp_path / "nuclei.csv", HEADER)
    streamed = StreamedWorkbook(tmp_path / "streamed.xlsx", CHANNELS)
    streamed.follow({"Nuclei": nuclei.path})
    streamed.grow({"Nuclei": nuclei.add(random_rows(np.random.default_rng(1), 150, 0))})
    scratch = Path(streamed._scratch)
    assert any(scratch.iterdir())                  # XlsxWriter's row files while it streams
    streamed.abandon()
    assert not scratch.exists()
    assert not (tmp_path / "streamed.xlsx").exists() and not (tmp_path / "streamed.xlsx.partial").exists()


def test_a_sheet_that_overflows_only_with_its_last_rows_falls_back_to_the_csvs(tmp_path):
    """15 rows on sheets of 10: the last 5 wait (to size a continuation sheet) until the end, where
    they cannot go next to the first sheet: the workbook is then written from the CSVs."""
    nuclei = Growing(tmp_path / "nuclei.csv", HEADER)
    streamed = StreamedWorkbook(tmp_path / "streamed.xlsx", CHANNELS, max_rows=11)
    streamed.follow({"Nuclei": nuclei.path})
    streamed.grow({"Nuclei": nuclei.add(random_rows(np.random.default_rng(2), 15, 0))})
    notes = streamed.finish({"Nuclei": nuclei.close()}, SETTINGS)
    assert notes == write_workbook(tmp_path / "from_csv.xlsx", {"Nuclei": nuclei.path}, SETTINGS, CHANNELS,
                                   max_rows=11) != []
    assert workbook_contents(tmp_path / "streamed.xlsx") == workbook_contents(tmp_path / "from_csv.xlsx")
    assert workbook_contents(tmp_path / "streamed.xlsx")["order"] == ["Nuclei", "Nuclei 2", "Settings"]
