"""Which engine runs the CNN (PRECISION, BACKEND, this machine), and the model loaded for it.

- fp32 with BACKEND None or "tensorflow": today's path, labels exactly ``predict_instances``'.
- bf16 (or BACKEND "openvino"): the network converted once to OpenVINO (``ir_cache``); with
  a cached conversion the run never imports TensorFlow (``SparseStarDist2D``), except in
  block mode and for registered model names, which need ``StarDist2D`` itself and then
  run its CNN calls through the same OpenVINO network.
- A machine with an NVIDIA GPU keeps TensorFlow (it runs the CNN there); a CPU without
  bf16 instructions runs fp32. Each is said in one line; neither fails a run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import model as model_folders            # model_folders.load_model: patchable in tests
from ..model import read_model_folder, sha256_of, weights_file

PRECISIONS = ("fp32", "bf16")
BACKENDS = ("tensorflow", "openvino")

Log = Callable[[str], None]


@dataclass(frozen=True)
class Engine:
    backend: str          # "tensorflow" or "openvino"
    precision: str        # "fp32" or "bf16"

    def __str__(self) -> str:
        return f"{'TensorFlow' if self.backend == 'tensorflow' else 'OpenVINO'} {self.precision}"


def gpu_present() -> bool:
    """An NVIDIA GPU that a CUDA build of TensorFlow would use (seen without importing it)."""
    from importlib.metadata import PackageNotFoundError, version
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    try:
        version("tensorflow-cpu")
        return False                            # a CPU-only TensorFlow never uses one
    except PackageNotFoundError:
        pass
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def cpu_has_bf16() -> bool:
    from .openvino_cnn import cpu_has_bf16 as has
    return has()


def choose_engine(backend: str | None, precision: str, log: Log) -> Engine:
    """The engine for these settings on this machine; a changed request is said in one line."""
    if backend in (None, "tensorflow") and precision == "fp32":
        return Engine("tensorflow", "fp32")
    if gpu_present():
        log(f"A GPU is present: the CNN runs in TensorFlow on it (fp32); PRECISION {precision!r} / "
            "BACKEND 'openvino' are for CPUs.")
        return Engine("tensorflow", "fp32")
    if precision == "bf16" and not cpu_has_bf16():
        fallback = "OpenVINO" if backend == "openvino" else "TensorFlow"
        log(f"This CPU has no bf16 instructions (AVX512_BF16 or AMX): PRECISION 'bf16' runs as fp32 ({fallback}).")
        return Engine("openvino" if backend == "openvino" else "tensorflow", "fp32")
    return Engine("openvino", precision)


def load_for(engine: Engine, models_dir: Path, name: str, log: Log, blocks: bool = False,
             weights_sha256: str | None = None):
    """The model a run predicts with: a ``StarDist2D`` or a ``SparseStarDist2D``.

    ``blocks``: the run predicts in blocks (``predict_instances_big``), which only
    ``StarDist2D`` offers. A conversion that fails falls back to TensorFlow in one line.
    """
    from .tensorflow_cnn import use_compiled_cnn

    if engine.backend == "tensorflow":
        model = model_folders.load_model(models_dir, name)
        use_compiled_cnn(model)
        return model
    from . import ir_cache
    from .openvino_cnn import OpenVINOCNN, openvino_version

    folder = Path(models_dir) / name
    weights = None
    if folder.is_dir():                          # read once: its config serves the sparse model too
        model_config, weights = read_model_folder(folder)
        weights_sha256 = weights_sha256 or sha256_of(weights)
        cached = ir_cache.find(folder, ir_cache.network_key(folder, weights_sha256), openvino_version(), log)
        if cached is not None and not blocks:
            log(f"CNN: {engine} (converted network from {cached.folder}).")
            return _sparse_model(folder, model_config, cached, engine.precision)
    model = model_folders.load_model(models_dir, name)   # TensorFlow: to convert, for blocks, or a registered name
    if weights is None:                         # a registered name: StarDist's own download folder
        folder = Path(model.logdir)
        weights_sha256 = sha256_of(weights_file(folder))
        cached = ir_cache.find(folder, ir_cache.network_key(folder, weights_sha256), openvino_version(), log)
    if cached is None:
        try:
            cached = ir_cache.convert(model, folder, ir_cache.network_key(folder, weights_sha256),
                                      openvino_version(), log)
        except Exception as error:               # never a TensorFlow/OpenVINO traceback
            log(f"The model could not be converted to OpenVINO ({type(error).__name__}: "
                f"{' '.join(str(error).split())[:200]}): the CNN runs in TensorFlow (fp32).")
            use_compiled_cnn(model)
            return model
    log(f"CNN: {engine} (converted network from {cached.folder}).")
    model.keras_model = OpenVINOCNN(cached.xml, engine.precision, cached.outputs)
    return model


#: Models kept for later calls in this process (``segment`` from a notebook): key -> model.
_KEPT: dict[tuple, object] = {}


def load_kept(engine: Engine, models_dir: Path, name: str, log: Log, blocks: bool = False,
              weights_sha256: str | None = None):
    """``load_for``, loaded once per process and kept for later calls with the same model.

    The key holds the weights' hash, so a model folder whose weights changed loads again.
    ``release_models()`` drops them.
    """
    key = (engine, str(Path(models_dir).resolve()), name, blocks, weights_sha256)
    if key not in _KEPT:
        _KEPT[key] = load_for(engine, models_dir, name, log, blocks, weights_sha256)
    return _KEPT[key]


def release_models() -> int:
    """Forget the kept models (and TensorFlow's graphs of them); returns how many there were."""
    import gc
    import sys

    count = len(_KEPT)
    _KEPT.clear()
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()
    return count


def _sparse_model(folder: Path, model_config: dict, cached, precision: str):
    from .openvino_cnn import OpenVINOCNN
    from .sparse_model import SparseStarDist2D

    return SparseStarDist2D(folder, model_config, OpenVINOCNN(cached.xml, precision, cached.outputs),
                            cached.tile_overlap, cached.div_by)
