"""Planes per second on Dask workers against the single process, on one crowded Zarr stack.

    python bench/cluster.py [--planes 16] [--size 1024] [--rounds 2]

Each variant is a whole CLI run (``--scheduler local:N`` or none) on the same OME-Zarr
stack (converted once from the benchmarks' crowded TIFF); the variants alternate, medians
are printed. Rates are steady: planes after the first, over the time from the first
written plane to the last (workers load the model at their start: printed apart as
start-up). The scheduling overhead per plane is measured apart, on no-op tasks through
the same local cluster (submit + result, one at a time and in bulk).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from stardist_v4d.config import DEFAULT_MODEL  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fast_path import timed_process  # noqa: E402

VARIANTS = {"single process": [], "local:1": ["--scheduler", "local:1"], "local:2": ["--scheduler", "local:2"]}


def task_overhead_ms(n: int = 200) -> tuple[float, float]:
    """Milliseconds per no-op task through a 2-worker LocalCluster: one by one, and 200 at once."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        client.submit(abs, 0).result()
        started = time.perf_counter()
        for i in range(n):
            client.submit(abs, i, pure=False).result()
        serial = (time.perf_counter() - started) / n
        started = time.perf_counter()
        client.gather(client.map(abs, range(n), pure=False))
        bulk = (time.perf_counter() - started) / n
    return serial * 1e3, bulk * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--planes", type=int, default=16)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "stardist_v4d_bench")
    args = p.parse_args()
    from crowded_stack import crowded_stack
    from stardist_v4d.convert import convert

    args.cache.mkdir(exist_ok=True)
    tiff = crowded_stack(args.cache, args.planes, args.size)
    store = args.cache / f"crowded_{args.planes}x{args.size}.ome.zarr"
    if not store.exists():
        convert(tiff, store, progress=False)
    models = HERE.parent / "models"
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for round_ in range(args.rounds):
        for name, flags in VARIANTS.items():
            command = [sys.executable, "-m", "stardist_v4d", "run", "--input", str(store), "--output",
                       str(args.cache / "cluster_out.ome.zarr"), "--model-path", str(models), "--model", args.model,
                       "--overwrite", "--no-measure", "--no-objects", *flags]
            runs[name].append(timed_process(command))
            print(f"round {round_ + 1}: {name}: {runs[name][-1]['total_s']:.1f} s", file=sys.stderr, flush=True)

    def steady(run: dict) -> float:
        written = run["written"]
        return (len(written) - 1) / (written[-1] - written[0])
    base = statistics.median(steady(r) for r in runs["single process"])
    print(f"{args.planes} crowded {args.size}x{args.size} planes (OME-Zarr), medians of {args.rounds} rounds")
    print(f"{'variant':16s} {'planes/s':>9s} {'ratio':>6s} {'start-up s':>10s} {'whole run s':>11s}")
    for name in VARIANTS:
        rate = statistics.median(steady(r) for r in runs[name])
        start = statistics.median(r["written"][0] for r in runs[name])
        total = statistics.median(r["total_s"] for r in runs[name])
        print(f"{name:16s} {rate:9.3f} {rate / base:5.2f}x {start:10.1f} {total:11.1f}")
    serial, bulk = task_overhead_ms()
    print(f"scheduling overhead per task (no-op, local cluster): {serial:.2f} ms one by one, {bulk:.2f} ms in bulk")


if __name__ == "__main__":
    main()
