"""What the engine tests share: tiny and demo models, converted once per module, and helpers.

Conversions take ~2 s each: tiny models (8 rays) where only the logic is tested, a copy of
the demo model where bf16's agreement needs real nuclei. Test modules import the fixtures
they use from here.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from model_factory import tiny_models_dir
from stardist_v4d.config import DEFAULT_MODEL, Config, shipped_models_dir
from stardist_v4d.host_api.tiff import TiffHost
from stardist_v4d.pipeline.backends import ir_cache
from stardist_v4d.pipeline.backends.engine import Engine, load_for
from stardist_v4d.pipeline.backends.sparse_model import SparseStarDist2D
from stardist_v4d.pipeline.model import sha256_of
from stardist_v4d.pipeline.run import run
from stardist_v4d.training.synthetic import CROWDED, synthetic_nuclei
from test_pipeline import nuclei_stack, read_tzcyx, write_ome

SIZE = 128
OPENVINO_FP32 = Engine("openvino", "fp32")
OPENVINO_BF16 = Engine("openvino", "bf16")
TENSORFLOW = Engine("tensorflow", "fp32")


def normalized(plane: np.ndarray) -> np.ndarray:
    from csbdeep.utils import normalize
    return normalize(plane, 1, 99.8)


def f1(a: np.ndarray, b: np.ndarray) -> float:
    from stardist.matching import matching
    return matching(a, b, thresh=0.5).f1


def copy_model(source: Path, models: Path, name: str | None = None) -> Path:
    """A copy of a model folder without its IR cache: it converts afresh."""
    target = models / (name or source.name)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".openvino"))
    return target


def entries(folder: Path) -> list[str]:
    root = folder / ".openvino"
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


class Logs(list):
    def __call__(self, line: str) -> None:
        self.append(line)

    def count(self, text: str) -> int:                   # lines containing text
        return sum(text in line for line in self)


class RecordingHost(TiffHost):
    """A TIFF host that also keeps every line it logs."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lines = Logs()

    def log(self, message: str) -> None:
        self.lines(message)
        super().log(message)


def segment(folder: Path, stack: np.ndarray, models: Path, name: str, **settings):
    """One headless run on ``stack`` (ZYX): (summary, labels (Z, Y, X), logged lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = write_ome(folder / "in.ome.tif", stack, "ZYX")
    target = folder / "out.ome.tif"
    config = Config(model2d_path=models, model_name=name, input_path=source, output_path=target,
                    measure=False, write_objects=False, workers=0, **settings)
    host = RecordingHost(source, target, show_progress=False)
    summary = run(config, host)
    assert summary.completed, host.lines
    return summary, read_tzcyx(target)[0, :, -1], host.lines


# ------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    """Models folder with "tiny" (converted by ``tiny_conversion``; never changed: tests copy it)."""
    return tiny_models_dir(tmp_path_factory, SIZE)


@pytest.fixture(scope="module")
def tiny_tf(tiny_models):
    """The tiny StarDist2D with its TensorFlow CompiledCNN (the run's fp32 model)."""
    return load_for(TENSORFLOW, tiny_models, "tiny", print)


@pytest.fixture(scope="module")
def tiny_conversion(tiny_models) -> tuple[Logs, Logs]:
    """The tiny model converted once: the lines of its first load_for and of a second one."""
    first, second = Logs(), Logs()
    converted = load_for(OPENVINO_FP32, tiny_models, "tiny", first)
    model = load_for(OPENVINO_FP32, tiny_models, "tiny", second)
    assert type(converted).__name__ == "StarDist2D" and isinstance(model, SparseStarDist2D)
    return first, second


@pytest.fixture(scope="module")
def tiny_ir(tiny_models, tiny_conversion) -> ir_cache.CachedIR:
    """The tiny model's cache entry."""
    folder = tiny_models / "tiny"
    cached = ir_cache.find(folder, ir_cache.network_key(folder, sha256_of(folder / "weights_best.h5")),
                           _ov_version(), print)
    assert cached is not None
    return cached


@pytest.fixture(scope="module")
def tiny_stack() -> np.ndarray:
    return nuclei_stack((2, SIZE, SIZE), seed=2)


@pytest.fixture(scope="module")
def tiny_fp32_labels(tmp_path_factory, tiny_models, tiny_stack) -> np.ndarray:
    """Labels of a default run (fp32, TensorFlow) of the tiny model."""
    _, labels, lines = segment(tmp_path_factory.mktemp("fp32"), tiny_stack, tiny_models, "tiny")
    assert labels.max() > 0 and not lines.count("OpenVINO")
    return labels


@pytest.fixture(scope="module")
def demo_models(tmp_path_factory) -> Path:
    """A copy of the shipped demo model (its .openvino/ goes here, never into the repo)."""
    folder = tmp_path_factory.mktemp("demo_models")
    copy_model(shipped_models_dir() / DEFAULT_MODEL, folder, "demo")
    return folder


@pytest.fixture(scope="module")
def demo_bf16(demo_models) -> SparseStarDist2D:
    logs = Logs()
    converted = load_for(OPENVINO_BF16, demo_models, "demo", logs)      # converts, StarDist2D around it
    assert logs.count("Converting") == 1 and type(converted).__name__ == "StarDist2D", logs
    model = load_for(OPENVINO_BF16, demo_models, "demo", logs)          # the cached entry, no TF
    assert isinstance(model, SparseStarDist2D) and logs.count("Converting") == 1
    return model


@pytest.fixture(scope="module")
def demo_tf(demo_models):
    return load_for(TENSORFLOW, demo_models, "demo", print)


def crowded(shape: tuple[int, int], seed: int) -> np.ndarray:
    image, _ = synthetic_nuclei(shape, np.random.default_rng(seed), CROWDED)
    return np.clip(image / image.max() * 60000, 0, 65535).astype(np.uint16)


def _ov_version() -> str:
    from stardist_v4d.pipeline.backends.openvino_cnn import openvino_version
    return openvino_version()
