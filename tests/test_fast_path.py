"""The fast CNN engine: PRECISION "bf16" / BACKEND "openvino" and the OpenVINO IR cache.

What it must keep: ``SparseStarDist2D`` (the TensorFlow-free prediction) computes what
``StarDist2D.predict_sparse`` computes, bit for bit, for the same CNN; OpenVINO fp32 is
TensorFlow within 1e-4; bf16 finds the same nuclei as fp32 (F1@0.5 >= 0.99) whole, tiled
and in blocks; a warm cache never imports TensorFlow; every fallback (GPU, CPU without
bf16, failed conversion, damaged or unwritable cache) is one line and the run goes on.
The default (fp32, TensorFlow) path is unchanged (its parity: tests/test_pipeline.py).
Conversions take ~2 s each: tiny models (8 rays) where only the logic is tested, a copy
of the demo model where bf16's agreement needs real nuclei.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_factory import make_tiny_model, tiny_models_dir
from stardist_v4d.config import Config, ConfigError, build_config, shipped_models_dir
from stardist_v4d.host_api.tiff import TiffHost
from stardist_v4d.pipeline.backends import engine, ir_cache
from stardist_v4d.pipeline.backends.engine import Engine, choose_engine, load_for
from stardist_v4d.pipeline.backends.sparse_model import DEFAULT_THRESHOLDS, SparseStarDist2D
from stardist_v4d.pipeline.model import read_model_folder, sha256_of
from stardist_v4d.pipeline.predict import instances, predict_sparse
from stardist_v4d.pipeline.run import run
from stardist_v4d.training.synthetic import NucleiStyle, synthetic_nuclei
from test_pipeline import nuclei_stack, read_tzcyx, write_ome

SIZE = 128
OPENVINO_FP32 = Engine("openvino", "fp32")
OPENVINO_BF16 = Engine("openvino", "bf16")
TENSORFLOW = Engine("tensorflow", "fp32")
#: ~150 touching nuclei per 384 x 384 plane (bench/crowded_stack.py's style).
CROWDED = NucleiStyle(typical_radius=(9.5, 10.5), radius_spread=0.15, fill_fraction=(0.32, 0.36),
                      cluster_share=(0.3, 0.5), haze_blobs=(0, 3), photons=(200.0, 400.0))


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
    cached = ir_cache.find(folder, sha256_of(folder / "weights_best.h5"), _ov_version(), print)
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
    copy_model(shipped_models_dir() / "demo", folder)
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


# ------------------------------------------- 1. SparseStarDist2D == StarDist2D.predict_sparse
@pytest.mark.parametrize("shape, n_tiles", [((256, 256), None), ((202, 167), None), ((202, 167), (2, 3)),
                                            ((256, 256), (2, 3))])
def test_sparse_model_equals_stardist_predict_sparse_for_the_same_cnn(tiny_models, tiny_tf, shape, n_tiles):
    folder = tiny_models / "tiny"
    sparse = SparseStarDist2D(folder, read_model_folder(folder)[0], tiny_tf.keras_model,
                              tiny_tf._axes_tile_overlap("YX"), tiny_tf._axes_div_by("YX"))
    if shape == (202, 167):                         # the odd shape really is padded
        assert any(s % d for s, d in zip(shape, tiny_tf._axes_div_by("YX")))
    plane = normalized(synthetic_nuclei(shape, np.random.default_rng(sum(shape)))[0])
    expected = tiny_tf.predict_sparse(plane, n_tiles=n_tiles, show_tile_progress=False)
    got = sparse.predict_sparse(plane, n_tiles=n_tiles)
    assert len(expected[0]) > 10                    # candidates to compare
    for a, b in zip(got, expected):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert np.array_equal(a, b)
    labels, _ = sparse.predict_instances(plane, n_tiles=n_tiles)
    np.testing.assert_array_equal(labels, tiny_tf.predict_instances(plane, n_tiles=n_tiles,
                                                                     show_tile_progress=False)[0])


def test_sparse_model_thresholds_come_from_thresholds_json(tmp_path, tiny_models, tiny_tf):
    folder = tiny_models / "tiny"
    sparse = SparseStarDist2D(folder, read_model_folder(folder)[0], tiny_tf.keras_model, (22, 22), (4, 4))
    written = json.loads((folder / "thresholds.json").read_text())
    assert (sparse.thresholds.prob, sparse.thresholds.nms) == (written["prob"], written["nms"])
    assert (sparse.thresholds.prob, sparse.thresholds.nms) == (tiny_tf.thresholds.prob, tiny_tf.thresholds.nms)
    changed = copy_model(folder, tmp_path, "changed")
    (changed / "thresholds.json").write_text(json.dumps({"prob": 0.61, "nms": 0.27}))
    other = SparseStarDist2D(changed, read_model_folder(changed)[0], tiny_tf.keras_model, (22, 22), (4, 4))
    assert (other.thresholds.prob, other.thresholds.nms) == (0.61, 0.27)
    bare = copy_model(folder, tmp_path, "bare")
    (bare / "thresholds.json").unlink()             # StarDist's own defaults then
    without = SparseStarDist2D(bare, read_model_folder(bare)[0], tiny_tf.keras_model, (22, 22), (4, 4))
    assert vars(without.thresholds) == DEFAULT_THRESHOLDS


# --------------------------------------------------------- 2. OpenVINO fp32 == TensorFlow
@pytest.mark.parametrize("shape", [(256, 256), (96, 160)])
def test_openvino_fp32_is_tensorflow_within_1e_4(tiny_tf, tiny_ir, shape):
    from stardist_v4d.pipeline.backends.openvino_cnn import OpenVINOCNN
    x = normalized(synthetic_nuclei(shape, np.random.default_rng(1))[0])[np.newaxis, ..., np.newaxis]
    expected = tiny_tf.keras_model.predict(x)[:2]
    got = OpenVINOCNN(tiny_ir.xml, "fp32", tiny_ir.outputs).predict(x)
    assert [y.shape for y in got] == [y.shape for y in expected]
    assert expected[1].shape[-1] == 8
    for a, b in zip(got, expected):
        assert np.abs(a - b).max() < 1e-4


# ------------------------------------------------------------ 3. bf16 finds fp32's nuclei
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bf16_finds_the_nuclei_fp32_finds(demo_tf, demo_bf16, seed):
    if not engine.cpu_has_bf16():
        pytest.skip("this CPU has no bf16 instructions")
    plane = normalized(crowded((384, 384), seed))
    fp32, _ = demo_tf.predict_instances(plane)
    bf16, _ = instances(predict_sparse(demo_bf16, plane))
    assert fp32.max() > 20
    assert f1(fp32, bf16) >= 0.99
    x = plane[np.newaxis, ..., np.newaxis]         # and it really ran in bf16, not fp32
    difference = np.abs(demo_bf16.keras_model.predict(x)[0] - demo_tf.keras_model.predict(x)[0]).max()
    assert difference > 1e-4


# ---------------------------------------------------------- 4. the default stays fp32 TF
def test_default_is_fp32_tensorflow_without_a_word():
    """Its labels equal ``predict_instances``': tests/test_pipeline.py holds the default run to it."""
    assert Config().precision == "fp32" and Config().backend is None
    logs = Logs()
    assert choose_engine(Config().backend, Config().precision, logs) == TENSORFLOW
    assert choose_engine("tensorflow", "fp32", logs) == TENSORFLOW and logs == []


def test_default_run_converts_nothing(tmp_path, tiny_models, tiny_stack, tiny_fp32_labels, tiny_tf):
    copy_model(tiny_models / "tiny", tmp_path / "models")
    _, labels, lines = segment(tmp_path / "run", tiny_stack, tmp_path / "models", "tiny")
    assert not (tmp_path / "models" / "tiny" / ".openvino").exists()
    assert not lines.count("OpenVINO") and not lines.count("Converting")
    np.testing.assert_array_equal(labels, tiny_fp32_labels)
    np.testing.assert_array_equal(labels[0], tiny_tf.predict_instances(normalized(tiny_stack[0]))[0])


# ---------------------------------------------------------------------- 5. the IR cache
def test_conversion_happens_once_then_the_entry_is_reused(tiny_models, tiny_conversion):
    first, second = tiny_conversion
    folder = tiny_models / "tiny"
    assert first.count("Converting") == 1 and second.count("Converting") == 0
    [name] = entries(folder)
    assert name == ir_cache.entry_name(sha256_of(folder / "weights_best.h5"), _ov_version())
    assert {p.name for p in (folder / ".openvino" / name).iterdir()} == {"model.xml", "model.bin", "stardist.json"}
    assert first.count(f"CNN: OpenVINO fp32 (converted network from {folder / '.openvino' / name})") == 1
    assert second.count(f"CNN: OpenVINO fp32 (converted network from {folder / '.openvino' / name})") == 1
    assert len(second) == 1                              # nothing else said on a warm load


def _ov_version() -> str:
    from stardist_v4d.pipeline.backends.openvino_cnn import openvino_version
    return openvino_version()


NO_TENSORFLOW_SCRIPT = """
import sys
from stardist_v4d.__main__ import main
code = main(["run", "--input", {source!r}, "--output", {target!r}, "--model-path", {models!r},
             "--model", "tiny", "--precision", "bf16", "--no-measure", "--workers", "0"])
print("RESULT", code, "tensorflow" in sys.modules, "keras" in sys.modules)
"""


def test_a_run_with_a_warm_cache_never_imports_tensorflow(tmp_path, tiny_models, tiny_ir, tiny_stack):
    source = write_ome(tmp_path / "in.ome.tif", tiny_stack, "ZYX")
    target = tmp_path / "out.ome.tif"
    script = NO_TENSORFLOW_SCRIPT.format(source=str(source), target=str(target), models=str(tiny_models))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "RESULT 0 False False", done.stdout[-2000:]
    assert f"CNN: OpenVINO bf16 (converted network from {tiny_ir.folder})" in done.stdout
    assert "Converting" not in done.stdout
    assert read_tzcyx(target)[0, :, -1].max() > 0


def test_new_weights_are_converted_again_under_a_new_key(tmp_path, tiny_models, tiny_ir):
    from stardist_v4d.pipeline.backends.openvino_cnn import OpenVINOCNN
    folder = copy_model(tiny_models / "tiny", tmp_path / "models")
    shutil.copytree(tiny_ir.folder, folder / ".openvino" / tiny_ir.folder.name)    # warm, old weights
    other = make_tiny_model(tmp_path / "other", "tiny", seed=1, prob_thresh=0.5)
    shutil.copyfile(other / "weights_best.h5", folder / "weights_best.h5")
    logs = Logs()
    load_for(OPENVINO_FP32, tmp_path / "models", "tiny", logs)
    assert logs.count("Converting") == 1, logs
    new = set(entries(folder)) - {tiny_ir.folder.name}
    assert len(new) == 1 and tiny_ir.folder.name in entries(folder)
    again = Logs()
    model = load_for(OPENVINO_FP32, tmp_path / "models", "tiny", again)
    assert isinstance(model, SparseStarDist2D) and again.count("Converting") == 0
    assert again.count(new.pop()) == 1
    reference = load_for(TENSORFLOW, tmp_path / "other", "tiny", print)
    x = normalized(synthetic_nuclei((128, 128), np.random.default_rng(4))[0])[np.newaxis, ..., np.newaxis]
    got, want = model.keras_model.predict(x)[1], reference.keras_model.predict(x)[1]
    old = OpenVINOCNN(tiny_ir.xml, "fp32", tiny_ir.outputs).predict(x)[1]
    assert np.abs(got - want).max() < 1e-4 < np.abs(old - want).max()      # the new weights' network


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(255 - b for b in data[middle:middle + 64])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["model.bin", "stardist.json"])
def test_a_damaged_entry_is_said_once_and_rebuilt(tmp_path, tiny_models, tiny_ir, tiny_stack, damage):
    folder = copy_model(tiny_models / "tiny", tmp_path / "models")
    entry = folder / ".openvino" / tiny_ir.folder.name
    shutil.copytree(tiny_ir.folder, entry)
    if damage == "model.bin":
        _flip_bytes(entry / "model.bin")
    else:
        (entry / "stardist.json").write_text('{"layout": 1, "weights_')
    summary, labels, lines = segment(tmp_path / "run", tiny_stack, tmp_path / "models", "tiny",
                                     backend="openvino")
    assert lines.count(" is damaged (") == 1, lines
    assert lines.count("Converting") == 1 and lines.count("CNN: OpenVINO fp32") == 1
    assert summary.total_nuclei > 0 and labels.max() > 0
    rebuilt = ir_cache.read_entry(entry, sha256_of(folder / "weights_best.h5"))     # usable again
    assert rebuilt.outputs == tiny_ir.outputs
    logs = Logs()
    assert isinstance(load_for(OPENVINO_FP32, tmp_path / "models", "tiny", logs), SparseStarDist2D)
    assert not logs.count(" is damaged (") and not logs.count("Converting")


def test_an_unwritable_model_folder_puts_the_entry_in_the_user_cache(tmp_path, tiny_models, monkeypatch):
    folder = copy_model(tiny_models / "tiny", tmp_path / "models")
    cache = tmp_path / "user_cache"
    monkeypatch.setenv("STARDIST_V4D_CACHE", str(cache))
    writable = ir_cache._writable
    monkeypatch.setattr(ir_cache, "_writable",
                        lambda root: Path(root) != folder / ".openvino" and writable(root))
    logs = Logs()
    load_for(OPENVINO_FP32, tmp_path / "models", "tiny", logs)
    assert logs.count("Converting") == 1
    assert not (folder / ".openvino").exists()
    [entry] = [p for p in cache.glob("openvino/*/openvino-*") if p.is_dir()]
    assert entry.parent.parent == cache / "openvino" and entry.parent.name.startswith("tiny-")
    again = Logs()
    assert isinstance(load_for(OPENVINO_FP32, tmp_path / "models", "tiny", again), SparseStarDist2D)
    assert again.count("Converting") == 0 and again.count(str(entry)) == 1


# --------------------------------------------------------------- 6. machine fallbacks
def test_a_cpu_without_bf16_runs_fp32_with_one_line(tmp_path, tiny_models, tiny_stack, tiny_fp32_labels,
                                                    monkeypatch):
    monkeypatch.setattr(engine, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(engine, "gpu_present", lambda: False)
    _, labels, lines = segment(tmp_path, tiny_stack, tiny_models, "tiny", precision="bf16")
    assert lines.count("This CPU has no bf16 instructions") == 1, lines
    assert not lines.count("OpenVINO bf16") and not lines.count("CNN: OpenVINO")
    np.testing.assert_array_equal(labels, tiny_fp32_labels)
    logs = Logs()
    assert choose_engine("openvino", "bf16", logs) == OPENVINO_FP32 and len(logs) == 1


def test_a_gpu_keeps_tensorflow_with_one_line(tmp_path, tiny_models, tiny_stack, tiny_fp32_labels, monkeypatch):
    monkeypatch.setattr(engine, "gpu_present", lambda: True)
    _, labels, lines = segment(tmp_path, tiny_stack, tiny_models, "tiny", precision="bf16")
    assert lines.count("A GPU is present") == 1, lines
    assert not lines.count("CNN: OpenVINO")
    np.testing.assert_array_equal(labels, tiny_fp32_labels)
    for backend, precision in ((None, "bf16"), ("openvino", "fp32"), ("openvino", "bf16")):
        logs = Logs()
        assert choose_engine(backend, precision, logs) == TENSORFLOW and len(logs) == 1
        assert logs.count("GPU") == 1


# ------------------------------------------------------------- 7. bf16 tiled and in blocks
def test_bf16_tiled_and_in_blocks_finds_the_untiled_nuclei(tmp_path, demo_models, demo_bf16):
    if not engine.cpu_has_bf16():
        pytest.skip("this CPU has no bf16 instructions")
    from stardist_v4d.pipeline.tiling import needs_blocks
    stack = crowded((768, 768), 5)[np.newaxis]
    assert needs_blocks(stack.shape[1:], 64)
    _, whole, whole_lines = segment(tmp_path / "whole", stack, demo_models, "demo", precision="bf16",
                                    n_tiles=None)
    _, tiled, tiled_lines = segment(tmp_path / "tiled", stack, demo_models, "demo", precision="bf16",
                                    n_tiles=(2, 2))
    _, blocks, block_lines = segment(tmp_path / "blocks", stack, demo_models, "demo", precision="bf16",
                                     plane_memory_mb=64, block_overlap=64)
    assert block_lines.count("predicting each in blocks") == 1
    for lines in (whole_lines, tiled_lines, block_lines):
        assert lines.count("CNN: OpenVINO bf16") == 1 and not lines.count("Converting"), lines
    assert whole.max() > 100
    assert f1(whole[0], tiled[0]) >= 0.99
    assert f1(whole[0], blocks[0]) >= 0.99


# ------------------------------------------------------------ 8. a conversion that fails
def test_a_failed_conversion_runs_tensorflow_fp32_with_one_line(tmp_path, tiny_models, tiny_stack,
                                                                tiny_fp32_labels, monkeypatch):
    copy_model(tiny_models / "tiny", tmp_path / "models")           # no cached entry: it converts

    def fail(*args, **kwargs):
        raise RuntimeError("Exception from src/frontends/tensorflow:\n  unsupported op  FancyConv")
    monkeypatch.setattr(ir_cache, "convert", fail)
    summary, labels, lines = segment(tmp_path / "run", tiny_stack, tmp_path / "models", "tiny",
                                     precision="bf16")
    [line] = [line for line in lines if "could not be converted" in line]
    assert "RuntimeError" in line and "FancyConv" in line and "TensorFlow (fp32)" in line
    assert "\n" not in line and not lines.count("CNN: OpenVINO")
    np.testing.assert_array_equal(labels, tiny_fp32_labels)


# --------------------------------------------------------------------- 9. the settings
def one_line_error(constants: dict, argv=None) -> str:
    with pytest.raises(ConfigError) as error:
        build_config(constants, argv)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_bad_precision_or_backend_word_names_the_setting(tiny_models):
    base = {"MODEL2D_PATH": tiny_models, "MODEL_NAME": "tiny"}
    message = one_line_error({**base, "PRECISION": "fp16"})
    assert message.startswith("PRECISION (--precision) = 'fp16'") and "'bf16'" in message
    assert one_line_error({**base, "BACKEND": "onnx"}).startswith("BACKEND (--backend) = 'onnx'")
    assert one_line_error(base, ["--backend", "onnx"]).startswith("BACKEND (--backend) = 'onnx'")


def test_tensorflow_with_bf16_is_refused_naming_both(tiny_models):
    base = {"MODEL2D_PATH": tiny_models, "MODEL_NAME": "tiny"}
    for message in (one_line_error({**base, "BACKEND": "tensorflow", "PRECISION": "bf16"}),
                    one_line_error(base, ["--backend", "tensorflow", "--precision", "bf16"])):
        assert "BACKEND (--backend) = 'tensorflow'" in message and "PRECISION (--precision) = 'bf16'" in message


@pytest.mark.parametrize("setting, named", [({"PRECISION": "bf16"}, "PRECISION (--precision) = 'bf16'"),
                                            ({"BACKEND": "openvino"}, "BACKEND (--backend) = 'openvino'")])
def test_openvino_missing_is_one_line_naming_the_setting(tiny_models, monkeypatch, setting, named):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "openvino" else find_spec(name, *args))
    message = one_line_error({"MODEL2D_PATH": tiny_models, "MODEL_NAME": "tiny", **setting})
    assert message.startswith(named) and "pip install openvino" in message
    build_config({"MODEL2D_PATH": tiny_models, "MODEL_NAME": "tiny"})      # fp32 TF needs none


def test_backend_flag_auto_is_none_and_other_words_are_kept(tiny_models):
    base = {"MODEL2D_PATH": tiny_models, "MODEL_NAME": "tiny", "BACKEND": "openvino"}
    assert build_config(base, ["--backend", "auto"]).backend is None
    assert build_config(base, ["--backend=AUTO"]).backend is None
    assert build_config(base, []).backend == "openvino"                   # no flag: the constant
    config = build_config({"MODEL2D_PATH": tiny_models, "MODEL_NAME": "tiny"},
                          ["--backend", "openvino", "--precision", "bf16"])
    assert (config.backend, config.precision) == ("openvino", "bf16")


def test_the_cli_refuses_tensorflow_with_bf16_in_one_line(tmp_path, tiny_models, tiny_stack):
    source = write_ome(tmp_path / "in.ome.tif", tiny_stack, "ZYX")
    done = subprocess.run([sys.executable, "-m", "stardist_v4d", "run", "--input", str(source),
                           "--model-path", str(tiny_models), "--model", "tiny", "--precision", "bf16",
                           "--backend", "tensorflow"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: BACKEND (--backend) = 'tensorflow' with PRECISION"), \
        done.stderr
    assert "Traceback" not in done.stderr + done.stdout
