"""Peak anonymous memory of this process and its children, sampled while code runs.

Why anonymous: the output is written through a memory map, and its pages count in
RSS as file cache, not as the run's memory. Linux only (reads /proc); elsewhere the
sampler reports 0.
"""
from __future__ import annotations

import threading
from pathlib import Path


def _rss_anon_kb(pid: int | str = "self") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children() -> set[int]:
    """Child processes, except those caught between fork and exec: their memory is ours."""
    pids: set[int] = set()
    for task in Path("/proc/self/task").glob("*"):
        try:
            pids.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    try:
        own = Path("/proc/self/cmdline").read_bytes()
        return {p for p in pids if Path(f"/proc/{p}/cmdline").read_bytes() != own}
    except OSError:
        return set()


def anon_mb(children: bool = True) -> float:
    """Anonymous memory now, in MB: this process (and its children)."""
    kb = _rss_anon_kb() + (sum(_rss_anon_kb(p) for p in _children()) if children else 0)
    return kb / 1024


class PeakAnon:
    """``with PeakAnon() as peak: ...`` then ``peak.mb``: the largest sample taken inside."""

    def __init__(self, every_s: float = 0.005, children: bool = True) -> None:
        self.every_s, self.children = every_s, children
        self.mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.mb = max(self.mb, anon_mb(self.children))
            if self._stop.wait(self.every_s):
                self.mb = max(self.mb, anon_mb(self.children))
                return

    def __enter__(self) -> PeakAnon:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class AnonTimeline(PeakAnon):
    """``PeakAnon`` that keeps every sample: ``peaks_between(marks)`` gives per-interval peaks.

    Why: a run's overall peak includes start-up transients (model load, worker spawn,
    the CNN's first call) that differ by tens of MB from run to run; the peak between
    two planes written is the steady state a long stack lives in.
    """

    def __init__(self, every_s: float = 0.005, children: bool = True) -> None:
        super().__init__(every_s, children)
        self.samples: list[tuple[float, float]] = []

    def _sample(self) -> None:
        import time
        while True:
            mb = anon_mb(self.children)
            self.samples.append((time.perf_counter(), mb))
            self.mb = max(self.mb, mb)
            if self._stop.wait(self.every_s):
                return

    def peaks_between(self, marks: list[float]) -> list[float]:
        """Peak MB in each interval ``marks[i] .. marks[i + 1]``, then after the last mark."""
        import bisect
        peaks = [0.0] * len(marks)
        for when, mb in self.samples:
            k = bisect.bisect(marks, when) - 1
            if k >= 0:
                peaks[k] = max(peaks[k], mb)
        return peaks
