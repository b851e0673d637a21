"""The CNN's engines: OpenVINO fp32/bf16, the IR cache, StarDist's prediction without TensorFlow.

Logic on a tiny random model (8 rays); agreement of bf16 with fp32 on the shipped demo
model (a copy: the IR cache goes beside it), on generated crowded planes.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_factory import make_tiny_model, tiny_models_dir
from stardist_v4d.config import Config, ConfigError, build_config
from stardist_v4d.host_api.tiff import TiffHost
from stardist_v4d.pipeline.backends import engine as engine_module
from stardist_v4d.pipeline.backends import ir_cache
from stardist_v4d.pipeline.backends.engine import Engine, choose_engine, load_for
from stardist_v4d.pipeline.backends.openvino_cnn import OpenVINOCNN
from stardist_v4d.pipeline.backends.sparse_model import SparseStarDist2D
from stardist_v4d.pipeline.backends.tensorflow_cnn import CompiledCNN
from stardist_v4d.pipeline.model import read_model_folder
from stardist_v4d.pipeline.run import run
from stardist_v4d.training.synthetic import synthetic_nuclei
from test_pipeline import nuclei_stack, read_tzcyx, write_ome

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from crowded_stack import CROWDED  # noqa: E402
BF16 = Engine("openvino", "bf16")
needs_bf16 = pytest.mark.skipif(not engine_module.cpu_has_bf16(), reason="this CPU has no native bf16")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return tiny_models_dir(tmp_path_factory, 128)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("demo_models")
    shutil.copytree(REPO / "models" / "demo", models / "demo")
    return models


@pytest.fixture(scope="module")
def tiny_tf(tiny_dir):
    from stardist.models import StarDist2D
    model = StarDist2D(None, name="tiny", basedir=str(tiny_dir))
    model.keras_model = CompiledCNN(model.keras_model)
    return model


def crowded(shape, seed):
    """A normalized plane of crowded generated nuclei (the benchmarks' style)."""
    from csbdeep.utils import normalize
    return normalize(synthetic_nuclei(shape, np.random.default_rng(seed), CROWDED)[0], 1, 99.8)


def lines_of(log: list[str], word: str) -> list[str]:
    return [line for line in log if word in line]


# ------------------------------------------------------------ StarDist without TensorFlow
@pytest.mark.parametrize("shape, n_tiles", [((128, 128), None), ((200, 168), None), ((200, 168), (2, 3))])
def test_sparse_model_replays_stardist_predict_sparse_exactly(tiny_dir, tiny_tf, shape, n_tiles):
    config, _ = read_model_folder(tiny_dir / "tiny")
    sparse = SparseStarDist2D(tiny_dir / "tiny", config, tiny_tf.keras_model,
                              tiny_tf._axes_tile_overlap("YX"), tiny_tf._axes_div_by("YX"))
    assert (sparse.thresholds.prob, sparse.thresholds.nms) == (tiny_tf.thresholds.prob, tiny_tf.thresholds.nms)
    plane = crowded(shape, 3)
    expected = tiny_tf.predict_sparse(plane, n_tiles=n_tiles, show_tile_progress=False)
    got = sparse.predict_sparse(plane, n_tiles=n_tiles)
    assert len(expected[0]) > 5
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_openvino_fp32_reproduces_tensorflow(tiny_dir, tiny_tf, tmp_path):
    log: list[str] = []
    model = load_for(Engine("openvino", "fp32"), tiny_dir, "tiny", log.append)
    assert isinstance(model.keras_model, OpenVINOCNN) and lines_of(log, "Converting")
    x = crowded((200, 168), 1)[None, :192, :160, None]
    for a, b in zip(model.keras_model.predict(x), tiny_tf.keras_model.predict(x)):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4


# ------------------------------------------------------------------ bf16 against fp32
@pytest.fixture(scope="module")
def demo_models(demo_dir):
    """(fp32 TensorFlow StarDist2D, bf16 SparseStarDist2D) of the demo model copy."""
    fp32 = load_for(Engine("tensorflow", "fp32"), demo_dir, "demo", print)
    load_for(BF16, demo_dir, "demo", print)                  # converts and caches
    log: list[str] = []
    bf16 = load_for(BF16, demo_dir, "demo", log.append)      # from the cache
    assert isinstance(bf16, SparseStarDist2D) and not lines_of(log, "Converting")
    return fp32, bf16


@needs_bf16
def test_bf16_objects_match_fp32_on_crowded_planes(demo_models):
    from stardist.matching import matching
    fp32, bf16 = demo_models
    for seed in (11, 12, 13):
        plane = crowded((384, 384), seed)
        expected, _ = fp32.predict_instances(plane)
        got, _ = bf16.predict_instances(plane)
        assert expected.max() > 40
        assert matching(expected, got, thresh=0.5).f1 >= 0.99


@needs_bf16
def test_bf16_tiles_and_blocks_find_the_objects_of_whole_planes(demo_dir, demo_models, tmp_path, capsys):
    from stardist.matching import matching
    _, bf16 = demo_models
    plane = crowded((512, 512), 21)
    whole, _ = bf16.predict_instances(plane)
    tiled, _ = bf16.predict_instances(plane, n_tiles=(2, 2))
    assert whole.max() > 50 and matching(whole, tiled, thresh=0.5).f1 >= 0.99
    stack = nuclei_stack((1, 1, 768, 768), seed=4)
    source = write_ome(tmp_path / "in.ome.tif", stack, "TZYX")
    blocks = run(Config(model2d_path=demo_dir, model_name="demo", input_path=source, output_path=tmp_path / "b.ome.tif",
                        precision="bf16", plane_memory_mb=64, block_overlap=64, measure=False),
                 TiffHost(source, tmp_path / "b.ome.tif", show_progress=False))
    out = capsys.readouterr().out
    assert "predicting each in blocks" in out and "CNN: OpenVINO bf16" in out and blocks.completed
    from csbdeep.utils import normalize
    expected, _ = bf16.predict_instances(normalize(stack[0, 0], 1, 99.8))
    assert expected.max() > 20
    assert matching(expected, read_tzcyx(tmp_path / "b.ome.tif")[0, 0, 1], thresh=0.5).f1 >= 0.99


# ------------------------------------------------------------------------- the cache
def fresh_tiny(tmp_path: Path, seed: int = 0) -> Path:
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    make_tiny_model(models, "tiny", seed=seed, prob_thresh=0.5)
    return models


def entries(models: Path) -> list[str]:
    return sorted(p.name for p in (models / "tiny" / ".openvino").glob("openvino-*"))


def test_converted_once_then_reused_and_again_when_the_weights_change(tmp_path):
    models = fresh_tiny(tmp_path)
    first: list[str] = []
    load_for(Engine("openvino", "fp32"), models, "tiny", first.append)
    again: list[str] = []
    model = load_for(Engine("openvino", "fp32"), models, "tiny", again.append)
    assert len(lines_of(first, "Converting")) == 1 and not lines_of(again, "Converting")
    assert isinstance(model, SparseStarDist2D) and len(entries(models)) == 1
    old = entries(models)
    make_tiny_model(models, "tiny", seed=1, prob_thresh=0.5)             # new weights, same folder
    changed: list[str] = []
    load_for(Engine("openvino", "fp32"), models, "tiny", changed.append)
    assert len(lines_of(changed, "Converting")) == 1
    assert len(entries(models)) == 2 and set(old) < set(entries(models))


@pytest.mark.parametrize("damage", ["model.bin", "stardist.json", "model.xml"])
def test_a_damaged_cache_entry_is_converted_again_with_one_line(tmp_path, damage):
    models = fresh_tiny(tmp_path)
    load_for(Engine("openvino", "fp32"), models, "tiny", print)
    entry = models / "tiny" / ".openvino" / entries(models)[0]
    data = bytearray((entry / damage).read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\x00garbage" * 8
    (entry / damage).write_bytes(bytes(data))
    log: list[str] = []
    model = load_for(Engine("openvino", "fp32"), models, "tiny", log.append)
    assert len(lines_of(log, "is damaged")) == 1 and str(entry) in lines_of(log, "is damaged")[0]
    assert len(lines_of(log, "Converting")) == 1
    ir_cache.read_entry(entry, json.loads((entry / "stardist.json").read_text())["weights_sha256"])
    x = np.zeros((1, 64, 64, 1), np.float32)
    assert [y.shape for y in model.keras_model.predict(x)] == [(1, 32, 32, 1), (1, 32, 32, 8)]


def test_unwritable_model_folder_caches_in_the_user_cache(tmp_path, monkeypatch):
    models = fresh_tiny(tmp_path)
    monkeypatch.setenv("STARDIST_V4D_CACHE", str(tmp_path / "user_cache"))
    beside = models / "tiny" / ".openvino"
    real = ir_cache._writable
    monkeypatch.setattr(ir_cache, "_writable", lambda folder: folder != beside and real(folder))
    log: list[str] = []
    load_for(Engine("openvino", "fp32"), models, "tiny", log.append)
    assert not beside.exists()
    assert len(list((tmp_path / "user_cache" / "openvino").glob("tiny-*/openvino-*/model.xml"))) == 1
    again: list[str] = []
    assert isinstance(load_for(Engine("openvino", "fp32"), models, "tiny", again.append), SparseStarDist2D)
    assert not lines_of(again, "Converting")


WARM_RUN = """
import sys
from stardist_v4d.config import build_config
from stardist_v4d.host_api.tiff import TiffHost
from stardist_v4d.pipeline.run import run
config = build_config({{}}, sys.argv[1:])
summary = run(config, TiffHost(config.input_path, config.output_path, show_progress=False))
print("COMPLETED", summary.completed, summary.total_nuclei)
print("TENSORFLOW", "tensorflow" in sys.modules, "keras" in sys.modules)
"""


def test_a_run_with_a_warm_cache_never_imports_tensorflow(tmp_path):
    models = fresh_tiny(tmp_path)
    source = write_ome(tmp_path / "in.ome.tif", nuclei_stack((1, 3, 128, 128), seed=2), "TZYX")
    flags = ["--input", str(source), "--model-path", str(models), "--model", "tiny",
             "--backend", "openvino", "--overwrite", "--workers", "0"]
    outputs = []
    for name in ("cold", "warm"):
        done = subprocess.run([sys.executable, "-c", WARM_RUN.format(), *flags,
                               "--output", str(tmp_path / f"{name}.ome.tif")],
                              capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout)
    cold, warm = outputs
    assert "Converting" in cold and "TENSORFLOW True" in cold
    assert "Converting" not in warm and "TENSORFLOW False False" in warm and "COMPLETED True" in warm
    np.testing.assert_array_equal(read_tzcyx(tmp_path / "cold.ome.tif"), read_tzcyx(tmp_path / "warm.ome.tif"))


# ------------------------------------------------------------------ what the machine has
def segment(tmp_path: Path, models: Path, name: str, **settings):
    source = tmp_path / "in.ome.tif"
    if not source.exists():
        write_ome(source, nuclei_stack((1, 2, 128, 128), seed=5), "TZYX")
    target = tmp_path / f"{name}.ome.tif"
    config = Config(model2d_path=models, model_name="tiny", input_path=source, output_path=target,
                    measure=False, workers=0, **settings)
    summary = run(config, TiffHost(source, target, show_progress=False))
    return summary, read_tzcyx(target)[:, :, 1]


def test_a_cpu_without_bf16_runs_fp32_after_one_line(tmp_path, tiny_dir, monkeypatch, capsys):
    _, expected = segment(tmp_path, tiny_dir, "fp32")
    monkeypatch.setattr(engine_module, "cpu_has_bf16", lambda: False)
    capsys.readouterr()
    summary, got = segment(tmp_path, tiny_dir, "bf16", precision="bf16")
    said = lines_of(capsys.readouterr().out.splitlines(), "PRECISION")
    assert len(said) == 1 and "no bf16 instructions" in said[0] and "fp32" in said[0]
    assert summary.completed and expected.max() > 0
    np.testing.assert_array_equal(got, expected)


def test_a_gpu_keeps_tensorflow_and_a_failed_conversion_falls_back(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_module, "gpu_present", lambda: True)
    log: list[str] = []
    assert choose_engine(None, "bf16", log.append) == Engine("tensorflow", "fp32")
    assert len(log) == 1 and "GPU" in log[0]
    monkeypatch.setattr(engine_module, "gpu_present", lambda: False)
    assert choose_engine(None, "fp32", log.append) == Engine("tensorflow", "fp32") and len(log) == 1

    models = fresh_tiny(tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("conversion exploded\nsecond line")
    monkeypatch.setattr(ir_cache, "convert", broken)
    failed: list[str] = []
    model = load_for(Engine("openvino", "fp32"), models, "tiny", failed.append)
    assert isinstance(model.keras_model, CompiledCNN)
    said = lines_of(failed, "could not be converted")
    assert len(said) == 1 and "conversion exploded second line" in said[0] and "TensorFlow (fp32)" in said[0]


# --------------------------------------------------------------------------- settings
@pytest.mark.parametrize("constants, words", [
    ({"PRECISION": "fp16"}, ["PRECISION (--precision) = 'fp16'", "'fp32'", "'bf16'"]),
    ({"BACKEND": "onnx"}, ["BACKEND (--backend) = 'onnx'", "'openvino'"]),
    ({"BACKEND": "tensorflow", "PRECISION": "bf16"}, ["BACKEND (--backend) = 'tensorflow'", "OpenVINO"]),
])
def test_engine_settings_are_checked_in_one_line(constants, words):
    with pytest.raises(ConfigError) as error:
        build_config(constants)
    assert "\n" not in str(error.value) and all(word in str(error.value) for word in words)


def test_missing_openvino_is_one_line_and_backend_auto_is_none(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(ConfigError, match=r"PRECISION \(--precision\) = 'bf16' needs the openvino package.*pip install openvino"):
        build_config({"PRECISION": "bf16"})
    assert build_config({"BACKEND": "tensorflow"}).backend == "tensorflow"
    monkeypatch.undo()
    assert build_config({"BACKEND": "openvino"}, ["--backend", "auto"]).backend is None
    assert build_config({}, ["--backend=openvino", "--precision", "bf16"]).backend == "openvino"
    assert Config().precision == "fp32" and Config().backend is None
