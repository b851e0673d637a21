"""Every invalid setting gets one line naming it, its value and what is valid."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from stardist_v4d.config import DEFAULT_MODEL, Config, ConfigError, build_config
from stardist_v4d.dataset_checks import check_against_dataset
from stardist_v4d.host_api.base import DatasetInfo

CONSTANTS = dict(INPUT_CHANNEL=0, OUTPUT_CH_NAME="StarDist", MODEL2D_PATH=None, MODEL_NAME=DEFAULT_MODEL,
                 CURRENT_TIME_POINT=True, FIRST_PLANE=-1, LAST_PLANE=-1, NORM_PERCENTILES=(1, 99.8),
                 NORMALIZE="plane", PROB_THRESH=None, NMS_THRESH=None, N_TILES=None, SCALE=1.0,
                 LABEL_DTYPE="auto", OVERWRITE=False)


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """A models folder with one fake-but-well-formed 2D model folder ("fake")."""
    folder = tmp_path / "models" / "fake"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"n_dim": 2, "n_channel_in": 1, "n_rays": 8}))
    h5py.File(folder / "weights_best.h5", "w").close()   # an empty HDF5 file: no layers to check
    return tmp_path / "models"


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    path = tmp_path / "stack.tif"
    path.write_bytes(b"II*\x00")  # existence is all static checks need
    return path


def settings(models_dir: Path, **changes) -> dict:
    return {**CONSTANTS, "MODEL2D_PATH": models_dir, "MODEL_NAME": "fake", **changes}


def error_of(constants: dict, argv: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        build_config(constants, argv)
    message = str(caught.value)
    assert "\n" not in message
    return message


INFO = DatasetInfo(size_t=3, size_z=5, size_c=2, size_y=64, size_x=64, dtype=np.dtype(np.uint8),
                   channel_names=("Nuclei", "Membrane"), source="stack.tif")


def test_constants_become_config_and_flags_override_them(models_dir, stack):
    config = build_config(settings(models_dir, INPUT_CHANNEL=1),
                          ["--input", str(stack), "--first-plane", "2", "--all-timepoints",
                           "--percentiles", "2", "99", "--n-tiles", "2", "3"])
    assert config.input_channel == 1
    assert config.first_plane == 2 and config.current_time_point is False
    assert config.norm_percentiles == [2.0, 99.0] and config.n_tiles == [2, 3]
    assert config.output_path == stack.with_name("stack_stardist.ome.tif")


def test_shipped_models_folder_is_found_from_the_package():
    config = Config()
    assert config.models_dir.name == "models"
    assert config.models_dir.parent.name in ("stardist_v4d", Path(__file__).resolve().parents[1].name)


@pytest.mark.parametrize("change, expected", [
    (dict(INPUT_CHANNEL=-2), "INPUT_CHANNEL (--channel) = -2: must be a channel index"),
    (dict(OUTPUT_CH_NAME=" "), "OUTPUT_CH_NAME (--output-channel-name) = ' ': must be a non-empty name"),
    (dict(CURRENT_TIME_POINT="yes"), "CURRENT_TIME_POINT (--current-timepoint/--all-timepoints) = 'yes'"),
    (dict(FIRST_PLANE=-5), "FIRST_PLANE (--first-plane) = -5: must be a 0-based plane index, or -1 for bottom"),
    (dict(FIRST_PLANE=4, LAST_PLANE=2), "FIRST_PLANE (--first-plane) = 4 is above LAST_PLANE (--last-plane) = 2"),
    (dict(NORM_PERCENTILES=(99, 1)), "NORM_PERCENTILES (--percentiles) = (99, 1): must be two numbers LOW < HIGH"),
    (dict(NORMALIZE="global"), "NORMALIZE (--normalize) = 'global': valid: 'plane' or 'stack'"),
    (dict(PROB_THRESH=1.5), "PROB_THRESH (--prob-thresh) = 1.5: must be between 0 and 1 (exclusive)"),
    (dict(NMS_THRESH=0), "NMS_THRESH (--nms-thresh) = 0: must be between 0 and 1 (exclusive)"),
    (dict(N_TILES=(0, 2)), "N_TILES (--n-tiles) = (0, 2): must be None (one tile) or two whole numbers"),
    (dict(SCALE=0), "SCALE (--scale) = 0: must be a number from 0.1 to 10"),
    (dict(LABEL_DTYPE="int8"), "LABEL_DTYPE (--label-dtype) = 'int8': valid: auto, uint16, uint32, float32"),
])
def test_each_bad_setting_names_itself_and_what_is_valid(models_dir, change, expected):
    assert expected in error_of(settings(models_dir, **change))


def test_missing_model_says_where_to_put_it(models_dir):
    message = error_of(settings(models_dir, MODEL_NAME="my_nuclei"))
    assert f"no model folder {models_dir / 'my_nuclei'}; put the model folder" in message
    assert "fake" in message and "2D_versatile_fluo" in message


def test_model_folder_without_weights_or_config(models_dir):
    (models_dir / "fake" / "weights_best.h5").unlink()
    assert "has no weights (.h5 file" in error_of(settings(models_dir))
    (models_dir / "fake" / "config.json").unlink()
    assert "has no config.json" in error_of(settings(models_dir))


def test_3d_model_and_multichannel_model_are_refused(models_dir):
    config_file = models_dir / "fake" / "config.json"
    config_file.write_text(json.dumps({"n_dim": 3, "n_channel_in": 1}))
    assert "is a 3D model; this plugin needs a StarDist 2D model" in error_of(settings(models_dir))
    config_file.write_text(json.dumps({"n_dim": 2, "n_channel_in": 3}))
    assert "expects 3 input channels, but this plugin works on one channel" in error_of(settings(models_dir))


def test_models_path_that_is_not_a_folder(tmp_path):
    message = error_of({**CONSTANTS, "MODEL2D_PATH": tmp_path / "nowhere"})
    assert "MODEL2D_PATH (--model-path) = " in message and "is not a folder" in message


def test_registered_name_is_accepted_without_loading(models_dir):
    assert build_config(settings(models_dir, MODEL_NAME="2D_versatile_fluo")).model_name == "2D_versatile_fluo"


def test_input_and_output_files(models_dir, stack, tmp_path):
    assert "no such file" in error_of(settings(models_dir), ["--input", str(tmp_path / "missing.tif")])
    assert "is the input file; the input is never modified" in error_of(
        settings(models_dir), ["--input", str(stack), "--output", str(stack)])
    assert "must end in .tif or .tiff" in error_of(
        settings(models_dir), ["--input", str(stack), "--output", str(tmp_path / "out.png")])
    existing = tmp_path / "out.tif"
    existing.write_bytes(b"")
    assert "exists already; choose another name or set OVERWRITE (--overwrite)" in error_of(
        settings(models_dir), ["--input", str(stack), "--output", str(existing)])
    assert build_config(settings(models_dir), ["--input", str(stack), "--output", str(existing),
                                               "--overwrite"]).overwrite


@pytest.mark.parametrize("name", ["OVERWRITE", "WRITE_OBJECTS"])
def test_a_quoted_false_is_refused_not_taken_as_true(models_dir, stack, tmp_path, name):
    """``OVERWRITE = "False"`` once replaced an existing output: a string is true in Python."""
    existing = tmp_path / "out.tif"
    existing.write_bytes(b"precious")
    message = error_of(settings(models_dir, **{name: "False"}), ["--input", str(stack), "--output", str(existing)])
    assert message == f"{name} ({'--overwrite' if name == 'OVERWRITE' else '--objects/--no-objects'}) = 'False': " \
                      "must be True or False (without quotes)"
    assert existing.read_bytes() == b"precious"


@pytest.mark.parametrize("change, expected", [
    (dict(input_channel=2), "INPUT_CHANNEL (--channel) = 2: out of range: the image in stack.tif has 2 channel(s) (valid: 0-1)"),
    (dict(time_point=3, active=3), "TIME_POINT (--timepoint) = 3: out of range: the image in stack.tif has 3 time point(s) (valid: 0-2)"),
    (dict(first_plane=5), "FIRST_PLANE (--first-plane) = 5: beyond the stack: the image in stack.tif has 5 Z plane(s) (valid: 0-4, or -1)"),
    (dict(last_plane=7), "LAST_PLANE (--last-plane) = 7: beyond the stack"),
    (dict(first_plane=3, last_plane=-1, label_dtype="auto"), None),
])
def test_settings_checked_against_the_image(change, expected):
    info = replace(INFO, active_time_point=change.pop("active", 0))
    config = Config(**change)
    if expected is None:
        check_against_dataset(config, info)
        return
    with pytest.raises(ConfigError) as caught:
        check_against_dataset(config, info)
    assert expected in str(caught.value)


def test_label_dtype_that_cannot_hold_the_input_values():
    info = DatasetInfo(1, 1, 1, 8, 8, np.dtype(np.float32), ("C0",))
    with pytest.raises(ConfigError) as caught:
        check_against_dataset(Config(label_dtype="uint16"), info)
    assert "LABEL_DTYPE (--label-dtype) = 'uint16': cannot hold the input's float32 values unchanged" in str(caught.value)


def test_config_error_is_reported_before_tensorflow_is_imported(tmp_path):
    code = ("import sys; from stardist_v4d import stardist_2d as s; rc = s.main(['--channel', '-3']); "
            "print('TF', 'tensorflow' in sys.modules); sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: INPUT_CHANNEL (--channel) = -3: must be a channel index 0, 1, 2, ..."]
    assert "TF False" in result.stdout


def test_help_lists_every_setting_without_tensorflow(tmp_path):
    code = ("import sys; from stardist_v4d import stardist_2d as s\ntry: s.main(['--help'])\n"
            "except SystemExit: pass\nprint('TF', 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    for flag in ("--channel", "--output-channel-name", "--model-path", "--model", "--current-timepoint",
                 "--all-timepoints", "--timepoint", "--first-plane", "--last-plane", "--percentiles",
                 "--normalize", "--prob-thresh", "--nms-thresh", "--n-tiles", "--scale", "--label-dtype",
                 "--overwrite"):
        assert flag in result.stdout
    assert "TF False" in result.stdout


@pytest.mark.parametrize("name, value, words", [
    ("WORKERS", 10 ** 6, "up to 256"),
    ("N_TILES", (10 ** 6, 10 ** 6), "from 1 to 64"),
    ("SCHEDULER_TIMEOUT_S", float("inf"), "at most 86400"),
    ("SCHEDULER_TIMEOUT_S", float("nan"), "at most 86400"),
    ("RING_UM", float("nan"), "above 0 and at most 100"),
    ("PIXEL_SIZE_UM", (float("inf"), 1.0), "two sizes in um"),
])
def test_settings_have_upper_bounds(models_dir, name, value, words):
    message = error_of(settings(models_dir, **{name: value}))
    assert message.startswith(f"{name} (") and words in message
