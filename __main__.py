"""``python -m stardist_v4d <command> ...``: one entry point, one module per command.

Each command module has ``main(argv) -> int`` and is imported only when chosen,
so ``train --help`` never waits for TensorFlow.
"""
from __future__ import annotations

import sys

USAGE = """usage: python -m stardist_v4d <command> [options]

commands:
  train   train a StarDist 2D model folder from image/mask TIFF pairs (--from: fine-tune one)
  eval    score a model on real nuclei images with ground truth (AP and F1 at IoU 0.5)
  run     segment nuclei in a TIFF stack (the flags of stardist_2d.py; none = the demo)
  measure measure existing labels (e.g. edited in Fiji) on an image: tables, Excel, plots
  check   check the installation, the model and the settings (run's flags); writes nothing
  convert convert a TIFF stack to OME-Zarr plane by plane (for runs on a cluster)

'python -m stardist_v4d <command> --help' describes a command; 'python stardist_2d.py
<command> ...' and the installed 'stardist-2d <command> ...' do the same."""


def _train(argv: list[str]) -> int:
    from .training.cli import main
    return main(argv)


def _run(argv: list[str]) -> int:
    from .stardist_2d import main
    return main(argv, prog="python -m stardist_v4d run")


def _check(argv: list[str]) -> int:
    from .launch import run_check
    from .stardist_2d import user_settings
    return run_check(user_settings(), argv)


def _measure(argv: list[str]) -> int:
    from .remeasure import main
    return main(argv)


def _eval(argv: list[str]) -> int:
    from .training.evaluate import main
    return main(argv)


def _convert(argv: list[str]) -> int:
    from .convert import main
    return main(argv)


COMMANDS = {"train": _train, "run": _run, "eval": _eval, "measure": _measure, "check": _check,
            "convert": _convert}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"error: unknown command '{argv[0]}': choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    from .process_exit import end_process
    end_process(main())
