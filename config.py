"""The user's settings, as one frozen, validated configuration.

Settings come from the constants block at the top of ``stardist_2d.py`` and, for
headless runs, from command-line flags that override them. Every error a user can
make with a setting is worded here, on one line, naming the setting (and its flag),
the bad value and what would be valid. Nothing here imports TensorFlow, so a mistake
is reported in a second.
"""
from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .host_api.ome_zarr import is_zarr_path, zarr_stem
from .host_api.tiff_metadata import tiff_stem
from .pipeline.backends.engine import BACKENDS, PRECISIONS
from .pipeline.label_ids import LABEL_ID_MODES
from .pipeline.model import ModelError, read_model_folder
from .pipeline.plan import LABEL_DTYPES

REGISTERED_MODELS = ("2D_versatile_fluo", "2D_versatile_he", "2D_paper_dsb2018", "2D_demo")
NORMALIZE_MODES = ("plane", "stack")


class ConfigError(ValueError):
    """A setting is invalid; the message is one line meant for the user."""


#: Upper bounds of settings that would otherwise start a million processes or tiles, or wait forever.
MAX_WORKERS, MAX_TILES, MAX_TIMEOUT_S = 256, 64, 86_400

#: The model a run uses unless MODEL_NAME names another: shipped in ``models/``.
DEFAULT_MODEL = "fluo_nuclei"


@dataclass(frozen=True)
class Config:
    """Everything a run needs to know, already checked.

    Field names are the constants' names in lower case; ``input_path`` /
    ``output_path`` are used by headless runs only (None = the embedded demo).
    """

    input_channel: int = 0
    output_ch_name: str = "StarDist"
    model2d_path: Path | None = None
    model_name: str = DEFAULT_MODEL
    current_time_point: bool = True
    time_point: int = 0
    first_plane: int = -1
    last_plane: int = -1
    norm_percentiles: tuple[float, float] = (1.0, 99.8)
    normalize: str = "plane"
    prob_thresh: float | None = None
    nms_thresh: float | None = None
    n_tiles: tuple[int, int] | str | None = "auto"
    scale: float = 1.0
    label_dtype: str = "auto"
    overwrite: bool = False
    label_ids: str = "per_plane"
    write_objects: bool = True
    gpu_memory_mb: int | None = None
    workers: int | None = None
    precision: str = "fp32"
    backend: str | None = None
    scheduler: str | None = None
    scheduler_timeout_s: float = 30.0
    plane_memory_mb: int = 2048
    block_overlap: int = 128
    measure: bool = True
    ring_um: float = 2.0
    track_max_distance_um: float | None = None
    track_gap_frames: int = 1
    track_divisions: bool = True
    pixel_size_um: tuple[float, float] | None = None
    plots: bool = True
    measurements_dir: Path | None = None
    axes: str | None = None                  # a TIFF's axes, declared (None: its metadata's, or Z assumed)
    input_path: Path | None = None
    output_path: Path | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def models_dir(self) -> Path:
        return Path(self.model2d_path) if self.model2d_path is not None else shipped_models_dir()

    @property
    def model_dir(self) -> Path:
        return self.models_dir / self.model_name

    @property
    def is_demo(self) -> bool:
        return self.input_path is None

    def as_record(self) -> dict[str, str]:
        """The settings as strings, for the output file's description."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self) if f.name != "extra"}


def shipped_models_dir() -> Path:
    """The ``models`` folder installed with the package (not found via ``__file__``)."""
    return Path(str(resources.files("stardist_v4d") / "models"))


# --------------------------------------------------------------------------- flags
FLAGS = {  # constant -> flag, so messages can name both
    "INPUT_CHANNEL": "--channel", "OUTPUT_CH_NAME": "--output-channel-name",
    "MODEL2D_PATH": "--model-path", "MODEL_NAME": "--model",
    "CURRENT_TIME_POINT": "--current-timepoint/--all-timepoints", "TIME_POINT": "--timepoint",
    "FIRST_PLANE": "--first-plane", "LAST_PLANE": "--last-plane",
    "NORM_PERCENTILES": "--percentiles", "NORMALIZE": "--normalize",
    "PROB_THRESH": "--prob-thresh", "NMS_THRESH": "--nms-thresh", "N_TILES": "--n-tiles",
    "SCALE": "--scale", "LABEL_DTYPE": "--label-dtype", "OVERWRITE": "--overwrite",
    "LABEL_IDS": "--label-ids", "WRITE_OBJECTS": "--objects/--no-objects",
    "GPU_MEMORY_MB": "--gpu-memory-mb", "INPUT": "--input", "OUTPUT": "--output", "AXES": "--axes",
    "WORKERS": "--workers", "PRECISION": "--precision", "BACKEND": "--backend",
    "SCHEDULER": "--scheduler", "SCHEDULER_TIMEOUT_S": "--scheduler-timeout-s", "PLANE_MEMORY_MB": "--plane-memory-mb", "BLOCK_OVERLAP": "--block-overlap",
    "MEASURE": "--measure/--no-measure", "RING_UM": "--ring-um", "PIXEL_SIZE_UM": "--pixel-size-um",
    "PLOTS": "--plots/--no-plots", "MEASUREMENTS_DIR": "--measurements-dir", "CHECK_ONLY": "--check",
    "TRACK_MAX_DISTANCE_UM": "--track-max-distance-um", "TRACK_GAP_FRAMES": "--track-gap-frames",
    "TRACK_DIVISIONS": "--track-divisions/--no-track-divisions",
}


def _setting(name: str) -> str:
    flag = FLAGS.get(name)
    return f"{name} ({flag})" if flag else name


def _fail(name: str, value: Any, problem: str) -> ConfigError:
    return ConfigError(f"{_setting(name)} = {value!r}: {problem}")


def build_config(constants: Mapping[str, Any], argv: Sequence[str] | None = None, *,
                 prog: str | None = None) -> Config:
    """Constants (``INPUT_CHANNEL = 0`` ...) overridden by flags, then checked.

    ``prog`` names the command in argparse's usage errors. Raises ConfigError with a
    one-line message for the first invalid setting.
    """
    values = {f.name: constants[f.name.upper()] for f in fields(Config)
              if f.name.upper() in constants and f.name not in ("input_path", "output_path", "extra")}
    extra = {k.lower(): v for k, v in constants.items() if k.lower() not in values and k.isupper()}
    config = Config(**values, extra=extra)
    overrides: dict[str, Any] = {}
    if argv is not None:
        from .flags import overrides_from
        overrides = overrides_from(config, argv, prog)
        config = replace(config, **overrides)
    _check_time_point_pair(config, constants, overrides)
    config = _with_default_output(config)
    check_settings(config)
    return config


def _check_time_point_pair(config: Config, constants: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
    """A time point given together with "every time point" would be ignored: refuse the pair."""
    if config.current_time_point is not False or not ("time_point" in overrides or "TIME_POINT" in constants):
        return
    given = f"--timepoint {config.time_point}" if "time_point" in overrides else f"TIME_POINT = {config.time_point!r}"
    if overrides.get("current_time_point") is False:
        raise ConfigError(f"{given} contradicts --all-timepoints: {given.split()[0]} picks the one time point "
                          "to segment, --all-timepoints segments every one; give one of the two")
    raise ConfigError(f"{given} contradicts CURRENT_TIME_POINT = False (every time point) in the settings block "
                      "of stardist_2d.py: add --current-timepoint (or set CURRENT_TIME_POINT = True) to segment "
                      f"time point {config.time_point} only, or leave out {given.split()[0]}")


def _with_default_output(config: Config) -> Config:
    if config.input_path is not None and config.output_path is None:
        source = Path(config.input_path)
        if is_zarr_path(source):
            return replace(config, output_path=source.with_name(zarr_stem(source.name) + "_stardist.ome.zarr"))
        return replace(config, output_path=source.with_name(tiff_stem(source.name) + "_stardist.ome.tif"))
    return config


# ------------------------------------------------------------------ static checks
def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _axes_ok(axes: str) -> bool:
    return set(axes) <= set("TZCYXS") and len(set(axes)) == len(axes) and {"Y", "X"} <= set(axes)


def check_settings(config: Config) -> None:
    """Checks that need neither the data nor TensorFlow."""
    if config.model2d_path is not None and not isinstance(config.model2d_path, (str, os.PathLike)):
        raise _fail("MODEL2D_PATH", config.model2d_path, "must be None (the shipped models) or a folder path")
    if not _is_int(config.input_channel) or config.input_channel < 0:
        raise _fail("INPUT_CHANNEL", config.input_channel, "must be a channel index 0, 1, 2, ...")
    if not isinstance(config.output_ch_name, str) or not config.output_ch_name.strip():
        raise _fail("OUTPUT_CH_NAME", config.output_ch_name, "must be a non-empty name")
    if config.axes is not None and not (isinstance(config.axes, str) and _axes_ok(config.axes.upper())):
        raise _fail("AXES", config.axes, "must be None or the TIFF's axes, one letter each of T, Z, C, Y, X "
                    "(S: RGB samples) with Y and X, no letter twice, e.g. 'TZCYX' or 'CZYX'")
    if config.axes is not None and config.input_path is not None and is_zarr_path(config.input_path):
        raise _fail("AXES", config.axes, "is for TIFF inputs: an OME-Zarr names its axes itself; leave AXES None")
    if not isinstance(config.current_time_point, bool):
        raise _fail("CURRENT_TIME_POINT", config.current_time_point, "must be True (active time point) or False (all)")
    if not _is_int(config.time_point) or config.time_point < 0:
        raise _fail("TIME_POINT", config.time_point, "must be a time point index 0, 1, 2, ...")
    for name in ("FIRST_PLANE", "LAST_PLANE"):
        value = getattr(config, name.lower())
        if not _is_int(value) or value < -1:
            raise _fail(name, value, "must be a 0-based plane index, or -1 for " + ("bottom" if name == "FIRST_PLANE" else "top"))
    if config.first_plane != -1 and config.last_plane != -1 and config.first_plane > config.last_plane:
        raise ConfigError(f"FIRST_PLANE (--first-plane) = {config.first_plane} is above LAST_PLANE "
                          f"(--last-plane) = {config.last_plane}: FIRST_PLANE must be <= LAST_PLANE")
    _check_percentiles(config.norm_percentiles)
    if config.normalize not in NORMALIZE_MODES:
        raise _fail("NORMALIZE", config.normalize, "valid: 'plane' or 'stack'")
    for name in ("PROB_THRESH", "NMS_THRESH"):
        value = getattr(config, name.lower())
        if value is not None and not (_is_number(value) and 0 < value < 1):
            raise _fail(name, value, "must be between 0 and 1 (exclusive), or None for the model's own")
    if config.n_tiles is not None and config.n_tiles != "auto" and not (
            isinstance(config.n_tiles, (tuple, list)) and len(config.n_tiles) == 2
            and all(_is_int(n) and 1 <= n <= MAX_TILES for n in config.n_tiles)):
        raise _fail("N_TILES", config.n_tiles, f"must be None (one tile) or two whole numbers from 1 to {MAX_TILES}, "
                    "e.g. (2, 2), or \"auto\"")
    if not _is_number(config.scale) or not 0.1 <= config.scale <= 10:
        raise _fail("SCALE", config.scale, "must be a number from 0.1 to 10 (1.0 = no resizing)")
    if config.label_dtype not in LABEL_DTYPES:
        raise _fail("LABEL_DTYPE", config.label_dtype, "valid: " + ", ".join(LABEL_DTYPES))
    if config.label_ids not in LABEL_ID_MODES:
        raise _fail("LABEL_IDS", config.label_ids, "valid: " + ", ".join(LABEL_ID_MODES))
    if config.label_ids == "track_t" and not config.measure:
        raise ConfigError("LABEL_IDS (--label-ids) = 'track_t' writes the IDs of the tracks the measurements "
                          "make: it needs MEASURE = True (no --no-measure)")
    for name in ("WRITE_OBJECTS", "OVERWRITE"):      # "False" (a string) is true: it would overwrite
        if not isinstance(getattr(config, name.lower()), bool):
            raise _fail(name, getattr(config, name.lower()), "must be True or False (without quotes)")
    if config.gpu_memory_mb is not None and not (_is_int(config.gpu_memory_mb) and config.gpu_memory_mb > 0):
        raise _fail("GPU_MEMORY_MB", config.gpu_memory_mb, "must be None (grow as needed) or megabytes > 0")
    if config.workers is not None and not (_is_int(config.workers) and 0 <= config.workers <= MAX_WORKERS):
        raise _fail("WORKERS", config.workers, "must be None (one per core), 0 (none) or a number of worker "
                    f"processes up to {MAX_WORKERS}")
    check_engine_settings(config)
    check_scheduler_settings(config)
    if not (_is_int(config.plane_memory_mb) and config.plane_memory_mb >= 64):
        raise _fail("PLANE_MEMORY_MB", config.plane_memory_mb, "must be whole megabytes >= 64, e.g. 2048")
    if not (_is_int(config.block_overlap) and config.block_overlap >= 16):
        raise _fail("BLOCK_OVERLAP", config.block_overlap, "must be whole pixels >= 16, above the largest nucleus' size, e.g. 128")
    check_measure_settings(config)
    _check_files(config)
    check_model(config)


def check_engine_settings(config: Config) -> None:
    """PRECISION and BACKEND: valid words, a valid pair, and OpenVINO installed when it is needed."""
    if config.precision not in PRECISIONS:
        raise _fail("PRECISION", config.precision, "valid: 'fp32' (exactly StarDist's labels) or 'bf16' (faster, OpenVINO)")
    if config.backend is not None and config.backend not in BACKENDS:
        raise _fail("BACKEND", config.backend, "valid: None (auto), 'tensorflow' or 'openvino'")
    if config.backend == "tensorflow" and config.precision != "fp32":
        raise ConfigError(f"BACKEND (--backend) = 'tensorflow' with PRECISION (--precision) = {config.precision!r}: "
                          "bf16 runs through OpenVINO; set BACKEND to None (auto) or 'openvino', or PRECISION to 'fp32'")
    wants_openvino = config.backend == "openvino" or config.precision != "fp32"
    if wants_openvino and importlib.util.find_spec("openvino") is None:
        which = "BACKEND (--backend) = 'openvino'" if config.backend == "openvino" else \
            f"PRECISION (--precision) = {config.precision!r}"
        raise ConfigError(f"{which} needs the openvino package, which is not installed: "
                          "pip install openvino (or use PRECISION 'fp32' with TensorFlow)")


SCHEDULER_FORMS = re.compile(r"^(local:[1-9][0-9]*|(tcp|tls)://[^\s/:]+:[0-9]+)$")


def check_scheduler_settings(config: Config) -> None:
    """SCHEDULER and SCHEDULER_TIMEOUT_S, and what a run on Dask workers needs."""
    if not _is_number(config.scheduler_timeout_s) or not 0 < config.scheduler_timeout_s <= MAX_TIMEOUT_S:
        raise _fail("SCHEDULER_TIMEOUT_S", config.scheduler_timeout_s,
                    f"must be seconds above 0 and at most {MAX_TIMEOUT_S} (a day), e.g. 30")
    if config.scheduler is None:
        return
    if not isinstance(config.scheduler, str) or not SCHEDULER_FORMS.match(config.scheduler):
        raise _fail("SCHEDULER", config.scheduler, "must be None (this process), 'local:N' (N Dask worker "
                    "processes here, e.g. 'local:2') or a scheduler address such as 'tcp://10.0.0.5:8786'")
    if importlib.util.find_spec("distributed") is None:
        raise _fail("SCHEDULER", config.scheduler, "needs dask.distributed, which is not installed: "
                    "pip install 'dask[distributed]'")
    if config.label_ids != "per_plane":
        raise ConfigError(f"LABEL_IDS (--label-ids) = {config.label_ids!r} with SCHEDULER (--scheduler) = "
                          f"{config.scheduler!r}: Dask workers segment planes independently, so IDs that depend "
                          "on earlier planes are not made; use 'per_plane' (measurements carry t and z)")
    if config.input_path is None or not is_zarr_path(config.input_path):
        given = "the demo stack" if config.input_path is None else str(config.input_path)
        raise ConfigError(f"SCHEDULER (--scheduler) = {config.scheduler!r} needs an OME-Zarr input, which workers "
                          f"read plane by plane, not {given}: convert it first with 'python -m stardist_v4d "
                          "convert STACK.tif STACK.ome.zarr', then --input STACK.ome.zarr")


def check_measure_settings(config: Config) -> None:
    """MEASURE, RING_UM, PIXEL_SIZE_UM, PLOTS, MEASUREMENTS_DIR, TRACK_*."""
    for name in ("MEASURE", "PLOTS"):
        if not isinstance(getattr(config, name.lower()), bool):
            raise _fail(name, getattr(config, name.lower()), "must be True or False")
    if not _is_number(config.ring_um) or not 0 < config.ring_um <= 100:
        raise _fail("RING_UM", config.ring_um, "must be a width in um above 0 and at most 100, e.g. 2")
    size = config.pixel_size_um
    if size is not None and not (isinstance(size, (tuple, list)) and len(size) == 2
                                 and all(_is_number(v) and 0 < v <= 1000 for v in size)):
        raise _fail("PIXEL_SIZE_UM", size, "must be None (the file's) or two sizes in um (x, y) above 0, e.g. (0.5, 0.5)")
    distance = config.track_max_distance_um
    if distance is not None and not (_is_number(distance) and 0 < distance <= 10_000):
        raise _fail("TRACK_MAX_DISTANCE_UM", distance, "must be None (one nucleus diameter) or a distance in um "
                    "above 0 and at most 10000, e.g. 8")
    if not _is_int(config.track_gap_frames) or not 0 <= config.track_gap_frames <= 10:
        raise _fail("TRACK_GAP_FRAMES", config.track_gap_frames, "must be a whole number from 0 (no gap closing) to 10")
    if not isinstance(config.track_divisions, bool):
        raise _fail("TRACK_DIVISIONS", config.track_divisions, "must be True or False")
    folder = config.measurements_dir
    if folder is not None:
        if not isinstance(folder, (str, Path)) or not str(folder).strip():
            raise _fail("MEASUREMENTS_DIR", folder, "must be None (beside the output) or a folder path")
        if Path(folder).exists() and not Path(folder).is_dir():
            raise _fail("MEASUREMENTS_DIR", str(folder), "is a file, not a folder")
        if not Path(folder).exists() and not Path(folder).parent.is_dir():
            raise _fail("MEASUREMENTS_DIR", str(folder), f"its parent folder {Path(folder).parent} does not exist")


def _check_percentiles(value: Any) -> None:
    ok = (isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(v) for v in value)
          and 0 <= value[0] < value[1] <= 100)
    if not ok:
        raise _fail("NORM_PERCENTILES", value, "must be two numbers LOW < HIGH within 0-100, e.g. (1, 99.8)")


def _check_files(config: Config) -> None:
    if config.input_path is None:
        return
    source, target = Path(config.input_path), Path(config.output_path)
    if is_zarr_path(source):
        _check_zarr_files(config, source, target)
        return
    if not source.is_file():
        raise _fail("INPUT", str(source), "is a folder; give one TIFF file (.tif, .tiff, .ome.tif), not the folder"
                    if source.is_dir() else "no such file; give a TIFF stack (.tif, .tiff, .ome.tif)")
    if source.resolve() == target.resolve():
        raise _fail("OUTPUT", str(target), "is the input file; the input is never modified, choose another name")
    if target.suffix.lower() not in (".tif", ".tiff"):
        raise _fail("OUTPUT", str(target), "must end in .tif or .tiff (an OME-TIFF is written)")
    if not target.parent.is_dir():
        raise _fail("OUTPUT", str(target), f"folder {target.parent} does not exist")
    if target.exists() and not config.overwrite:
        raise _fail("OUTPUT", str(target), "exists already; choose another name or set OVERWRITE (--overwrite)")


def _check_zarr_files(config: Config, source: Path, target: Path) -> None:
    """An OME-Zarr input is a folder; its labels go to a new OME-Zarr store."""
    if not source.is_dir():
        raise _fail("INPUT", str(source), "no such OME-Zarr folder")
    if not is_zarr_path(target):
        raise _fail("OUTPUT", str(target), "must end in .ome.zarr or .zarr for an OME-Zarr input "
                    "(the labels go to a new OME-Zarr store)")
    if source.resolve() == target.resolve():
        raise _fail("OUTPUT", str(target), "is the input; the input is never written, choose another name")
    if not target.parent.is_dir():
        raise _fail("OUTPUT", str(target), f"folder {target.parent} does not exist")
    if target.exists() and not config.overwrite:
        raise _fail("OUTPUT", str(target), "exists already; choose another name or set OVERWRITE (--overwrite)")


def check_model(config: Config) -> None:
    """The model folder exists and holds a 2D, single-channel StarDist model."""
    models_dir, name = config.models_dir, config.model_name
    if not isinstance(name, str) or not name:
        raise _fail("MODEL_NAME", name, "must be a model folder name or a registered StarDist name")
    if not models_dir.is_dir():
        raise _fail("MODEL2D_PATH", str(models_dir), "is not a folder; give the folder that holds your model folders")
    folder = models_dir / name
    if not folder.is_dir():
        if name in REGISTERED_MODELS:
            return  # fetched or taken from StarDist's cache at load time
        present = sorted(p.name for p in models_dir.iterdir() if (p / "config.json").is_file())
        raise _fail("MODEL_NAME", name, f"no model folder {folder}; put the model folder (config.json + "
                    f"weights .h5) there, or choose one of: {', '.join(present + list(REGISTERED_MODELS))}")
    try:
        read_model_folder(folder)
    except ModelError as error:
        raise _fail("MODEL_NAME", name, str(error)) from None
