"""WORKERS = None: the pool is started and kept only where the run's own plane times say it pays.

The judge is pure (times in, decisions out); the stream is driven with a fake clock, a
fake CNN and post-processing, and a thread pool, so nothing here is timed for real.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from stardist_v4d.pipeline import stream
from stardist_v4d.pipeline.pool_judge import (FILL_PLANES, HIDDEN_SHARE, JUDGED_PLANES, TOLERANCE, WORKER_START_S,
                                              PoolJudge)
from stardist_v4d.pipeline.workers import pool_refusal


def test_the_first_plane_is_no_baseline_and_the_pool_starts_when_its_saving_repays_its_start():
    judge = PoolJudge(n_workers=2)
    assert not judge.worth_starting(1000)          # nothing measured yet
    judge.add_sequential(9.0, 0.9)                 # the first plane: the CNN compiles, numba's cache loads
    assert judge.sequential == [] and judge.post == [] and not judge.worth_starting(1000)
    judge.add_sequential(2.0, 0.6)
    assert judge.sequential == [2.0] and judge.post == [0.6]
    cost = 2 * WORKER_START_S
    enough = int(cost / (HIDDEN_SHARE * 0.6)) + 1
    assert judge.worth_starting(enough) and not judge.worth_starting(enough - 1)


@pytest.mark.parametrize("pooled, slower", [(2.0 * TOLERANCE * 1.01, True), (2.0 * TOLERANCE * 0.99, False),
                                            (1.2, False)])
def test_the_pool_is_judged_on_its_planes_after_the_pipeline_filled(pooled, slower):
    judge = PoolJudge(n_workers=2)
    for seconds in (9.0, 2.0, 2.0):
        judge.add_sequential(seconds, 0.5)
    for _ in range(FILL_PLANES):
        judge.add_pooled(30.0)                      # filling the pipeline: not counted
    for k in range(JUDGED_PLANES):
        assert judge.pool_is_slower() is None
        judge.add_pooled(pooled)
    assert judge.pool_is_slower() is slower
    assert "s a plane with 2 worker process(es)" in judge.verdict_line()


def test_no_pool_on_one_plane_with_workers_0_or_on_one_core(monkeypatch):
    from stardist_v4d.pipeline import workers
    assert pool_refusal(None, 1, True) == ""
    assert pool_refusal(0, 100, True) == ""
    assert pool_refusal(None, 2, True) is None                  # may start: the judge decides
    assert pool_refusal(2, 2, True) is None                     # asked for explicitly
    assert "not available inside this application" in pool_refusal(2, 100, False)
    monkeypatch.setattr(workers, "cores", lambda: 1)
    assert pool_refusal(None, 100, True) == ""


class FakeRun:
    """A CNN and post-processing that cost fake seconds on a fake clock; labels carry the plane."""

    def __init__(self, monkeypatch, post_seconds: float = 1.0) -> None:
        self.now = 0.0
        self.post_seconds = post_seconds
        self.pool = ThreadPoolExecutor(1)
        self.asked = 0
        self.began: list[int] = []
        self.dropped: list[int] = []
        self.handed = 0
        monkeypatch.setattr(stream, "post_process", self.post_process)

    def clock(self) -> float:
        return self.now

    def post_process(self, prediction, channels, calibration, t, z):
        self.now += self.post_seconds
        return np.full((2, 2), prediction, np.int32), {"z": z}, None

    def read(self, t, z):
        return stream.PlaneInput(t, z, np.array(z))

    def cnn(self, image):
        self.now += 1.0
        return int(image)

    def pool_when_ready(self):
        self.asked += 1
        return self.pool if self.began else None

    def run(self, n_planes: int, judge: PoolJudge) -> list[int]:
        steps = [(0, z) for z in range(n_planes)]
        results = []
        for t, z, labels, details, _ in stream.switching(
                steps, self.read, lambda x: x, self.cnn, self.pool_when_ready, lambda: False, depth=2,
                judge=judge, begin_pool=lambda: self.began.append(len(results)),
                drop_pool=lambda done: self.dropped.append((done, self.asked)), clock=self.clock):
            assert int(labels[0, 0]) == z and details["z"] == z
            results.append(z)
        return results


def test_a_short_run_never_starts_the_pool(monkeypatch):
    fake = FakeRun(monkeypatch, post_seconds=0.5)
    assert fake.run(3, PoolJudge(n_workers=2)) == [0, 1, 2]
    assert fake.began == [] and fake.dropped == []


class LosingJudge(PoolJudge):
    """The real start rule; the pool loses once ``after`` pooled planes are timed."""

    def __init__(self, after: int) -> None:
        super().__init__(n_workers=1)
        self.after = after

    def pool_is_slower(self):
        return len(self.pooled) >= self.after

    def verdict_line(self) -> str:
        return "slower"


def test_a_long_run_starts_the_pool_after_its_baseline_and_keeps_it_while_it_pays(monkeypatch):
    fake = FakeRun(monkeypatch)
    judge = LosingJudge(after=10 ** 9)
    assert fake.run(20, judge) == list(range(20))          # every plane once, in order
    assert fake.began == [2]                     # right after the second plane, the first timed one
    assert fake.dropped == [] and len(judge.pooled) >= 15  # the later planes timed, pooled
    assert len(judge.sequential) == 1            # one timed sequential plane before the pool


def test_a_pool_that_loses_is_dropped_and_the_rest_goes_sequentially(monkeypatch):
    fake = FakeRun(monkeypatch)
    assert fake.run(20, LosingJudge(after=3)) == list(range(20))
    assert len(fake.dropped) == 1
    done, asked = fake.dropped[0]
    assert 2 + 3 <= done < 20                     # 2 sequential (the first, one timed), 3 pooled, the
    #                                               ones in flight handed over
    assert fake.asked == asked                    # the pool is never asked for again
