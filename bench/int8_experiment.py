"""Would int8 earn its place? Post-training quantization (NNCF) of the converted network.

    pip install nncf   # not a dependency of the project
    python bench/int8_experiment.py [--model demo] [--calibration 24]

Calibrates on generated planes only (``training.synthetic``: never on the evaluation
images), then prints, for fp32 / bf16 / int8 through OpenVINO: the CNN's seconds on one
crowded 1024 x 1024 plane, the objects' agreement with fp32 on generated crowded planes
(F1@0.5), and pooled AP@0.5 on the evaluation images (as ``eval`` scores them).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stardist_v4d.config import DEFAULT_MODEL  # noqa: E402

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--calibration", type=int, default=24, help="generated 512x512 planes to calibrate on")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "stardist_v4d_bench")
    args = p.parse_args()
    import nncf
    import openvino as ov
    from crowded_stack import CROWDED, crowded_stack
    from stardist.matching import matching

    from stardist_v4d.pipeline.backends import ir_cache
    from stardist_v4d.pipeline.backends.openvino_cnn import OpenVINOCNN, openvino_version
    from stardist_v4d.pipeline.backends.sparse_model import SparseStarDist2D
    from stardist_v4d.pipeline.model import read_model_folder, sha256_of
    from stardist_v4d.pipeline.normalization import plane_normalizer
    from stardist_v4d.training.evaluate import DEFAULT_EVAL_DIR, evaluation_images, pooled, score_model
    from stardist_v4d.training.synthetic import synthetic_nuclei

    args.cache.mkdir(exist_ok=True)
    models = args.cache / "int8_models"
    folder = models / args.model
    from report import model_copy
    model_copy(HERE.parent / "models" / args.model, folder)
    stack = crowded_stack(args.cache, 4)
    warm = [sys.executable, "-m", "stardist_v4d", "run", "--input", str(stack), "--output",
            str(args.cache / "int8_warm.ome.tif"), "--model-path", str(models), "--model", args.model,
            "--precision", "bf16", "--last-plane", "0", "--no-measure", "--overwrite"]
    subprocess.run(warm, check=True, capture_output=True)
    model_config, weights = read_model_folder(folder)
    cached = ir_cache.find(folder, sha256_of(weights), openvino_version(), print)

    normalize = plane_normalizer(1, 99.8)
    rng = np.random.default_rng(1234)
    calibration = [normalize(synthetic_nuclei((512, 512), rng, CROWDED)[0])[None, ..., None]
                   for _ in range(args.calibration)]
    network = ov.Core().read_model(str(cached.xml))
    started = time.perf_counter()
    quantized = nncf.quantize(network, nncf.Dataset(calibration), subset_size=len(calibration))
    int8_xml = args.cache / "int8" / "model.xml"
    ov.save_model(quantized, str(int8_xml))
    print(f"calibrated on {len(calibration)} generated planes in {time.perf_counter() - started:.0f} s")

    def model_for(xml: Path, precision: str) -> SparseStarDist2D:
        return SparseStarDist2D(folder, model_config, OpenVINOCNN(xml, precision, cached.outputs),
                                cached.tile_overlap, cached.div_by)

    engines = {"fp32": model_for(cached.xml, "fp32"), "bf16": model_for(cached.xml, "bf16"),
               "int8": model_for(int8_xml, "bf16")}
    import tifffile
    planes = [normalize(np.array(p)) for p in tifffile.imread(stack)]
    x = planes[0][None, ..., None]
    pairs = evaluation_images(DEFAULT_EVAL_DIR)
    reference = [engines["fp32"].predict_instances(p)[0] for p in planes]
    print(f"{'engine':6s} {'CNN s':>6s} {'min F1 vs fp32':>15s} {'pooled AP@0.5':>14s}   ({len(pairs)} eval images)")
    for name, model in engines.items():
        model.keras_model.predict(x)
        seconds = min(_timed(lambda: model.keras_model.predict(x)) for _ in range(3))
        f1 = min(matching(r, model.predict_instances(p)[0], thresh=0.5).f1 for r, p in zip(reference, planes))
        ap = pooled(score_model(model, pairs)).ap
        print(f"{name:6s} {seconds:6.3f} {f1:15.4f} {ap:14.4f}")


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
