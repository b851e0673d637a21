"""SCHEDULER: planes as Dask tasks give the single-process run's labels, even when a worker dies."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

from model_factory import tiny_models_dir  # noqa: E402
from stardist_v4d.cluster import dask_planes  # noqa: E402
from stardist_v4d.config import Config, ConfigError, build_config  # noqa: E402
from stardist_v4d.convert import convert  # noqa: E402
from stardist_v4d.host_api.ome_zarr import OmeZarrHost  # noqa: E402
from stardist_v4d.pipeline.run import run  # noqa: E402
from test_pipeline import nuclei_stack, write_ome  # noqa: E402

SIZE = 160
PLANES = 12


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tiny_models_dir(tmp_path_factory, SIZE)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cluster")
    tiff = write_ome(folder / "in.ome.tif", nuclei_stack((1, PLANES, SIZE, SIZE), seed=8), "TZYX")
    return convert(tiff, folder / "in.ome.zarr", progress=False)


def segment(store: Path, output: Path, models_dir: Path, **settings):
    config = Config(model2d_path=models_dir, model_name="tiny", input_path=store, output_path=output,
                    workers=0, plots=False, **settings)
    host = OmeZarrHost(store, output, show_progress=False)
    try:
        return run(config, host)
    finally:
        host.close()


def labels_of(output: Path) -> np.ndarray:
    import zarr
    return zarr.open_array(str(output / "0"), mode="r")[:]


@pytest.fixture(scope="module")
def single(store, models_dir, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("single") / "single.ome.zarr"
    summary = segment(store, output, models_dir)
    assert summary.completed and summary.total_nuclei > PLANES * 3
    return output


def tables_of(output: Path) -> str:
    return output.with_name(output.name.replace(".ome.zarr", "_nuclei.csv")).read_text()


def assert_same_segmentation(output: Path, reference: Path) -> None:
    """The same nuclei, plane by plane, as the reference run.

    Bit-equal labels need the CNN's floats equal; Dask's workers run TensorFlow on one thread,
    this process on two, and on some CPUs (AVX2 AMD EPYC, not AVX512 Intel) oneDNN sums in another
    order then: two overlapping polygons may swap their drawing order at a few pixels.
    """
    from stardist.matching import matching

    got, want = labels_of(output), labels_of(reference)
    assert got.shape == want.shape and (got != want).mean() < 1e-4
    for t in range(got.shape[0]):
        for z in range(got.shape[1]):
            assert got[t, z].max() == want[t, z].max()                       # as many nuclei
            assert matching(want[t, z], got[t, z], thresh=0.9).f1 >= 0.99
    rows = lambda out: len(tables_of(out).splitlines())  # noqa: E731
    assert rows(output) == rows(reference)


def test_local_cluster_gives_the_single_process_labels_tables_and_outlines(store, models_dir, single, tmp_path, capsys,
                                                                          monkeypatch):
    """Pyramid levels too (PYRAMID_TOP_SIDE lowered): the workers write every level of their planes."""
    from stardist_v4d.host_api import ngff_writer as module
    from test_ome_zarr import assert_pyramid
    monkeypatch.setattr(module, "PYRAMID_TOP_SIDE", 64)
    output = tmp_path / "dask.ome.zarr"
    nanny, heard = logging.getLogger("distributed.nanny"), []     # distributed's loggers do not propagate
    listener = logging.Handler()
    listener.emit = heard.append
    nanny.addHandler(listener)
    try:
        summary = segment(store, output, models_dir, scheduler="local:2")
    finally:
        nanny.removeHandler(listener)
    said = capsys.readouterr().out
    assert not [r for r in heard if r.levelno >= logging.WARNING]    # a finished run: no "still alive ... killing"
    assert summary.completed and "a local cluster of 2 single-threaded worker process(es)" in said
    assert [line for line in said.splitlines() if line.startswith("t=0 z=")] == [
        f"t=0 z={z}: {summary.nuclei_per_plane[(0, z)]} nuclei" for z in range(PLANES)]  # in plane order
    assert_same_segmentation(output, single)
    assert_pyramid(output, (1, 2, 4))                                  # 160 -> 80 -> 40 px
    import roifile
    rois = lambda out: roifile.roiread(out.with_name(out.name.replace(".ome.zarr", "_rois.zip")))  # noqa: E731
    assert len(rois(output)) == len(rois(single))


def test_a_worker_killed_mid_run_costs_only_its_planes(store, models_dir, single, tmp_path, monkeypatch):
    real = dask_planes.planes
    killed: list[int] = []

    def killing(steps, job, client, stop, window):
        results = real(steps, job, client, stop, window)
        first = next(results)
        busy = [address for address, tasks in client.processing().items() if tasks]
        pids = client.run(os.getpid, workers=busy[:1] or None)
        pid = next(iter(pids.values()))
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        yield first
        yield from results

    monkeypatch.setattr(dask_planes, "planes", killing)
    output = tmp_path / "killed.ome.zarr"
    summary = segment(store, output, models_dir, scheduler="local:2")
    assert killed and summary.completed and summary.planes_done == PLANES
    assert_same_segmentation(output, single)


def test_an_unreachable_scheduler_is_one_line_within_the_timeout(store, models_dir, tmp_path):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "stardist_v4d", "run", "--input", str(store),
                           "--output", str(tmp_path / "o.ome.zarr"), "--model-path", str(models_dir),
                           "--model", "tiny", "--scheduler", "tcp://127.0.0.1:9", "--scheduler-timeout-s", "2"],
                          capture_output=True, text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert errors == [errors[0]] and "SCHEDULER (--scheduler) = 'tcp://127.0.0.1:9': no answer within 2 s" in errors[0]
    assert time.monotonic() - started < 60 and not (tmp_path / "o.ome.zarr").exists()


@pytest.mark.parametrize("settings, words", [
    ({"SCHEDULER": "local:0"}, ["SCHEDULER (--scheduler) = 'local:0'", "'local:N'"]),
    ({"SCHEDULER": "http://x"}, ["SCHEDULER (--scheduler) = 'http://x'", "tcp://"]),
    ({"SCHEDULER_TIMEOUT_S": 0}, ["SCHEDULER_TIMEOUT_S", "above 0"]),
    ({"SCHEDULER": "local:2", "LABEL_IDS": "track_t"}, ["LABEL_IDS (--label-ids) = 'track_t'", "'per_plane'"]),
])
def test_scheduler_settings_are_one_line(settings, words):
    with pytest.raises(ConfigError) as error:
        build_config(settings)
    assert "\n" not in str(error.value) and all(word in str(error.value) for word in words), str(error.value)


def test_a_tiff_input_with_a_scheduler_points_to_convert(tmp_path):
    tiff = write_ome(tmp_path / "stack.tif", nuclei_stack((1, 2, 64, 64)), "TZYX")
    with pytest.raises(ConfigError, match=r"needs an OME-Zarr input.*python -m stardist_v4d convert"):
        build_config({"SCHEDULER": "local:2"}, ["--input", str(tiff)])


def test_runs_sharing_a_cluster_keep_their_own_task_keys_and_models(store, models_dir, single, tmp_path,
                                                                    monkeypatch):
    """A scheduler given by address may serve several runs at once. Each run's task keys and its
    model on the workers are its own (equal keys are one task to Dask; one shared model slot
    would let a second run's model segment the first run's planes), and a run takes its model
    off the workers when it ends. Dask's client is stood in for here: tasks run in this process
    on one stand-in worker that outlives the runs."""
    import types
    from concurrent.futures import Future

    import distributed

    worker = types.SimpleNamespace()

    class Client:
        keys: list[str] = []
        plugins: dict = {}

        def register_plugin(self, plugin, name):
            assert name not in self.plugins
            self.plugins[name] = plugin
            plugin.setup(worker)

        def unregister_worker_plugin(self, name):
            self.plugins.pop(name).teardown(worker)

        def scheduler_info(self):
            return {"workers": {"tcp://worker:1": {}}}

        def submit(self, function, job, t, z, key, retries):
            self.keys.append(key)
            done = Future()
            done.set_result(function(job, t, z))
            return done

        def close(self):
            pass

    monkeypatch.setattr(distributed, "get_worker", lambda: worker)
    monkeypatch.setattr(dask_planes, "connect", lambda address, timeout_s, log: (Client(), None))
    keys = []
    for name in ("first", "second"):
        output = tmp_path / f"{name}.ome.zarr"
        assert segment(store, output, models_dir, scheduler="tcp://shared:8786").completed
        keys.append(set(Client.keys))
        Client.keys = []
        assert worker.stardist_models == {} and Client.plugins == {}      # the run's model is gone
        assert_same_segmentation(output, single)
    assert len(keys[0]) == len(keys[1]) == PLANES and not keys[0] & keys[1]
