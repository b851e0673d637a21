"""Where a run happens, and how its errors reach the user.

Three routes share one ``run(config, host)``:

- inside an arivis analysis pipeline operation, if ``arivis_operation`` imports;
- inside the arivis Script Editor, if ``arivis`` imports;
- headless on a TIFF stack otherwise (or on the embedded demo, with no ``--input``).

A user's mistake (a setting, a missing model, a host call to fix) ends in one line,
never in a traceback; ``STARDIST_V4D_DEBUG=1`` shows the traceback for bug reports.
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .config import Config, ConfigError, build_config
from .flags import build_parser, default_prog
from .host_api.base import Host, HostError
from .host_api.ome_zarr import is_zarr_path
from .pipeline.model import quiet_tensorflow

DEMO_DIR = "demo_output"
#: First words of ``stardist_2d.py`` that are ``python -m stardist_v4d`` commands.
COMMAND_WORDS = ("train", "eval", "measure", "check", "run")
CHECK_FLAG = "--check"


def detect_route() -> str:
    """``operation``, ``script_editor`` or ``headless``, by which host modules import."""
    for module, route in (("arivis_operation", "operation"), ("arivis", "script_editor")):
        try:
            importlib.import_module(module)
            return route
        except ImportError:
            continue
    return "headless"


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is meant for the user as it is."""
    from .pipeline.model import ModelError
    from .pipeline.run import LabelOverflowError
    return (ConfigError, ModelError, LabelOverflowError, HostError, OSError, ValueError)


def _reported(action: Callable[[], int], say: Callable[[str], None]) -> int:
    """Run ``action``; a user error becomes one line and exit code 2."""
    try:
        return action()
    except KeyboardInterrupt:
        say("Interrupted: every plane written so far is kept (see the line above).")
        return 130
    except Exception as error:
        if os.environ.get("STARDIST_V4D_DEBUG") or not isinstance(error, user_errors()):
            raise
        say(f"error: {error}")
        return 2


def demo_config(config: Config, folder: Path | None = None) -> Config:
    """The embedded demo: a stack of real nuclei in ``./demo_output``, replacing earlier demo output."""
    from .demo.demo_stack import make_demo_stack

    folder = folder or Path.cwd() / DEMO_DIR
    folder.mkdir(exist_ok=True)
    stack = make_demo_stack(folder / "demo_stack.ome.tif")
    print(f"Demo: wrote {stack} (real nuclei in channel 0, membranes in channel 1)", flush=True)
    return replace(config, input_path=stack, output_path=folder / "demo_stack_stardist.ome.tif",
                   current_time_point=False, overwrite=True)


def describe_run(config: Config) -> str:
    """The run's first line: input, channel, time points, planes and model, from the settings alone."""
    when = "all time points" if not config.current_time_point else f"time point {config.time_point}"
    first = "bottom" if config.first_plane == -1 else str(config.first_plane)
    last = "top" if config.last_plane == -1 else str(config.last_plane)
    planes = f"plane {first}" if first == last else f"planes {first}-{last}"
    model = config.model_name if config.model2d_path is None else f"{config.model_name} from {config.model2d_path}"
    return f"Segmenting {config.input_path}: channel {config.input_channel}, {when}, {planes}, model {model}"


def run_headless(settings: Mapping[str, Any], argv: Sequence[str], prog: str | None = None) -> int:
    """Settings overridden by flags, on a TIFF stack (or the demo)."""
    def action() -> int:
        config = build_config(settings, argv, prog=prog)
        if config.is_demo:
            config = demo_config(config)
        print(describe_run(config), flush=True)    # before TensorFlow's seconds of silence
        quiet_tensorflow()                          # its start-up chatter would bury a one-line error

        from .pipeline.run import run

        if config.input_path is not None and is_zarr_path(config.input_path):
            from .host_api.ome_zarr import OmeZarrHost
            host = OmeZarrHost(config.input_path, config.output_path, overwrite=config.overwrite,
                               time_point=config.time_point)
            try:
                summary = run(config, host)
            finally:
                host.close()
            return 0 if summary.completed else 1
        from .host_api.tiff import TiffHost
        with TiffHost(config.input_path, config.output_path, overwrite=config.overwrite,
                      time_point=config.time_point, axes=config.axes) as host:
            summary = run(config, host)
        return 0 if summary.completed else 1

    return _reported(action, _to_stderr)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def check_only(settings: Mapping[str, Any]) -> bool:
    """The ``CHECK_ONLY`` constant (False when the settings block has none)."""
    value = settings.get("CHECK_ONLY", False)
    if not isinstance(value, bool):
        raise ConfigError(f"CHECK_ONLY ({CHECK_FLAG}) = {value!r} in the settings block of stardist_2d.py: "
                          "must be True (only check and report) or False (run)")
    return value


def _selfcheck():
    """``selfcheck``, imported only when asked for (it may load more than a run's checks)."""
    name = f"{__package__}.selfcheck"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
        raise ConfigError(f"CHECK_ONLY ({CHECK_FLAG}): this installation of stardist-v4d has no selfcheck.py; "
                          "update it (pip install -e . in the project folder)") from None


def run_check(settings: Mapping[str, Any], argv: Sequence[str], say: Callable[[str], None] = _to_stderr) -> int:
    """The self-check report (``--check``, ``check``, ``CHECK_ONLY = True``): writes nothing."""
    def action() -> int:
        check_only(settings)                     # a CHECK_ONLY that is not True/False is one line too
        return int(_selfcheck().main(settings, list(argv)))

    return _reported(action, say)


def host_for(route: str, config: Config) -> Host:
    """The arivis host of ``route``; imported only here, so headless runs never touch arivis."""
    from .host_api.vision4d import OperationHost, ScriptEditorHost
    if route == "operation":
        return OperationHost.from_running_operation()
    return ScriptEditorHost.from_active_viewer(overwrite=config.overwrite)


def run_in_host(settings: Mapping[str, Any], route: str) -> int:
    """Inside arivis: the settings block as it is (no flags), messages on the console."""
    def action() -> int:
        if check_only(settings):
            return int(_selfcheck().main(settings, []))
        quiet_tensorflow()
        from .pipeline.run import run

        config = build_config(settings)
        summary = run(config, host_for(route, config))
        return 0 if summary.completed else 1

    return _reported(action, lambda line: print(line, flush=True))


def main(settings: Mapping[str, Any], argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Pick the route and run it; returns a process exit code.

    Headless, a first word that is a command (``train``, ``eval``, ``measure``, ``check``,
    ``run``) runs that command as ``python -m stardist_v4d`` does; ``--check`` (or
    ``CHECK_ONLY = True``) prints the self-check report instead of running. ``prog`` is the
    name usage lines give (default: as called).
    """
    route = detect_route()
    if route != "headless":
        return run_in_host(settings, route)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):
        word, rest = argv[0], argv[1:]
        if word == "run":
            return main(settings, rest, prog=f"{prog or default_prog()} run")
        if word == "check":                       # with this script's settings, not the installed ones
            return run_check(settings, rest)
        if word in COMMAND_WORDS:
            from .__main__ import main as command
            return command(argv)
        build_parser(Config(), prog).error(       # argparse's usage line and one error line, exit code 2
            f"unknown command {word!r}: the commands are {', '.join(COMMAND_WORDS)}; "
            "a segmentation takes flags only (--input TIFF ...)")
    if CHECK_FLAG in argv or settings.get("CHECK_ONLY", False) is not False:
        return run_check(settings, [word for word in argv if word != CHECK_FLAG])
    return run_headless(settings, argv, prog)
