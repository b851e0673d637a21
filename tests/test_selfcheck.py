"""The self-check: one line per check, exit 0 when all is well, 1 naming the first problem."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from stardist_v4d import selfcheck
from stardist_v4d.config import DEFAULT_MODEL, Config, build_config
from stardist_v4d.pipeline.workers import cores
from stardist_v4d.selfcheck import FAIL, INFO, OK, Finding


def report_lines(out: str) -> dict[str, str]:
    """``{check name: whole line}`` of a printed report (header and summary left out)."""
    lines = {}
    for line in out.splitlines():
        match = re.match(r"^(ok|FAIL|--)\s+([^:]+):", line)
        if match:
            lines[match.group(2)] = line
    return lines


def test_demo_model_check_passes_and_prints_every_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)                       # the demo's output folder is the current one
    assert selfcheck.main({}, []) == 0
    out = capsys.readouterr().out
    lines = report_lines(out)
    assert set(lines) == {"python", "packages", "cpu", "settings", "input", "gpu", f"model {DEFAULT_MODEL}",
                          "output folder", "arivis"}
    assert lines["input"].startswith("--") and "demo" in lines["input"]
    assert lines["python"].startswith("ok") and f"{sys.version_info[0]}.{sys.version_info[1]}." in lines["python"]
    for package in ("tensorflow", "stardist", "csbdeep", "numpy", "tifffile"):
        assert re.search(rf"\b{package} \d", lines["packages"]), package
    assert f"{cores()} cores" in lines["cpu"]
    assert all(f"{flag} yes" in lines["cpu"] or f"{flag} no" in lines["cpu"] or "unknown" in lines["cpu"]
               for flag in ("AVX2", "FMA", "AVX512F", "AVX512_BF16"))
    assert lines["gpu"].startswith("ok") and "TensorFlow" in lines["gpu"]
    model = re.search(r"loads in [\d.]+ s.*256 x 256 generated plane -> (\d+) nuclei \((\d+) drawn\) in [\d.]+ s",
                      lines[f"model {DEFAULT_MODEL}"])
    assert lines[f"model {DEFAULT_MODEL}"].startswith("ok") and model and int(model.group(1)) > 0
    assert lines["output folder"].startswith("ok") and str(tmp_path) in lines["output folder"]
    assert "writable" in lines["output folder"] and " free" in lines["output folder"]
    assert lines["arivis"].startswith("--") and "not installed" in lines["arivis"]
    assert out.splitlines()[-1] == "no problems: ready to run"
    assert list(tmp_path.iterdir()) == []             # writes nothing, the probe's file is gone


def test_unknown_model_fails_in_the_last_line_before_tensorflow_starts(tmp_path):
    code = ("import sys; from stardist_v4d import selfcheck; "
            "rc = selfcheck.main({}, ['--model', 'nope']); "
            "print('tensorflow' in sys.modules, file=sys.stderr); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    last = done.stdout.splitlines()[-1]
    assert last.startswith("1 problem: ") and "'nope'" in last and "MODEL_NAME (--model)" in last
    assert "FAIL  settings:" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "False"   # TensorFlow never imported


def test_models_folder_without_the_model_fails_without_loading_anything(tmp_path, monkeypatch, capsys):
    def must_not_run(config):
        raise AssertionError("TensorFlow checks must not run on invalid settings")

    monkeypatch.setattr(selfcheck, "check_gpus", must_not_run)
    monkeypatch.setattr(selfcheck, "check_model", must_not_run)
    (tmp_path / "other").mkdir()
    assert selfcheck.main({"MODEL2D_PATH": tmp_path}, []) == 1          # the default MODEL_NAME is not there
    out = capsys.readouterr().out
    assert "FAIL  settings:" in out and "not checked" in out
    assert out.splitlines()[-1].startswith("1 problem: settings: MODEL_NAME") and f"'{DEFAULT_MODEL}'" in out.splitlines()[-1]
    assert str(tmp_path / DEFAULT_MODEL) in out.splitlines()[-1]


def test_unwritable_output_folder_fails_naming_the_folder(tmp_path, monkeypatch):
    folder = tmp_path / "read_only"
    folder.mkdir()
    (folder / "stack.tif").write_bytes(b"")
    config = build_config({}, ["--input", str(folder / "stack.tif")])
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):              # root writes anyway: make the probe meet a refusal
            def refused(where):
                raise PermissionError(13, "Permission denied", str(where))
            monkeypatch.setattr(selfcheck, "probe_write", refused)
        finding = selfcheck.check_output_folder(config)
    finally:
        folder.chmod(0o700)
    assert finding.failed and finding.name == "output folder"
    assert finding.detail == f"{folder} is not writable (Permission denied)"
    assert selfcheck.summary([finding]) == f"1 problem: output folder: {folder} is not writable (Permission denied)"


def test_write_probe_writes_in_the_folder_and_leaves_nothing(tmp_path, monkeypatch):
    (tmp_path / "keep.txt").write_text("mine")
    (tmp_path / "stack.tif").write_bytes(b"0" * 1000)
    created = []
    real_mkstemp = tempfile.mkstemp

    def spy(**kwargs):
        handle, name = real_mkstemp(**kwargs)
        created.append(Path(name))
        return handle, name

    monkeypatch.setattr(tempfile, "mkstemp", spy)
    finding = selfcheck.check_output_folder(build_config({}, ["--input", str(tmp_path / "stack.tif")]))
    assert finding.status == OK and f"{tmp_path} is writable" in finding.detail
    assert len(created) == 1 and created[0].parent == tmp_path and not created[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "stack.tif"]


def test_too_little_free_space_for_the_input_is_a_failure(tmp_path, monkeypatch):
    (tmp_path / "stack.tif").write_bytes(b"0" * 5000)
    monkeypatch.setattr(selfcheck.shutil, "disk_usage", lambda path: SimpleNamespace(free=4000))
    finding = selfcheck.check_output_folder(build_config({}, ["--input", str(tmp_path / "stack.tif")]))
    assert finding.failed and "only 3.9 KB free" in finding.detail and "4.9 KB" in finding.detail


def test_output_folder_is_that_of_output_else_input_else_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert selfcheck.output_folder(Config(output_path=Path("/data/out/x.ome.tif"),
                                          input_path=Path("/data/in/x.tif"))) == Path("/data/out")
    assert selfcheck.output_folder(Config(input_path=Path("/data/in/x.tif"))) == Path("/data/in")
    assert selfcheck.output_folder(Config(output_path=Path("x.tif"))) == tmp_path
    assert selfcheck.output_folder(Config()) == tmp_path


def test_arivis_line_says_not_installed_here_and_which_modules_import_in_the_host():
    here = selfcheck.check_arivis()
    assert here.status == INFO and here.detail.startswith("not installed")
    host = selfcheck.check_arivis(lambda name: object())
    assert host.status == OK and host.detail == "arivis, arivis_operation, arivis_core, arivis_objects import"

    def script_editor(name):
        if name == "arivis_operation":
            raise ImportError(name)
        return object()

    partial = selfcheck.check_arivis(script_editor)
    assert not partial.failed and "arivis_operation not" in partial.detail


def test_cpu_instruction_sets_from_proc_cpuinfo_and_unknown_elsewhere(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f\n\nprocessor\t: 1\n")
    linux = selfcheck.check_cpu(cpuinfo, "linux")
    assert linux.status == OK and "AVX2 yes, FMA yes, AVX512F yes, AVX512_BF16 no; PRECISION 'bf16': " in linux.detail
    assert linux.detail.startswith(f"{cores()} cores")
    mac = selfcheck.check_cpu(cpuinfo, "darwin")
    assert mac.status == OK and "instruction sets unknown" in mac.detail


def test_cpu_line_says_whether_bf16_is_native(monkeypatch):
    from stardist_v4d.pipeline.backends import engine
    monkeypatch.setattr(engine, "cpu_has_bf16", lambda: False)
    assert selfcheck.bf16_line() == "PRECISION 'bf16': not native here: runs as fp32"
    monkeypatch.setattr(engine, "cpu_has_bf16", lambda: True)
    assert selfcheck.bf16_line() == "PRECISION 'bf16': native (OpenVINO)"


def test_missing_package_is_a_failure_naming_it():
    finding = selfcheck.check_packages(lambda name: None if name == "stardist" else "1.0")
    assert finding.failed and finding.detail.startswith("not installed: stardist ") and "numpy 1.0" in finding.detail
    assert selfcheck.check_packages(lambda name: "1.0").status == OK
    without = selfcheck.check_packages(lambda name: None if name == "openvino" else "1.0")
    assert without.status == OK and "no openvino (for PRECISION 'bf16')" in without.detail


def test_summary_counts_problems_and_names_the_first():
    findings = [Finding(OK, "python", "3.11"), Finding(FAIL, "model x", "broken"),
                Finding(INFO, "arivis", "not installed"), Finding(FAIL, "output folder", "full")]
    assert selfcheck.summary(findings) == "2 problems, the first: model x: broken"
    assert selfcheck.summary(findings[:1] + findings[2:3]) == "no problems: ready to run"


def test_a_check_that_breaks_is_a_finding_not_a_traceback(monkeypatch):
    monkeypatch.delenv("STARDIST_V4D_DEBUG", raising=False)

    def broken():
        raise RuntimeError("no driver\nmore text")

    finding = selfcheck._guarded(broken, "gpu")
    assert finding == Finding(FAIL, "gpu", "check failed: RuntimeError: no driver")
    monkeypatch.setenv("STARDIST_V4D_DEBUG", "1")
    with pytest.raises(RuntimeError):
        selfcheck._guarded(broken, "gpu")


def test_lines_are_aligned():
    short, long = Finding(OK, "cpu", "2 cores").line(16), Finding(FAIL, "model nope", "broken").line(16)
    assert short.startswith("ok    cpu: ") and long.startswith("FAIL  model nope: ")
    assert short.index("2 cores") == long.index("broken") == 6 + 16 + 1


@pytest.mark.parametrize("flags, words", [
    (["--channel", "5"], ["INPUT_CHANNEL (--channel) = 5", "2 channel(s) (valid: 0-1)"]),
    (["--first-plane", "9"], ["FIRST_PLANE (--first-plane) = 9", "3 Z plane(s) (valid: 0-2, or -1)"]),
])
def test_check_with_an_input_refuses_what_the_run_would_refuse(tmp_path, flags, words):
    import numpy as np
    import tifffile
    source = tmp_path / "in.ome.tif"
    tifffile.imwrite(source, np.zeros((1, 3, 2, 32, 32), np.uint16), ome=True, metadata={"axes": "TZCYX"})
    config = build_config({}, ["--input", str(source), *flags])          # valid as settings alone
    finding = selfcheck.check_input(config)
    assert finding.status == FAIL and all(w in finding.detail for w in words), finding.detail
    fine = selfcheck.check_input(build_config({}, ["--input", str(source), "--channel", "1"]))
    assert fine.status == OK and "1 T x 3 Z x 2 C of 32 x 32 uint16; segments channel 1, planes 0-2" in fine.detail
