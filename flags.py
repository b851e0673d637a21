"""Headless flags: one per setting, each overriding the constant of the same meaning.

``config.py`` turns constants plus these overrides into one checked ``Config``; this module
only knows the flags' words (argparse), their help, and how a flag's value becomes a
setting's (``--n-tiles auto``, ``--backend auto``, ``--input``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from .config import NORMALIZE_MODES, Config
from .pipeline.backends.engine import PRECISIONS
from .pipeline.label_ids import LABEL_ID_MODES
from .pipeline.plan import LABEL_DTYPES


#: The other commands, shown under the segmentation flags' help (``--help``).
COMMANDS_EPILOG = """\
other commands (each has --help):
  python -m stardist_v4d train ...    train a model folder on image/mask TIFF pairs
  python -m stardist_v4d eval ...     score a model on images with ground truth (AP, F1)
  python -m stardist_v4d measure ...  measure existing labels: tables, Excel, plots
  python -m stardist_v4d check        check installation, model and settings; writes nothing
  python -m stardist_v4d convert ...  convert a TIFF stack to OME-Zarr (for --scheduler)
  python -m stardist_v4d run ...      this segmentation, as a module command
{same}Installed with pip, this script is also the command 'stardist-2d', e.g.:
stardist-2d --input stack.tif"""


def default_prog() -> str:
    """The name the segmentation was called by: ``stardist-2d``, the script's file name, or
    ``stardist_2d.py`` (``python -m stardist_v4d run`` passes its own)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if Path(name).stem == "stardist-2d":
        return "stardist-2d"
    return name if name.endswith(".py") and name != "__main__.py" else "stardist_2d.py"


def build_parser(defaults: Config, prog: str | None = None) -> argparse.ArgumentParser:
    """Headless flags; each overrides the constant of the same meaning.

    ``prog`` is the name in usage and errors (default: as called, see ``default_prog``).
    Abbreviated flags are refused (``--overwrit`` is not ``--overwrite``).
    """
    prog = prog or default_prog()
    p = argparse.ArgumentParser(
        prog=prog, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [--input STACK] [--output STACK] [options]   (--help lists every option)",
        description="StarDist 2D nuclei segmentation, plane by plane, into a new label channel.\n"
                    "With no --input it runs on the embedded demo stack and writes demo_output/.",
        epilog=COMMANDS_EPILOG.format(same="" if prog.startswith("python -m") else
                                      f"'{prog} train ...' (eval, measure, check) does the same. "))
    p.add_argument("--input", type=Path, metavar="STACK", help="input TIFF stack (ImageJ hyperstack or OME-TIFF, any of "
                   "T, Z, C axes) or OME-Zarr image (a .ome.zarr folder)")
    p.add_argument("--output", type=Path, metavar="STACK", help="output OME-TIFF, or OME-Zarr store for an OME-Zarr input "
                   "(default: INPUT's name + _stardist.ome.tif / _stardist.ome.zarr beside it)")
    p.add_argument("--channel", type=int, dest="input_channel", help=f"0-based channel to segment (default {defaults.input_channel})")
    p.add_argument("--output-channel-name", dest="output_ch_name", help=f"name of the new label channel (default {defaults.output_ch_name!r})")
    p.add_argument("--model-path", type=Path, dest="model2d_path", help="folder holding model folders (default: the models shipped with the plugin)")
    p.add_argument("--model", dest="model_name", help=f"model folder name in --model-path, or a registered StarDist name (default {defaults.model_name!r})")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--current-timepoint", dest="current_time_point", action="store_const", const=True,
                      help="segment only the active time point (--timepoint) [default]")
    when.add_argument("--all-timepoints", dest="current_time_point", action="store_const", const=False,
                      help="segment every time point")
    p.add_argument("--timepoint", type=int, dest="time_point", help="0-based active time point of a TIFF (default 0)")
    p.add_argument("--first-plane", type=int, help="first Z plane, 0-based; -1 = bottom (default -1)")
    p.add_argument("--last-plane", type=int, help="last Z plane, 0-based inclusive; -1 = top (default -1)")
    p.add_argument("--percentiles", type=float, nargs=2, metavar=("LOW", "HIGH"), dest="norm_percentiles",
                   help=f"percentile normalization (default {defaults.norm_percentiles[0]:g} {defaults.norm_percentiles[1]:g})")
    p.add_argument("--normalize", choices=NORMALIZE_MODES,
                   help="'plane': percentiles per plane; 'stack': one pair for the whole selection, "
                        "so empty planes do not turn noise into nuclei (default plane)")
    p.add_argument("--prob-thresh", type=float, help="object probability threshold in (0, 1) (default: the model's)")
    p.add_argument("--nms-thresh", type=float, help="overlap threshold in (0, 1) for non-maximum suppression (default: the model's)")
    p.add_argument("--n-tiles", type=_tiles_word, nargs="+", metavar="N",
                   help="'auto': tiles only when a plane's CNN would exceed --plane-memory-mb [default]; "
                        "'none': one tile; Y X: split each plane into Y x X tiles")
    p.add_argument("--scale", type=float, help="resize planes by this factor before prediction, for nuclei larger or smaller than the model's (default 1.0)")
    p.add_argument("--axes", help="a TIFF's axes when its metadata lacks or misstates them, one letter per axis "
                                   "of T, Z, C, Y, X, e.g. TZCYX (default: the file's; plain pages are taken as Z)")
    p.add_argument("--label-dtype", choices=LABEL_DTYPES, help="output pixel type (default auto: the input type widened to at least uint16)")
    p.add_argument("--label-ids", choices=LABEL_ID_MODES,
                   help="per_plane: 1..n in each plane [default]; unique: no ID repeats in the run; "
                        "track_t: every slice of a nucleus carries its track's ID (LAP tracks over time, as "
                        "in the tracks table); link_z: overlapping objects in neighbouring planes share "
                        "one ID (3D objects)")
    _switch(p, "write_objects", "objects",
            "also write one outline per nucleus (an ImageJ ROI zip beside a TIFF output) [default]",
            "write labels only")
    p.add_argument("--gpu-memory-mb", type=int, help="cap on GPU memory TensorFlow may take (default: grow as needed)")
    p.add_argument("--workers", type=int, help="worker processes for NMS and label rendering beside the CNN "
                   "(default: one per core, for runs big enough to repay their ~1 s start; 0: none)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="fp32: exactly StarDist's labels [default]; bf16: the CNN in bfloat16 through OpenVINO, "
                        "~2-4x faster on CPUs with AVX512_BF16 or AMX, objects matching fp32's at F1 >= 0.99")
    p.add_argument("--backend", type=_backend_word, metavar="{tensorflow,openvino,auto}",
                   help="engine of the CNN: tensorflow, or openvino (starts without TensorFlow once the model "
                        "is converted; fp32 within 1e-5 of TensorFlow); default auto: openvino for bf16")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the planes as Dask tasks: local:N (N worker processes here) or tcp://host:8786 "
                        "(an existing cluster); needs an OME-Zarr input (see the convert command)")
    p.add_argument("--scheduler-timeout-s", type=float,
                   help="how long to wait for the scheduler to answer (default 30)")
    p.add_argument("--plane-memory-mb", type=int, help="memory one plane's prediction may take; bigger planes "
                   f"are tiled, huge ones predicted in blocks (default {defaults.plane_memory_mb})")
    p.add_argument("--block-overlap", type=int, help="overlap of blocks for huge planes, in pixels; must exceed "
                   f"the largest nucleus' size (default {defaults.block_overlap})")
    _switch(p, "measure", "measure",
            "also measure every nucleus: tables (CSV, Excel) and plots beside the output [default]",
            "labels (and outlines) only")
    p.add_argument("--ring-um", type=float, help="width of the ring around each nucleus whose channel means "
                   f"are measured, in um (default {defaults.ring_um:g})")
    p.add_argument("--pixel-size-um", type=float, nargs=2, metavar=("X", "Y"),
                   help="pixel size in um for the measurements (default: the file's)")
    _switch(p, "plots", "plots",
            "also write the Excel workbook and the pictures (area histogram, density maps, counts, "
            "outline overlay) [default]", "the CSV tables only: no workbook, no pictures")
    p.add_argument("--measurements-dir", type=Path, help="folder for the tables and plots "
                   "(default: beside the output)")
    p.add_argument("--track-max-distance-um", type=float, metavar="UM",
                   help="tracks over time: the farthest a nucleus may move between time points, in um "
                        "(px without a pixel size; default: one median nucleus diameter)")
    p.add_argument("--track-gap-frames", type=int, metavar="N",
                   help=f"tracks: join a track across up to N time points without its nucleus (default {defaults.track_gap_frames})")
    _switch(p, "track_divisions", "track-divisions",
            "tracks: a nucleus may divide into two (the daughters' tracks name their mother's) [default]",
            "no divisions")
    p.add_argument("--overwrite", action="store_const", const=True,
                   help="replace an existing output file and its tables and plots")
    p.add_argument("--check", action="store_true",
                   help="only check the installation, the model and these settings, print a report and "
                        "stop; writes nothing (CHECK_ONLY)")
    return p


def _switch(parser: argparse.ArgumentParser, dest: str, word: str, on_help: str, off_help: str) -> None:
    """``--WORD`` / ``--no-WORD``: True / False for ``dest``; neither given = the constant's value."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{word}", dest=dest, action="store_const", const=True, help=on_help)
    group.add_argument(f"--no-{word}", dest=dest, action="store_const", const=False, help=off_help)


def _backend_word(text: str) -> str | None:
    """``--backend auto`` is BACKEND = None; other words are checked with the constant."""
    return None if text.lower() == "auto" else text.lower()


def _tiles_word(text: str) -> int | str:
    """``--n-tiles`` words: whole numbers stay numbers, 'auto'/'none' stay words."""
    try:
        return int(text)
    except ValueError:
        return text.lower()


def _tiles_from_flag(words: list) -> tuple[int, int] | str | None | list:
    """``['auto']`` -> 'auto', ``['none']`` -> None, numbers as given (checked later)."""
    if len(words) == 1 and words[0] in ("auto", "none"):
        return None if words[0] == "none" else "auto"
    return words


def overrides_from(defaults: Config, argv: Sequence[str], prog: str | None = None) -> dict[str, Any]:
    """The settings the flags in ``argv`` give, as ``Config`` field names (parsing errors exit 2)."""
    args = build_parser(defaults, prog).parse_args(list(argv))
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    if any(word == "--backend" or word.startswith("--backend=") for word in argv):  # auto = None
        overrides["backend"] = args.backend
    overrides.pop("check", None)          # an action, handled by launch.main
    if "n_tiles" in overrides:
        overrides["n_tiles"] = _tiles_from_flag(overrides["n_tiles"])
    if "input" in overrides:
        overrides["input_path"] = overrides.pop("input")
    if "output" in overrides:
        overrides["output_path"] = overrides.pop("output")
    return overrides
