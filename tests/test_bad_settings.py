"""Issue 13, "nothing lost, nothing mixed": every bad setting stops early, in one line.

(Damaged model folders: tests/test_bad_model_folders.py.) Flags are never guessed from
abbreviations, contradictory time-point flags are refused, the commands are
reachable from ``stardist_2d.py``, and a run says what it will do before
TensorFlow's silent start-up.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import tifffile

from stardist_v4d import launch
from stardist_v4d.config import DEFAULT_MODEL, Config, ConfigError, build_config, shipped_models_dir
from stardist_v4d.flags import build_parser

PACKAGE = Path(__file__).resolve().parents[1]
ENTRY = PACKAGE / "stardist_2d.py"
DEMO = shipped_models_dir() / DEFAULT_MODEL
SELFCHECK = "stardist_v4d.selfcheck"
TF_FREE_SECONDS = 4.0       # TensorFlow's start alone takes 5-8 s here; a check takes < 1 s


def write_tiny_stack(path: Path) -> Path:
    rng = np.random.default_rng(0)
    tifffile.imwrite(path, rng.integers(0, 4000, (3, 32, 32), dtype=np.uint16), imagej=True, metadata={"axes": "ZYX"})
    return path


def _config(folder: Path, **changes) -> None:
    values = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**values, **changes}))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "stardist_v4d", *args], capture_output=True, text=True,
                            cwd=cwd, timeout=300)
    return result, time.monotonic() - started


# ------------------------------------------------------------------------- flags
def test_abbreviated_flag_is_refused_with_argparse_usage_error(tmp_path):
    stack = write_tiny_stack(tmp_path / "in.tif")
    before = sha256(stack)
    result, _ = run_cli("run", "--input", str(stack), "--overwrit", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[-1] == "python -m stardist_v4d run: error: unrecognized arguments: --overwrit"
    assert len(lines) == 2 and lines[0].startswith("usage: python -m stardist_v4d run ")   # usage on one line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"] and sha256(stack) == before


@pytest.mark.parametrize("parser_of, argv", [
    ("stardist_v4d.flags", ["--overwrit"]),
    ("stardist_v4d.flags", ["--all-time"]),
    ("stardist_v4d.training.cli", ["--images", "i", "--masks", "m", "--out", "o", "--overwrit"]),
    ("stardist_v4d.remeasure", ["--input", "a.tif", "--labels", "b.tif", "--overwrit"]),
])
def test_no_parser_expands_abbreviations(parser_of, argv, capsys):
    module = __import__(parser_of, fromlist=["build_parser"])
    parser = module.build_parser(Config()) if parser_of.endswith("flags") else module.build_parser()
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(argv)
    assert caught.value.code == 2
    assert f"error: unrecognized arguments: {argv[-1]}" in capsys.readouterr().err


def test_eval_refuses_an_abbreviated_flag(capsys):
    from stardist_v4d.training.evaluate import main

    with pytest.raises(SystemExit) as caught:
        main(["--model-pa", "models"])
    assert caught.value.code == 2
    assert "error: unrecognized arguments: --model-pa models" in capsys.readouterr().err


def _call_text(source: str, start: int) -> str:
    """The text of a call from its opening parenthesis to the matching closing one."""
    depth = 0
    for end in range(start, len(source)):
        depth += {"(": 1, ")": -1}.get(source[end], 0)
        if depth == 0:
            return source[start: end + 1]
    return source[start:]


def test_every_argument_parser_in_the_project_refuses_abbreviations():
    """A parser added later without ``allow_abbrev=False`` fails here."""
    missing, found = [], 0
    for path in sorted(PACKAGE.rglob("*.py")):
        if "tests" in path.relative_to(PACKAGE).parts:
            continue
        source = path.read_text(encoding="utf-8")
        for match in re.finditer(r"ArgumentParser\(", source):
            found += 1
            if "allow_abbrev=False" not in _call_text(source, match.end() - 1):
                missing.append(f"{path.relative_to(PACKAGE)}:{source[:match.start()].count(chr(10)) + 1}")
    assert found >= 4 and missing == []


@pytest.fixture
def good_models(tmp_path) -> Path:
    shutil.copytree(DEMO, tmp_path / "models" / DEFAULT_MODEL)
    return tmp_path / "models"


def test_timepoint_with_all_timepoints_is_refused_naming_both_flags(good_models):
    settings = {"MODEL2D_PATH": good_models}
    with pytest.raises(ConfigError) as caught:
        build_config(settings, ["--all-timepoints", "--timepoint", "5"])
    assert str(caught.value) == ("--timepoint 5 contradicts --all-timepoints: --timepoint picks the one time point "
                                 "to segment, --all-timepoints segments every one; give one of the two")
    with pytest.raises(ConfigError) as caught:       # the same pair, the other way round
        build_config(settings, ["--timepoint", "0", "--all-timepoints"])
    assert "--timepoint 0 contradicts --all-timepoints" in str(caught.value)


def test_timepoint_with_current_time_point_false_in_the_settings_block_is_refused(good_models):
    with pytest.raises(ConfigError) as caught:
        build_config({"MODEL2D_PATH": good_models, "CURRENT_TIME_POINT": False}, ["--timepoint", "2"])
    message = str(caught.value)
    assert message.startswith("--timepoint 2 contradicts CURRENT_TIME_POINT = False (every time point) in the "
                              "settings block of stardist_2d.py: add --current-timepoint")
    assert "\n" not in message
    config = build_config({"MODEL2D_PATH": good_models, "CURRENT_TIME_POINT": False},
                          ["--timepoint", "2", "--current-timepoint"])
    assert config.current_time_point is True and config.time_point == 2


def test_time_point_flags_alone_still_work(good_models):
    settings = {"MODEL2D_PATH": good_models}
    assert build_config(settings, ["--all-timepoints"]).current_time_point is False
    config = build_config(settings, ["--timepoint", "5"])
    assert config.current_time_point is True and config.time_point == 5
    assert build_config({**settings, "CURRENT_TIME_POINT": False}, []).current_time_point is False


def test_timepoint_pair_on_the_command_line_is_one_line_and_writes_nothing(tmp_path, good_models):
    stack = write_tiny_stack(tmp_path / "in.tif")
    result, seconds = run_cli("run", "--input", str(stack), "--model-path", str(good_models),
                              "--all-timepoints", "--timepoint", "5", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: --timepoint 5 contradicts --all-timepoints: --timepoint picks "
                                          "the one time point to segment, --all-timepoints segments every one; "
                                          "give one of the two"]
    assert seconds < TF_FREE_SECONDS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "models"]


# ------------------------------------------------------ commands, help, prog names
def test_stardist_2d_train_help_is_the_train_help(tmp_path):
    result = subprocess.run([sys.executable, str(ENTRY), "train", "--help"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m stardist_v4d train ")
    assert "--images DIR" in result.stdout and "--channel" not in result.stdout
    assert not (tmp_path / "demo_output").exists()


@pytest.mark.parametrize("word, module", [("train", "training.cli"), ("eval", "training.evaluate"),
                                          ("measure", "remeasure")])
def test_command_word_is_handed_to_that_command(word, module, monkeypatch):
    from stardist_v4d import stardist_2d

    calls = []
    target = __import__(f"stardist_v4d.{module}", fromlist=["main"])
    monkeypatch.setattr(target, "main", lambda argv: calls.append(list(argv)) or 7)
    assert stardist_2d.main([word, "--some", "flag"]) == 7
    assert calls == [["--some", "flag"]]


def test_run_word_runs_the_segmentation_with_its_own_prog(capsys):
    from stardist_v4d import stardist_2d

    with pytest.raises(SystemExit) as caught:
        stardist_2d.main(["run", "--overwrit"], prog="stardist_2d.py")
    assert caught.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == "stardist_2d.py run: error: unrecognized arguments: --overwrit"


def test_unknown_first_word_is_an_argparse_error(capsys, tmp_path, monkeypatch):
    from stardist_v4d import stardist_2d

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as caught:
        stardist_2d.main(["segment", "--input", "x.tif"], prog="stardist_2d.py")
    assert caught.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == ("stardist_2d.py: error: unknown command 'segment': the commands are train, eval, measure, "
                       "check, run; a segmentation takes flags only (--input TIFF ...)")
    assert list(tmp_path.iterdir()) == []          # no demo run started either


def test_help_lists_the_other_commands_and_the_installed_command(tmp_path):
    result = subprocess.run([sys.executable, str(ENTRY), "--help"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: stardist_2d.py [--input STACK]")
    for command in ("train", "eval", "measure", "check", "run"):
        assert f"python -m stardist_v4d {command}" in result.stdout
    assert "'stardist-2d'" in result.stdout and "--check" in result.stdout
    assert "'stardist_2d.py train ...' (eval, measure, check) does the same" in result.stdout
    assert "stardist-2d --input stack.tif" in result.stdout


def test_module_run_help_names_the_module_command(tmp_path):
    result, _ = run_cli("run", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m stardist_v4d run [--input STACK]")
    assert "stardist_2d.py [" not in result.stdout
    assert "run train" not in result.stdout and "python -m stardist_v4d train" in result.stdout


@pytest.mark.parametrize("argv0, prog", [("/venv/bin/stardist-2d", "stardist-2d"),
                                         (r"C:\venv\Scripts\stardist-2d.exe", "stardist-2d"),
                                         ("/home/me/my_copy.py", "my_copy.py"),
                                         ("/site-packages/stardist_v4d/__main__.py", "stardist_2d.py"),
                                         ("-c", "stardist_2d.py")])
def test_prog_is_the_name_it_was_called_by(argv0, prog, monkeypatch):
    monkeypatch.setattr(sys, "argv", [argv0.replace("\\", "/")])
    assert build_parser(Config()).prog == prog


def test_module_usage_lists_check(tmp_path):
    result, _ = run_cli(cwd=tmp_path)
    assert result.returncode == 2 and "  check   " in result.stdout


# ------------------------------------------------------------- the run's first line
@pytest.mark.parametrize("changes, expected", [
    ({}, f"channel 0, time point 0, planes bottom-top, model {DEFAULT_MODEL}"),
    (dict(current_time_point=False, first_plane=3, last_plane=10, input_channel=1),
     f"channel 1, all time points, planes 3-10, model {DEFAULT_MODEL}"),
    (dict(time_point=4, first_plane=2), f"channel 0, time point 4, planes 2-top, model {DEFAULT_MODEL}"),
    (dict(first_plane=5, last_plane=5, model_name="mine", model2d_path=Path("/models")),
     "channel 0, time point 0, plane 5, model mine from /models"),
])
def test_first_line_names_input_channel_planes_and_model(changes, expected):
    config = Config(input_path=Path("in.tif"), output_path=Path("out.tif"), **changes)
    assert launch.describe_run(config) == f"Segmenting in.tif: {expected}"


def test_first_line_comes_before_tensorflow_starts_even_when_the_model_then_fails(tmp_path):
    """A config.json that passes every check without TensorFlow but does not fit the weights
    (another U-Net depth): the line is out before TensorFlow is imported, the load error
    afterwards is one line, and nothing is written."""
    models = tmp_path / "models"
    shutil.copytree(DEMO, models / "deeper")
    _config(models / "deeper", unet_n_depth=2)
    stack = write_tiny_stack(tmp_path / "in.tif")
    before = sha256(stack)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = f"""
import sys
class Marker:                                    # prints when TensorFlow is first imported
    seen = False
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" and not Marker.seen:
            Marker.seen = True
            print("<tensorflow starts>", flush=True)
        return None
sys.meta_path.insert(0, Marker())
from stardist_v4d.__main__ import main
sys.exit(main(["run", "--input", {str(stack)!r}, "--output", {str(out_dir / "o.ome.tif")!r},
               "--model-path", {str(models)!r}, "--model", "deeper", "--workers", "0"]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == f"Segmenting {stack}: channel 0, time point 0, planes bottom-top, model deeper from {models}"
    assert "<tensorflow starts>" in out                       # the model did fail in TensorFlow
    err = result.stderr.splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"error: MODEL_NAME (--model) = 'deeper': model folder {models / 'deeper'} could not be loaded ("), err
    assert "copy both from the same model folder" in err[0] and "Traceback" not in result.stderr
    assert list(out_dir.iterdir()) == [] and sha256(stack) == before


# --------------------------------------------------------------- the self-check
class StubSelfcheck(types.ModuleType):
    """Stands in for ``selfcheck.py``: records its calls, returns ``code``."""

    def __init__(self, code: int = 1) -> None:
        super().__init__(SELFCHECK)
        self.calls: list[tuple[dict, list]] = []
        self.code = code

    def main(self, settings, argv):
        self.calls.append((dict(settings), list(argv)))
        print("stub report")
        return self.code


@pytest.fixture
def stub(monkeypatch) -> StubSelfcheck:
    module = StubSelfcheck()
    monkeypatch.setitem(sys.modules, SELFCHECK, module)
    return module


def test_check_flag_hands_the_settings_and_the_other_flags_to_the_self_check(stub, capsys):
    settings = {"INPUT_CHANNEL": -1, "MODEL_NAME": "nowhere"}      # the report judges them, not a run
    assert launch.main(settings, ["--model", "x", "--check", "--input", "in.tif"]) == 1
    assert stub.calls == [(settings, ["--model", "x", "--input", "in.tif"])]
    assert capsys.readouterr().out == "stub report\n"


def test_stardist_2d_check_flag_and_check_word_and_module_command(stub, tmp_path, monkeypatch):
    from stardist_v4d import __main__ as commands, stardist_2d

    monkeypatch.chdir(tmp_path)
    assert stardist_2d.main(["--check"]) == 1
    assert stardist_2d.main(["check", "--model", "demo"]) == 1
    assert commands.main(["check", "--input", "a.tif"]) == 1
    assert [argv for _, argv in stub.calls] == [[], ["--model", "demo"], ["--input", "a.tif"]]
    assert all(settings == stardist_2d.user_settings() for settings, _ in stub.calls)
    assert stub.calls[0][0]["CHECK_ONLY"] is False
    assert list(tmp_path.iterdir()) == []            # nothing written, no demo started


def test_check_only_constant_headless(stub):
    assert launch.main({"CHECK_ONLY": True}, ["--model", "demo"]) == 1
    assert stub.calls == [({"CHECK_ONLY": True}, ["--model", "demo"])]


def test_check_only_inside_the_host_reports_instead_of_running(stub, monkeypatch, capsys):
    from arivis_fakes import Bounds, install, make_context

    arivis = install(monkeypatch)
    arivis.context = make_context(np.zeros((2, 8, 8), np.uint16), Bounds(0, 8, 0, 8, 0, 1, 0))
    source = ENTRY.read_text().replace("CHECK_ONLY = False", "CHECK_ONLY = True")
    assert "CHECK_ONLY = True" in source
    exec(compile(source, "<arivis script>", "exec"), {"__builtins__": __builtins__})
    assert len(stub.calls) == 1
    settings, argv = stub.calls[0]
    assert argv == [] and settings["CHECK_ONLY"] is True and settings["OUTPUT_CH_NAME"] == "StarDist"
    assert arivis.context.output.planes == {}                     # nothing segmented, nothing written
    assert capsys.readouterr().out == "stub report\n"


def test_check_only_that_is_not_true_or_false_is_one_line(stub, monkeypatch, capsys):
    monkeypatch.setattr(launch, "host_for", lambda *a: pytest.fail("a run started"))
    assert launch.run_in_host({"CHECK_ONLY": "yes"}, "operation") == 2
    assert capsys.readouterr().out.splitlines() == [
        "error: CHECK_ONLY (--check) = 'yes' in the settings block of stardist_2d.py: must be True (only check "
        "and report) or False (run)"]
    assert stub.calls == []


def test_missing_selfcheck_module_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, SELFCHECK, None)        # import fails as for a missing file
    assert launch.main({}, ["--check"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: CHECK_ONLY (--check): this installation of stardist-v4d has no selfcheck.py; update it "
        "(pip install -e . in the project folder)"]
