"""One run: model loaded once, then per plane read -> normalize -> predict -> write.

The pipeline sees a ``Host`` and a ``Config`` only: it imports neither tifffile nor
any host module, nor argparse. A stopped run (cancel, Ctrl-C, an error) still closes
the output through ``host.finish(False)``, so every plane written before stays.
Planes stream through ``stream.py`` (sequential, or pipelined with worker
processes), so memory holds a few planes whatever the stack's length; label
numbering and writes happen here, in plane order.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from ..config import Config
from ..dataset_checks import check_against_dataset
from ..host_api.base import Host, HostError, Nucleus, OutputTarget
from . import stream
from .gpu import configure_gpu
from .measure_plan import MeasurePlan, measure_plan
from .measuring import with_run_ids
from .label_ids import LabelNumbering
from .backends.engine import choose_engine, load_for, load_kept
from .model import sha256_of, thresholds_line, weights_file
from .normalization import non_finite_count, plane_normalizer, stack_normalizer, stack_percentiles
from .plan import Plan, largest_label, make_plan
from .predict import predict_sparse
from .resume import Resume, plane_state, restore_numbering, resume_for
from .tiling import auto_tiles, needs_blocks, predict_blocks
from .pool_judge import PoolJudge
from .workers import PendingPool, check_not_bootstrapping, measured, start_pool


class LabelOverflowError(RuntimeError):
    """A plane has more nuclei than the output pixel type can number."""


@dataclass
class RunSummary:
    """What a run did, for the caller and for tests."""

    planes_done: int
    planes_planned: int
    nuclei_per_plane: dict[tuple[int, int], int] = field(default_factory=dict)
    output: OutputTarget | None = None
    output_channel: int = -1
    seconds: float = 0.0
    completed: bool = False

    @property
    def total_nuclei(self) -> int:
        return sum(self.nuclei_per_plane.values())


def plan_for(config: Config, host: Host) -> Plan:
    """Check the settings against the image set, then pick planes and pixel type."""
    info = host.dataset_info()
    check_against_dataset(config, info)
    time_points = (info.active_time_point,) if config.current_time_point else tuple(range(info.size_t))
    return make_plan(config.input_channel, time_points, config.first_plane, config.last_plane,
                     info.size_z, info.dtype, config.label_dtype, config.label_ids)


def run_record(config: Config, model_name: str) -> dict[str, str]:
    """Settings, model (and its weights' hash) and package versions, stored with the output.

    Also what a resumed run must match: the same record made the earlier planes.
    """
    from importlib.metadata import PackageNotFoundError, version
    record = {"software": "stardist-v4d", "model": model_name, "python": platform.python_version()}
    weights = weights_file(config.model_dir)
    if weights is not None:
        record["model.weights_sha256"] = sha256_of(weights)
    for package in ("stardist-v4d", "stardist", "csbdeep", "tensorflow", "tensorflow-cpu", "numpy", "tifffile",
                    *(("openvino",) if config.backend == "openvino" or config.precision != "fp32" else ())):
        try:
            record[f"version.{package}"] = version(package)
        except PackageNotFoundError:
            pass
    record.update({f"setting.{k}": v for k, v in config.as_record().items()})
    return record


def values_used(config: Config, info) -> dict[str, str]:
    """What the settings left to the model and the image (``None`` in ``setting.*``), as used,
    each with where it came from: the record says the thresholds, not ``prob_thresh None``."""
    line = thresholds_line(config.models_dir, config.model_name, config.prob_thresh, config.nms_thresh)
    if config.pixel_size_um is not None:
        pixel = f"{config.pixel_size_um[0]:g} x {config.pixel_size_um[1]:g} (PIXEL_SIZE_UM)"
    elif info.pixel_size_um[0] or info.pixel_size_um[1]:
        x, y = info.pixel_size_um[0] or info.pixel_size_um[1], info.pixel_size_um[1] or info.pixel_size_um[0]
        pixel = f"{x:g} x {y:g} (from {info.source or 'the image'})"
    else:
        pixel = "unknown: measurements in pixels"
    z = info.pixel_size_um[2] if len(info.pixel_size_um) > 2 else None
    if z:
        pixel += f"; z step {z:g} (from {info.source or 'the image'})"
    return {"used.thresholds": line[len("Thresholds: "):].rstrip("."), "used.pixel_size_um": pixel}


def run_context(config: Config, info) -> dict[str, str]:
    """For the workbook's Settings sheet only (a resumed run's files must equal an undisturbed run's):
    the input's absolute path and when the run started."""
    from datetime import datetime
    source = config.input_path if config.input_path is not None else info.source
    return {"input.path": str(Path(source).resolve()) if source else "(an array in memory)",
            "run.started": datetime.now().astimezone().isoformat(timespec="seconds")}


def tiles_for(config: Config, model, shape: tuple[int, int]) -> tuple[int, int] | None:
    """N_TILES "auto": the fewest tiles that keep the CNN within PLANE_MEMORY_MB."""
    if config.n_tiles != "auto":
        return None if config.n_tiles is None else tuple(config.n_tiles)
    scaled = tuple(round(s * config.scale) for s in shape)
    if auto_tiles(scaled, model.config, config.plane_memory_mb) is None:
        return None        # fits whole: no need to ask the model for its tile context
    overlap = max(model._axes_tile_overlap("YX"))
    return auto_tiles(scaled, model.config, config.plane_memory_mb, overlap)


def plane_reader(host: Host, plan: Plan, measuring: bool):
    """``(t, z) -> PlaneInput``: the plane to segment, and every channel (read once) when measuring.

    Says once per plane how many of its pixels are not finite: they are taken as background.
    """
    size_c = host.dataset_info().size_c

    def read(t: int, z: int) -> stream.PlaneInput:
        if not measuring:
            item = stream.PlaneInput(t, z, host.read_plane(plan.channel, t, z))
        else:
            channels = tuple(host.read_plane(c, t, z) for c in range(size_c))
            item = stream.PlaneInput(t, z, channels[plan.channel], channels)
        holes = non_finite_count(item.plane)
        if holes:
            host.log(f"t={t} z={z}: {holes} pixel{'s are' if holes > 1 else ' is'} not finite "
                     "(NaN/inf): taken as background")
        return item
    return read


def plane_stream(config: Config, host: Host, plan: Plan, model, normalizer,
                 pending: PendingPool | None, measuring: MeasurePlan | None = None,
                 steps: list[tuple[int, int]] | None = None
                 ) -> Iterator[tuple[int, int, np.ndarray, dict, dict | None]]:
    """``(t, z, labels, details, measurements)`` per step (default: every planned step):
    whole, tiled or in blocks; with or without workers. ``measurements`` (plane IDs) is None
    when not measuring."""
    steps = plan.steps if steps is None else steps
    info, stop = host.dataset_info(), host.cancelled
    read = plane_reader(host, plan, measuring is not None)
    calibration = None if measuring is None else measuring.calibration
    if config.scheduler is not None:                   # planes as Dask tasks; labels written by workers
        from ..cluster.dask_planes import dask_stream
        yield from dask_stream(config, host, plan, normalizer, calibration, steps)
        return
    prob_thresh, nms_thresh = config.prob_thresh, config.nms_thresh     # None: the model's own
    scale = None if config.scale == 1 else config.scale
    if uses_blocks(config, info.plane_shape):
        host.log(f"Planes of {info.size_y} x {info.size_x} exceed PLANE_MEMORY_MB "
                 f"({config.plane_memory_mb}): predicting each in blocks, one after another.")

        def segment(plane: stream.PlaneInput) -> tuple[np.ndarray, dict, dict | None]:
            labels, details = predict_blocks(model, plane.plane, normalizer, prob_thresh, nms_thresh,
                                             scale, config.plane_memory_mb, config.block_overlap, host.log)
            return labels, details, measured(labels, details, plane.channels, calibration,
                                             plane.time_point, plane.z)
        yield from stream.sequential(steps, read, segment, stop)
        return
    n_tiles = tiles_for(config, model, info.plane_shape)
    if config.n_tiles == "auto" and n_tiles is not None:
        host.log(f"Planes of {info.size_y} x {info.size_x}: {n_tiles[0]} x {n_tiles[1]} tiles "
                 f"to stay within PLANE_MEMORY_MB ({config.plane_memory_mb}).")
    cnn = lambda image: predict_sparse(model, image, prob_thresh, nms_thresh, n_tiles, scale)  # noqa: E731
    if pending is not None and not pending.wait:         # WORKERS None: when it pays, never waited for
        def switched(done: int) -> None:
            host.log(f"{pending.n_workers} worker process(es) post-process beside the CNN from plane "
                     f"{done + 1} on (ready after {pending.ready_after:.1f} s).")

        def begin() -> None:
            try:
                pending.begin()
            except Exception as error:   # noqa: BLE001  (no pool is never a failure)
                host.log(f"Worker processes could not start ({type(error).__name__}: {error}); "
                         "segmenting sequentially.")

        def dropped(done: int) -> None:
            pending.shutdown()
            host.log(f"Worker processes did not pay here ({judge.verdict_line()}): post-processing goes on "
                     f"in this process from plane {done + 1} on.")
        judge = PoolJudge(pending.n_workers)
        yield from stream.switching(steps, read, normalizer, cnn, lambda: pending.poll(host.log), stop,
                                    depth=pending.n_workers + 2, calibration=calibration, on_switch=switched,
                                    log=host.log, judge=judge, begin_pool=begin,
                                    drop_pool=dropped)
        return
    pool = None if pending is None else pending.ready(host.log)
    if pool is None:
        yield from stream.sequential(steps, read, stream.in_process(normalizer, cnn, calibration), stop)
        return
    host.log(f"{pending.n_workers} worker process(es) post-process beside the CNN.")
    yield from stream.pipelined(steps, read, normalizer, cnn, pool, stop, depth=pending.n_workers + 2,
                                calibration=calibration, log=host.log)


def uses_blocks(config: Config, shape: tuple[int, int]) -> bool:
    """Planes too big for PLANE_MEMORY_MB even when tiled go through ``predict_instances_big``."""
    return needs_blocks(shape, config.plane_memory_mb / max(1.0, config.scale) ** 2)


def nuclei_from(details: dict, run_ids: dict[int, int],
                features: dict[int, dict[str, float]] | None = None) -> list[Nucleus]:
    """One Nucleus per polygon still visible in the plane, carrying its run ID (and features).

    StarDist numbers label ``k`` after polygon ``k - 1``; a polygon fully covered by
    its neighbours has no pixels left and is not reported.
    """
    coords, probs = details["coord"], details["prob"]
    features = features or {}
    return [Nucleus(label=run_ids[k + 1], contour=np.asarray(coords[k]).T.astype(np.float32),
                    probability=float(probs[k]), features=features.get(run_ids[k + 1], {}))
            for k in range(len(coords)) if k + 1 in run_ids]


def write_track_ids(host: Host, steps: list[tuple[int, int]], channel: int,
                    rewrite, dtype: np.dtype) -> None:
    """``track_t``'s last pass: each plane's provisional IDs become track IDs.

    Before the output is finished, so a run killed here resumes by doing the pass again
    (``rewrite`` is idempotent); planes with nothing to change are not written.
    """
    host.log(f"Writing track IDs into the label channel ({len(steps)} planes).")
    for t, z in steps:
        plane = host.read_output_plane(t, z)
        new = rewrite(plane)
        if new is not plane:
            host.write_plane(channel, t, z, new.astype(dtype, copy=False))


def counted(summary: RunSummary, plan: Plan, tables) -> str:
    """The run's count in words: nuclei through Z once each where objects were built, else slices.

    A stopped run's objects are those of its complete time points only (a time point's objects
    are built when its last plane is in): said so, never "0 nuclei" beside slices found."""
    objects = getattr(tables, "objects", None)
    if objects is not None and summary.completed:
        return f"{objects.rows} nuclei ({summary.total_nuclei} slices)"
    if objects is not None and objects.rows:
        return f"{summary.total_nuclei} nucleus slices ({objects.rows} nuclei through Z in complete time points)"
    if len(plan.planes) > 1:
        return f"{summary.total_nuclei} nucleus slices"
    return f"{summary.total_nuclei} nuclei"


def run(config: Config, host: Host, keep_model: bool = False) -> RunSummary:
    """Segment every planned plane of ``host`` into a new label channel.

    ``keep_model``: load the model once per process and keep it for later runs
    (``segment`` in a notebook); by default it is released with the run.
    """
    check_not_bootstrapping()
    started = time.monotonic()
    plan = plan_for(config, host)
    steps = plan.steps
    summary = RunSummary(planes_done=0, planes_planned=len(steps))
    record = {**run_record(config, config.model_name), "output_dtype": np.dtype(plan.output_dtype).name,
              **values_used(config, host.dataset_info())}
    host.check_output(config.output_ch_name, record)
    resume = resume_for(host, steps)
    summary.nuclei_per_plane.update(resume.done)
    summary.planes_done = len(resume.done)
    measuring = measure_plan(config, host, plan, resuming=bool(resume.done))
    info = host.dataset_info()
    if config.scheduler is not None and host.plane_access() is None:
        raise HostError(f"SCHEDULER {config.scheduler!r}: this host's planes cannot be read by Dask workers; "
                        "give an OME-Zarr input (python -m stardist_v4d convert STACK.tif STACK.ome.zarr)")
    workbook = None if measuring is None else measuring.workbook_process()   # starts beside the model's load
    pending = None if config.scheduler or uses_blocks(config, info.plane_shape) else start_pool(
        config.workers, len(resume.left(steps)), host.allows_worker_processes(), host.log)
    try:
        return _segment(config, host, plan, summary, pending, started, measuring, record, resume, keep_model,
                        workbook)
    finally:
        if pending is not None:
            pending.shutdown(wait=True)    # no process left closing when this one exits
        if workbook is not None:
            workbook.close()               # abandons a workbook not written; waits for the process


def _model_for(config: Config, host: Host, record: dict[str, str], keep_model: bool):
    """The model this process predicts with (none when Dask workers do)."""
    engine = choose_engine(config.backend, config.precision, host.log)
    if engine.backend == "tensorflow":
        configure_gpu(config.gpu_memory_mb, host.log)
    return (load_kept if keep_model else load_for)(engine, config.models_dir, config.model_name, host.log,
                                                   blocks=uses_blocks(config, host.dataset_info().plane_shape),
                                                   weights_sha256=record.get("model.weights_sha256"))


def _segment(config: Config, host: Host, plan: Plan, summary: RunSummary,
             pending: PendingPool | None, started: float, measuring: MeasurePlan | None,
             record: dict[str, str], resume: Resume, keep_model: bool = False, workbook=None) -> RunSummary:
    """Load the model, then stream, number and write every plane (``run``'s body)."""
    steps = plan.steps
    model = None if config.scheduler else _model_for(config, host, record, keep_model)
    host.log(thresholds_line(config.models_dir, config.model_name, config.prob_thresh, config.nms_thresh))
    if config.normalize == "stack":
        mi, ma = stack_percentiles(lambda t, z: host.read_plane(plan.channel, t, z), steps,
                                   *config.norm_percentiles)
        host.log(f"Stack normalization: percentiles {config.norm_percentiles} -> {mi:g} .. {ma:g}")
        normalizer = stack_normalizer(mi, ma)
    else:
        normalizer = plane_normalizer(*config.norm_percentiles)
    limit = largest_label(plan.output_dtype)
    numbering = LabelNumbering(config.label_ids, ceiling=limit)
    tag = f"{config.output_ch_name} ({config.model_name})"

    output = host.add_channel(config.output_ch_name, plan.output_dtype, description=record)
    summary.output_channel = output.channel
    restore_numbering(numbering, resume, host)
    size_c = host.dataset_info().size_c
    tables = None if measuring is None else measuring.start(
        {**record, **run_context(config, host.dataset_info())}, resume.measurements(), host.read_output_plane,
        lambda t, z: [host.read_plane(c, t, z) for c in range(size_c)], workbook)
    completed = False
    planes = plane_stream(config, host, plan, model, normalizer, pending, measuring,
                          resume.left(steps))
    try:
        for t, z, labels, details, columns in planes:
            if host.cancelled():
                break
            written = getattr(labels, "run_ids", None)            # a Dask worker wrote the plane
            labels, run_ids = (None, written) if written is not None else numbering.renumber(t, z, labels)
            count = len(run_ids)
            largest = max(run_ids.values(), default=0) if labels is None else int(labels.max(initial=0))
            if numbering.out_of_ids:
                raise LabelOverflowError(
                    f"Plane t={t} z={z}: more than {limit // 2} nuclei through Z numbered in the run, the most "
                    f"{np.dtype(plan.output_dtype).name} labels hold for LABEL_IDS track_t; set LABEL_DTYPE "
                    "(--label-dtype) to uint32")
            if largest > limit:
                raise LabelOverflowError(
                    f"Plane t={t} z={z} needs label {largest}, more than "
                    f"{np.dtype(plan.output_dtype).name} labels hold ({limit}); set LABEL_DTYPE "
                    f"(--label-dtype) to {'uint32' if limit < 2 ** 32 - 1 else 'per_plane LABEL_IDS'}")
            if labels is not None:
                host.write_plane(output.channel, t, z, labels.astype(plan.output_dtype, copy=False))
            features = None
            if columns is not None:
                columns = with_run_ids(columns, run_ids)
                if tables is not None:
                    tables.add_plane(t, z, columns, labels if labels is not None else
                                     lambda t=t, z=z: host.read_output_plane(t, z))
                features = measuring.features(columns)
            if config.write_objects:
                host.add_objects(t, z, nuclei_from(details, run_ids, features), tag)
            host.commit_plane(t, z, count, plane_state(numbering, tables))
            summary.nuclei_per_plane[(t, z)] = count
            summary.planes_done += 1
            host.log(f"t={t} z={z}: {count} nuclei")
            host.report_progress(summary.planes_done, len(steps))
        completed = summary.planes_done == len(steps)
        if completed and tables is not None and tables.track_ids:
            write_track_ids(host, steps, output.channel, tables.relabel_by_tracks(limit), plan.output_dtype)
            host.renumber_objects(tables.new_id)
        if not completed:
            host.log(f"Cancelled after {summary.planes_done} of {len(steps)} planes.")
    finally:
        planes.close()
        summary.completed = completed
        if completed and tables is not None:
            try:            # pictures only: nothing here may keep the output from being finished
                tables.draw_time_point_overlays(lambda t, z: host.read_plane(plan.channel, t, z))
            except Exception as error:  # noqa: BLE001
                host.log(f"The outline overlays of the other time points could not be drawn ({error}).")
        table_notes = []
        if completed and tables is not None:   # tables first: until the output is in place a rerun resumes
            table_notes = tables.finish(True, lambda t, z: host.read_plane(plan.channel, t, z))
        summary.output = host.finish(completed)
        if completed and tables is not None:
            tables.drop_partials()
        elif tables is not None and not summary.planes_done:
            tables.discard()                   # no plane complete: nothing is left behind
        elif tables is not None:
            table_notes = tables.finish(False, lambda t, z: host.read_plane(plan.channel, t, z))
        summary.output.notes.extend(table_notes)
        summary.seconds = time.monotonic() - started
        host.log(f"{'Done' if completed else 'Stopped'}: {summary.planes_done} of {len(steps)} planes, "
                 f"{counted(summary, plan, tables)} in {summary.seconds:.1f} s -> {summary.output.location}")
        for note in summary.output.notes:
            host.log(note)
    return summary
