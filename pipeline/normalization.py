"""Percentile normalization, per plane or once for the whole selection.

Per plane is what StarDist does by default, and what the parity guarantee is about.
Per stack matters for Z series whose outer planes are empty: stretching an empty
plane's noise to 0-1 turns noise into nuclei. Stack mode estimates one pair of
percentiles from a sample of planes, so memory stays at a few planes.

Non-finite pixels (NaN, +-inf: masked or unstitched regions of float images) are no
data: the percentiles ignore them (``nanpercentile`` semantics) and they become
background, ``BACKGROUND``, what the low percentile normalizes to. Such a plane comes
out as a ``BackgroundFilled`` array that remembers where they were, so the labels
stay 0 there (``predict.predict_sparse`` passes the mask on to the rendering). Planes
with only finite pixels take exactly the path they took before: integer planes are not
even checked, float planes cost one ``isfinite`` pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from csbdeep.utils import normalize, normalize_mi_ma

Normalizer = Callable[[np.ndarray], np.ndarray]
SAMPLE_PLANES = 16
SAMPLE_PIXELS = 4_000_000
#: The normalized value of non-finite pixels: the low percentile's, (mi - mi) / (ma - mi + eps).
BACKGROUND = 0.0
#: Huge planes are checked for non-finite pixels in bands of rows of about this many pixels.
BAND_PIXELS = 1 << 22


def row_bands(plane: np.ndarray) -> list[slice]:
    """Bands of whole rows of about ``BAND_PIXELS`` each (one band for usual planes)."""
    rows = max(1, BAND_PIXELS // max(1, plane[0].size)) if plane.ndim else 1
    return [slice(y, y + rows) for y in range(0, max(1, len(plane) if plane.ndim else 1), rows)]


def non_finite_count(plane: np.ndarray) -> int:
    """How many pixels of ``plane`` are NaN or infinite (0 for integer planes, without a pass).

    ~0.2 ms for a 1024 x 1024 float32 plane; temporary memory is one band's mask.
    """
    plane = np.asarray(plane)
    if not np.issubdtype(plane.dtype, np.inexact):
        return 0
    if plane.ndim == 0:
        return int(not np.isfinite(plane))
    return sum(int(plane[rows].size - np.count_nonzero(np.isfinite(plane[rows])))
               for rows in row_bands(plane))


def zero_where_not_finite(labels: np.ndarray, plane: np.ndarray) -> None:
    """Set ``labels`` (any array-like of ``plane``'s shape, a memmap too) to 0 where ``plane``
    is not finite, band by band: for block-wise prediction of huge planes."""
    if not np.issubdtype(plane.dtype, np.inexact):
        return
    for rows in row_bands(plane):
        holes = ~np.isfinite(plane[rows])
        if holes.any():
            labels[rows][holes] = 0


def finite_mask(plane: np.ndarray) -> np.ndarray | None:
    """Where ``plane`` is finite, or None when it is finite everywhere (always for integers)."""
    if not np.issubdtype(plane.dtype, np.inexact):
        return None
    finite = np.isfinite(plane)
    return None if finite.all() else finite


class BackgroundFilled(np.ndarray):
    """A normalized plane whose non-finite input pixels were set to ``BACKGROUND``.

    ``non_finite_bits`` is ``np.packbits`` of their mask (this array's shape, C order):
    1/32 of the plane's bytes, sent with the CNN's candidates to whoever renders the
    labels (``predict.non_finite_mask`` unpacks it). Views of it and results of
    arithmetic on it have no mask (None): the mask describes this array only.
    """

    non_finite_bits: np.ndarray | None = None


def background_filled(normalized: np.ndarray, finite: np.ndarray) -> BackgroundFilled:
    """``normalized`` (a fresh array: changed in place) with ``BACKGROUND`` where not ``finite``."""
    normalized[~finite] = BACKGROUND
    filled = normalized.view(BackgroundFilled)
    filled.non_finite_bits = np.packbits(~finite, axis=None)
    return filled


def finite_percentiles(values: np.ndarray, q) -> np.ndarray:
    """``np.percentile`` of ``values`` (already without non-finite ones); 0 when there are none."""
    if values.size == 0:
        return np.zeros(np.shape(q), np.float32)
    return np.percentile(values, q)


def beyond_float32(plane: np.ndarray) -> bool:
    """A float64 plane holding finite values float32 cannot (they would become inf: background)."""
    if plane.dtype.kind != "f" or plane.dtype.itemsize <= 4 or plane.size == 0:
        return False
    with np.errstate(invalid="ignore"):
        largest = np.nanmax(np.abs(np.where(np.isfinite(plane), plane, 0)))
    return bool(largest > np.finfo(np.float32).max)


@dataclass(frozen=True)
class PlaneNormalizer:
    """Each plane stretched by its own percentiles: ``normalize(plane, low, high)``.

    A class, not a lambda, so worker processes can be sent one (pickled). Planes with
    non-finite pixels: percentiles of the finite ones, then ``background_filled``.
    """

    low: float
    high: float

    def __call__(self, plane: np.ndarray) -> np.ndarray:
        plane = plane.view(np.uint8) if plane.dtype == np.bool_ else plane    # a mask: 0/1 intensities
        wide = beyond_float32(plane)             # float64 beyond float32's range: normalized in float64
        dtype = np.float64 if wide else np.float32
        finite = finite_mask(plane)
        if finite is None:
            return normalize(plane, self.low, self.high, dtype=dtype).astype(np.float32, copy=False)
        mi, ma = finite_percentiles(plane[finite], [self.low, self.high])
        return background_filled(normalize_mi_ma(plane, mi, ma, dtype=dtype).astype(np.float32, copy=False), finite)

    def limits(self, plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``mi``/``ma`` as ``normalize`` computes them, for block-wise ``normalize_mi_ma``.

        Of the finite pixels only, when some are not (shaped like ``normalize``'s).
        """
        finite = finite_mask(plane)
        if finite is None:
            return (np.percentile(plane, self.low, keepdims=True),
                    np.percentile(plane, self.high, keepdims=True))
        mi, ma = finite_percentiles(plane[finite], [self.low, self.high])
        shape = (1,) * plane.ndim
        return np.reshape(mi, shape), np.reshape(ma, shape)


@dataclass(frozen=True)
class StackNormalizer:
    """Every plane stretched by the same ``mi``/``ma``; non-finite pixels: ``background_filled``."""

    mi: float
    ma: float

    def __call__(self, plane: np.ndarray) -> np.ndarray:
        normalized = normalize_mi_ma(plane.astype(np.float32, copy=False), self.mi, self.ma)
        finite = finite_mask(plane)
        return normalized if finite is None else background_filled(normalized, finite)

    def limits(self, plane: np.ndarray) -> tuple[float, float]:
        return self.mi, self.ma


def plane_normalizer(low: float, high: float) -> Normalizer:
    """Each plane stretched by its own percentiles: ``normalize(plane, low, high)``."""
    return PlaneNormalizer(low, high)


def sample_steps(steps: Sequence[tuple[int, int]], n: int = SAMPLE_PLANES) -> list[tuple[int, int]]:
    """Up to ``n`` evenly spaced (t, z) steps, first and last included."""
    if len(steps) <= n:
        return list(steps)
    picks = np.linspace(0, len(steps) - 1, n).round().astype(int)
    return [steps[i] for i in sorted(set(picks))]


def stack_percentiles(read_plane: Callable[[int, int], np.ndarray],
                      steps: Sequence[tuple[int, int]], low: float, high: float) -> tuple[float, float]:
    """Percentiles ``low``/``high`` over a pixel sample of sampled planes, finite pixels only.

    Raises ValueError when no sampled pixel is finite.
    """
    chosen = sample_steps(steps)
    per_plane = max(1, SAMPLE_PIXELS // len(chosen))
    pieces = []
    for t, z in chosen:
        pixels = np.asarray(read_plane(t, z)).ravel()
        stride = max(1, pixels.size // per_plane)
        pieces.append(pixels[::stride].astype(np.float32))
    sample = np.concatenate(pieces)
    finite = np.isfinite(sample)
    if not finite.all():
        sample = sample[finite]
        if sample.size == 0:
            raise ValueError(f"NORMALIZE=\"stack\": no pixel of the {len(chosen)} sampled planes "
                             "is finite (all NaN or inf)")
    mi, ma = np.percentile(sample, [low, high])
    return float(mi), float(ma)


def stack_normalizer(mi: float, ma: float) -> Normalizer:
    """Every plane stretched by the same ``mi``/``ma``."""
    return StackNormalizer(mi, ma)
