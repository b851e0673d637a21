"""The workbook written while the run's CSV tables grow, instead of all at the end.

Why: the workbook is XlsxWriter's per-cell Python work (~4 us a cell; ~1.6 s for the
385,000 cells of a crowded 10-plane run), and at the end of a run it was the last thing
a user waited for. Written as the tables grow, the nuclei rows are done when the last
plane is; what is left at the end is what only the end makes (a time point's objects,
tracks) and the zip.

The CSV files stay the one source: this reads the bytes the run has committed (flushed,
the sizes its journal records) from the growing ``.partial`` files and parses them exactly
as ``write_workbook`` parses the finished CSVs, so the cells are the same. Sheets come in
the order they were followed, then the ones given only at ``finish`` (read from their
files), then ``Settings``. A followed table longer than an Excel sheet cannot continue on
a numbered sheet beside its first (that sheet was added before the later ones), so the
streamed workbook is dropped and ``finish`` writes the whole workbook from the CSVs.
"""
from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import xlsxwriter

from .excel import (EXCEL_MAX_ROWS, SETTINGS_SHEET, SheetRows, _Book, _cell_value, _check_sheet_names,
                    _text_cell_value, _write_sheets, _write_table, table_sheet, write_workbook)


class _Followed:
    """One growing CSV and its sheet: bytes read so far, the sheet once the header is in."""

    def __init__(self, path: Path, premade) -> None:
        self.file = open(path, "rb")
        self.read = 0
        self.premade = premade
        self.rows: SheetRows | None = None


class StreamedWorkbook:
    """``follow`` tables as they grow, ``grow`` to their committed sizes, ``finish`` at the end."""

    def __init__(self, path: Path, channel_names: Sequence[str], max_rows: int = EXCEL_MAX_ROWS) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.channel_names = list(channel_names)
        self.max_rows = max_rows
        self._book: _Book | None = None
        self._followed: dict[str, _Followed] = {}
        self._scratch: str | None = None          # XlsxWriter's row files until the workbook closes

    def follow(self, sheets: Mapping[str, Path]) -> None:
        """Sheets for these growing CSVs (sheet name -> ``.partial`` path), in sheet order."""
        if self._book is None:
            self._scratch = tempfile.mkdtemp(prefix="stardist_v4d_xlsx_")
            self._book = _Book(xlsxwriter.Workbook(str(self.partial), {
                "constant_memory": True, "strings_to_numbers": False, "strings_to_formulas": False,
                "strings_to_urls": False, "tmpdir": self._scratch}))
        for name, path in sheets.items():
            _check_sheet_names([*self._followed, name])
            self._followed[name] = _Followed(Path(path), self._book.xlsx.add_worksheet(name))

    def grow(self, sizes: Mapping[str, int]) -> None:
        """Write the rows committed up to ``sizes`` (bytes of each followed CSV)."""
        if self._book is None:                    # nothing followed, or given up
            return
        try:
            for name, size in sizes.items():
                if name in self._followed:
                    self._read(name, self._followed[name], size)
        except Exception:   # noqa: BLE001  (SheetFull, or anything: ``finish`` writes from the CSVs)
            self._drop()

    def _grow_to_the_end(self) -> None:
        self.grow({name: os.fstat(followed.file.fileno()).st_size for name, followed in self._followed.items()})

    def finish(self, tables: Mapping[str, Path], settings: Mapping[str, str]) -> list[str]:
        """The workbook at ``path``: followed tables read to their end, the others from their
        files (sheet -> finished CSV, in sheet order), then the settings. Returns its notes."""
        notes: list[str] = []
        if self._book is not None:
            self._grow_to_the_end()
        if self._book is not None:
            try:            # the last rows of a sheet may still need a continuation: then from the CSVs
                notes = [n for f in self._followed.values() if f.rows is not None and (n := f.rows.close())]
            except Exception:   # noqa: BLE001
                self._drop()
        if self._book is None:
            self._close_files()
            return write_workbook(self.path, tables, settings, self.channel_names, self.max_rows)
        try:
            try:
                _check_sheet_names([*tables, SETTINGS_SHEET])
                for name, path in tables.items():
                    if name not in self._followed:
                        note = _write_table(self._book, name, Path(path), self.channel_names, self.max_rows)
                        notes += [note] if note else []
                settings_rows = ([_text_cell_value(k), _text_cell_value(v)] for k, v in settings.items())
                _write_sheets(self._book, SETTINGS_SHEET, ["Setting", "Value"], settings_rows, self.max_rows)
            finally:
                self._close_files()
                self._book.xlsx.close()
                shutil.rmtree(self._scratch, ignore_errors=True)
            os.replace(self.partial, self.path)
        except BaseException:
            self.partial.unlink(missing_ok=True)
            raise
        return notes

    def _read(self, name: str, followed: _Followed, size: int) -> None:
        if size <= followed.read:
            return
        followed.file.seek(followed.read)
        data = followed.file.read(size - followed.read)
        end = data.rfind(b"\n") + 1                    # whole lines only
        followed.read += end
        lines = data[:end].decode("utf-8-sig" if followed.read == end else "utf-8").splitlines()
        reader = csv.reader(lines)
        if followed.rows is None:
            header = next(reader, None)
            if header is None:
                return
            followed.rows = table_sheet(self._book, name, header, self.channel_names, self.max_rows, followed.premade)
        for row in reader:
            followed.rows.add([_cell_value(field) for field in row])

    def _drop(self) -> None:
        """Give up streaming (the whole workbook is written from the CSVs at ``finish``)."""
        self._close_files()
        self._book = None          # never closed: its row files go with the scratch folder
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def abandon(self) -> None:
        """No workbook (the run stopped): nothing is written, the scratch files go."""
        self._drop()

    def _close_files(self) -> None:
        for followed in self._followed.values():
            followed.file.close()
