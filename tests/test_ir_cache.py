"""The OpenVINO IR cache: converted once, reused without TensorFlow, converted again when the
weights change or an entry is damaged (one line), in the user's cache when the model folder
is not writable.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine_support import (  # noqa: F401, F811  (fixtures are imported by name)
    Logs, OPENVINO_FP32, TENSORFLOW, _ov_version, copy_model, entries, normalized, segment,
    tiny_models, tiny_conversion, tiny_ir, tiny_stack)
from model_factory import make_tiny_model
from stardist_v4d.pipeline.backends import ir_cache
from stardist_v4d.pipeline.backends.engine import load_for
from stardist_v4d.pipeline.backends.sparse_model import SparseStarDist2D
from stardist_v4d.pipeline.model import sha256_of
from stardist_v4d.training.synthetic import synthetic_nuclei
from test_pipeline import read_tzcyx, write_ome


# ---------------------------------------------------------------------- 5. the IR cache
def test_conversion_happens_once_then_the_entry_is_reused(tiny_models, tiny_conversion):
    first, second = tiny_conversion
    folder = tiny_models / "tiny"
    assert first.count("Converting") == 1 and second.count("Converting") == 0
    [name] = entries(folder)
    assert name == ir_cache.entry_name(ir_cache.network_key(folder, sha256_of(folder / "weights_best.h5")),
                                       _ov_version())
    assert {p.name for p in (folder / ".openvino" / name).iterdir()} == {"model.xml", "model.bin", "stardist.json"}
    assert first.count(f"CNN: OpenVINO fp32 (converted network from {folder / '.openvino' / name})") == 1
    assert second.count(f"CNN: OpenVINO fp32 (converted network from {folder / '.openvino' / name})") == 1
    assert len(second) == 1                              # nothing else said on a warm load


NO_TENSORFLOW_SCRIPT = """
import sys
from stardist_v4d.__main__ import main
code = main(["run", "--input", {source!r}, "--output", {target!r}, "--model-path", {models!r},
             "--model", "tiny", "--backend", "openvino", "--no-measure", "--workers", "0"])
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
    assert f"CNN: OpenVINO fp32 (converted network from {tiny_ir.folder})" in done.stdout
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


def test_an_edited_config_is_converted_again_not_run_stale(tmp_path, tiny_models, tiny_ir):
    import json
    folder = copy_model(tiny_models / "tiny", tmp_path / "models")
    shutil.copytree(tiny_ir.folder, folder / ".openvino" / tiny_ir.folder.name)    # warm for this config
    config = json.loads((folder / "config.json").read_text())
    config["train_epochs"] = int(config.get("train_epochs", 1)) + 1                # same weights, other config
    (folder / "config.json").write_text(json.dumps(config))
    logs = Logs()
    load_for(OPENVINO_FP32, tmp_path / "models", "tiny", logs)
    assert logs.count("Converting") == 1, logs
    assert len(entries(folder)) == 2


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
    rebuilt = ir_cache.read_entry(entry, ir_cache.network_key(folder, sha256_of(folder / "weights_best.h5")))
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
