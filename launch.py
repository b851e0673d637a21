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
from .host_api.base import Host, HostError

DEMO_DIR = "demo_output"


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
    """The embedded demo: a generated stack in ``./demo_output``, replacing earlier demo output."""
    from .demo.demo_stack import make_demo_stack

    folder = folder or Path.cwd() / DEMO_DIR
    folder.mkdir(exist_ok=True)
    stack = make_demo_stack(folder / "demo_stack.ome.tif")
    print(f"Demo: segmenting {stack} (nuclei in channel 0, all time points)", flush=True)
    return replace(config, input_path=stack, output_path=folder / "demo_stack_stardist.ome.tif",
                   current_time_point=False, overwrite=True)


def run_headless(settings: Mapping[str, Any], argv: Sequence[str]) -> int:
    """Settings overridden by flags, on a TIFF stack (or the demo)."""
    def action() -> int:
        from .host_api.tiff import TiffHost
        from .pipeline.run import run

        config = build_config(settings, argv)
        if config.is_demo:
            config = demo_config(config)
        with TiffHost(config.input_path, config.output_path, overwrite=config.overwrite,
                      time_point=config.time_point) as host:
            summary = run(config, host)
        return 0 if summary.completed else 1

    return _reported(action, lambda line: print(line, file=sys.stderr, flush=True))


def host_for(route: str, config: Config) -> Host:
    """The arivis host of ``route``; imported only here, so headless runs never touch arivis."""
    from .host_api.vision4d import OperationHost, ScriptEditorHost
    if route == "operation":
        return OperationHost.from_running_operation()
    return ScriptEditorHost.from_active_viewer(overwrite=config.overwrite)


def run_in_host(settings: Mapping[str, Any], route: str) -> int:
    """Inside arivis: the settings block as it is (no flags), messages on the console."""
    def action() -> int:
        from .pipeline.run import run

        config = build_config(settings)
        summary = run(config, host_for(route, config))
        return 0 if summary.completed else 1

    return _reported(action, lambda line: print(line, flush=True))


def main(settings: Mapping[str, Any], argv: Sequence[str] | None = None) -> int:
    """Pick the route and run it; returns a process exit code."""
    route = detect_route()
    if route == "headless":
        return run_headless(settings, sys.argv[1:] if argv is None else argv)
    return run_in_host(settings, route)
