"""How the entry script knows where it runs: executed starts a run, imported never does."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from arivis_fakes import Bounds, install, make_context
from model_factory import make_tiny_model
from stardist_v4d.config import DEFAULT_MODEL
from stardist_v4d.training.synthetic import synthetic_nuclei

ENTRY = Path(__file__).resolve().parents[1] / "stardist_2d.py"


def test_importing_the_entry_script_starts_nothing_and_never_imports_arivis(tmp_path):
    fake = tmp_path / "fakes" / "arivis"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("open(__file__ + '.imported', 'w').close()\n")
    code = "import stardist_v4d.stardist_2d as s; print(sorted(s.user_settings()))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={"PYTHONPATH": str(tmp_path / "fakes"), "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert "CURRENT_TIME_POINT" in result.stdout
    assert not (fake / "__init__.py.imported").exists()
    assert not (tmp_path / "demo_output").exists()


def test_host_executing_the_file_without_name_runs_the_operation_route(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(1)
    stack = np.stack([synthetic_nuclei((48, 48), rng)[0] for _ in range(3)])
    stack = (stack / stack.max() * 60000).astype(np.uint16)
    make_tiny_model(tmp_path, "tiny", probe=stack[0])
    arivis = install(monkeypatch)
    arivis.context = make_context(stack, Bounds(x1=0, x2=48, y1=0, y2=48, z1=0, z2=2, t1=0))
    source = ENTRY.read_text()
    source = source.replace('MODEL2D_PATH = None', f'MODEL2D_PATH = {str(tmp_path)!r}')
    source = source.replace(f'MODEL_NAME = "{DEFAULT_MODEL}"', 'MODEL_NAME = "tiny"')
    exec(compile(source, "<arivis script>", "exec"), {"__builtins__": __builtins__})
    assert sorted(key[0] for key in arivis.context.output.planes) == [0, 1, 2]
    assert arivis.context.progress[-1] == 100
    assert "Done: 3 of 3 planes" in capsys.readouterr().out


def test_user_error_inside_the_host_is_one_console_line(tmp_path, monkeypatch, capsys):
    install(monkeypatch).context = make_context(np.zeros((1, 8, 8), np.uint16),
                                                Bounds(0, 8, 0, 8, 0, 0, 0))
    source = ENTRY.read_text().replace("INPUT_CHANNEL = 0", "INPUT_CHANNEL = -1")
    exec(compile(source, "<arivis script>", "exec"), {"__builtins__": __builtins__})
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["error: INPUT_CHANNEL (--channel) = -1: must be a channel index 0, 1, 2, ..."]


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"]])
def test_module_command_runs_the_same_entry(argv):
    result = subprocess.run([sys.executable, "-m", "stardist_v4d", *argv], capture_output=True, text=True)
    assert result.returncode == 0
    assert "run" in result.stdout


def test_end_process_finishes_what_a_normal_exit_would_then_skips_the_teardown(tmp_path):
    """``end_process`` (the command line's exit): non-daemon threads finish, ``atexit`` handlers
    run, buffered output is flushed, the code is kept; module teardown (``__del__`` at the
    interpreter's end, TensorFlow's second) is skipped."""
    script = tmp_path / "ending.py"
    script.write_text(f"""
import atexit, sys, threading, time
from pathlib import Path
from stardist_v4d.process_exit import end_process
out = Path({str(tmp_path)!r})
atexit.register(lambda: (out / "atexit").write_text("ran"))
threading.Thread(target=lambda: (time.sleep(0.3), (out / "thread").write_text("done"))).start()
class Teardown:
    def __del__(self):
        (out / "teardown").write_text("ran")
kept = Teardown()
sys.stdout.write("buffered, no newline")
sys.stderr.write("to stderr")
end_process(3)
""")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert result.returncode == 3
    assert result.stdout == "buffered, no newline" and result.stderr == "to stderr"
    assert (tmp_path / "atexit").read_text() == "ran" and (tmp_path / "thread").read_text() == "done"
    assert not (tmp_path / "teardown").exists()


def test_end_process_stops_an_idle_thread_pool_as_a_normal_exit_does(tmp_path):
    """A ThreadPoolExecutor left open (its threads are not daemons) must not keep the process alive."""
    code = ("from concurrent.futures import ThreadPoolExecutor\n"
            "from stardist_v4d.process_exit import end_process\n"
            "pool = ThreadPoolExecutor(1); pool.submit(print, 'job ran')\n"
            "end_process(0)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "job ran\n"
