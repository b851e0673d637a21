"""What objects through Z and tracks cost in a run: their share of its time.

    python bench/objects_cost.py [--planes 10] [--time-points 2] [--size 1024] [--workers 0]

A TZYX stack of crowded synthetic planes (~1,000 nuclei per 1024 x 1024 plane, the
benchmarks' crowded style; each time point the same planes, slightly shifted) is
segmented with the default settings through ``segment()`` (measuring on), in one
process. The time spent in ``ObjectBuilder.add_plane`` (joining slices, projected masks)
and in the tracking at the end (``track_files``: laptrack and the two tables) is summed
inside that run and printed beside the run's own time, with the share; the target is
at most 10 %. Says which CPU it ran on.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from stardist_v4d.analysis import objects  # noqa: E402
from stardist_v4d.pipeline import measuring  # noqa: E402
from stardist_v4d.training.synthetic import CROWDED, synthetic_nuclei  # noqa: E402


class Timed:
    """Wraps a function, summing the seconds spent in it."""

    def __init__(self, owner, name: str) -> None:
        self.owner, self.name, self.seconds, self.calls = owner, name, 0.0, 0
        self.original = getattr(owner, name)
        timer = self

        def wrapped(*args, **kwargs):
            started = time.perf_counter()
            try:
                return timer.original(*args, **kwargs)
            finally:
                timer.seconds += time.perf_counter() - started
                timer.calls += 1

        setattr(owner, name, wrapped)


def stack(planes: int, time_points: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = np.empty((planes, size, size), np.uint16)
    for z in range(planes):
        image, _ = synthetic_nuclei((size, size), rng, CROWDED)
        base[z] = np.clip(image / image.max() * 60000, 0, 65535)
    return np.stack([np.roll(base, 3 * t, axis=2) for t in range(time_points)])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--planes", type=int, default=10)
    parser.add_argument("--time-points", type=int, default=2)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    from report import machine

    from stardist_v4d.python_api import segment

    data = stack(args.planes, args.time_points, args.size)
    add_plane = Timed(objects.ObjectBuilder, "add_plane")
    track_files = Timed(measuring, "track_files")
    print(f"machine: {machine()}; {args.time_points} time points x {args.planes} crowded "
          f"{args.size}x{args.size} planes", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        _, table = segment(data, "TZYX", current_time_point=False, measurements_dir=folder, plots=False,
                           workers=args.workers, show_progress=False)
        seconds = time.perf_counter() - started
        objects_rows = sum(1 for _ in open(Path(folder) / "segment_objects.csv")) - 1
    spent = add_plane.seconds + track_files.seconds
    print(f"run: {seconds:.1f} s for {data.shape[0] * data.shape[1]} planes, {len(table)} slices, "
          f"{objects_rows} objects")
    print(f"objects through Z: {add_plane.seconds:.2f} s in {add_plane.calls} planes "
          f"({add_plane.seconds / max(add_plane.calls, 1) * 1000:.0f} ms a plane)")
    print(f"tracking (laptrack + tables): {track_files.seconds:.2f} s")
    print(f"share of the run: {spent / seconds:.1%} (target <= 10 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
