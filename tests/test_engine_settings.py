"""PRECISION and BACKEND as settings and flags: every mistake is one line naming the setting."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from engine_support import (  # noqa: F401, F811  (fixtures are imported by name)
    tiny_models, tiny_stack)
from stardist_v4d.config import ConfigError, build_config
from test_pipeline import write_ome


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
