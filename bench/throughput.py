"""Planes per second of ``run()`` against the seed-style loop, measured in the same session.

"ours" runs with MEASURE off (segmentation alone), "measured" with the defaults
(per-nucleus tables as planes complete, then workbook and plots): the share of a
run's time measuring costs is 1 - rate(measured) / rate(ours).

    python bench/throughput.py [--planes 24] [--size 1024] [--model demo] [--rounds 3]

Baseline: the obvious loop (model loaded once; per plane: read, ``normalize(1, 99.8)``,
``predict_instances``, write). Each variant runs in a fresh subprocess, so neither
inherits the other's memory or warm caches, and the two alternate for ``--rounds``
rounds (medians are reported, so a noisy neighbour on the machine hits both). A rate
is planes over the time from the loop's start (model loaded, output created) to the
last plane written; start-up is printed apart. Prints the ratio, the ceiling from
single-thread core-seconds, peak anonymous memory, where the time goes, the CNN's
GFLOP/s beside numpy's sgemm rate, and the simulated GPU regime (post-processing
alone: worker pool vs the sequential loop). Numbers taken while anything else runs
on the machine are meaningless.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stardist_v4d.config import DEFAULT_MODEL  # noqa: E402

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from anon_memory import PeakAnon  # noqa: E402


def sampler(args):
    """Peak anonymous memory on ``--memory`` runs only: a thread waking every 5 ms
    disturbs OpenMP's lock-step NMS threads (up to +0.6 s on some planes), so timed
    runs go without it."""
    return PeakAnon() if args.memory else contextlib.nullcontext(PeakAnon())


def variant_baseline(args) -> dict:
    from csbdeep.utils import normalize
    from stardist.models import StarDist2D
    from stardist_v4d.host_api.tiff import TiffHost

    model = StarDist2D(None, name=args.model, basedir=str(args.models))
    host = TiffHost(args.input, args.output, overwrite=True, show_progress=False)
    channel = host.add_channel("StarDist", np.uint16).channel
    started, written = time.perf_counter(), []          # the loop's clock starts here
    with sampler(args) as peak:
        for z in range(host.dataset_info().size_z):
            labels, _ = model.predict_instances(normalize(host.read_plane(0, 0, z), 1, 99.8))
            host.write_plane(channel, 0, z, labels.astype(np.uint16))
            written.append(time.perf_counter())
    host.finish(True)
    host.close()
    return dict(written=[w - started for w in written], peak_mb=peak.mb)


def variant_ours(args) -> dict:
    from stardist_v4d.config import Config
    from stardist_v4d.host_api.tiff import TiffHost
    from stardist_v4d.pipeline.run import run

    written: list[float] = []
    loop_started: list[float] = []

    class Timed(TiffHost):
        def add_channel(self, *args, **kwargs):
            target = super().add_channel(*args, **kwargs)
            loop_started.append(time.perf_counter())   # model loaded: the loop's clock starts
            return target

        def report_progress(self, done: int, total: int) -> None:
            written.append(time.perf_counter())

        def log(self, message: str) -> None:
            if not message.startswith("t="):
                print(message, file=sys.stderr)

    config = Config(model2d_path=args.models, model_name=args.model, input_path=args.input,
                    output_path=args.output, overwrite=True, write_objects=False,
                    workers=args.workers, label_dtype="uint16", measure=args.measure)
    started = time.perf_counter()
    with sampler(args) as peak:
        run(config, Timed(args.input, args.output, overwrite=True, show_progress=False))
    ended = time.perf_counter()
    return dict(written=[w - loop_started[0] for w in written], peak_mb=peak.mb,
                startup_s=loop_started[0] - started, finish_s=ended - written[-1])


def variant_measured(args) -> dict:
    """``run()`` with MEASURE on (tables per plane; workbook and plots after the last plane)."""
    args.measure = True
    return variant_ours(args)


def variant_stages(args) -> dict:
    """Our sequential path, stage by stage (wall and CPU time), plus the GPU regime."""
    import tifffile
    from stardist.models import StarDist2D
    from stardist_v4d.analysis.measure import Calibration
    from stardist_v4d.pipeline.measuring import measure_instances
    from stardist_v4d.pipeline.normalization import plane_normalizer
    from stardist_v4d.pipeline.predict import instances, predict_sparse
    from stardist_v4d.pipeline.backends.tensorflow_cnn import use_compiled_cnn

    from costs import cnn_gflop, sgemm_gflops
    from gpu_regime import post_processing_rates

    model = StarDist2D(None, name=args.model, basedir=str(args.models))
    stack = tifffile.memmap(args.input)
    normalizer = plane_normalizer(1, 99.8)
    x = normalizer(np.array(stack[0]))
    keras_s = min(_wall(lambda: model.keras_model.predict(x[None, ..., None], verbose=0)) for _ in range(3))
    use_compiled_cnn(model)
    predict_sparse(model, x)
    stages = dict(read=0.0, normalize=0.0, cnn=0.0, post=0.0, write=0.0, measure=0.0)
    calibration = Calibration((0.5, 0.5))
    out = np.lib.format.open_memmap(Path(args.output), mode="w+", dtype=np.uint16, shape=stack.shape)
    sparse, nuclei = [], []
    for z, plane in enumerate(stack):
        t = [time.perf_counter()]
        raw = np.array(plane); t.append(time.perf_counter())
        image = normalizer(raw); t.append(time.perf_counter())
        sp = predict_sparse(model, image); t.append(time.perf_counter())
        labels, details = instances(sp); t.append(time.perf_counter())
        out[z] = labels; out.flush(); t.append(time.perf_counter())
        measure_instances(labels, details, [raw], calibration); t.append(time.perf_counter())
        for key, a, b in zip(stages, t, t[1:]):
            stages[key] += (b - a) / len(stack)
        sparse.append(sp)
        nuclei.append(len(details["prob"]))
    gflop = cnn_gflop(model.keras_model, stack.shape[1:])
    return dict(stages=stages, keras_cnn_s=keras_s, gflop=gflop, sgemm=sgemm_gflops(),
                nuclei=nuclei, gpu=post_processing_rates(sparse, args.workers))


def _wall(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def in_subprocess(name: str, args, output: Path, memory: bool = False) -> dict:
    command = [sys.executable, __file__, "--variant", name, "--input", str(args.input),
               "--output", str(output), "--models", str(args.models), "--model", args.model,
               "--workers", str(args.workers)] + (["--memory"] if memory else [])
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def loop_rate(written: list[float]) -> float:
    """Planes per second from the loop's start (model loaded, output created) to the last write."""
    return len(written) / written[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--variant", choices=("baseline", "ours", "measured", "stages"))
    p.add_argument("--planes", type=int, default=24)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--models", type=Path, default=HERE.parent / "models")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--memory", action="store_true", help="(variants) sample peak anonymous memory")
    p.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)   # set by variant_measured
    p.add_argument("--input", type=Path)
    p.add_argument("--output", type=Path)
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "stardist_v4d_bench")
    args = p.parse_args()
    if args.variant:
        if args.workers is None:
            from stardist_v4d.pipeline.workers import cores
            args.workers = cores()
        print(json.dumps(globals()[f"variant_{args.variant}"](args)))
        return
    from report import report
    from crowded_stack import crowded_stack

    args.cache.mkdir(exist_ok=True)
    args.input = crowded_stack(args.cache, args.planes, args.size)
    if args.workers is None:
        from stardist_v4d.pipeline.workers import cores
        args.workers = cores()
    outputs = {name: args.cache / f"{name}.{'npy' if name == 'stages' else 'tif'}"
               for name in ("baseline", "ours", "measured", "stages")}
    results = {"baseline": [], "ours": [], "measured": []}
    for _ in range(args.rounds):
        for name in ("baseline", "ours", "measured"):
            results[name].append(in_subprocess(name, args, outputs[name]))
    for name in ("baseline", "ours"):
        results[f"{name}_memory"] = in_subprocess(name, args, outputs[name], memory=True)
    results["stages"] = in_subprocess("stages", args, outputs["stages"])
    from costs import single_thread_costs
    results["single"] = single_thread_costs(args.models, args.model, args.input)
    report(args, results, outputs, loop_rate)


if __name__ == "__main__":
    main()
