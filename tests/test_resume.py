"""Nothing lost, nothing mixed: resume after kill -9, one writer per output, a full disk.

The killed runs are real processes killed with SIGKILL (no clean-up of any kind runs);
the rerun must give the same bytes as a run that was never disturbed.
"""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from model_factory import tiny_models_dir
from stardist_v4d.host_api.base import HostError
from stardist_v4d.host_api.output_lock import OutputLock, OutputLocked
from stardist_v4d.training.synthetic import synthetic_nuclei

SIZE = 64
OUTPUTS = ("out.ome.tif", "out_rois.zip", "out_nuclei.csv", "out_planes.csv", "out_objects.csv",
           "out_spots.csv", "out_tracks.csv")

SCRIPT = """
import os, sys
from pathlib import Path
from stardist_v4d.config import Config
from stardist_v4d.host_api.tiff import TiffHost
from stardist_v4d.pipeline.run import run
models, kill_at, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]   # run in the output folder
extra = dict(arg.split("=", 1) for arg in sys.argv[4:])
committed = rewritten = 0

class Killed(TiffHost):
    def commit_plane(self, t, z, nuclei, state):
        global committed
        committed += 1
        if mode == "before-commit" and committed == kill_at:   # labels, rows, outlines written
            os.kill(os.getpid(), 9)
        super().commit_plane(t, z, nuclei, state)
        if mode == "after-commit" and committed == kill_at:
            os.kill(os.getpid(), 9)

    def write_plane(self, channel, t, z, labels):
        global rewritten
        if mode == "in-relabel" and len(self.completed_planes()) + committed == 9:   # track_t's last pass
            rewritten += 1
            if rewritten == kill_at:                # a torn write: the top half only, then killed
                torn = self.read_output_plane(t, z)
                torn[: len(torn) // 2] = labels[: len(torn) // 2]
                super().write_plane(channel, t, z, torn)
                os.kill(os.getpid(), 9)
        super().write_plane(channel, t, z, labels)

    def _closing_target(self, completed):
        if completed and mode == "before-rename":   # tables and outlines written, output not yet in place
            os.kill(os.getpid(), 9)
        target = super()._closing_target(completed)
        if completed and mode == "after-rename":    # output in place, journal gone, .partial tables left
            os.kill(os.getpid(), 9)
        return target

config = Config(model2d_path=models, model_name="tiny", input_path=Path("in.ome.tif"),
                output_path=Path("out.ome.tif"), current_time_point=False, workers=0,
                label_ids=extra.get("label_ids", "track_t"), plots=False,
                overwrite=extra.get("overwrite") == "1")
with Killed(config.input_path, config.output_path, overwrite=config.overwrite,
            show_progress=False) as host:
    summary = run(config, host)
print("COMPLETED" if summary.completed else "STOPPED")
"""


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tiny_models_dir(tmp_path_factory, SIZE)


def write_input(folder: Path) -> Path:
    """TZCYX, 3 time points x 3 planes x 2 channels: 9 planes to kill a run in."""
    rng = np.random.default_rng(11)
    stack = np.zeros((3, 3, 2, SIZE, SIZE), np.uint16)
    for t in range(3):
        for z in range(3):
            image, labels = synthetic_nuclei((SIZE, SIZE), rng)
            stack[t, z, 0] = image / image.max() * 50000
            stack[t, z, 1] = 100 + 800 * (labels > 0)
    path = folder / "in.ome.tif"
    tifffile.imwrite(path, stack, ome=True, photometric="minisblack",
                     metadata={"axes": "TZCYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
    return path


def segment(folder: Path, models: Path, kill_at: int = 0, mode: str = "none", **extra):
    """The same command in ``folder`` (relative paths, as a user reruns it), killed at ``kill_at``."""
    args = [f"{k}={v}" for k, v in extra.items()]
    return subprocess.run([sys.executable, "-c", SCRIPT, str(models), str(kill_at), mode, *args],
                          capture_output=True, text=True, timeout=300, cwd=folder)


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory, models_dir):
    """The bytes of a run nobody stopped (run in its own folder, then moved aside)."""
    folder = tmp_path_factory.mktemp("undisturbed")
    write_input(folder)
    done = segment(folder, models_dir)
    assert "COMPLETED" in done.stdout, done.stderr[-3000:]
    return {name: (folder / name).read_bytes() for name in OUTPUTS}, folder / "in.ome.tif"


# seeded choice of where to kill: the same cases on every run of the suite; one inside a time
# point (its objects are rebuilt from the written planes), one in track_t's rewrite of the channel
CASES = random.Random(13).sample([(k, m) for k in range(1, 9) for m in ("before-commit", "after-commit")], 3) \
    + [(4, "after-commit"), (5, "in-relabel"), (0, "before-rename")]


@pytest.mark.parametrize("kill_at, mode", CASES)
def test_a_run_killed_after_k_planes_resumes_to_the_same_bytes(tmp_path, models_dir, undisturbed,
                                                                kill_at, mode):
    reference, source = undisturbed
    shutil.copy2(source, tmp_path / "in.ome.tif")              # same bytes, same mtime
    killed = segment(tmp_path, models_dir, kill_at, mode)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (tmp_path / "out.ome.tif.partial").exists() and not (tmp_path / "out.ome.tif").exists()
    resumed = segment(tmp_path, models_dir)
    assert "COMPLETED" in resumed.stdout, resumed.stderr[-3000:]
    done = {"after-commit": kill_at, "before-commit": kill_at - 1, "in-relabel": 9, "before-rename": 9}[mode]
    if done:
        assert f"Resuming: {done} of 9 planes already done." in resumed.stdout
    for name in OUTPUTS:
        assert (tmp_path / name).read_bytes() == reference[name], name
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".partial", ".journal", ".parts", ".lock"))
    assert leftovers == []


def test_a_rerun_with_other_settings_refuses_to_mix_and_overwrite_starts_afresh(tmp_path, models_dir, undisturbed):
    reference, source = undisturbed
    shutil.copy2(source, tmp_path / "in.ome.tif")
    assert segment(tmp_path, models_dir, 4, "after-commit").returncode == -signal.SIGKILL
    other = segment(tmp_path, models_dir, label_ids="unique")
    assert other.returncode != 0
    assert "holds 4 complete plane(s) of a run with other settings or input: LABEL_IDS was 'track_t', " \
           "now 'unique'" in other.stderr
    fresh = segment(tmp_path, models_dir, overwrite=1)
    assert "COMPLETED" in fresh.stdout and "Resuming" not in fresh.stdout
    assert (tmp_path / "out_nuclei.csv").read_bytes() == reference["out_nuclei.csv"]


def test_a_changed_input_refuses_to_mix(tmp_path, models_dir, undisturbed):
    _, source = undisturbed
    shutil.copy2(source, tmp_path / "in.ome.tif")
    assert segment(tmp_path, models_dir, 2, "after-commit").returncode == -signal.SIGKILL
    os.utime(tmp_path / "in.ome.tif", ns=(1, 1))                      # touched: another file now
    again = segment(tmp_path, models_dir)
    assert again.returncode != 0 and "the input file changed (mtime_ns)" in again.stderr


# --------------------------------------------------------------------- one writer
def test_a_second_lock_on_one_output_is_refused_naming_the_holder(tmp_path):
    first = OutputLock(tmp_path / "out.ome.tif")
    assert first.acquire() is None
    with pytest.raises(OutputLocked, match=rf"out.ome.tif is being written by another run \(pid {os.getpid()}"):
        OutputLock(tmp_path / "out.ome.tif").acquire()
    first.release()
    assert not (tmp_path / "out.ome.tif.lock").exists()
    again = OutputLock(tmp_path / "out.ome.tif")
    assert again.acquire() is None
    again.release()


def test_a_stale_lock_of_a_killed_run_is_taken_over_with_a_line(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / "out.ome.tif.lock").write_text(json.dumps({"pid": pid, "started": time.time() - 60}))
    lock = OutputLock(tmp_path / "out.ome.tif")
    note = lock.acquire()
    assert note.startswith(f"Took over the lock of a run that ended without releasing it (pid {pid}")
    lock.release()


def test_two_concurrent_runs_on_one_output_the_second_stops_at_once(tmp_path, models_dir):
    source = write_input(tmp_path)
    out = tmp_path / "out.ome.tif"
    command = [sys.executable, "-m", "stardist_v4d", "run", "--input", str(source), "--output", str(out),
               "--model-path", str(models_dir), "--model", "tiny", "--all-timepoints", "--workers", "0"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):                     # until the first run holds the lock
            if (tmp_path / "out.ome.tif.lock").exists():
                break
            time.sleep(0.05)
        started = time.monotonic()
        second = subprocess.run(command + ["--overwrite"], capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and time.monotonic() - started < 30
        line = second.stderr.strip()
        assert line.startswith(f"error: {out} is being written by another run (pid {first.pid}") and "\n" not in line
    finally:
        out_first, err_first = first.communicate(timeout=300)
    assert first.returncode == 0, err_first[-2000:]
    assert "Done: 9 of 9 planes" in out_first + err_first
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].shape == (3, 3, 3, SIZE, SIZE)


# ---------------------------------------------------------------------- full disk
def test_a_disk_too_small_fails_at_once_naming_the_need(tmp_path, models_dir, monkeypatch):
    from stardist_v4d.config import Config
    from stardist_v4d.host_api import disk_space
    from stardist_v4d.host_api.tiff import TiffHost
    from stardist_v4d.pipeline.run import run

    source = write_input(tmp_path)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(disk_space.shutil, "disk_usage", lambda path: usage._replace(free=2 ** 19))
    config = Config(model2d_path=models_dir, model_name="tiny", input_path=source,
                    output_path=tmp_path / "out.ome.tif", current_time_point=False, workers=0)
    loaded = []
    monkeypatch.setattr("stardist_v4d.pipeline.run.load_for", lambda *a, **k: loaded.append(1))
    with pytest.raises(HostError, match=r"The output needs 1\.\d MB, 0\.5 MB free on "):
        with TiffHost(source, config.output_path, show_progress=False) as host:
            run(config, host)
    assert not loaded                                                # said before the model loads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ome.tif"]


def test_a_full_disk_mid_run_is_one_line_and_the_rerun_resumes(tmp_path, models_dir, undisturbed, monkeypatch):
    """A write that fails with ENOSPC after 5 planes (the ROI stream's), then space is freed."""
    from stardist_v4d.config import Config
    from stardist_v4d.host_api import imagej_rois
    from stardist_v4d.host_api.tiff import TiffHost
    from stardist_v4d.pipeline.run import run

    reference, source = undisturbed
    shutil.copy2(source, tmp_path / "in.ome.tif")
    monkeypatch.chdir(tmp_path)                       # the same relative paths as the reference
    config = Config(model2d_path=models_dir, model_name="tiny", input_path=Path("in.ome.tif"),
                    output_path=Path("out.ome.tif"), current_time_point=False, workers=0,
                    label_ids="track_t", plots=False)
    append = imagej_rois.RoiSidecar.append
    calls = []

    def filling_up(self, *args):
        calls.append(1)
        if len(calls) == 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        return append(self, *args)

    monkeypatch.setattr(imagej_rois.RoiSidecar, "append", filling_up)
    with pytest.raises(HostError) as error:
        with TiffHost(config.input_path, config.output_path, show_progress=False) as host:
            run(config, host)
    assert "out_rois.zip.parts failed: the disk is full" in str(error.value)
    assert "rerun the same command to resume" in str(error.value) and "\n" not in str(error.value)
    kept = (tmp_path / "out_planes.csv.partial").read_text().splitlines()
    assert len(kept) == 1 + 5                         # the rows of the 5 complete planes only
    monkeypatch.setattr(imagej_rois.RoiSidecar, "append", append)        # space freed
    with TiffHost(config.input_path, config.output_path, show_progress=False) as host:
        summary = run(config, host)
    assert summary.completed
    for name in OUTPUTS:
        assert (tmp_path / name).read_bytes() == reference[name], name


def test_a_real_small_file_system_fails_before_the_first_plane(tmp_path, models_dir):
    """A 256 kB tmpfs (where this machine lets the test mount one): the output cannot fit."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here; the patched tests above cover the logic")
    try:
        source = write_input(tmp_path)
        done = subprocess.run([sys.executable, "-m", "stardist_v4d", "run", "--input", str(source),
                               "--output", str(mount / "out.ome.tif"), "--model-path", str(models_dir),
                               "--model", "tiny", "--all-timepoints"], capture_output=True, text=True, timeout=300)
        line = done.stderr.strip()
        assert done.returncode == 2 and "\n" not in line
        assert line.startswith("error: The output needs 1.") and f"free on {mount}" in line
        assert "Loading network weights" not in done.stdout          # before the model loads
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


# ------------------------------------------------------- failed before the first plane
def test_an_output_that_is_a_folder_stops_before_the_model_loads(tmp_path, models_dir):
    source = write_input(tmp_path)
    (tmp_path / "out.ome.tif").mkdir()
    done = subprocess.run([sys.executable, "-m", "stardist_v4d", "run", "--input", str(source),
                           "--output", str(tmp_path / "out.ome.tif"), "--overwrite",
                           "--model-path", str(models_dir), "--model", "tiny"],
                          capture_output=True, text=True, timeout=120)
    line = done.stderr.strip()
    assert done.returncode == 2 and "\n" not in line and "Traceback" not in done.stderr
    assert line == (f"error: Output {tmp_path / 'out.ome.tif'} is a folder; give a file name ending in "
                    ".ome.tif (the folder is not replaced, even with --overwrite)")
    assert "Loading network weights" not in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ome.tif", "out.ome.tif"]


def test_a_page_that_cannot_be_decoded_leaves_nothing_behind(tmp_path, models_dir):
    """The damage is met while the input channels are copied, after the model loaded."""
    from test_bad_inputs_tiff import corrupt_page

    stack = np.random.default_rng(3).integers(0, 4000, (4, SIZE, SIZE)).astype(np.uint16)
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, stack, imagej=True, compression="zlib", metadata={"axes": "ZYX"})
    bad = corrupt_page(whole, 2, "in.tif")
    whole.unlink()
    before = bad.read_bytes()
    done = subprocess.run([sys.executable, "-m", "stardist_v4d", "run", "--input", str(bad),
                           "--model-path", str(models_dir), "--model", "tiny"],
                          capture_output=True, text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert done.returncode == 2 and "Traceback" not in done.stderr      # (beside the copy's progress bar)
    assert len(errors) == 1 and errors[0].strip().startswith("error: ")
    assert "plane t=0 z=2 cannot be decoded" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"] and bad.read_bytes() == before


# ----------------------------------------------------------- every input layout resumes
def layout_stack(axes: str) -> np.ndarray:
    """A small stack of ``axes`` (T, Z, C of 1-3 each; nuclei in channel 0)."""
    sizes = {"T": 2, "Z": 3, "C": 2, "Y": SIZE, "X": SIZE}
    rng = np.random.default_rng(3)
    zyx = np.stack([synthetic_nuclei((SIZE, SIZE), rng)[0] for _ in range(6)]) * 50000
    stack = np.zeros([sizes[a] for a in axes], np.uint16)
    planes = [(t, z) for t in range(sizes["T"] if "T" in axes else 1) for z in range(sizes["Z"] if "Z" in axes else 1)]
    for k, (t, z) in enumerate(planes):
        index = tuple({"T": t, "Z": z, "C": 0}.get(a, slice(None)) for a in axes)
        stack[index] = zyx[k]
    return stack


@pytest.mark.parametrize("axes", ["ZYX", "TYX", "ZCYX", "TCYX", "TZCYX"])
def test_a_stopped_run_resumes_on_every_tiff_layout(tmp_path, models_dir, axes):
    """One time point or one plane (an ImageJ ZYX stack, a TYX one): the .partial reopens and resumes."""
    from stardist_v4d.config import Config
    from stardist_v4d.pipeline.run import run
    from test_pipeline import StopAfter
    from stardist_v4d.host_api.tiff import TiffHost

    source = tmp_path / "in.ome.tif"
    tifffile.imwrite(source, layout_stack(axes), ome=True, photometric="minisblack", metadata={"axes": axes})
    outputs = {}
    for name, stops in (("undisturbed", None), ("resumed", 1)):
        target = tmp_path / f"{name}.ome.tif"
        config = Config(model2d_path=models_dir, model_name="tiny", input_path=source, output_path=target,
                        current_time_point=False, workers=0, plots=False, label_ids="unique")
        if stops is not None:
            first = run(config, StopAfter(source, target, planes=stops, show_progress=False))
            assert not first.completed and first.planes_done == stops
        with TiffHost(source, target, show_progress=False) as host:
            summary = run(config, host)
        assert summary.completed
        outputs[name] = tifffile.imread(target)
    np.testing.assert_array_equal(outputs["resumed"], outputs["undisturbed"])


def test_a_full_disk_at_closing_leaves_no_lock_behind(tmp_path, monkeypatch):
    """The output's last flush fails (ENOSPC): the error propagates, the lock file is gone."""
    from stardist_v4d.host_api.tiff import TiffHost
    source = write_input(tmp_path)
    host = TiffHost(source, tmp_path / "out.ome.tif", show_progress=False)
    assert (tmp_path / "out.ome.tif.lock").exists()

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(host, "_close_output", full)
    with pytest.raises(OSError):
        host.close()
    assert not (tmp_path / "out.ome.tif.lock").exists()
    OutputLock(tmp_path / "out.ome.tif").acquire()           # the next run gets in


def test_a_run_killed_just_after_its_output_is_in_place_has_lost_nothing(tmp_path, models_dir, undisturbed):
    """Tables and outlines are written before the output is renamed: after it, every file is there."""
    reference, source = undisturbed
    shutil.copy2(source, tmp_path / "in.ome.tif")
    killed = segment(tmp_path, models_dir, 0, "after-rename")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    for name in OUTPUTS:
        assert (tmp_path / name).read_bytes() == reference[name], name
    again = segment(tmp_path, models_dir)                    # complete: a rerun says it exists
    assert again.returncode != 0 and "out.ome.tif already exists" in again.stderr
