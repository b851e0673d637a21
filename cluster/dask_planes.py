"""Planes as Dask tasks: the run's per-plane function, mapped over a cluster.

A third way of mapping the same per-plane function over planes (sequential, process pool,
Dask), not a new pipeline. With ``SCHEDULER`` set, every selected plane is one task: the
worker (its model loaded once, by ``ModelOnWorker``) reads the plane straight from the
Zarr input, normalizes it, runs the CNN and StarDist's NMS and rendering exactly as a local
run (``stream.in_process``), measures it, writes its labels straight into its own chunk of
the Zarr output, and returns only the count, the outlines and the measurements. The client
hands planes over in plane order (the same progress bar, per-plane lines, ROI zip and
tables), with at most ``window`` planes in flight. A worker that dies costs only its
planes: Dask runs them again elsewhere, and since a plane's labels depend on that plane
alone and land in its own chunk, the output is the same as an undisturbed run's.
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from distributed import WorkerPlugin

from ..config import ConfigError

PLUGIN_NAME = "stardist-v4d-model"


class SchedulerError(ConfigError):
    """The scheduler cannot be reached, or the planes cannot go to it; one line for the user."""


@dataclass(frozen=True)
class WrittenPlane:
    """Stands for a plane's labels that a worker has already written (plane IDs = run IDs)."""

    run_ids: dict[int, int]
    largest: int


@dataclass(frozen=True)
class PlaneJob:
    """What every task needs; small and picklable (paths, settings, the normalizer)."""

    config: Any                      # the run's Config
    access: Any                      # host.plane_access(): read_plane / write_plane on workers
    channel: int
    channels: int                    # how many to read when measuring (0: only ``channel``)
    normalizer: Any
    calibration: Any
    output_dtype: str
    run: str                         # this run's token: its task keys and its model on the workers


class ModelOnWorker(WorkerPlugin):
    """Dask worker plugin: loads the run's model once per worker process, at the worker's start.

    One plugin and one model per run (``run``), kept in ``worker.stardist_models`` until the
    run unregisters it: runs sharing a cluster at once, with other models or precisions, never
    swap each other's model.
    """

    def __init__(self, backend: str, precision: str, models_dir: str, model_name: str, run: str) -> None:
        self.backend, self.precision = backend, precision
        self.models_dir, self.model_name = models_dir, model_name
        self.run, self.name = run, f"{PLUGIN_NAME}-{run}"

    def setup(self, worker) -> None:
        from ..pipeline.backends.engine import Engine, load_for
        from ..pipeline.model import tensorflow_chatter_filtered
        if not hasattr(worker, "stardist_models"):
            worker.stardist_models = {}
        with tensorflow_chatter_filtered():
            worker.stardist_models[self.run] = load_for(Engine(self.backend, self.precision), self.models_dir,
                                                        self.model_name, lambda line: None)

    def teardown(self, worker) -> None:
        getattr(worker, "stardist_models", {}).pop(self.run, None)


def segment_plane(job: PlaneJob, t: int, z: int):
    """One task: read, segment, measure, write the labels; returns ``(t, z, WrittenPlane, details, columns)``."""
    from distributed import get_worker

    from ..pipeline import stream
    from ..pipeline.plan import largest_label
    from ..pipeline.predict import predict_sparse
    from ..pipeline.run import tiles_for

    config, model = job.config, get_worker().stardist_models[job.run]
    channels = tuple(job.access.read_plane(c, t, z) for c in range(job.channels)) if job.channels else None
    plane = channels[job.channel] if channels else job.access.read_plane(job.channel, t, z)
    n_tiles = tiles_for(config, model, plane.shape)
    scale = None if config.scale == 1 else config.scale
    cnn = lambda image: predict_sparse(model, image, config.prob_thresh, config.nms_thresh,  # noqa: E731
                                       n_tiles, scale)
    labels, details, columns = stream.in_process(job.normalizer, cnn, job.calibration)(
        stream.PlaneInput(t, z, plane, channels))
    largest = int(labels.max(initial=0))
    if largest <= largest_label(job.output_dtype):       # else the client stops the run, naming it
        job.access.write_plane(t, z, labels.astype(job.output_dtype, copy=False))
    ids = np.unique(labels[labels > 0])
    small = {key: details[key] for key in ("coord", "points", "prob")}
    return t, z, WrittenPlane({int(i): int(i) for i in ids}, largest), small, columns


def connect(address: str, timeout_s: float, log: Callable[[str], None]):
    """``(client, cluster)`` for ``SCHEDULER``: a LocalCluster for "local:N", else the address's."""
    from distributed import Client, LocalCluster

    if address.startswith("local:"):
        n = int(address.split(":", 1)[1])
        single = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                         "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               env=single)
        log(f"Dask: a local cluster of {n} single-threaded worker process(es).")
        return Client(cluster), cluster
    try:
        client = Client(address, timeout=timeout_s)
    except (OSError, TimeoutError) as error:
        raise SchedulerError(f"SCHEDULER (--scheduler) = {address!r}: no answer within "
                             f"{timeout_s:g} s (SCHEDULER_TIMEOUT_S) ({type(error).__name__}); start the "
                             "scheduler or check the address") from None
    log(f"Dask: scheduler {address}, {len(client.scheduler_info()['workers'])} worker(s).")
    return client, None


def planes(steps: Sequence[tuple[int, int]], job: PlaneJob, client, stop: Callable[[], bool],
           window: int) -> Iterator[tuple]:
    """Results in plane order; at most ``window`` planes in flight; a stop cancels the rest.

    Every run's task keys are its own (``job.run``): a scheduler shared by several runs at
    once (a core facility's cluster) takes tasks of equal keys for one task and would hand
    one run's labels to the other."""
    todo = deque(steps)
    in_flight: deque = deque()
    try:
        while todo or in_flight:
            while todo and len(in_flight) < window:
                t, z = todo.popleft()
                in_flight.append(client.submit(segment_plane, job, t, z, key=f"stardist-plane-{job.run}-{t}-{z}",
                                               retries=2))
            if stop():
                return
            yield in_flight.popleft().result()
    finally:
        for future in in_flight:
            future.cancel()


def dask_stream(config, host, plan, normalizer, calibration, steps: Sequence[tuple[int, int]]) -> Iterator[tuple]:
    """The run's planes through ``SCHEDULER``: connect, map ``segment_plane``, hand over in order.

    Planes too big for whole or tiled prediction (block mode) are not sent to workers.
    """
    from ..pipeline.run import uses_blocks

    info = host.dataset_info()
    if uses_blocks(config, info.plane_shape):
        raise SchedulerError(f"Planes of {info.size_y} x {info.size_x} need block mode (PLANE_MEMORY_MB "
                             f"{config.plane_memory_mb}), which runs in this process only: leave SCHEDULER "
                             "out, or raise PLANE_MEMORY_MB if the workers have the memory")
    from ..pipeline.backends.engine import choose_engine
    engine = choose_engine(config.backend, config.precision, host.log)    # a fallback is said here, once
    client, cluster = connect(config.scheduler, config.scheduler_timeout_s, host.log)
    plugin = ModelOnWorker(engine.backend, engine.precision, str(config.models_dir), config.model_name,
                           uuid.uuid4().hex)
    try:
        client.register_plugin(plugin, name=plugin.name)
        workers = max(1, len(client.scheduler_info()["workers"]))
        job = PlaneJob(config, host.plane_access(), plan.channel, info.size_c if calibration is not None else 0,
                       normalizer, calibration, np.dtype(plan.output_dtype).name, plugin.run)
        yield from planes(steps, job, client, host.cancelled, window=2 * workers + 2)
    finally:
        if cluster is None:                 # a cluster that outlives the run: its model goes
            with contextlib.suppress(Exception):
                client.unregister_worker_plugin(plugin.name)
        client.close()
        if cluster is not None:
            with _quiet_nanny():
                cluster.close()


@contextlib.contextmanager
def _quiet_nanny():
    """The local cluster's workers are only being shut down: one still unloading TensorFlow
    after distributed's 4 s is killed, harmlessly; its "still alive ... killing" warning
    after a finished run reads as a failure, so it is not said."""
    nanny = logging.getLogger("distributed.nanny")
    level = nanny.level
    nanny.setLevel(logging.ERROR)
    try:
        yield
    finally:
        nanny.setLevel(level)
