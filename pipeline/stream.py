"""Planes in, ``(t, z, labels, details, measurements)`` out, in plane order: sequential or pipelined.

Why pipelined: the CNN uses every core well; NMS and label rendering do not (1.4x
faster on two cores than on one: the NMS is OpenMP, the rendering one thread). Here one thread of
this process normalizes and runs the CNN plane after plane (TensorFlow releases the
GIL), worker processes post-process earlier planes, one plane per single-threaded
worker, and the caller reads and writes. At most ``depth`` planes are in flight, so
memory is bounded by a few planes whatever the stack's length. Every host call
(read, write, cancel check) happens in the calling thread, in order. Both streams
compute the same numbers: pipelining changes when, not what.

Normalization stays with the CNN, not in the workers: queued behind post-processing
jobs it delayed the CNN's next plane (1.18 -> 1.20 planes/s when moved here).
Measuring (when asked) is part of post-processing: it runs where NMS runs, on the
input channels read with the plane, so measured planes stream like the others.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Callable, Generator, Iterator, Sequence

import numpy as np

from ..analysis.measure import Calibration
from .pool_judge import PoolJudge
from .predict import SparsePrediction
from .workers import post_process

Step = tuple[int, int]
Result = tuple[int, int, np.ndarray, dict, "dict | None"]


@dataclass(frozen=True)
class PlaneInput:
    """One step's input: the plane to segment, and every channel when measuring."""

    time_point: int
    z: int
    plane: np.ndarray
    channels: tuple[np.ndarray, ...] | None = None


Reader = Callable[[int, int], PlaneInput]


def sequential(steps: Sequence[Step], read: Reader,
               segment: Callable[[PlaneInput], tuple[np.ndarray, dict, "dict | None"]],
               stop: Callable[[], bool]) -> Iterator[Result]:
    """One plane at a time: read, ``segment`` (normalize, predict, measure), hand over."""
    for t, z in steps:
        if stop():
            return
        yield (t, z, *segment(read(t, z)))


def in_process(normalizer: Callable[[np.ndarray], np.ndarray],
               cnn: Callable[[np.ndarray], SparsePrediction],
               calibration: Calibration | None = None) -> Callable[[PlaneInput], tuple]:
    """``segment`` for ``sequential``: both halves of the prediction (and measuring), here."""
    return lambda plane: post_process(cnn(normalizer(plane.plane)), plane.channels, calibration,
                                      plane.time_point, plane.z)


def switching(steps: Sequence[Step], read: Reader,
              normalizer: Callable[[np.ndarray], np.ndarray],
              cnn: Callable[[np.ndarray], SparsePrediction],
              pool_when_ready: Callable[[], Executor | None], stop: Callable[[], bool],
              depth: int, calibration: Calibration | None = None,
              on_switch: Callable[[int], None] = lambda done: None,
              log: Callable[[str], None] = print, *, judge: PoolJudge,
              begin_pool: Callable[[], None], drop_pool: Callable[[int], None],
              clock: Callable[[], float] = time.monotonic) -> Iterator[Result]:
    """Sequential planes, timed; a pool started when they say it pays, then ``pipelined``.

    The ``judge`` (``pool_judge``) reads the sequential planes' times: ``begin_pool()`` is
    called once they say the pool pays; the pool is used from the first plane after it
    answers (``pool_when_ready()``, asked between planes, so the order stays; the run never
    waits for it: workers take ~1 s to start) and ``on_switch(planes_done)`` is called then.
    It is given up (``drop_pool(planes_done)``, then sequential again) when pooled planes come
    slower than sequential ones. The sequential planes compute what ``in_process`` does, with
    the post-processing timed on its own.
    """
    started = dropped = False
    done = 0
    last = clock()
    while done < len(steps):
        pool = None if dropped or not judge.sequential else pool_when_ready()   # one timed plane first
        if pool is not None:
            on_switch(done)
            handed = yield from pipelined(steps[done:], read, normalizer, cnn, pool, stop, depth, calibration, log,
                                          _pooled_timer(judge), clock)
            done += handed
            if done >= len(steps) or stop():
                return
            dropped = True
            drop_pool(done)
            last = clock()
            continue
        if stop():
            return
        t, z = steps[done]
        plane = read(t, z)
        prediction = cnn(normalizer(plane.plane))
        post_started = clock()
        result = post_process(prediction, plane.channels, calibration, plane.time_point, plane.z)
        post_seconds = clock() - post_started
        yield (t, z, *result)
        now = clock()
        done += 1
        judge.add_sequential(now - last, post_seconds)
        if not started and not dropped and judge.worth_starting(len(steps) - done):
            started = True
            begin_pool()
        last = now


def _pooled_timer(judge: PoolJudge) -> Callable[[float], bool]:
    """``keep_going`` for ``pipelined``: times each pooled plane, False once the pool loses."""
    def keep_going(seconds: float) -> bool:
        judge.add_pooled(seconds)
        return judge.pool_is_slower() is not True
    return keep_going


def pipelined(steps: Sequence[Step], read: Reader,
              normalizer: Callable[[np.ndarray], np.ndarray],
              cnn: Callable[[np.ndarray], SparsePrediction], pool: Executor,
              stop: Callable[[], bool], depth: int = 4,
              calibration: Calibration | None = None,
              log: Callable[[str], None] = print,
              keep_going: Callable[[float], bool] | None = None,
              clock: Callable[[], float] = time.monotonic) -> Generator[Result, None, int]:
    """Normalization and CNN in one thread, post-processing in ``pool``, results in order.

    Returns how many planes were handed over: all of ``steps`` unless stopped, or unless
    ``keep_going(seconds since the plane before)``, asked after each plane, said False:
    then no further plane is started and the ones in flight are handed over first.

    A stop, an error or the caller dropping the iterator cancels the planes in
    flight; none of them is handed over. A worker process that dies (killed, out of
    memory) breaks the pool: its plane and every later one are post-processed here
    instead, said in one line; the labels are the same.
    """
    cnn_thread = ThreadPoolExecutor(1, thread_name_prefix="stardist-cnn")
    broken: list[str] = []

    def cnn_then_post(plane: PlaneInput) -> tuple[SparsePrediction, PlaneInput, Future | None]:
        prediction = cnn(normalizer(plane.plane))
        if broken:
            return prediction, plane, None
        try:
            return prediction, plane, pool.submit(post_process, prediction, plane.channels, calibration,
                                                  plane.time_point, plane.z)
        except BrokenProcessPool:
            return prediction, plane, None

    def result_of(post: Future) -> tuple:
        prediction, plane, future = post.result()
        if future is not None:
            try:
                return result_while_workers_live(future, pool)
            except BrokenProcessPool:
                pass
        if not broken:
            broken.append("said")
            log(f"A worker process stopped (killed, or out of memory): post-processing goes on in this process "
                f"from plane t={plane.time_point} z={plane.z}.")
        return post_process(prediction, plane.channels, calibration, plane.time_point, plane.z)

    def head_done() -> bool:
        if not in_flight or not in_flight[0][2].done():
            return False
        future = in_flight[0][2].result()[2]
        return future is None or future.done()

    in_flight: deque[tuple[int, int, Future]] = deque()
    handed = 0
    last = clock()
    try:
        for t, z in steps:
            if stop():
                return handed
            in_flight.append((t, z, cnn_thread.submit(cnn_then_post, read(t, z))))
            going = True
            while len(in_flight) >= depth or head_done():      # hand over what is done, in order
                t0, z0, post = in_flight.popleft()
                yield (t0, z0, *result_of(post))
                handed += 1
                now = clock()
                if keep_going is not None and not keep_going(now - last):
                    going = False
                last = now
            if not going:
                break
        while in_flight:
            if stop():
                return handed
            t0, z0, post = in_flight.popleft()
            yield (t0, z0, *result_of(post))
            handed += 1
        return handed
    finally:
        for _, _, post in in_flight:
            if not post.cancel() and post.done() and post.exception() is None and post.result()[2] is not None:
                post.result()[2].cancel()
        cnn_thread.shutdown(wait=True, cancel_futures=True)


#: How often a wait for a worker's result checks that the workers still live.
WORKER_CHECK_S = 1.0


def result_while_workers_live(future: Future, pool: Executor, check_s: float = WORKER_CHECK_S):
    """``future.result()``, or ``BrokenProcessPool`` as soon as one of ``pool``'s worker processes
    has died while we wait.

    Why not ``future.result()`` alone: a worker killed while it sends its result (an
    OOM kill, ``kill -9``) leaves a partial message in the pool's pipe, and the pool's
    manager thread waits for the rest of it forever instead of breaking the pool (CPython's
    ``ProcessPoolExecutor``); the run would hang. The workers are checked here instead.
    """
    from concurrent.futures import TimeoutError as FutureTimeout

    while True:
        try:
            return future.result(timeout=check_s)
        except FutureTimeout:
            processes = getattr(pool, "_processes", None) or {}
            if any(not process.is_alive() for process in list(processes.values())):
                raise BrokenProcessPool("a worker process died") from None
