"""Whether worker processes pay in this run, decided from the run's own plane times.

Why measured: post-processing beside the CNN pays or not depending on the CPU (its
cores; a bf16 CNN on AMX is several times faster than fp32, so post-processing weighs
more), the plane size and how crowded the planes are. A fixed rule (it was "8 Mpx in
the run") guessed wrong on some machines. So a run with ``WORKERS = None`` starts
sequentially, times its planes, starts workers only when the time they are expected
to save repays their start, and drops them again if planes come slower with them than
without: a run is never slower than ``WORKERS = 0`` by more than what it took to find out.

Times are whole cycles between two planes handed to the run (read, CNN, post-processing
and the writing in between), so both ways are measured alike. A run's first plane is
no baseline for either: the CNN's first call compiles its graph, and its post-processing
loads the compiled NMS, rendering and measuring from numba's cache (~0.6 s, which made
a pool look worth starting where it was not). The pool can start after the second.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

#: Seconds one worker's start (spawn, imports, the compiled NMS from numba's cache) costs
#: the run: it runs beside the planes, which it slows while it lasts. Calibrated on a 2-core
#: Xeon (10 crowded 1024 x 1024 planes, bf16, measuring on): 2 workers, waited for before
#: the first plane, still saved 1.4 s of 11.6 (WORKERS = 2 against 0, two rounds each).
WORKER_START_S = 0.5
#: The share of a plane's post-processing a pool is counted on to hide behind the CNN
#: before it is started (on two cores the CNN gives up some of its second core).
HIDDEN_SHARE = 0.7
#: Pooled planes handed over before they are timed: the pipeline filling up.
FILL_PLANES = 2
#: Pooled planes timed before the verdict, averaged: planes come out of the pipeline in
#: bursts (two at once, then a wait), so one plane's time says little.
JUDGED_PLANES = 6
#: Pooled planes may take this much longer than sequential ones before the pool is
#: dropped (timing noise of a few per cent must not drop a pool that pays).
TOLERANCE = 1.03


@dataclass
class PoolJudge:
    """Plane times of both ways and the decisions they imply (pure: no clock, no pool)."""

    n_workers: int
    sequential: list[float] = field(default_factory=list)     # seconds per plane, sequential
    post: list[float] = field(default_factory=list)           # of which post-processing
    pooled: list[float] = field(default_factory=list)         # seconds per plane with the pool
    _seen_first: bool = False

    def add_sequential(self, seconds: float, post_seconds: float) -> None:
        """One sequential plane's cycle and its post-processing time; the run's first plane is not kept."""
        if self._seen_first:
            self.post.append(post_seconds)
            self.sequential.append(seconds)
        self._seen_first = True

    def worth_starting(self, remaining: int) -> bool:
        """True when the post-processing the pool would hide on the ``remaining`` planes repays its start."""
        if not self.post:
            return False
        return remaining * HIDDEN_SHARE * statistics.median(self.post) > self.n_workers * WORKER_START_S

    def add_pooled(self, seconds: float) -> None:
        self.pooled.append(seconds)

    def pool_is_slower(self) -> bool | None:
        """None until enough pooled planes are timed; then whether the pool loses to sequential."""
        judged = self.pooled[FILL_PLANES:]
        if len(judged) < JUDGED_PLANES or not self.sequential:
            return None
        return statistics.fmean(judged) > TOLERANCE * statistics.fmean(self.sequential)

    def verdict_line(self) -> str:
        """What the timing showed, for the run's log."""
        pooled = statistics.fmean(self.pooled[FILL_PLANES:])
        return (f"{pooled:.2f} s a plane with {self.n_workers} worker process(es), "
                f"{statistics.fmean(self.sequential):.2f} s without")
