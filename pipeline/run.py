"""One run: model loaded once, then per plane read -> normalize -> predict -> write.

The pipeline sees a ``Host`` and a ``Config`` only: it imports neither tifffile nor
any host module, nor argparse. A stopped run (cancel, Ctrl-C, an error) still closes
the output through ``host.finish(False)``, so every plane written before stays.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field

import numpy as np

from ..config import Config, check_against_dataset
from ..host_api.base import Host, Nucleus, OutputTarget
from .gpu import configure_gpu
from .label_ids import LabelNumbering
from .model import load_model
from .normalization import plane_normalizer, stack_normalizer, stack_percentiles
from .plan import Plan, largest_label, make_plan


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
    """Settings, model and package versions, stored with the output."""
    from importlib.metadata import PackageNotFoundError, version
    record = {"software": "stardist-v4d", "model": model_name, "python": platform.python_version()}
    for package in ("stardist-v4d", "stardist", "csbdeep", "tensorflow", "tensorflow-cpu", "numpy", "tifffile"):
        try:
            record[f"version.{package}"] = version(package)
        except PackageNotFoundError:
            pass
    record.update({f"setting.{k}": v for k, v in config.as_record().items()})
    return record


def predict_kwargs(config: Config) -> dict:
    """The keyword arguments of ``predict_instances`` the settings decide."""
    return dict(prob_thresh=config.prob_thresh, nms_thresh=config.nms_thresh,
                n_tiles=None if config.n_tiles is None else tuple(config.n_tiles),
                scale=None if config.scale == 1 else config.scale, show_tile_progress=False)


def nuclei_from(details: dict, run_ids: dict[int, int]) -> list[Nucleus]:
    """One Nucleus per polygon still visible in the plane, carrying its run ID.

    StarDist numbers label ``k`` after polygon ``k - 1``; a polygon fully covered by
    its neighbours has no pixels left and is not reported.
    """
    coords, probs = details["coord"], details["prob"]
    return [Nucleus(label=run_ids[k + 1], contour=np.asarray(coords[k]).T.astype(np.float32),
                    probability=float(probs[k]))
            for k in range(len(coords)) if k + 1 in run_ids]


def run(config: Config, host: Host) -> RunSummary:
    """Segment every planned plane of ``host`` into a new label channel."""
    started = time.monotonic()
    plan = plan_for(config, host)
    steps = plan.steps
    summary = RunSummary(planes_done=0, planes_planned=len(steps))
    host.check_output(config.output_ch_name)
    configure_gpu(config.gpu_memory_mb, host.log)
    model = load_model(config.models_dir, config.model_name)
    if config.normalize == "stack":
        mi, ma = stack_percentiles(lambda t, z: host.read_plane(plan.channel, t, z), steps,
                                   *config.norm_percentiles)
        host.log(f"Stack normalization: percentiles {config.norm_percentiles} -> {mi:g} .. {ma:g}")
        normalizer = stack_normalizer(mi, ma)
    else:
        normalizer = plane_normalizer(*config.norm_percentiles)
    kwargs = predict_kwargs(config)
    limit = largest_label(plan.output_dtype)
    numbering = LabelNumbering(config.label_ids, config.link_iou)
    tag = f"{config.output_ch_name} ({config.model_name})"

    output = host.add_channel(config.output_ch_name, plan.output_dtype,
                              description=run_record(config, config.model_name))
    summary.output_channel = output.channel
    completed = False
    try:
        for t, z in steps:
            if host.cancelled():
                host.log(f"Cancelled after {summary.planes_done} of {len(steps)} planes.")
                break
            plane = host.read_plane(plan.channel, t, z)
            labels, details = model.predict_instances(normalizer(plane), **kwargs)
            labels, run_ids = numbering.renumber(t, z, labels)
            count = len(run_ids)
            if labels.max(initial=0) > limit:
                raise LabelOverflowError(
                    f"Plane t={t} z={z} needs label {int(labels.max())}, more than "
                    f"{np.dtype(plan.output_dtype).name} labels hold ({limit}); set LABEL_DTYPE "
                    f"(--label-dtype) to {'uint32' if limit < 2 ** 32 - 1 else 'per_plane LABEL_IDS'}")
            host.write_plane(output.channel, t, z, labels.astype(plan.output_dtype, copy=False))
            if config.write_objects:
                host.add_objects(t, z, nuclei_from(details, run_ids), tag)
            summary.nuclei_per_plane[(t, z)] = count
            summary.planes_done += 1
            host.log(f"t={t} z={z}: {count} nuclei")
            host.report_progress(summary.planes_done, len(steps))
        else:
            completed = True
    finally:
        summary.completed = completed
        summary.output = host.finish(completed)
        summary.seconds = time.monotonic() - started
        host.log(f"{'Done' if completed else 'Stopped'}: {summary.planes_done} of {len(steps)} planes, "
                 f"{summary.total_nuclei} nuclei in {summary.seconds:.1f} s -> {summary.output.location}")
        for note in summary.output.notes:
            host.log(note)
    return summary
