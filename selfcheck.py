"""Check the installation where it will run: arivis' "Test Environment", for this plugin.

    python stardist_2d.py --check [run flags]        python -m stardist_v4d check [run flags]

The run flags choose what is checked (``--model-path``, ``--model``, ``--input``,
``--output``). One line per check, e.g. ::

    ok    model demo:     loads in 1.9 s (...); 256 x 256 plane -> 14 nuclei (15 drawn) in 0.42 s
    FAIL  output folder:  /data is not writable (Permission denied)

``ok`` and ``FAIL`` are checks; ``--`` is information that is not a problem (no arivis
on a headless machine). The last line says ``no problems`` (exit code 0) or names the
first problem (exit code 1). Nothing is written: the write probe's temporary file is
deleted again. TensorFlow starts only in the GPU and model checks, and not at all when
the settings are invalid.

Each check is a small function returning a :class:`Finding`, so it can be tested alone.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .config import Config, ConfigError, build_config

OK, FAIL, INFO = "ok", "FAIL", "--"
PACKAGES = ("tensorflow", "keras", "stardist", "csbdeep", "numpy", "tifffile")
#: What a feature needs, reported but not required (an arivis Python may lack them).
OPTIONAL_PACKAGES = {"openvino": "PRECISION 'bf16'", "zarr": "OME-Zarr", "ome-zarr": "OME-Zarr",
                     "distributed": "SCHEDULER"}
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-intel",
                            "tensorflow-gpu", "tf-nightly")
CPU_FLAGS = ("AVX2", "FMA", "AVX512F", "AVX512_BF16")
ARIVIS_MODULES = ("arivis", "arivis_operation", "arivis_core", "arivis_objects")
TESTED_PYTHON = ((3, 10), (3, 12))
PLANE_SHAPE = (256, 256)
DEMO_NEEDS_BYTES = 50 * 2 ** 20      # the demo's stack, output, tables and plots: ~15 MB


@dataclass(frozen=True)
class Finding:
    """One check's outcome: ``status`` is OK, FAIL or INFO; ``name`` says what was checked."""

    status: str
    name: str
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def line(self, width: int = 0) -> str:
        return f"{self.status:<6}{self.name + ':':<{width}} {self.detail}"


# ------------------------------------------------------------------ software
def check_python() -> Finding:
    version = sys.version_info[:2]
    detail = f"{platform.python_version()} ({sys.executable})"
    if not TESTED_PYTHON[0] <= version <= TESTED_PYTHON[1]:
        low, high = (".".join(map(str, v)) for v in TESTED_PYTHON)
        return Finding(INFO, "python", f"{detail}; untested: the plugin is tested on {low}-{high}")
    return Finding(OK, "python", detail)


def package_version(name: str) -> str | None:
    """Installed version of a distribution, read from its metadata (nothing is imported)."""
    candidates = TENSORFLOW_DISTRIBUTIONS if name == "tensorflow" else (name,)
    for distribution in candidates:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    for distribution in importlib.metadata.packages_distributions().get(name, []):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(distribution)
    return None


def check_packages(version_of: Callable[[str], str | None] = package_version) -> Finding:
    versions = {name: version_of(name) for name in PACKAGES}
    found = ", ".join(f"{name} {version}" for name, version in versions.items() if version)
    missing = [name for name, version in versions.items() if not version]
    if missing:
        return Finding(FAIL, "packages", f"not installed: {', '.join(missing)} (python -m pip install "
                                         f"-e . in the project folder installs them); found: {found or 'none'}")
    optional = {name: version_of(name) for name in OPTIONAL_PACKAGES}
    extra = [f"{name} {version}" if version else f"no {name} (for {OPTIONAL_PACKAGES[name]})"
             for name, version in optional.items()]
    return Finding(OK, "packages", f"{found}; {', '.join(extra)}")


# ------------------------------------------------------------------ hardware
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo"), system: str = sys.platform) -> set[str] | None:
    """The CPU's instruction-set flags (lower case), or None where they cannot be read."""
    if not system.startswith("linux"):
        return None
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return None


def check_cpu(cpuinfo: Path = Path("/proc/cpuinfo"), system: str = sys.platform) -> Finding:
    from .pipeline.workers import cores

    usable, machine = cores(), os.cpu_count() or 0
    count = f"{usable} cores" + (f" of the machine's {machine}" if machine > usable else "")
    flags = cpu_flags(cpuinfo, system)
    if flags is None:
        return Finding(OK, "cpu", f"{count}; instruction sets unknown "
                                  f"({', '.join(CPU_FLAGS)} are read on Linux only)")
    detail = f"{count}; " + ", ".join(f"{flag} {'yes' if flag.lower() in flags else 'no'}" for flag in CPU_FLAGS)
    if platform.machine().lower() in ("x86_64", "amd64") and "avx" not in flags:
        return Finding(FAIL, "cpu", f"{detail}; no AVX at all: TensorFlow's pip packages need it and "
                                    "stop with 'Illegal instruction'")
    return Finding(OK, "cpu", f"{detail}; {bf16_line()}")


def bf16_line() -> str:
    """Whether PRECISION 'bf16' runs natively here (asked of OpenVINO's CPU plugin)."""
    import importlib.util
    if importlib.util.find_spec("openvino") is None:
        return "PRECISION 'bf16': openvino not installed"
    from .pipeline.backends.engine import cpu_has_bf16
    return f"PRECISION 'bf16': {'native (OpenVINO)' if cpu_has_bf16() else 'not native here: runs as fp32'}"


def check_gpus(config: Config) -> Finding:
    """GPUs TensorFlow sees, set up as a run sets them up (``GPU_MEMORY_MB``)."""
    from .pipeline.gpu import configure_gpu
    from .pipeline.model import tensorflow_chatter_filtered

    with tensorflow_chatter_filtered():
        import tensorflow as tf

    notes: list[str] = []
    names = configure_gpu(config.gpu_memory_mb, notes.append)
    if not names:
        build = "" if tf.test.is_built_with_cuda() else " (this TensorFlow build has no CUDA support)"
        return Finding(OK, "gpu", f"none visible to TensorFlow{build}: the model runs on the CPU")
    described = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = {}
        with contextlib.suppress(Exception):
            details = tf.config.experimental.get_device_details(gpu)
        described.append(f"{gpu.name} ({details['device_name']})" if details.get("device_name") else gpu.name)
    cap = "growing as needed" if config.gpu_memory_mb is None else f"capped at {config.gpu_memory_mb} MB"
    return Finding(OK, "gpu", f"{', '.join(described)}; memory {cap}")


# ------------------------------------------------------------------ the model
def check_model(config: Config, seed: int = 0) -> Finding:
    """The model loads and segments a generated plane, as a run would call it."""
    import numpy as np

    from .pipeline.model import ModelError, load_model
    from .training.synthetic import synthetic_nuclei

    name = f"model {config.model_name}"
    image, labels = synthetic_nuclei(PLANE_SHAPE, np.random.default_rng(seed))
    drawn = int(len(np.unique(labels[labels > 0])))
    chatter = io.StringIO()                    # StarDist prints "Loading network weights ..."
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(chatter):
            model = load_model(config.models_dir, config.model_name)
    except ModelError as error:
        return Finding(FAIL, name, str(error))
    loaded = time.perf_counter() - start

    from csbdeep.utils import normalize

    kwargs: dict[str, Any] = {"prob_thresh": config.prob_thresh, "nms_thresh": config.nms_thresh}
    if config.scale != 1:
        kwargs["scale"] = config.scale
    plane = normalize(image, *config.norm_percentiles)
    took = []                                  # the first call includes TensorFlow's warm-up
    for _ in range(2):
        start = time.perf_counter()
        with contextlib.redirect_stdout(chatter):
            found, _ = model.predict_instances(plane, show_tile_progress=False, **kwargs)
        took.append(time.perf_counter() - start)
    n_found = int(len(np.unique(found[found > 0])))
    thresholds = getattr(model, "thresholds", None)
    used = ""
    if thresholds is not None:
        prob = config.prob_thresh if config.prob_thresh is not None else thresholds.prob
        nms = config.nms_thresh if config.nms_thresh is not None else thresholds.nms
        used = f" (prob {prob:.2f}, nms {nms:.2f})"
    detail = (f"loads in {loaded:.1f} s{used}; {PLANE_SHAPE[0]} x {PLANE_SHAPE[1]} generated plane -> "
              f"{n_found} nuclei ({drawn} drawn) in {took[1]:.2f} s (first call {took[0]:.2f} s)")
    if n_found == 0 and drawn > 0:
        return Finding(FAIL, name, f"{detail}: it finds nothing; check the model folder and its thresholds.json")
    return Finding(OK, name, detail)


# ------------------------------------------------------------------ files
def output_folder(config: Config) -> Path:
    """Where the run writes: the folder of ``--output``, else of ``--input``, else here (demo)."""
    for path in (config.output_path, config.input_path):
        if path is not None:
            return Path(path).absolute().parent
    return Path.cwd()


def probe_write(folder: Path) -> None:
    """Create and delete a temporary file in ``folder``; raises OSError if it cannot."""
    handle, name = tempfile.mkstemp(prefix=".stardist_v4d_check_", dir=folder)
    try:
        os.write(handle, b"check")
    finally:
        os.close(handle)
        os.unlink(name)


def _size(n_bytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return ""


def check_output_folder(config: Config) -> Finding:
    """The output folder is writable and has room for at least the input's size."""
    folder = output_folder(config)
    if not folder.is_dir():
        return Finding(FAIL, "output folder", f"{folder} does not exist")
    try:
        probe_write(folder)
    except OSError as error:
        return Finding(FAIL, "output folder", f"{folder} is not writable ({error.strerror or error})")
    free = shutil.disk_usage(folder).free
    if config.input_path is not None:
        # the output holds every input channel plus the label channel: at least the input's size
        needs, why = Path(config.input_path).stat().st_size, "the input's size"
    else:
        needs, why = DEMO_NEEDS_BYTES, "the demo's"
    if free < needs:
        return Finding(FAIL, "output folder", f"{folder} has only {_size(free)} free; the output needs at "
                                              f"least {_size(needs)} ({why})")
    return Finding(OK, "output folder", f"{folder} is writable, {_size(free)} free")


# ------------------------------------------------------------------ the host
def check_input(config: Config) -> Finding:
    """The input opens and the settings fit it: the checks a run makes on it before the model loads."""
    from .dataset_checks import check_against_dataset
    from .host_api.ome_zarr import OmeZarrImage, is_zarr_path
    from .host_api.tiff_reader import TiffStack
    from .pipeline.plan import resolve_plane_range

    if config.input_path is None:
        return Finding(INFO, "input", "the demo stack (no --input)")
    path = Path(config.input_path)
    reader = OmeZarrImage(path, config.time_point) if is_zarr_path(path) else \
        TiffStack(path, config.time_point, config.axes)
    try:
        info = reader.dataset_info()
        try:
            check_against_dataset(config, info)
        except ConfigError as error:
            return Finding(FAIL, "input", str(error))
    finally:
        close = getattr(reader, "close", None)
        if close is not None:
            close()
    first, last = resolve_plane_range(config.first_plane, config.last_plane, info.size_z)
    when = f"time point {info.active_time_point}" if config.current_time_point else f"{info.size_t} time point(s)"
    notes = " ".join(getattr(reader, "notes", []))
    return Finding(OK, "input", (notes + " " if notes else "") + f"{info.size_t} T x {info.size_z} Z x {info.size_c} C of {info.size_y} x "
                   f"{info.size_x} {info.dtype}; segments channel {config.input_channel}, planes {first}-{last}, {when}")


def check_arivis(import_module: Callable[[str], Any] = importlib.import_module) -> Finding:
    """Which of arivis' modules import (none: a headless machine, which is fine)."""
    imported, failed = [], []
    for module in ARIVIS_MODULES:
        try:
            import_module(module)
            imported.append(module)
        except ImportError:
            failed.append(module)
        except Exception as error:             # a host module that refuses outside the host
            failed.append(f"{module} ({type(error).__name__})")
    if not imported:
        return Finding(INFO, "arivis", "not installed: fine for headless runs; inside Vision4D press "
                                       "Install arivis package (Extras > Preferences > Scripting)")
    if not failed:
        return Finding(OK, "arivis", f"{', '.join(imported)} import")
    return Finding(INFO, "arivis", f"{', '.join(imported)} import; {', '.join(failed)} not")


# ------------------------------------------------------------------ all of it
def check_config(settings: Mapping[str, Any], argv: Sequence[str]) -> tuple[Config | None, Finding]:
    """The settings as a run builds them; an invalid one is the finding (TensorFlow not started)."""
    try:
        config = build_config(settings, argv)
    except ConfigError as error:
        return None, Finding(FAIL, "settings", str(error))
    where = f"input {config.input_path}" if config.input_path is not None else "input: the demo stack"
    return config, Finding(OK, "settings", f"valid; model '{config.model_name}' from {config.models_dir}; {where}")


def _guarded(check: Callable[[], Finding], name: str) -> Finding:
    """A check that breaks is a finding too, not a traceback (``STARDIST_V4D_DEBUG=1``: traceback)."""
    try:
        return check()
    except Exception as error:
        if os.environ.get("STARDIST_V4D_DEBUG"):
            raise
        first = str(error).splitlines()[0] if str(error) else ""
        return Finding(FAIL, name, f"check failed: {type(error).__name__}: {first}")


def summary(findings: Sequence[Finding]) -> str:
    problems = [f for f in findings if f.failed]
    if not problems:
        return "no problems: ready to run"
    first = problems[0]
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    return f"{count}{', the first' if len(problems) > 1 else ''}: {first.name}: {first.detail}"


def main(settings: Mapping[str, Any], argv: Sequence[str]) -> int:
    """Print one line per check and a summary; 0 when nothing failed, else 1.

    ``settings`` are the constants of ``stardist_2d.py``, ``argv`` the run's flags
    (``--help`` or an unknown flag: argparse's usual exit code).
    """
    try:
        config, settings_finding = check_config(settings, argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    names = ["python", "packages", "cpu", "settings", "input", "gpu", "output folder", "arivis"]
    if config is not None:
        names.append(f"model {config.model_name}")
    width = max(len(name) for name in names) + 2

    version = package_version("stardist-v4d") or ""
    print(f"stardist-v4d {version} self-check (writes nothing)".replace("  ", " "), flush=True)
    findings: list[Finding] = []

    def show(finding: Finding) -> None:
        findings.append(finding)
        print(finding.line(width), flush=True)

    show(_guarded(check_python, "python"))
    show(_guarded(check_packages, "packages"))
    show(_guarded(check_cpu, "cpu"))          # before TensorFlow: a CPU it cannot run on crashes it
    show(settings_finding)
    if config is None:
        show(Finding(INFO, "gpu, model", "not checked: the settings are invalid (TensorFlow not started)"))
        show(Finding(INFO, "output folder", "not checked: the settings are invalid"))
    else:
        show(_guarded(lambda: check_input(config), "input"))
        show(_guarded(lambda: check_gpus(config), "gpu"))
        show(_guarded(lambda: check_model(config), f"model {config.model_name}"))
        show(_guarded(lambda: check_output_folder(config), "output folder"))
    show(_guarded(check_arivis, "arivis"))
    print(summary(findings), flush=True)
    return 1 if any(f.failed for f in findings) else 0
