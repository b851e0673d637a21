"""Ctrl+C in a terminal: a command-line run stops, keeps what it wrote, leaves no process, resumes."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from model_factory import tiny_models_dir
from test_resume import SIZE, write_input


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tiny_models_dir(tmp_path_factory, SIZE)


def command_line_run(*flags: str) -> list[str]:
    """The installed command, as a user types it in the output folder (relative paths)."""
    return [sys.executable, "-m", "stardist_v4d", "run", "--input", "in.ome.tif", "--output", "out.ome.tif",
            "--all-timepoints", *flags]


@pytest.mark.skipif(sys.platform == "win32", reason="process groups and SIGINT are POSIX")
def test_ctrl_c_keeps_the_written_planes_ends_every_process_and_the_same_command_resumes(tmp_path, models_dir):
    """Ctrl+C in a terminal sends SIGINT to the whole process group (the run, its workers and the
    workbook's process): the run stops with one line, no traceback, no process left, and
    the same command finishes it to the bytes of a run nobody stopped."""
    import psutil

    flags = ("--model-path", str(models_dir), "--model", "tiny", "--workers", "2")
    undisturbed, stopped = tmp_path / "undisturbed", tmp_path / "stopped"
    undisturbed.mkdir()
    stopped.mkdir()
    shutil.copy2(write_input(undisturbed), stopped / "in.ome.tif")
    done = subprocess.run(command_line_run(*flags), cwd=undisturbed, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    process = subprocess.Popen(command_line_run(*flags), cwd=stopped, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    children = []
    for line in process.stdout:
        if line.startswith("t=0 z=0:"):                     # one plane complete: Ctrl+C
            children = psutil.Process(process.pid).children(recursive=True)
            os.killpg(process.pid, signal.SIGINT)
            break
    rest, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "Interrupted: every plane written so far is kept" in err
    _, alive = psutil.wait_procs(children, timeout=10)     # (multiprocessing's resource tracker ends
    assert children and alive == []                       # when the run's end closes its pipe)
    assert (stopped / "out.ome.tif.partial").exists() and (stopped / "out.ome.tif.journal").exists()
    assert not (stopped / "out.ome.tif").exists() and not (stopped / "out_measurements.xlsx").exists()

    resumed = subprocess.run(command_line_run(*flags), cwd=stopped, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0 and "Resuming: " in resumed.stdout, resumed.stderr[-2000:]
    compared = [p.name for p in undisturbed.iterdir()
                if p.name.startswith("out") and p.suffix in (".tif", ".csv", ".zip")]
    assert {"out.ome.tif", "out_rois.zip", "out_nuclei.csv", "out_objects.csv", "out_tracks.csv"} <= set(compared)
    for name in compared:
        assert (stopped / name).read_bytes() == (undisturbed / name).read_bytes(), name
    assert (stopped / "out_measurements.xlsx").exists()
    leftovers = sorted(p.name for p in stopped.iterdir() if p.suffix in (".partial", ".journal", ".parts", ".lock"))
    assert leftovers == []
