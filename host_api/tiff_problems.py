"""What is wrong with a TIFF, in one line: tifffile's complaints caught and worded for a user.

Kept apart from ``tiff_reader`` (which reads planes) because it is pure diagnosis:
tifffile reports damage through ``logging`` while it parses IFDs, and these helpers
collect those records while a file is opened and turn them, and the facts of a page,
into the words of ``BadTiffError``.
"""
from __future__ import annotations

import logging
import re
import threading
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import tifffile

from .base import HostError

#: TIFF tags planes depend on (their layout, their meaning, the stack's declaration). A tag
#: tifffile cannot read is damage when it is one of these; any other (a private vendor tag)
#: is left to tifffile's warning.
ESSENTIAL_TAGS = frozenset({
    254, 256, 257, 258, 259, 262, 266, 270, 273, 277, 278, 279, 284, 317, 320, 322, 323,
    324, 325, 330, 338, 339, 50838, 50839})
#: tifffile's words for a page list that stops before its end.
_BROKEN_PAGE_LIST = ("invalid page offset", "invalid offset to page", "corrupted tag list",
                     "invalid next page", "circular reference")


class BadTiffError(HostError, ValueError):
    """A TIFF a run cannot read as it is: damaged, or of a kind it does not take. One line.

    A ``HostError`` (the launcher prints it as one line) and a ``ValueError`` (the
    ``measure`` command reports those).
    """


class _Problems(logging.Handler):
    """What tifffile logs while a file is opened or a plane read."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread:
            self.records.append(record)
        else:                    # another thread's tifffile: not ours to judge, pass it on
            logging.getLogger().handle(record)

    def damage(self) -> list[str]:
        """tifffile's errors that concern the planes, in words (one line each); a page list
        that breaks off comes first."""
        found = []
        for record in self.records:
            if record.levelno < logging.ERROR:
                continue
            raw = record.getMessage()
            if "OME series raised" in raw:   # tifffile falls back to the pages; declared_planes
                continue                     # still counts the OME-XML's planes against them
            message = _one_line(raw)
            tag = re.search(r"TiffTag (\d+)|tag #(\d+)", raw)
            if tag:
                code = int(tag.group(1) or tag.group(2))
                if code not in ESSENTIAL_TAGS:
                    continue
                name = tifffile.TIFF.TAGS.get(code, str(code))
                message = f"its {name} tag cannot be read ({message.removeprefix('raised ')})"
            found.append(message)
        return sorted(found, key=lambda line: not _breaks_off(line))

    def replay(self) -> None:
        """Pass on tifffile's warnings about a file that turned out readable, as before."""
        logger = logging.getLogger("tifffile")
        for record in self.records:
            logger.handle(record)


@contextmanager
def _tifffile_log() -> Iterator[_Problems]:
    """Collect tifffile's log records instead of printing them (a user error is one line)."""
    logger = logging.getLogger("tifffile")
    handler, propagate = _Problems(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _breaks_off(line: str) -> bool:
    return any(words in line for words in _BROKEN_PAGE_LIST)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _error_text(error: BaseException) -> str:
    """``zlib.error: Error -3 ...``: the exception's type (with its module when the name alone
    says nothing) and message, on one line."""
    kind, module = type(error).__name__, type(error).__module__
    if module.split(".")[0] not in ("builtins", "tifffile"):
        kind = f"{module}.{kind}"
    return f"{kind}: {_one_line(error)}"


def _one_line(text: object) -> str:
    """tifffile's message without its object prefixes (``<tifffile.TiffPages @8>``), on one line."""
    text = re.sub(r"<tifffile\.[^>]*>\s*|<TiffTag\.fromfile>\s*|<tifffile\.read_tags>\s*", "",
                  str(text))
    text = re.sub(r"\b\w*Error\((['\"])(.*?)\1\)", r"\2", text)    # TiffFileError('...') -> ...
    return " ".join(text.split())


def file_size_text(size: int) -> str:
    """``12.6 kB``, ``1.2 MB``: decimal units, as file managers show them."""
    if size < 1000:
        return f"{size} bytes"
    for unit in ("kB", "MB", "GB", "TB"):
        size /= 1000
        if size < 1000 or unit == "TB":
            return f"{size:.1f} {unit}"
    raise AssertionError("unreachable")


def _page_name(index: int | tuple[int, ...]) -> str:
    """``page 3``; a SubIFD as ``sub-image 1 of page 3``."""
    if isinstance(index, tuple):
        return f"sub-image {index[-1]} of page {index[0]}" if len(index) > 1 else f"page {index[0]}"
    return f"page {index}"


def _describe(page) -> str:
    """``64 x 48 uint16`` (height x width), ``x 3 samples`` for RGB."""
    samples = f" x {page.samplesperpixel} samples" if page.samplesperpixel > 1 else ""
    return f"{page.imagelength} x {page.imagewidth}{samples} {np.dtype(page.dtype).name}"
