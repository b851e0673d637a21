"""Whole runs, start-up included: the CLI's engines and worker settings against the plain loop.

    python bench/fast_path.py [--planes 10] [--size 1024] [--rounds 3] [--model demo]

Every variant is a fresh process started by this script (so start-up counts, as a user
sees it) on the same crowded synthetic stack; the variants alternate for ``--rounds``
rounds and medians are printed. Baseline: the plain loop (import StarDist, load the
model, per plane read -> ``normalize(1, 99.8)`` -> ``predict_instances`` -> write).
The OpenVINO variants run with a warm IR cache (converted once before the rounds, in a
copy of the model folder), as every run after a model's first does.

Printed per variant: planes/s over the whole process (``--planes`` planes), the ratio to
the plain loop, the marginal planes/s (between the one-plane and the ``--planes`` run: start-up
cancels out, what a pool's start costs stays in), start-up seconds (first plane written minus one steady plane), the time
to the first written plane of a one-plane run and its share of the plain loop's, peak
anonymous memory of the process tree (sampled from here every 50 ms), and the objects'
agreement with the plain loop's fp32 labels (lowest F1@0.5 over the planes). The
"default settings" rows are what a user runs (measuring with its tables, workbook and plots,
and outlines on); the others are segmentation only, like the plain loop. Then one plane step
by step in one process (normalize, CNN, NMS, label rendering, measuring, outlines,
writing; NMS and rendering beside StarDist's own, NMS checked equal to it) with the ceiling it implies, and the CNN alone on one plane per engine: seconds, effective GFLOP/s, beside numpy's fp32 sgemm
rate and OpenVINO's bf16 matrix rate. Numbers taken while anything else runs on the
machine are meaningless. The first line names the CPU and whether it has bf16 (AMX,
AVX512_BF16): the bf16 rows run fp32 where it has not.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from stardist_v4d.config import DEFAULT_MODEL  # noqa: E402

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PLAIN_LOOP = """
import sys, time
import numpy as np
from csbdeep.utils import normalize
from stardist.models import StarDist2D
from stardist_v4d.host_api.tiff import TiffHost
models, name, source, target = sys.argv[1:5]
model = StarDist2D(None, name=name, basedir=models)
host = TiffHost(source, target, overwrite=True, show_progress=False)
channel = host.add_channel("StarDist", np.uint16).channel
for z in range(int(sys.argv[5])):
    labels, _ = model.predict_instances(normalize(host.read_plane(0, 0, z), 1, 99.8))
    host.write_plane(channel, 0, z, labels.astype(np.uint16))
    print(f"t=0 z={z}: written", flush=True)
host.finish(True)
host.close()
"""

#: What a user runs: measuring (tables, workbook, plots) and outlines on; the other rows run
#: with ``--no-measure --no-objects`` (segmentation only, like the plain loop).
DEFAULT_SETTINGS = ["--measure", "--objects"]
#: name -> CLI flags (beyond input, output, model); None = the plain loop.
VARIANTS = {
    "plain loop": None,
    "default settings (fp32)": DEFAULT_SETTINGS,
    "default settings, bf16": DEFAULT_SETTINGS + ["--precision", "bf16"],
    "default (fp32, TensorFlow)": [],
    "fp32, WORKERS=0": ["--workers", "0"],
    "fp32, OpenVINO": ["--backend", "openvino"],
    "bf16": ["--precision", "bf16"],
    "bf16, WORKERS=0": ["--precision", "bf16", "--workers", "0"],
}


def _tree_anon_kb(pid: int) -> int:
    """RssAnon of ``pid`` and its descendants (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return total


def timed_process(command: list[str]) -> dict:
    """Run ``command``; seconds from launch to each "t=.. z=..:" line and to exit, peak anon MB."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    peak = [0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], _tree_anon_kb(process.pid))
            time.sleep(0.05)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    written = [time.perf_counter() - started for line in process.stdout if line.startswith("t=")]
    stderr = process.stderr.read()
    process.wait()
    total = time.perf_counter() - started
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    return dict(written=written, total_s=total, peak_mb=peak[0] / 1024)


def command_for(flags: list[str] | None, args, output: Path, planes: int) -> list[str]:
    if flags is None:
        return [sys.executable, "-c", PLAIN_LOOP, str(args.models), args.model, str(args.input),
                str(output), str(planes)]
    segmentation_only = [] if "--measure" in flags else ["--no-measure", "--no-objects"]
    return [sys.executable, "-m", "stardist_v4d", "run", "--input", str(args.input), "--output", str(output),
            "--model-path", str(args.models), "--model", args.model, *segmentation_only,
            "--overwrite", "--last-plane", str(planes - 1), *flags]


def startup_s(written: list[float]) -> float:
    """First plane written minus one steady plane (the median interval between later planes)."""
    steady = statistics.median(np.diff(written)) if len(written) > 2 else 0.0
    return written[0] - steady


def labels_of(path: Path) -> np.ndarray:
    """The label channel (the last) of an output, as (Z, Y, X)."""
    import tifffile
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        data = series.asarray()
        axes = series.axes
    c = axes.index("C")
    return np.take(data, data.shape[c] - 1, axis=c).reshape(-1, *data.shape[-2:])


def agreement(reference: np.ndarray, other: np.ndarray) -> float:
    from stardist.matching import matching
    return min(matching(a, b, thresh=0.5).f1 for a, b in zip(reference, other))


def cnn_rates(args) -> dict:
    """Seconds and GFLOP/s of one CNN call per engine (best of 3 after a warm-up), in a subprocess."""
    script = f"""
import json, sys, time
sys.path.insert(0, {str(HERE)!r})
import numpy as np, tifffile
from stardist.models import StarDist2D
from stardist_v4d.pipeline.backends import ir_cache
from stardist_v4d.pipeline.backends.openvino_cnn import OpenVINOCNN, openvino_version
from stardist_v4d.pipeline.backends.tensorflow_cnn import CompiledCNN
from stardist_v4d.pipeline.model import sha256_of, weights_file
from stardist_v4d.pipeline.normalization import plane_normalizer
from costs import cnn_gflop, sgemm_gflops
from pathlib import Path
folder = Path({str(args.models)!r}) / {args.model!r}
model = StarDist2D(None, name=folder.name, basedir=str(folder.parent))
x = plane_normalizer(1, 99.8)(np.array(tifffile.memmap({str(args.input)!r})[0]))[None, ..., None]
cached = ir_cache.find(folder, ir_cache.network_key(folder, sha256_of(weights_file(folder))), openvino_version(), print)
engines = dict(tensorflow_fp32=CompiledCNN(model.keras_model),
               openvino_fp32=OpenVINOCNN(cached.xml, "fp32", cached.outputs),
               openvino_bf16=OpenVINOCNN(cached.xml, "bf16", cached.outputs))
out = dict(gflop=cnn_gflop(model.keras_model, x.shape[1:3]), sgemm=sgemm_gflops())
for name, cnn in engines.items():
    cnn.predict(x)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter(); cnn.predict(x); best = min(best, time.perf_counter() - t)
    out[name] = best
import openvino as ov
from openvino import opset13 as ops
n = 2048
a = ops.parameter([n, n], np.float32)
net = ov.Model([ops.matmul(a, ops.constant(np.random.default_rng(0).random((n, n), dtype=np.float32)), False, False)], [a])
compiled = ov.Core().compile_model(net, "CPU", {{"INFERENCE_PRECISION_HINT": "bf16"}})
m = np.random.default_rng(1).random((n, n), dtype=np.float32)
compiled(m)
best = min((lambda t: (compiled(m), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5))
out["bf16_matmul"] = 2 * n ** 3 / best / 1e9
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


STAGES = """
import json, sys, tempfile, time
from pathlib import Path
import numpy as np, tifffile
from stardist.geometry import polygons_to_label as stardists_rendering
from stardist.models import StarDist2D
from stardist.nms import non_maximum_suppression_sparse as stardists_nms
from stardist_v4d.analysis.measure import Calibration
from stardist_v4d.host_api.base import Nucleus
from stardist_v4d.host_api.imagej_rois import RoiSidecar
from stardist_v4d.pipeline.measuring import measure_instances
from stardist_v4d.pipeline.nms import non_maximum_suppression_sparse
from stardist_v4d.pipeline.normalization import plane_normalizer
from stardist_v4d.pipeline.predict import instances, predict_sparse
from stardist_v4d.pipeline.rendering import polygons_to_label
from stardist_v4d.pipeline.run import nuclei_from
folder, source = Path(sys.argv[1]), sys.argv[2]
model = StarDist2D(None, name=folder.name, basedir=str(folder.parent))
plane = np.array(tifffile.memmap(source)[0])
out = {}
def best(name, call, rounds=3):
    result = call()
    times = []
    for _ in range(rounds):
        t = time.perf_counter(); result = call(); times.append(time.perf_counter() - t)
    out[name] = min(times)
    return result
normalized = best("normalize", lambda: plane_normalizer(1, 99.8)(plane))
sparse = best("CNN", lambda: predict_sparse(model, normalized))
kept = best("NMS", lambda: non_maximum_suppression_sparse(sparse.dist, sparse.prob, sparse.points,
                                                          nms_thresh=sparse.nms_thresh))
theirs = best("NMS (StarDist's)", lambda: stardists_nms(sparse.dist, sparse.prob, sparse.points,
                                                        nms_thresh=sparse.nms_thresh))
assert all(np.array_equal(a, b) for a, b in zip(kept, theirs)), "NMS differs from StarDist's"
points, prob, dist, _ = kept
best("rendering", lambda: polygons_to_label(dist, points, shape=sparse.shape, prob=prob))
best("rendering (StarDist's)", lambda: stardists_rendering(dist, points, shape=sparse.shape, prob=prob))
labels, details = instances(sparse)
calibration = Calibration((0.5, 0.5))
best("measuring", lambda: measure_instances(labels, details, [plane], calibration))
ids = {k: k for k in np.unique(labels[labels > 0]).tolist()}
with tempfile.TemporaryDirectory() as folder_:
    sidecar = RoiSidecar(Path(folder_) / "x.ome.tif", 1)
    best("outlines", lambda: sidecar.append(0, 0, nuclei_from(details, ids), "t"))
    target = Path(folder_) / "plane.tif"
    best("writing", lambda: tifffile.imwrite(target, labels.astype(np.uint16)))
out["nuclei"] = int(len(ids)); out["candidates"] = int(len(sparse.prob))
print(json.dumps(out))
"""


def stage_costs(args) -> dict:
    """Seconds of each step of one crowded plane in one process (best of 3 after a warm-up)."""
    done = subprocess.run([sys.executable, "-c", STAGES, str(args.models / args.model), str(args.input)],
                          capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--planes", type=int, default=10)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "stardist_v4d_bench")
    args = p.parse_args()
    from crowded_stack import crowded_stack

    args.cache.mkdir(exist_ok=True)
    args.input = crowded_stack(args.cache, args.planes, args.size)
    args.models = args.cache / "fast_path_models"           # a copy: the IR cache goes beside it
    from report import model_copy
    model_copy(HERE.parent / "models" / args.model, args.models / args.model)
    warm = command_for(["--precision", "bf16"], args, args.cache / "warm.ome.tif", 1)
    subprocess.run(warm, capture_output=True, check=True)      # converts once: later runs are warm
    variants = {name: VARIANTS[name] for name in args.variants}
    if "plain loop" not in variants:
        variants = {"plain loop": None, **variants}
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    firsts: dict[str, list[float]] = {name: [] for name in variants}
    ones: dict[str, list[float]] = {name: [] for name in variants}
    outputs = {name: args.cache / f"fast_{i}.ome.tif" for i, name in enumerate(variants)}
    for round_ in range(args.rounds):
        for name, flags in variants.items():
            runs[name].append(timed_process(command_for(flags, args, outputs[name], args.planes)))
            one = timed_process(command_for(flags, args, args.cache / "one.ome.tif", 1))
            firsts[name].append(one["written"][0])
            ones[name].append(one["total_s"])
            print(f"round {round_ + 1}: {name}: {runs[name][-1]['total_s']:.1f} s, "
                  f"first plane {firsts[name][-1]:.1f} s", file=sys.stderr, flush=True)
    reference = labels_of(outputs["plain loop"])
    plain_rate = args.planes / statistics.median(r["total_s"] for r in runs["plain loop"])
    plain_first = statistics.median(firsts["plain loop"])

    def marginal(name: str) -> float:        # planes/s between the 1-plane and the N-plane run
        return (args.planes - 1) / (statistics.median(r["total_s"] for r in runs[name])
                                    - statistics.median(ones[name]))
    plain_marginal = marginal("plain loop")
    from report import machine

    from stardist_v4d.pipeline.backends.engine import cpu_has_bf16
    flags = open("/proc/cpuinfo").read() if Path("/proc/cpuinfo").exists() else ""
    print(f"{machine()}; bf16 in OpenVINO: {'yes' if cpu_has_bf16() else 'no'}, AMX: "
          f"{'yes' if 'amx_bf16' in flags else 'no'}, AVX512_BF16: {'yes' if 'avx512_bf16' in flags else 'no'}")
    print(f"{args.planes} crowded {args.size}x{args.size} planes, medians of {args.rounds} rounds")
    print(f"{'variant':28s} {'planes/s':>8s} {'ratio':>6s} {'marginal':>8s} {'ratio':>6s} {'start s':>8s} "
          f"{'1st plane s':>11s} {'vs plain':>8s} {'peak MB':>8s} {'F1 vs fp32':>10s}")
    for name in variants:
        rate = args.planes / statistics.median(r["total_s"] for r in runs[name])
        start = statistics.median(startup_s(r["written"]) for r in runs[name])
        first = statistics.median(firsts[name])
        peak = max(r["peak_mb"] for r in runs[name])
        f1 = agreement(reference, labels_of(outputs[name]))
        print(f"{name:28s} {rate:8.3f} {rate / plain_rate:5.2f}x {marginal(name):8.3f} "
              f"{marginal(name) / plain_marginal:5.2f}x {start:8.1f} {first:11.1f} "
              f"{first / plain_first:7.0%} {peak:8.0f} {f1:10.4f}")
    stages = stage_costs(args)
    steps = ("normalize", "CNN", "NMS", "rendering", "measuring", "outlines", "writing")
    total = sum(stages[k] for k in steps)
    print(f"\nOne plane, step by step ({stages['candidates']} candidates, {stages['nuclei']} nuclei; one "
          f"process, fp32): " + ", ".join(f"{k} {stages[k]:.3f} s ({stages[k] / total:.0%})" for k in steps)
          + f"; StarDist's own NMS {stages['NMS (StarDist' + chr(39) + 's)']:.3f} s "
          f"({stages['NMS (StarDist' + chr(39) + 's)'] / stages['NMS']:.1f}x ours, same result), "
          f"rendering {stages['rendering (StarDist' + chr(39) + 's)']:.3f} s")
    rest = total - stages["CNN"]
    print(f"  sum {total:.2f} s a plane; the ceiling if everything but the CNN ran beside it (worker "
          f"processes): 1 / max(CNN, rest) = {1 / max(stages['CNN'], rest):.2f} planes/s, against the plain "
          f"loop's {plain_rate:.3f}")
    try:
        rates = cnn_rates(args)
    except subprocess.CalledProcessError as error:   # e.g. no OpenVINO variant ran: no converted network
        print(f"\nCNN alone: not measured ({(error.stderr or '').strip().splitlines()[-1:]}); "
              "run an OpenVINO variant (bf16 or 'fp32, OpenVINO') once to convert the network")
        return
    print(f"\nCNN alone, one {args.size}x{args.size} plane ({rates['gflop']:.0f} GFLOP); machine: numpy fp32 "
          f"sgemm {rates['sgemm']:.0f} GFLOP/s, OpenVINO bf16 matmul {rates['bf16_matmul']:.0f} GFLOP/s")
    for name in ("tensorflow_fp32", "openvino_fp32", "openvino_bf16"):
        print(f"  {name:16s} {rates[name]:.3f} s  {rates['gflop'] / rates[name]:6.0f} GFLOP/s")


if __name__ == "__main__":
    main()
