"""A damaged model folder stops the run in one line before TensorFlow starts.

Weights cut short or not HDF5, a config.json that is no object, thresholds out of range, a
config whose ray count the weights contradict: exit code 2, one ``error:`` line naming the
file, nothing written, the input untouched; the ray count is read from each Keras layout.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from stardist_v4d.config import ConfigError, build_config
from test_bad_settings import DEMO, TF_FREE_SECONDS, _config, run_cli, sha256, write_tiny_stack


# ----------------------------------------------------------------- model folders
def _weights(folder: Path) -> Path:
    return folder / "weights_best.h5"


def truncated(folder: Path) -> None:
    data = _weights(folder).read_bytes()
    _weights(folder).write_bytes(data[: len(data) // 2])


def cut_by_one_byte(folder: Path) -> None:
    data = _weights(folder).read_bytes()
    _weights(folder).write_bytes(data[:-1])


def not_hdf5(folder: Path) -> None:
    _weights(folder).write_bytes(b"<html><body>404 Not Found</body></html>\n" * 20)


def empty_weights(folder: Path) -> None:
    _weights(folder).write_bytes(b"")


def config_list(folder: Path) -> None:
    (folder / "config.json").write_text(json.dumps([{"n_dim": 2, "n_rays": 32}]))


def config_text(folder: Path) -> None:
    (folder / "config.json").write_text("n_dim: 2\n")


def thresholds(text: str):
    def damage(folder: Path) -> None:
        (folder / "thresholds.json").write_text(text)
    return damage


def rays_64(folder: Path) -> None:
    _config(folder, n_rays=64, n_channel_out=65)


def rays_text(folder: Path) -> None:
    _config(folder, n_rays="32")


SIZE = (DEMO / "weights_best.h5").stat().st_size

# name -> (damage, file the message names, what it says)
DAMAGES = {
    "truncated_h5": (truncated, "weights_best.h5", f"cut short ({SIZE // 2:,} of its {SIZE:,} bytes: an "
                     "interrupted copy or download); copy the model's weights_best.h5 again"),
    "h5_one_byte_short": (cut_by_one_byte, "weights_best.h5", f"cut short ({SIZE - 1:,} of its {SIZE:,} bytes"),
    "not_hdf5": (not_hdf5, "weights_best.h5", "not a weights file (not HDF5, which Keras .h5 weights are)"),
    "empty_h5": (empty_weights, "weights_best.h5", "not a weights file (empty, not HDF5"),
    "config_list": (config_list, "config.json", "holds a JSON list, not an object; it must hold a StarDist "
                    "model configuration"),
    "config_not_json": (config_text, "config.json", "not readable JSON (JSONDecodeError: "),
    "config_nested_deep": (lambda folder: (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000),
                           "config.json", "not readable JSON (RecursionError: "),
    "thresholds_5": (thresholds('{"prob": 5, "nms": 0.3}'), "thresholds.json",
                     '"prob" = 5: must be a number between 0 and 1 (exclusive), e.g. 0.5; fix the file, or '
                     "delete it for StarDist's defaults (prob 0.5, nms 0.4)"),
    "thresholds_minus_1": (thresholds('{"prob": 0.5, "nms": -1}'), "thresholds.json",
                           '"nms" = -1: must be a number between 0 and 1 (exclusive), e.g. 0.4'),
    "thresholds_nan": (thresholds('{"prob": NaN, "nms": 0.3}'), "thresholds.json", '"prob" = NaN: must be a number'),
    "thresholds_text": (thresholds("prob 0.5 nms 0.3"), "thresholds.json",
                        'not readable JSON (JSONDecodeError: Expecting value: line 1 column 1 (char 0)); it must '
                        'hold {"prob": P, "nms": N}, P and N between 0 and 1 (exclusive)'),
    "thresholds_list": (thresholds("[0.5, 0.3]"), "thresholds.json", "holds a JSON list, not an object"),
    "thresholds_without_nms": (thresholds('{"prob": 0.5}'), "thresholds.json", 'has no "nms"'),
    "config_64_rays_weights_32": (rays_64, "weights_best.h5",
                                  "weights of a 32-ray model (layer 'dist' has 32 filters), but "),
    "n_rays_not_a_number": (rays_text, "config.json", "n_rays = '32': must be a whole number of rays >= 3"),
}


def damaged_model(models: Path, name: str) -> Path:
    """A copy of the demo model, damaged the way ``DAMAGES[name]`` says."""
    folder = models / name
    shutil.copytree(DEMO, folder)
    DAMAGES[name][0](folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """A models folder with the demo model intact ("demo") and every damaged copy."""
    folder = tmp_path_factory.mktemp("models")
    shutil.copytree(DEMO, folder / "demo")
    for name in DAMAGES:
        damaged_model(folder, name)
    return folder


# ------------------------------------------------- damaged model folders, headless
@pytest.mark.parametrize("name", list(DAMAGES))
def test_damaged_model_folder_stops_the_run_in_one_line_before_tensorflow(name, models, tmp_path):
    stack = write_tiny_stack(tmp_path / "in.tif")
    before = sha256(stack)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result, seconds = run_cli("run", "--input", str(stack), "--output", str(out_dir / "in_stardist.ome.tif"),
                              "--model-path", str(models), "--model", name, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    _, file_name, says = DAMAGES[name]
    assert lines[0].startswith(f"error: MODEL_NAME (--model) = '{name}': {models / name / file_name}: "), lines[0]
    assert says in lines[0]
    assert seconds < TF_FREE_SECONDS, f"{seconds:.1f} s: TensorFlow started?"
    assert list(out_dir.iterdir()) == []
    assert sha256(stack) == before
    assert result.stdout == ""             # not even the run's first line: the settings were not valid


def test_damaged_model_folders_are_found_without_importing_tensorflow(models, tmp_path):
    """In one fresh interpreter: every damage is a ConfigError from build_config, and
    neither TensorFlow nor Keras is imported to find it (the intact demo model passes)."""
    code = f"""
import json, sys
from stardist_v4d.config import ConfigError, build_config
found = {{}}
for name in {sorted(DAMAGES) + ["demo"]!r}:
    try:
        build_config({{"MODEL2D_PATH": {str(models)!r}, "MODEL_NAME": name}})
        found[name] = None
    except ConfigError as error:
        found[name] = str(error)
print(json.dumps({{"found": found, "tf": "tensorflow" in sys.modules, "keras": "keras" in sys.modules}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["tf"] is False and report["keras"] is False
    assert report["found"]["demo"] is None
    for name, (_, file_name, says) in DAMAGES.items():
        message = report["found"][name]
        assert message is not None and "\n" not in message, name
        assert str(models / name / file_name) in message and says in message, message


def test_thresholds_inside_0_and_1_and_a_missing_thresholds_file_are_accepted(tmp_path):
    folder = damaged_model(tmp_path, "thresholds_5")
    (folder / "thresholds.json").write_text('{"prob": 0.01, "nms": 0.99}')
    assert build_config({"MODEL2D_PATH": tmp_path, "MODEL_NAME": "thresholds_5"}).model_name == "thresholds_5"
    (folder / "thresholds.json").unlink()
    assert build_config({"MODEL2D_PATH": tmp_path, "MODEL_NAME": "thresholds_5"}).model_name == "thresholds_5"


# ------------------------------------------------------ weights layouts, n_rays check
def _synthetic_weights(path: Path, dataset: str, shape: tuple[int, ...]) -> None:
    with h5py.File(path, "w") as weights:
        weights.create_dataset(dataset, data=np.zeros(shape, np.float32))


def _folder_with_weights(tmp_path: Path, n_rays: int, dataset: str, shape: tuple[int, ...]) -> Path:
    folder = tmp_path / "models" / "m"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"n_dim": 2, "n_channel_in": 1, "n_rays": n_rays}))
    _synthetic_weights(_weights(folder), dataset, shape)
    return tmp_path / "models"


@pytest.mark.parametrize("dataset", [
    "dist/dist/kernel",                   # Keras 3 save_weights(".h5"): StarDist's own layout
    "dist/dist/kernel:0",                 # Keras 2 (tf.keras) save_weights: weights named kernel:0
    "model_weights/dist/dist/kernel",     # model.save(".h5"): the weights under model_weights
])
def test_ray_count_is_read_from_each_keras_h5_layout(tmp_path, dataset):
    models = _folder_with_weights(tmp_path, 32, dataset, (1, 1, 128, 16))
    with pytest.raises(ConfigError) as caught:
        build_config({"MODEL2D_PATH": models, "MODEL_NAME": "m"})
    assert "weights of a 16-ray model (layer 'dist' has 16 filters), but " in str(caught.value)
    assert f"{models / 'm' / 'config.json'} says n_rays = 32" in str(caught.value)
    _config(models / "m", n_rays=16)
    assert build_config({"MODEL2D_PATH": models, "MODEL_NAME": "m"}).model_name == "m"


@pytest.mark.parametrize("dataset, shape", [
    ("layers/conv2d_10/vars/0", (1, 1, 128, 16)),   # Keras 3 .weights.h5: no layer names to find 'dist' by
    ("something/else", (3,)),                        # HDF5, but not Keras weights at all
    ("dist/dist/bias", (16,)),                       # a 'dist' layer without a 4-D kernel
])
def test_unknown_weights_layout_skips_the_ray_check_instead_of_failing(tmp_path, dataset, shape):
    models = _folder_with_weights(tmp_path, 32, dataset, shape)
    assert build_config({"MODEL2D_PATH": models, "MODEL_NAME": "m"}).model_name == "m"


def test_ray_check_on_real_weights_of_a_tiny_keras_model(tmp_path):
    """``make_tiny_model`` saves with Keras itself (8 rays, another U-Net than the demo's)."""
    from model_factory import make_tiny_model

    make_tiny_model(tmp_path, "tiny", n_rays=8, prob_thresh=0.5)
    assert build_config({"MODEL2D_PATH": tmp_path, "MODEL_NAME": "tiny"}).model_name == "tiny"
    _config(tmp_path / "tiny", n_rays=16)
    with pytest.raises(ConfigError) as caught:
        build_config({"MODEL2D_PATH": tmp_path, "MODEL_NAME": "tiny"})
    assert f"{tmp_path / 'tiny' / 'weights_best.h5'}: weights of a 8-ray model" in str(caught.value)


def test_the_thresholds_line_names_each_value_and_where_it_came_from(tmp_path):
    from stardist_v4d.pipeline.model import thresholds_line
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "thresholds.json").write_text('{"prob": 0.4871, "nms": 0.3}')
    line = thresholds_line(tmp_path, "m", None, 0.5)
    assert line == (f"Thresholds: probability 0.487 ({tmp_path / 'm' / 'thresholds.json'}), "
                    "overlap (NMS) 0.5 (NMS_THRESH).")
    (tmp_path / "bare").mkdir()
    assert "probability 0.5 (StarDist's default: the model has no thresholds.json)" in thresholds_line(
        tmp_path, "bare", None, None)
