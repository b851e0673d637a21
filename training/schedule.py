"""The learning rate as a function of the epoch alone: cosine decay.

Why not StarDist's default (halve the rate after 40 epochs without progress): a rate
that depends on the run's history cannot be resumed exactly and, on the few thousand
steps a CPU affords, rarely fires at all, so the run ends at its first, largest rate.
Cosine decay from the starting rate down to ``FINAL_FRACTION`` of it over the planned
epochs settles the weights by the last epoch, and a resumed run (or one with more
epochs planned) computes the same rate for the same epoch.
"""
from __future__ import annotations

import math

FINAL_FRACTION = 0.01


def cosine_rate(epoch: int, epochs: int, start_rate: float) -> float:
    """The rate for 0-based ``epoch`` of ``epochs``: ``start_rate`` first, ``FINAL_FRACTION`` of it at the end."""
    if epochs <= 1:
        return start_rate
    progress = min(max(epoch / (epochs - 1), 0.0), 1.0)
    final = start_rate * FINAL_FRACTION
    return final + 0.5 * (start_rate - final) * (1 + math.cos(math.pi * progress))
