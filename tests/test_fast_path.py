"""The fast CNN engine: PRECISION "bf16" / BACKEND "openvino", and the machine's fallbacks.

``SparseStarDist2D`` (the TensorFlow-free prediction) computes what ``StarDist2D.predict_sparse``
computes, bit for bit, for the same CNN; OpenVINO fp32 is TensorFlow within 1e-4; bf16 finds
the same nuclei as fp32 (F1@0.5 >= 0.99) whole, tiled and in blocks; every fallback (GPU,
CPU without bf16, failed conversion) is one line and the run goes on. The default (fp32,
TensorFlow) path is unchanged (its parity: tests/test_pipeline.py).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine_support import (  # noqa: F401, F811  (fixtures are imported by name)
    Logs, OPENVINO_FP32, TENSORFLOW, copy_model, crowded, f1, normalized, segment, tiny_models,
    tiny_tf, tiny_conversion, tiny_ir, tiny_stack, tiny_fp32_labels, demo_models, demo_bf16,
    demo_tf)
from stardist_v4d.config import Config
from stardist_v4d.pipeline.backends import engine, ir_cache
from stardist_v4d.pipeline.backends.engine import choose_engine
from stardist_v4d.pipeline.backends.sparse_model import DEFAULT_THRESHOLDS, SparseStarDist2D
from stardist_v4d.pipeline.model import read_model_folder
from stardist_v4d.pipeline.predict import instances, predict_sparse
from stardist_v4d.training.synthetic import synthetic_nuclei


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


@pytest.mark.parametrize("n_tiles", [None, (2, 3)])
def test_sparse_model_takes_openvinos_own_buffers_with_the_same_candidates(tiny_models, tiny_tf, tiny_ir, n_tiles):
    """Around OpenVINO the maps are read from the request's buffers, not copied: every tile's
    candidates are taken before the next call, so they equal those of the copying ``predict``."""
    from stardist_v4d.pipeline.backends.openvino_cnn import OpenVINOCNN

    class Copying:                                     # predict only: the copying path
        def __init__(self, cnn):
            self.predict = cnn.predict

    folder = tiny_models / "tiny"
    cnn = OpenVINOCNN(tiny_ir.xml, "fp32", tiny_ir.outputs)
    args = (read_model_folder(folder)[0], tiny_tf._axes_tile_overlap("YX"), tiny_tf._axes_div_by("YX"))
    plane = normalized(synthetic_nuclei((256, 256), np.random.default_rng(5))[0])
    got = SparseStarDist2D(folder, args[0], cnn, *args[1:]).predict_sparse(plane, n_tiles=n_tiles)
    expected = SparseStarDist2D(folder, args[0], Copying(cnn), *args[1:]).predict_sparse(plane, n_tiles=n_tiles)
    assert len(expected[0]) > 10
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    borrowed = cnn.predict_borrowed(plane[np.newaxis, ..., np.newaxis])
    assert not borrowed[1].flags.owndata               # really the request's buffer


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
    # OpenVINO fp32: converted on any CPU (bf16 falls back to TensorFlow before converting where the CPU lacks it)
    summary, labels, lines = segment(tmp_path / "run", tiny_stack, tmp_path / "models", "tiny",
                                     backend="openvino")
    [line] = [line for line in lines if "could not be converted" in line]
    assert "RuntimeError" in line and "FancyConv" in line and "TensorFlow (fp32)" in line
    assert "\n" not in line and not lines.count("CNN: OpenVINO")
    np.testing.assert_array_equal(labels, tiny_fp32_labels)
