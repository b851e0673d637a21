"""Planes in, ``(t, z, labels, details)`` out, in plane order: sequential or pipelined.

Why pipelined: on a CPU the CNN and the post-processing (NMS, label rendering) each
leave cores idle part of the time. Here the CNN of plane k+1 runs in a thread of
this process (TensorFlow releases the GIL) while worker processes normalize plane
k+2 and post-process plane k, and the caller writes plane k-1. At most ``depth``
planes are in flight, so memory is bounded by a few planes whatever the stack's
length. Every host call (read, cancel check) happens in the calling thread, in order.
Both streams compute the same numbers: pipelining changes when, not what.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Callable, Iterator, Sequence

import numpy as np

from .predict import SparsePrediction, instances
from .workers import instances_job, normalize_job

Step = tuple[int, int]
Result = tuple[int, int, np.ndarray, dict]


def sequential(steps: Sequence[Step], read: Callable[[int, int], np.ndarray],
               segment: Callable[[np.ndarray], tuple[np.ndarray, dict]],
               stop: Callable[[], bool]) -> Iterator[Result]:
    """One plane at a time: read, ``segment`` (normalize + predict), hand over."""
    for t, z in steps:
        if stop():
            return
        yield (t, z, *segment(read(t, z)))


def in_process(normalizer: Callable[[np.ndarray], np.ndarray],
               cnn: Callable[[np.ndarray], SparsePrediction]) -> Callable[[np.ndarray], tuple]:
    """``segment`` for ``sequential``: both halves of the prediction, here."""
    return lambda plane: instances(cnn(normalizer(plane)))


def pipelined(steps: Sequence[Step], read: Callable[[int, int], np.ndarray],
              normalizer: Callable[[np.ndarray], np.ndarray],
              cnn: Callable[[np.ndarray], SparsePrediction], pool: Executor,
              stop: Callable[[], bool], depth: int = 4) -> Iterator[Result]:
    """Normalization and post-processing in ``pool``, the CNN in one thread, in order.

    ``normalizer`` must be picklable. A stop, an error or the caller dropping the
    iterator cancels the planes in flight; none of them is handed over.
    """
    cnn_thread = ThreadPoolExecutor(1, thread_name_prefix="stardist-cnn")

    def cnn_then_post(normalized: Future) -> Future:
        return pool.submit(instances_job, cnn(normalized.result()))

    in_flight: deque[tuple[int, int, Future]] = deque()
    try:
        for t, z in steps:
            if stop():
                return
            normalized = pool.submit(normalize_job, normalizer, read(t, z))
            in_flight.append((t, z, cnn_thread.submit(cnn_then_post, normalized)))
            if len(in_flight) >= depth:
                t0, z0, post = in_flight.popleft()
                yield (t0, z0, *post.result().result())
        while in_flight:
            if stop():
                return
            t0, z0, post = in_flight.popleft()
            yield (t0, z0, *post.result().result())
    finally:
        for _, _, post in in_flight:
            post.cancel()
        cnn_thread.shutdown(wait=True, cancel_futures=True)
