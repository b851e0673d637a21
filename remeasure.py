"""``python -m stardist_v4d measure``: measure labels that exist already, without segmenting.

For labels edited in Fiji or made by another tool: the image's channels are measured
inside each label and its ring, plane by plane, into the same tables, workbook and
plots a run writes. Which planes: the ones the run segmented when the label file
carries this plugin's run record, else every plane. The label file's planes are
read one at a time; neither file is written.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .analysis.measure import measure_plane
from .host_api.base import DatasetInfo
from .host_api.tiff_reader import TiffStack
from .host_api.tiff_metadata import read_run_description, tiff_stem
from .pipeline.label_ids import walk_order
from .pipeline.plan import resolve_plane_range
from .pipeline.measure_plan import calibration_for
from .pipeline.measuring import Overlay, RunMeasurements
from .analysis.tables import TablePaths
from .analysis.tracking import TrackingSettings


class MeasureError(ValueError):
    """A bad argument or file; the message is one line for the user."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stardist_v4d measure", allow_abbrev=False,
        description="Measure existing labels (e.g. edited in Fiji) on an image's channels: per-nucleus "
                    "and per-plane tables (CSV, Excel), tracks, plots. Nothing is segmented.")
    p.add_argument("--input", type=Path, required=True, help="the image TIFF whose channels are measured")
    p.add_argument("--labels", type=Path, required=True, help="TIFF holding the labels (a run's output, or any label image)")
    p.add_argument("--channel-name", default="StarDist",
                   help="name of the label channel in --labels (default StarDist; a one-channel file needs none)")
    p.add_argument("--output-dir", type=Path, help="folder for the tables and plots (default: beside --labels)")
    p.add_argument("--pixel-size-um", type=float, nargs=2, metavar=("X", "Y"),
                   help="pixel size in um (default: the image's, else the label file's)")
    p.add_argument("--ring-um", type=float, default=2.0, help="ring width around each nucleus, in um (default 2)")
    p.add_argument("--tracks", action="store_true",
                   help="changes nothing, kept for older commands: the spots and tracks tables are written "
                        "whenever the labels have two or more time points")
    p.add_argument("--timepoint", type=int, metavar="T",
                   help="measure this time point only (default: the run record's, else every one)")
    p.add_argument("--first-plane", type=int, metavar="Z", help="first Z plane to measure (default: the run "
                   "record's, else the bottom; -1 = bottom)")
    p.add_argument("--last-plane", type=int, metavar="Z", help="last Z plane (default: the run record's, else the top; -1 = top)")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="tables only, no pictures")
    p.add_argument("--overwrite", action="store_true", help="replace tables and plots of an earlier run")
    return p


def label_channel(info: DatasetInfo, name: str, path: Path) -> tuple[int, str | None]:
    """Index of the label channel, and a line to say when it was chosen without its name."""
    if name in info.channel_names:
        return len(info.channel_names) - 1 - info.channel_names[::-1].index(name), None
    if info.size_c == 1:
        return 0, f"{path.name} has one channel ({info.channel_names[0]}): measuring it as the labels."
    raise MeasureError(f"--channel-name {name!r}: no such channel in {path}; its channels are "
                       f"{', '.join(info.channel_names)}: name the label channel")


def check_same_field(image: DatasetInfo, labels: DatasetInfo) -> None:
    """Time points, planes and plane size must agree (channels may differ)."""
    shape = lambda i: (i.size_t, i.size_z, i.size_y, i.size_x)  # noqa: E731
    if shape(image) != shape(labels):
        raise MeasureError(
            f"--labels {labels.source} has T, Z, Y, X = {shape(labels)} but --input {image.source} has "
            f"{shape(image)}: give the labels made from this image")


def planes_to_measure(record: dict[str, str], info: DatasetInfo) -> tuple[list[int], list[int], str, str]:
    """Time points, planes, label-ID mode and a line saying where they came from."""
    settings = {k[len("setting."):]: v for k, v in record.items() if k.startswith("setting.")}
    if not settings:
        return list(range(info.size_t)), list(range(info.size_z)), "per_plane", \
            "No run record in the label file: measuring every plane."
    try:
        first, last = int(settings.get("first_plane", -1)), int(settings.get("last_plane", -1))
        time_points = ([int(settings.get("time_point", 0))] if settings.get("current_time_point") == "True"
                       else list(range(info.size_t)))
    except ValueError as error:
        raise MeasureError(f"the label file's run record is not readable ({error})") from None
    first, last = resolve_plane_range(first, last, info.size_z)
    planes = [z for z in range(first, last + 1) if 0 <= z < info.size_z]
    time_points = [t for t in time_points if 0 <= t < info.size_t]
    return time_points, planes, settings.get("label_ids", "per_plane"), \
        f"Measuring the {len(time_points) * len(planes)} plane(s) the run segmented (its run record)."


def chosen_planes(args: argparse.Namespace, info: DatasetInfo, time_points: list[int],
                  planes: list[int]) -> tuple[list[int], list[int], str | None]:
    """``--timepoint`` / ``--first-plane`` / ``--last-plane`` over the run record's choice; the line saying so."""
    if args.timepoint is None and args.first_plane is None and args.last_plane is None:
        return time_points, planes, None
    if args.timepoint is not None:
        if not 0 <= args.timepoint < info.size_t:
            raise MeasureError(f"--timepoint {args.timepoint}: the labels have {info.size_t} time point(s) "
                               f"(valid: 0-{info.size_t - 1})")
        time_points = [args.timepoint]
    for flag, value in (("--first-plane", args.first_plane), ("--last-plane", args.last_plane)):
        if value is not None and not -1 <= value < info.size_z:
            raise MeasureError(f"{flag} {value}: the labels have {info.size_z} Z plane(s) (valid: 0-{info.size_z - 1}, or -1)")
    first = args.first_plane if args.first_plane is not None else (planes[0] if planes else -1)
    last = args.last_plane if args.last_plane is not None else (planes[-1] if planes else -1)
    first, last = resolve_plane_range(first, last, info.size_z)
    if first > last:
        raise MeasureError(f"--first-plane {first} is above --last-plane {last}")
    return time_points, list(range(first, last + 1)), \
        f"Measuring time point(s) {', '.join(map(str, time_points))}, planes {first}-{last} (as asked)."


def labelled_range(read: Callable[[int, int], np.ndarray], time_points: list[int],
                   planes: list[int]) -> tuple[list[int], list[int], str]:
    """Without a run record: the time points and the Z range that hold any label (all-zero planes
    outside them were most likely never segmented, and are not measured as "0 nuclei")."""
    held = [(t, z) for t in time_points for z in planes if np.any(read(t, z))]
    if not held:
        raise MeasureError("the label channel holds no label in any plane (all zero): nothing to measure")
    kept_t = sorted({t for t, _ in held})
    first, last = min(z for _, z in held), max(z for _, z in held)
    skipped = len(time_points) * len(planes) - len(kept_t) * (last - first + 1)
    note = (f"; {skipped} all-zero plane(s) outside them skipped (never segmented?): "
            "--timepoint/--first-plane/--last-plane choose others") if skipped else ""
    return kept_t, list(range(first, last + 1)), (
        f"No run record in the label file: measuring the planes that hold labels, {first}-{last} of time "
        f"point(s) {', '.join(map(str, kept_t))}{note}.")


def integer_labels(plane: np.ndarray, where: str) -> np.ndarray:
    """Label IDs as integers; a float plane must hold whole, non-negative numbers."""
    if plane.dtype.kind in "ui":
        if plane.dtype.kind == "i" and plane.min(initial=0) < 0:
            raise MeasureError(f"{where}: negative label values; a label image holds 0 and IDs 1, 2, ...")
        return plane
    if not np.all(np.isfinite(plane)) or np.any(plane != np.round(plane)) or plane.min(initial=0) < 0:
        raise MeasureError(f"{where}: not a label image (fractional or negative values); "
                           "give a label channel (0 = background, 1, 2, ... = nuclei)")
    return plane.astype(np.int64)


def remeasure(args: argparse.Namespace, log=print) -> Path:
    """Measure; returns the nuclei table's path."""
    if not 0 < args.ring_um <= 100:                  # NaN fails this too
        raise MeasureError(f"--ring-um {args.ring_um:g}: must be above 0 and at most 100 um")
    if args.pixel_size_um is not None and not all(0 < v < np.inf for v in args.pixel_size_um):
        raise MeasureError(f"--pixel-size-um {args.pixel_size_um}: sizes must be finite and above 0 um")
    folder = args.output_dir or args.labels.parent
    if not folder.is_dir():
        raise MeasureError(f"--output-dir {folder}: no such folder")
    paths = TablePaths(folder, tiff_stem(args.labels.name))
    with TiffStack(args.input) as image, TiffStack(args.labels) as label_file:
        info, label_info = image.dataset_info(), label_file.dataset_info()
        check_same_field(info, label_info)
        channel, note = label_channel(label_info, args.channel_name, args.labels)
        if note:
            log(note)
        run_record = read_run_description(args.labels)
        time_points, planes, _, line = planes_to_measure(run_record, label_info)
        time_points, planes, chosen = chosen_planes(args, label_info, time_points, planes)
        if chosen is None and not any(k.startswith("setting.") for k in run_record):
            time_points, planes, chosen = labelled_range(lambda t, z: label_file.read_plane(channel, t, z),
                                                         time_points, planes)
        line = chosen or line
        shown = int(run_record.get("setting.input_channel", 0))
        shown = shown if 0 <= shown < info.size_c else 0
        log(line)
        if not args.overwrite and paths.existing():
            raise MeasureError(f"{paths.existing()[0]} exists already; use --overwrite to "
                               "replace it, or --output-dir for another folder")
        pixel = info.pixel_size_um if info.pixel_size_um[0] else label_info.pixel_size_um
        calibration, line = calibration_for(args.pixel_size_um, pixel, args.ring_um, str(args.input))
        log(line)
        steps = walk_order(time_points, planes)
        overlay = Overlay(time_points[0], planes[len(planes) // 2]) if steps else None
        record = {"measured_by": "stardist-v4d measure", "image": str(args.input),
                  "labels": str(args.labels), "label_channel": label_info.channel_names[channel],
                  **run_record}
        tables = RunMeasurements(paths, calibration, info.channel_names, info.plane_shape, False,
                                 info.time_increment_s or label_info.time_increment_s, args.plots,
                                 overlay, record, z_planes=tuple(planes) if len(planes) > 1 else (),
                                 tracking=TrackingSettings())
        read_shown = lambda t, z: image.read_plane(shown, t, z)  # noqa: E731
        try:
            for t, z in _progress(steps):
                labels = integer_labels(label_file.read_plane(channel, t, z), f"{args.labels} t={t} z={z}")
                channels = [image.read_plane(c, t, z) for c in range(info.size_c)]
                tables.add_plane(t, z, measure_plane(labels, channels, None, calibration, t, z), labels)
        except MeasureError:
            tables.discard()           # a file that is not a label image: no tables at all
            raise
        except BaseException:          # Ctrl-C, a read error: keep the rows measured so far
            for note in tables.finish(False, read_shown):
                log(note)
            raise
        for note in tables.finish(True, read_shown):
            log(note)
        tables.drop_partials()
    return paths.nuclei


def _progress(steps: Sequence[tuple[int, int]]):
    from tqdm import tqdm
    return tqdm(steps, unit="plane", desc="measuring", leave=False, disable=not sys.stderr.isatty())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        remeasure(args)
    except KeyboardInterrupt:
        print("Interrupted: the rows of every plane measured so far are in the .partial tables.",
              file=sys.stderr)
        return 130
    except (MeasureError, OSError, ValueError) as error:
        if os.environ.get("STARDIST_V4D_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
