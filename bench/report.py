"""The benchmark's printout: every number the README's performance section quotes."""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import tifffile


def labels_of(path) -> np.ndarray:
    """(Z, Y, X) label planes of an output: the last channel of a TZCYX file, or a .npy-style memmap."""
    with tifffile.TiffFile(path) as tif:
        data = tif.series[0].asarray()
    return data[:, -1] if data.ndim == 4 else data


def same_objects(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """Planes with identical labels, and the lowest per-plane F1 at IoU 0.9."""
    from stardist.matching import matching
    identical = sum(np.array_equal(x, y) for x, y in zip(a, b))
    return identical, min(matching(x, y, thresh=0.9).f1 for x, y in zip(a, b))


def model_copy(source: Path, target: Path) -> Path:
    """``target``: a copy of the model folder ``source`` (a bench's IR cache goes beside it), made
    again when any of ``source``'s files differs: a copy kept from an older model would time that."""
    import filecmp
    import shutil

    files = [p.name for p in Path(source).iterdir() if p.is_file()]
    if Path(target).is_dir():
        _, mismatch, errors = filecmp.cmpfiles(source, target, files, shallow=False)
        if not mismatch and not errors:
            return Path(target)
        shutil.rmtree(target)
    shutil.copytree(source, target)
    return Path(target)


def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    from stardist_v4d.pipeline.workers import cores
    return f"{model}, {cores()} cores, {platform.system()}"


def report(args, results: dict, outputs: dict, loop_rate) -> None:
    stages, single = results["stages"], results["single"]
    base_rates = [loop_rate(r["written"]) for r in results["baseline"]]
    our_rates = [loop_rate(r["written"]) for r in results["ours"]]
    rate_base, rate_ours = float(np.median(base_rates)), float(np.median(our_rates))
    base, ours = results["baseline"][-1], results["ours"][-1]
    base_peak, our_peak = results["baseline_memory"]["peak_mb"], results["ours_memory"]["peak_mb"]
    identical, f1 = same_objects(labels_of(outputs["baseline"]), labels_of(outputs["ours"]))
    n = len(base["written"])
    io = stages["stages"]["read"] + stages["stages"]["write"]
    core_s = single["cnn"] + single["post"] + single["normalize"] + io
    ceiling = stages["gpu"]["workers"] / core_s
    s = stages["stages"]
    total = sum(v for k, v in s.items() if k != "measure")
    gpu = stages["gpu"]
    print(f"machine: {machine()}")
    print(f"stack: {n} planes of {args.size} x {args.size}, nuclei per plane "
          f"{min(stages['nuclei'])}-{max(stages['nuclei'])} (model {args.model})")
    print(f"baseline (seed loop): {rate_base:.3f} planes/s ({1 / rate_base:.3f} s/plane); "
          f"rounds: {', '.join(f'{r:.3f}' for r in base_rates)}")
    print(f"ours (run, {args.workers} workers): {rate_ours:.3f} planes/s ({1 / rate_ours:.3f} s/plane); "
          f"rounds: {', '.join(f'{r:.3f}' for r in our_rates)}; start-up (TF, model, pool) "
          f"{ours['startup_s']:.1f} s")
    print(f"ratio ours/baseline: {rate_ours / rate_base:.3f}x (medians; per round: "
          f"{', '.join(f'{o / b:.2f}' for o, b in zip(our_rates, base_rates))})")
    print(f"ceiling: {core_s:.3f} core-s/plane (CNN {single['cnn']:.3f}, post {single['post']:.3f}, "
          f"normalize {single['normalize']:.3f}, I/O {io:.3f}; one thread each) / {gpu['workers']} cores "
          f"= {ceiling:.3f} planes/s = {ceiling / rate_base:.3f}x baseline; ours reach "
          f"{rate_ours / ceiling:.0%} of it")
    measured_rates = [loop_rate(r["written"]) for r in results["measured"]]
    rate_measured = float(np.median(measured_rates))
    finish = float(np.median([r["finish_s"] for r in results["measured"]]))
    print(f"measured (run, MEASURE on, {args.workers} workers): {rate_measured:.3f} planes/s; rounds: "
          f"{', '.join(f'{r:.3f}' for r in measured_rates)}; measuring's share of the run's time "
          f"{1 - rate_measured / rate_ours:.1%} (per round: "
          f"{', '.join(f'{1 - m / o:.1%}' for m, o in zip(measured_rates, our_rates))}); "
          f"after the last plane: workbook + plots {finish:.1f} s ({n} planes, "
          f"{finish / (n / rate_measured + finish):.1%} of the measured run)")
    print(f"same objects: {identical}/{n} planes identical, lowest F1 at IoU 0.9 = {f1:.4f}")
    print(f"peak anonymous memory: baseline {base_peak:.0f} MB, ours {our_peak:.0f} MB "
          f"(incl. {args.workers} workers; sampled in separate, untimed runs)")
    print("time shares, sequential (s/plane): " + ", ".join(
        f"{k} {v:.3f} ({v / total:.0%})" for k, v in s.items() if k != "measure"))
    print(f"measuring, sequential: {s['measure']:.3f} s/plane = {s['measure'] / total:.1%} of a plane's "
          f"segmentation (one channel, {np.mean(stages['nuclei']):.0f} nuclei/plane)")
    print(f"CNN: {stages['gflop']:.1f} GFLOP/plane; compiled call {s['cnn']:.3f} s -> "
          f"{stages['gflop'] / s['cnn']:.0f} GFLOP/s, keras predict {stages['keras_cnn_s']:.3f} s -> "
          f"{stages['gflop'] / stages['keras_cnn_s']:.0f} GFLOP/s, one thread {single['cnn']:.3f} s; "
          f"numpy sgemm {stages['sgemm']:.0f} GFLOP/s")
    print(f"GPU regime (post-processing only, {gpu['payload_mb']:.1f} MB payload/plane): sequential "
          f"{gpu['sequential']:.2f} planes/s, one worker {gpu['one_worker']:.2f}, "
          f"{gpu['workers']} workers {gpu['pool']:.2f} = {gpu['pool'] / gpu['sequential']:.2f}x sequential, "
          f"{gpu['pool'] / (gpu['workers'] * gpu['one_worker']):.0%} of {gpu['workers']} x one worker")
