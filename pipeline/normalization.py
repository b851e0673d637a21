"""Percentile normalization, per plane or once for the whole selection.

Per plane is what StarDist does by default, and what the parity guarantee is about.
Per stack matters for Z series whose outer planes are empty: stretching an empty
plane's noise to 0-1 turns noise into nuclei. Stack mode estimates one pair of
percentiles from a sample of planes, so memory stays at a few planes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from csbdeep.utils import normalize, normalize_mi_ma

Normalizer = Callable[[np.ndarray], np.ndarray]
SAMPLE_PLANES = 16
SAMPLE_PIXELS = 4_000_000


@dataclass(frozen=True)
class PlaneNormalizer:
    """Each plane stretched by its own percentiles: ``normalize(plane, low, high)``.

    A class, not a lambda, so worker processes can be sent one (pickled).
    """

    low: float
    high: float

    def __call__(self, plane: np.ndarray) -> np.ndarray:
        return normalize(plane, self.low, self.high)

    def limits(self, plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``mi``/``ma`` as ``normalize`` computes them, for block-wise ``normalize_mi_ma``."""
        return (np.percentile(plane, self.low, keepdims=True),
                np.percentile(plane, self.high, keepdims=True))


@dataclass(frozen=True)
class StackNormalizer:
    """Every plane stretched by the same ``mi``/``ma``."""

    mi: float
    ma: float

    def __call__(self, plane: np.ndarray) -> np.ndarray:
        return normalize_mi_ma(plane.astype(np.float32, copy=False), self.mi, self.ma)

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
    """Percentiles ``low``/``high`` over a pixel sample of sampled planes."""
    chosen = sample_steps(steps)
    per_plane = max(1, SAMPLE_PIXELS // len(chosen))
    pieces = []
    for t, z in chosen:
        pixels = np.asarray(read_plane(t, z)).ravel()
        stride = max(1, pixels.size // per_plane)
        pieces.append(pixels[::stride].astype(np.float32))
    mi, ma = np.percentile(np.concatenate(pieces), [low, high])
    return float(mi), float(ma)


def stack_normalizer(mi: float, ma: float) -> Normalizer:
    """Every plane stretched by the same ``mi``/``ma``."""
    return StackNormalizer(mi, ma)
