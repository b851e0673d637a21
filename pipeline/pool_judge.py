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
not a baseline (the CNN's first call compiles its graph).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

#: CPU seconds one worker takes to start (spawn, imports, the compiled NMS from numba's
#: cache) and so takes from the CNN; measured 0.7-1.5 s on 2-core machines.
WORKER_START_S = 1.5
#: The share of a plane's post-processing a pool is counted on to hide behind the CNN
#: before it is started (on two cores the CNN gives up some of its second core).
HIDDEN_SHARE = 0.5
#: Sequential planes timed (after the first) before the pool may be started.
BASELINE_PLANES = 1
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
    first_skipped: bool = False

    def add_sequential(self, seconds: float, post_seconds: float) -> None:
        """One sequential plane's cycle and its post-processing share; the run's first is not kept."""
        if not self.first_skipped:
            self.first_skipped = True
            return
        self.sequential.append(seconds)
        self.post.append(post_seconds)

    def worth_starting(self, remaining: int) -> bool:
        """True when the post-processing the pool would hide on the ``remaining`` planes repays its start."""
        if len(self.sequential) < BASELINE_PLANES:
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
