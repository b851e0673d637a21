"""The GPU regime, simulated: the CNN's outputs are ready, only post-processing remains.

With a GPU the CNN is fast and NMS + label rendering bound the rate. Given the
sparse CNN outputs of a stack, this times the sequential loop (StarDist's NMS using
OpenMP on every core) against the worker pool the pipeline uses, and one worker alone.
"""
from __future__ import annotations

import time
from collections import deque

from stardist_v4d.pipeline.predict import SparsePrediction, instances
from stardist_v4d.pipeline.workers import PendingPool, post_process


def pooled_rate(sparse: list[SparsePrediction], workers: int) -> float:
    """Planes per second through ``workers`` processes, submitted and consumed in order."""
    pending = PendingPool(workers)
    pool = pending.ready(print)
    try:
        started, in_flight = time.perf_counter(), deque()
        for sp in sparse:
            in_flight.append(pool.submit(post_process, sp))
            if len(in_flight) >= workers + 2:
                in_flight.popleft().result()
        while in_flight:
            in_flight.popleft().result()
        return len(sparse) / (time.perf_counter() - started)
    finally:
        pending.shutdown(wait=True)


def post_processing_rates(sparse: list[SparsePrediction], workers: int) -> dict[str, float]:
    """Planes per second: sequential in this process, one worker, ``workers`` workers."""
    started = time.perf_counter()
    for sp in sparse:
        instances(sp)
    sequential = len(sparse) / (time.perf_counter() - started)
    return dict(sequential=sequential, one_worker=pooled_rate(sparse, 1),
                pool=pooled_rate(sparse, workers), workers=workers,
                payload_mb=sum(sp.nbytes for sp in sparse) / len(sparse) / 2 ** 20)
