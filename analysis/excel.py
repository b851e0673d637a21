"""The run's CSV tables -> one Excel workbook, for people rather than programs.

The CSVs stay the complete, machine-readable record; the workbook is the same
numbers in the form most biologists open first: one sheet per table (``Nuclei``,
``Planes``, ``Tracks``), headers in words (``Area (um2)`` for ``area_um2``,
``Mean Nuclei`` for ``mean_c0``), the header row frozen, and a last ``Settings``
sheet recording how the run was made. Numbers show the digits that mean something
(lengths, areas and volumes 2 decimals, intensities 1, ratios 3; the cells keep every
digit), and every sheet prints landscape, as wide as one page, the header row on each.

Why streaming: a time-lapse can give millions of nucleus rows. The workbook is
written with XlsxWriter in constant-memory mode (each row goes to disk as it is
written; 1.8x faster than openpyxl's write-only mode on a crowded 10-plane run's tables)
and the CSVs are read row by row with the ``csv`` module, so memory stays
small whatever the table size. Why numbered
sheets: an Excel sheet holds 1,048,576 rows; a longer table continues on
``Nuclei 2``, ``Nuclei 3``, ... with the header repeated, and the caller gets a
note to show the user instead of a crash or a silently cut table.

Why ``.partial``: the workbook is saved next to its final name and moved into
place with ``os.replace``, so an interrupted run never leaves a half-written
workbook that looks finished.
"""
from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import xlsxwriter

#: Rows an Excel sheet holds, header included.
EXCEL_MAX_ROWS = 1_048_576
#: Characters an Excel cell holds; longer text is cut.
EXCEL_MAX_CELL_CHARS = 32_767
#: Characters in an Excel sheet name.
EXCEL_MAX_SHEET_NAME = 31
SETTINGS_SHEET = "Settings"

#: Column-name endings that are units, longest first so ``_um2`` wins over ``_um``.
UNIT_SUFFIXES = (
    ("_um_per_time_point", "um per time point"),
    ("_um_per_s", "um per s"),
    ("_per_mm2", "per mm2"),
    ("_per_px2", "per px2"),
    ("_um3", "um3"),
    ("_voxels", "voxels"),
    ("_um2", "um2"),
    ("_px2", "px2"),
    ("_um", "um"),
    ("_px", "px"),
    ("_deg", "deg"),
)
#: Words written differently from their snake_case spelling.
SPECIAL_WORDS = {"id": "ID", "x": "X", "y": "Y", "z": "Z"}
#: Per-channel columns: ``mean_c0``, ``ring_mean_c1``, ...
_CHANNEL_COLUMN = re.compile(r"(mean|min|max|sum|std|ring_mean|integrated|ring_integrated)_c(\d+)")
_INVALID_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")
#: Control characters an .xlsx cannot hold (the XML 1.0 rule; tab, newline, return stay).
_ILLEGAL_CHARACTERS = re.compile(r"[\000-\010]|[\013-\014]|[\016-\037]")
#: Integers beyond this lose digits as Excel numbers (15 significant digits); kept as text.
_EXACT_INTEGER_LIMIT = 10 ** 15
#: Data rows looked at to size the columns (read before the sheet's rows are written).
_WIDTH_SAMPLE_ROWS = 100
_MIN_WIDTH, _MAX_WIDTH = 6, 50


#: Number formats by column (the CSV's name): shown digits only, the value stays whole.
_LENGTH_FORMAT, _INTENSITY_FORMAT, _RATIO_FORMAT = "0.00", "0.0", "0.000"
_LENGTH_ENDINGS = ("_um", "_px", "_um2", "_px2", "_um3", "_per_mm2", "_per_px2", "_per_min", "_per_s",
                   "_per_time_point", "_min", "_time_points")


def number_format(column: str) -> str | None:
    """The Excel number format of a CSV column's values (None: General, e.g. IDs and counts)."""
    from .tables import INTEGER_COLUMNS
    if column in INTEGER_COLUMNS:
        return None
    if _CHANNEL_COLUMN.fullmatch(column) or column.endswith("_deg"):
        return _INTENSITY_FORMAT
    if column.endswith(_LENGTH_ENDINGS):
        return _LENGTH_FORMAT
    return _RATIO_FORMAT


def human_header(column: str, channel_names: Sequence[str]) -> str:
    """A CSV column name in words, for a sheet's header row.

    Parameters
    ----------
    column : snake_case column name, e.g. ``area_um2``, ``ring_mean_c1``.
    channel_names : names of the image's channels; ``c{k}`` (0-based) becomes
        ``channel_names[k]``, or ``C{k}`` when there is no such (non-blank) name.

    Returns
    -------
    str
        e.g. ``Area (um2)``, ``Ring mean Membrane``, ``Track ID``. An unknown
        column gives its words (underscores as spaces) with a capital first letter.
    """
    channel = _CHANNEL_COLUMN.fullmatch(column)
    if channel:
        statistic, k = channel.group(1), int(channel.group(2))
        name = channel_names[k] if k < len(channel_names) and str(channel_names[k]).strip() else f"C{k}"
        return f"{_words(statistic)} {name}"
    for suffix, unit in UNIT_SUFFIXES:
        if column.endswith(suffix) and len(column) > len(suffix):
            return f"{_words(column[:-len(suffix)])} ({unit})"
    return _words(column)


def _words(snake: str) -> str:
    words = [SPECIAL_WORDS.get(word, word) for word in snake.split("_") if word]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def write_workbook(path: Path, tables: Mapping[str, Path], settings: Mapping[str, str],
                   channel_names: Sequence[str], max_rows: int = EXCEL_MAX_ROWS) -> list[str]:
    """Write the CSV ``tables`` and the run's ``settings`` as one workbook at ``path``.

    Parameters
    ----------
    path : the ``.xlsx`` to write; an existing file is replaced only once the new
        workbook is complete (it is first written to ``path + ".partial"``).
    tables : sheet name -> CSV file, in sheet order (e.g. Nuclei, Planes, Tracks).
        Each CSV starts with a header line of snake_case column names.
    settings : written last, on sheet ``Settings``, as ``Setting`` / ``Value`` rows.
    channel_names : for the per-channel headers (see `human_header`).
    max_rows : rows a sheet may hold, header included; Excel's limit unless testing.

    Returns
    -------
    list of str
        One line per thing the user should know (a table continued on numbered
        sheets); empty when nothing needed saying.
    """
    if max_rows < 2:
        raise ValueError(f"max_rows must leave room for a header and a data row, not {max_rows}")
    _check_sheet_names([*tables, SETTINGS_SHEET])
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    notes: list[str] = []
    workbook = _Book(xlsxwriter.Workbook(str(partial), {"constant_memory": True, "strings_to_numbers": False,
                                                        "strings_to_formulas": False, "strings_to_urls": False}))
    try:
        try:
            for name, csv_path in tables.items():
                note = _write_table(workbook, name, Path(csv_path), channel_names, max_rows)
                if note:
                    notes.append(note)
            settings_rows = ([_text_cell_value(key), _text_cell_value(value)] for key, value in settings.items())
            _write_sheets(workbook, SETTINGS_SHEET, ["Setting", "Value"], settings_rows, max_rows)
        finally:
            workbook.xlsx.close()       # also on failure: it removes its temporary files
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return notes


def _check_sheet_names(names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if not name or len(name) > EXCEL_MAX_SHEET_NAME or _INVALID_SHEET_CHARS.search(name) \
                or name.startswith("'") or name.endswith("'"):
            raise ValueError(f"{name!r} is not an Excel sheet name (1-{EXCEL_MAX_SHEET_NAME} characters, "
                             "none of []:*?/\\, no leading or trailing ')")
        if name.casefold() in seen:
            raise ValueError(f"sheet name {name!r} is used twice (Excel ignores case)")
        seen.add(name.casefold())


class _Book:
    """The workbook being written and its cell formats, each made once (XlsxWriter keeps every
    format it is given)."""

    def __init__(self, xlsx: xlsxwriter.Workbook) -> None:
        self.xlsx = xlsx
        self._formats: dict[str, object] = {}

    def number_format(self, fmt: str):
        if fmt not in self._formats:
            self._formats[fmt] = self.xlsx.add_format({"num_format": fmt})
        return self._formats[fmt]

    @property
    def bold(self):
        if "" not in self._formats:
            self._formats[""] = self.xlsx.add_format({"bold": True})
        return self._formats[""]


def _write_table(workbook: _Book, name: str, csv_path: Path,
                 channel_names: Sequence[str], max_rows: int) -> str | None:
    """One CSV -> sheet ``name`` (and ``name 2``, ... when it does not fit); the note, if any."""
    with open(csv_path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        sheet = table_sheet(workbook, name, next(reader, []), channel_names, max_rows)
        for row in reader:
            sheet.add([_cell_value(field) for field in row])
        return sheet.close()


def table_sheet(workbook: _Book, name: str, columns: Sequence[str], channel_names: Sequence[str],
                max_rows: int, premade=None) -> "SheetRows":
    """A sheet for a CSV table whose header (snake_case ``columns``) is known; rows added one by one."""
    header = [human_header(column.strip(), channel_names) for column in columns]
    return SheetRows(workbook, name, header, max_rows, [number_format(column.strip()) for column in columns],
                     premade)


def _write_sheets(workbook: _Book, name: str, header: list[str],
                  rows: Iterable[list], max_rows: int, formats: Sequence[str | None] = ()) -> tuple[int, int]:
    """Stream ``rows`` onto sheets ``name``, ``name 2``, ...; returns (data rows, sheets)."""
    sheet = SheetRows(workbook, name, header, max_rows, formats)
    for row in rows:
        sheet.add(row)
    sheet.close()
    return sheet.n_rows, sheet.n_sheets


class SheetFull(Exception):
    """A premade sheet is full: its continuation would not stand next to it (``SheetRows``)."""


class SheetRows:
    """Rows onto sheet ``name``, continued on ``name 2``, ... when one is full.

    Each sheet's first rows wait until ``_WIDTH_SAMPLE_ROWS`` are in (or ``close``) so the
    columns are sized from them. ``formats``: a number format per column (None: General),
    applied to its real numbers. ``premade``: the first sheet, added to the workbook
    earlier to keep the sheets' order while rows still come in (a workbook streamed during
    a run); a second sheet then raises ``SheetFull``, as it would land after later sheets.
    """

    def __init__(self, workbook: _Book, name: str, header: list[str], max_rows: int,
                 formats: Sequence[str | None] = (), premade=None) -> None:
        self.workbook, self.name, self.header = workbook, name, header
        self.per_sheet = max_rows - 1
        self.styles = {column: workbook.number_format(fmt) for column, fmt in enumerate(formats) if fmt is not None}
        self.premade = premade
        self.n_rows = self.n_sheets = 0
        self._sheet = None
        self._in_sheet = 0                  # data rows on the current sheet
        self._waiting: list[list] = []      # first rows of a sheet, before it is sized

    def add(self, row: list) -> None:
        if self._sheet is not None and self._in_sheet == self.per_sheet:
            self._sheet = None               # full: the next row starts a new sheet
        if self._sheet is None:
            self._waiting.append(row)
            if len(self._waiting) == min(self.per_sheet, _WIDTH_SAMPLE_ROWS):
                self._open()
            return
        self._write(row)

    def close(self) -> str | None:
        """Write what waits (a header-only sheet if no row came); the overflow note, if any."""
        if self._waiting or not self.n_sheets:
            self._open()
        if self.n_sheets == 1:
            return None
        return (f"{self.name}: {self.n_rows:,} rows on sheets {self.name} .. {_sheet_title(self.name, self.n_sheets)} "
                f"(Excel holds {self.per_sheet:,} rows a sheet); the CSV has them all.")

    def _open(self) -> None:
        self.n_sheets += 1
        if self.premade is not None and self.n_sheets > 1:
            raise SheetFull(self.name)
        sheet = self.premade if self.premade is not None else \
            self.workbook.xlsx.add_worksheet(_sheet_title(self.name, self.n_sheets))
        waiting, self._waiting = self._waiting, []
        _set_widths(sheet, self.header, waiting)
        _print_setup(sheet)
        for column, text in enumerate(self.header):
            sheet.write_string(0, column, _text_cell_value(text), self.workbook.bold)
        self._sheet, self._in_sheet = sheet, 0
        for row in waiting:
            self._write(row)

    def _write(self, row: list) -> None:
        self._in_sheet += 1
        for column, value in enumerate(row):
            _write_cell(self._sheet, self._in_sheet, column, value, self.styles.get(column))
        self.n_rows += 1


def _print_setup(sheet) -> None:
    """Frozen header; printed landscape, one page wide, the header row repeated on every page."""
    sheet.freeze_panes(1, 0)
    sheet.repeat_rows(0)
    sheet.set_landscape()
    sheet.fit_to_pages(1, 0)


def _sheet_title(name: str, number: int) -> str:
    if number == 1:
        return name
    suffix = f" {number}"
    return name[:EXCEL_MAX_SHEET_NAME - len(suffix)] + suffix


def _set_widths(sheet, header: Sequence[str], sample: Sequence[list]) -> None:
    """Widths from the header and the first rows, so the words in the header are readable."""
    n_columns = max([len(header), *(len(row) for row in sample)])
    for index in range(n_columns):
        longest = len(header[index]) if index < len(header) else 0
        for row in sample:
            if index < len(row) and row[index] is not None:
                value = row[index]
                longest = max(longest, min(len(str(value)), 12 if isinstance(value, (int, float)) else _MAX_WIDTH))
        width = min(max(longest + 2, _MIN_WIDTH), _MAX_WIDTH)
        sheet.set_column(index, index, width)


def _cell_value(field: str) -> int | float | str | None:
    """A CSV field as Excel should hold it: empty (or ``nan``) -> None, numbers as numbers."""
    text = field.strip()
    if not text:
        return None
    if "_" not in text:  # Python's int()/float() accept "1_000"; a CSV number never has it
        try:
            number = int(text)
        except ValueError:
            pass
        else:
            return number if abs(number) < _EXACT_INTEGER_LIMIT else text
        try:
            real = float(text)
        except ValueError:
            pass
        else:
            if math.isfinite(real):
                return real
            if math.isnan(real):
                return None
            return text  # Excel has no infinity; keep the CSV's word for it
    return _text_cell_value(field)


def _text_cell_value(value: object) -> str:
    """Text Excel accepts: no control characters, at most 32,767 characters."""
    return _ILLEGAL_CHARACTERS.sub("", str(value))[:EXCEL_MAX_CELL_CHARS]


def _write_cell(sheet, row: int, column: int, value: int | float | str | None, number_format=None) -> None:
    """One cell: text always as text (never read as a formula, an error value or a link),
    numbers as numbers (reals in the column's number format), None as an empty cell."""
    if value is None:
        return
    if isinstance(value, str):
        sheet.write_string(row, column, value)
    elif isinstance(value, float):
        sheet.write_number(row, column, value, number_format)
    else:
        sheet.write_number(row, column, value)
