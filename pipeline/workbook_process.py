"""The run's Excel workbook written in a second process while the planes come in.

Why a process: the workbook is pure Python (XlsxWriter), so in the run's process it would
hold the GIL against the CNN's feeding; beside it, it fills the cores' idle moments (at
worker niceness: the CNN goes first) and what is left at the end runs beside the plots.
Started with the run, before the model loads, so its own start (~0.3 s: Python, xlsxwriter)
is paid while TensorFlow imports. One process, one ``StreamedWorkbook`` in it: the calls go
through a one-worker pool, in order. If the process dies or fails, ``finish`` says so
(None) and the run writes the workbook itself from the CSVs; a run that stops writes none.
"""
from __future__ import annotations

from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Mapping, Sequence

from .workers import _single_threaded

_book = None        # the StreamedWorkbook of this (second) process


def _open(path: str, channel_names: list[str]) -> None:
    global _book
    from ..analysis.excel_stream import StreamedWorkbook
    _book = StreamedWorkbook(Path(path), channel_names)


def _follow(sheets: dict[str, str]) -> None:
    _book.follow({name: Path(path) for name, path in sheets.items()})


def _grow(sizes: dict[str, int]) -> None:
    _book.grow(sizes)


def _finish(tables: dict[str, str], settings: dict[str, str]) -> list[str]:
    return _book.finish({name: Path(path) for name, path in tables.items()}, settings)


def _abandon() -> None:
    if _book is not None:
        _book.abandon()


class WorkbookProcess:
    """A ``StreamedWorkbook`` (``analysis/excel_stream.py``) in a second process."""

    def __init__(self, path: Path, channel_names: Sequence[str]) -> None:
        import multiprocessing
        import threading

        main_thread = threading.current_thread() is threading.main_thread()
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_single_threaded, initargs=(main_thread,))
        self._ended = False
        self._finishing: Future | None = None
        self._pool.submit(_open, str(path), list(channel_names))

    def follow(self, sheets: Mapping[str, Path]) -> None:
        """Stream these growing tables (sheet name -> ``.partial`` CSV), in sheet order."""
        self._submit(_follow, {name: str(path) for name, path in sheets.items()})

    def grow(self, sizes: Mapping[str, int]) -> None:
        """The tables' committed sizes in bytes: rows up to there may be written."""
        self._submit(_grow, dict(sizes))

    def finish_later(self, tables: Mapping[str, Path], settings: Mapping[str, str]) -> None:
        """Finish the workbook (sheet -> finished CSV, in sheet order; the settings) while the
        caller does something else; ``notes()`` waits for it."""
        self._finishing = self._submit(_finish, {name: str(path) for name, path in tables.items()}, dict(settings))
        self._ended = True

    def notes(self) -> list[str] | None:
        """The workbook's notes once written; None if the process could not write it (the
        caller writes it then). ``OSError`` (a full disk, a locked file) is raised as is."""
        from .stream import result_while_workers_live
        try:
            return None if self._finishing is None else result_while_workers_live(self._finishing, self._pool)
        except OSError:
            raise
        except Exception:   # noqa: BLE001  (a dead or failed process: written by the caller)
            return None

    def close(self) -> None:
        """End the process and wait until it has exited (see ``PendingPool.shutdown`` for why
        waiting); a workbook not finished (the run stopped) is abandoned: its scratch files go."""
        self._submit(_abandon)
        self._ended = True
        self._pool.shutdown(wait=True)

    def _submit(self, call, *args) -> Future | None:
        if self._ended:
            return None
        try:
            return self._pool.submit(call, *args)
        except Exception:   # noqa: BLE001  (broken pool: finish returns None)
            return None


def start_workbook_process(path: Path, channel_names: Sequence[str]) -> WorkbookProcess | None:
    """The second process, or None where none starts (the workbook is then written at the end)."""
    try:
        return WorkbookProcess(path, channel_names)
    except Exception:   # noqa: BLE001
        return None
