"""What goes wrong around the segmentation: a killed run's workers, NaN and inf in planes.

Workers must not outlive a run that was killed (``kill -9``: no shutdown ever reaches
them). Non-finite pixels are no data: percentiles ignore them, the CNN sees background
there and the labels are 0; planes without any stay bit-identical to plain
``normalize`` (the parity promise).
"""
from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from csbdeep.utils import normalize, normalize_mi_ma

from model_factory import tiny_models_dir
from stardist_v4d.pipeline.normalization import (BackgroundFilled, PlaneNormalizer, StackNormalizer,
                                                 non_finite_count, stack_percentiles)
from stardist_v4d.pipeline.predict import instances, predict_sparse
from stardist_v4d.training.synthetic import synthetic_nuclei

SIZE = 64
PATCH = (slice(20, 30), slice(24, 34))      # 10 x 10 NaN
INF = (5, 50)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tiny_models_dir(tmp_path_factory, SIZE)


@pytest.fixture(scope="module")
def model(models_dir):
    from stardist.models import StarDist2D
    return StarDist2D(None, name="tiny", basedir=str(models_dir))


def nuclei_plane(seed: int = 1, shape=(SIZE, SIZE)) -> np.ndarray:
    return (synthetic_nuclei(shape, np.random.default_rng(seed))[0] * 1000).astype(np.float32)


def with_holes(plane: np.ndarray) -> np.ndarray:
    plane = plane.copy()
    plane[PATCH] = np.nan
    plane[INF] = np.inf
    return plane


# --- killed runs ---------------------------------------------------------------------------

CHILD = """
import json, multiprocessing, time
from multiprocessing import resource_tracker
from stardist_v4d.pipeline.workers import PendingPool

if __name__ == "__main__":
    pending = PendingPool(2)
    assert pending.ready(print) is not None
    workers = [p.pid for p in multiprocessing.active_children()]
    tracker = getattr(resource_tracker._resource_tracker, "_pid", None)
    print(json.dumps({"workers": workers, "tracker": tracker}), flush=True)
    time.sleep(600)
"""


def alive(pid: int) -> bool:
    """Running (a zombie, which nobody reaped yet, counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return True


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_workers_and_resource_tracker_end_soon_after_their_run_is_killed(tmp_path):
    script = tmp_path / "killed_run.py"
    script.write_text(textwrap.dedent(CHILD))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    survivors: list[int] = []
    try:
        ready, _, _ = select.select([child.stdout], [], [], 180)
        line = child.stdout.readline() if ready else ""
        assert line, f"no worker pids from the child (exit code {child.poll()})"
        started = json.loads(line)
        pids = started["workers"] + ([started["tracker"]] if started["tracker"] else [])
        assert len(started["workers"]) == 2 and all(alive(pid) for pid in pids)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(pid) for pid in pids):
            time.sleep(0.1)
        survivors = [pid for pid in pids if alive(pid)]
        assert not survivors, f"still alive 10 s after their parent was killed: {survivors} of {started}"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()           # the tracker's "leaked semaphore" warning goes here
        for pid in survivors:                  # never leave them behind for the next test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- non-finite pixels ---------------------------------------------------------------------

def test_non_finite_count_counts_nan_and_inf_and_skips_integers():
    plane = with_holes(nuclei_plane())
    plane[0, 0] = -np.inf
    assert non_finite_count(plane) == 102
    assert non_finite_count(plane.astype(np.float64)) == 102
    assert non_finite_count(nuclei_plane()) == 0
    assert non_finite_count(np.zeros((8, 8), np.uint16)) == 0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_finite_planes_normalize_bit_identically_to_csbdeep(dtype):
    plane = nuclei_plane()
    if np.dtype(dtype).kind == "u":
        plane = (plane / plane.max() * np.iinfo(dtype).max * 0.9).astype(dtype)
    else:
        plane = plane.astype(dtype)
    expected = normalize(plane, 1, 99.8)
    got = PlaneNormalizer(1, 99.8)(plane)
    assert type(got) is np.ndarray and got.dtype == expected.dtype
    assert got.tobytes() == expected.tobytes()
    mi, ma = PlaneNormalizer(1, 99.8).limits(plane)
    assert mi.shape == ma.shape == (1, 1)
    assert normalize_mi_ma(plane, mi, ma).tobytes() == expected.tobytes()
    stacked = StackNormalizer(3.5, 700.25)(plane)
    assert type(stacked) is np.ndarray
    assert stacked.tobytes() == normalize_mi_ma(plane.astype(np.float32), 3.5, 700.25).tobytes()


@pytest.mark.parametrize("settings", [dict(), dict(scale=0.6)])
@pytest.mark.parametrize("mode", ["plane", "stack"])
def test_non_finite_pixels_are_background_and_the_rest_is_unchanged(model, mode, settings):
    plane = nuclei_plane()
    holed = with_holes(plane)
    finite = np.isfinite(holed)
    mi, ma = np.percentile(plane[finite], [1, 99.8])
    normalizer = StackNormalizer(mi, ma) if mode == "stack" else PlaneNormalizer(1, 99.8)
    # the same plane with its holes filled by the low percentile, normalized by the same mi/ma
    filled = plane.copy()
    filled[~finite] = mi
    expected, _ = model.predict_instances(normalize_mi_ma(filled, mi, ma), show_tile_progress=False,
                                          **settings)
    image = normalizer(holed)
    assert isinstance(image, BackgroundFilled) and np.isfinite(image).all()
    assert np.array_equal(image, normalize_mi_ma(filled, mi, ma))
    labels, details = instances(predict_sparse(model, image, **settings))
    assert labels.shape == plane.shape and expected.max() > 0
    assert not labels[~finite].any()
    np.testing.assert_array_equal(labels[finite], expected[finite])
    assert len(details["prob"]) > 0


def test_a_plane_of_nothing_but_nan_is_all_background(model):
    image = PlaneNormalizer(1, 99.8)(np.full((SIZE, SIZE), np.nan, np.float32))
    assert np.all(np.asarray(image) == 0)
    labels, _ = instances(predict_sparse(model, image))
    assert not labels.any()


def test_limits_ignore_non_finite_pixels():
    plane = nuclei_plane()
    holed = with_holes(plane)
    finite = np.isfinite(holed)
    mi, ma = PlaneNormalizer(1, 99.8).limits(holed)
    assert mi.shape == ma.shape == (1, 1) and np.isfinite(mi).all() and np.isfinite(ma).all()
    np.testing.assert_array_equal([mi.item(), ma.item()], np.percentile(plane[finite], [1, 99.8]))
    blocks = normalize_mi_ma(holed, mi, ma)            # what tiling.predict_blocks computes
    np.testing.assert_array_equal(blocks[finite], np.asarray(PlaneNormalizer(1, 99.8)(holed))[finite])


def test_stack_percentiles_ignore_non_finite_pixels():
    planes = [nuclei_plane(seed) for seed in range(3)]
    expected = np.percentile(np.concatenate([p.ravel() for p in planes]), [1, 99.8])
    holed = [with_holes(p) if z != 1 else p for z, p in enumerate(planes)]
    finite = np.concatenate([np.isfinite(p).ravel() for p in holed])
    without = np.percentile(np.concatenate([p.ravel() for p in planes])[finite], [1, 99.8])
    steps = [(0, z) for z in range(3)]
    mi, ma = stack_percentiles(lambda t, z: holed[z], steps, 1, 99.8)
    assert np.isfinite([mi, ma]).all()
    assert (mi, ma) == (float(without[0]), float(without[1]))
    assert stack_percentiles(lambda t, z: planes[z], steps, 1, 99.8) == tuple(map(float, expected))
    with pytest.raises(ValueError, match="finite"):
        stack_percentiles(lambda t, z: np.full((8, 8), np.nan, np.float32), steps, 1, 99.8)


@pytest.mark.parametrize("normalize_mode, workers", [("plane", 0), ("stack", 2)])
def test_run_with_a_nan_patch_segments_every_plane(tmp_path, models_dir, model, normalize_mode, workers,
                                                   capsys):
    from test_pipeline import expected_labels, segment
    stack = np.stack([nuclei_plane(seed) for seed in range(3)])
    stack[0][PATCH] = np.nan
    stack[0][INF] = np.inf
    summary, out = segment(tmp_path, stack, "ZYX", models_dir, normalize=normalize_mode,
                           workers=workers)
    assert ("2 worker process(es)" in capsys.readouterr().out) == (workers == 2)   # masks sent along
    assert summary.completed and all(summary.nuclei_per_plane[(0, z)] > 0 for z in range(3))
    labels = out[0, :, 1]
    assert not labels[0][PATCH].any() and labels[0][INF] == 0
    if normalize_mode == "plane":              # planes without NaN: exactly as before
        for z in (1, 2):
            np.testing.assert_array_equal(labels[z], expected_labels(model, stack[z]))


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_worker_killed_mid_run_is_finished_in_the_process_with_the_same_labels(tmp_path, models_dir, capsys):
    """No BrokenProcessPool traceback: the run completes, says so in one line, labels as with WORKERS = 0."""
    import multiprocessing

    import tifffile
    from stardist_v4d.config import Config
    from stardist_v4d.host_api.tiff import TiffHost
    from stardist_v4d.pipeline.run import run

    class KillsWorkers(TiffHost):
        def commit_plane(self, t, z, nuclei, state):
            super().commit_plane(t, z, nuclei, state)
            if z == 1:                                        # after the second plane: the pool dies
                for process in multiprocessing.active_children():
                    os.kill(process.pid, signal.SIGKILL)

    stack = np.stack([nuclei_plane(seed) for seed in range(6)]).astype(np.uint16)
    source = tmp_path / "in.ome.tif"
    tifffile.imwrite(source, stack, ome=True, photometric="minisblack", metadata={"axes": "ZYX"})
    labels = {}
    for workers, host in ((0, TiffHost), (1, KillsWorkers)):
        target = tmp_path / f"out{workers}.ome.tif"
        config = Config(model2d_path=models_dir, model_name="tiny", input_path=source, output_path=target,
                        workers=workers, measure=False, write_objects=False)
        summary = run(config, host(source, target, show_progress=False))
        assert summary.completed and summary.planes_done == 6
        labels[workers] = tifffile.imread(target)[:, -1]
    said = capsys.readouterr().out
    assert "1 worker process(es) post-process beside the CNN" in said
    assert said.count("A worker process stopped (killed, or out of memory): post-processing goes on in this "
                      "process from plane t=0 z=") == 1
    np.testing.assert_array_equal(labels[1], labels[0])


def test_a_wait_for_a_worker_ends_when_a_worker_has_died():
    """A worker killed while it sends its result leaves CPython's pool waiting forever; the run's
    wait checks the workers itself and breaks the pool as soon as one is dead."""
    import threading
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from stardist_v4d.pipeline.stream import result_while_workers_live

    class Process:
        def __init__(self, alive: bool) -> None:
            self.alive = alive

        def is_alive(self) -> bool:
            return self.alive

    class Pool:
        def __init__(self, *alive: bool) -> None:
            self._processes = {k: Process(a) for k, a in enumerate(alive)}

    with pytest.raises(BrokenProcessPool):
        result_while_workers_live(Future(), Pool(True, False), check_s=0.05)    # never answered, one dead
    later = Future()
    threading.Timer(0.2, later.set_result, args=("labels",)).start()
    assert result_while_workers_live(later, Pool(True, True), check_s=0.05) == "labels"


@pytest.mark.parametrize("fails", [False, True])
def test_a_run_leaves_no_process_and_no_pool_closing_behind(tmp_path, models_dir, fails):
    """Workers and the workbook's process have exited when ``run`` returns or raises: a pool
    still closing at the process's exit can fail CPython 3.11's exit-time wake-up with EBADF
    (a command-line run that failed cleanly then exited 1 with a traceback, seen in CI)."""
    import multiprocessing
    import threading
    from concurrent.futures.process import _ExecutorManagerThread

    import tifffile
    from stardist_v4d.config import Config
    from stardist_v4d.host_api.base import HostError
    from stardist_v4d.host_api.tiff import TiffHost
    from stardist_v4d.pipeline.run import run

    class FailsAtZ2(TiffHost):
        def commit_plane(self, t, z, nuclei, state):
            if fails and z == 2:
                raise HostError("plane t=0 z=2 cannot be written")
            super().commit_plane(t, z, nuclei, state)

    stack = np.stack([nuclei_plane(seed) for seed in range(4)]).astype(np.uint16)
    source = tmp_path / "in.ome.tif"
    tifffile.imwrite(source, stack, ome=True, photometric="minisblack", metadata={"axes": "ZYX"})
    config = Config(model2d_path=models_dir, model_name="tiny", input_path=source,
                    output_path=tmp_path / "out.ome.tif", workers=2)
    def managers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if isinstance(t, _ExecutorManagerThread) and t.is_alive()}

    children_before, managers_before = {p.pid for p in multiprocessing.active_children()}, managers()
    with contextlib.ExitStack() as stack_of:
        if fails:
            stack_of.enter_context(pytest.raises(HostError, match="z=2"))
        summary = run(config, FailsAtZ2(source, config.output_path, show_progress=False))
        assert summary.completed and (tmp_path / "out.ome.tif").exists()
    assert {p.pid for p in multiprocessing.active_children()} - children_before == set()
    assert managers() - managers_before == set()
