"""StarDist 2D nuclei segmentation into a new label channel, plane by plane.

Inside arivis Vision4D: open this file in the Script Editor, edit the settings
below, press Run. Headless: ``python stardist_2d.py --input stack.tif`` (``--help``
lists a flag for every setting); with no arguments it runs on the embedded demo.
"""

# ------------------------------------------------------------- user settings
INPUT_CHANNEL = 0              # 0-based channel holding the nuclei
OUTPUT_CH_NAME = "StarDist"    # name of the new label channel
MODEL2D_PATH = None            # folder holding model folders; None = models shipped with the plugin
MODEL_NAME = "demo"            # model folder in MODEL2D_PATH, or a registered name (2D_versatile_fluo)
CURRENT_TIME_POINT = True      # True: only the active time point; False: every time point
FIRST_PLANE = -1               # first Z plane, 0-based; -1 = bottom
LAST_PLANE = -1                # last Z plane, 0-based and included; -1 = top
NORM_PERCENTILES = (1, 99.8)   # percentile normalization, low and high
NORMALIZE = "plane"            # "plane": percentiles per plane; "stack": one pair for the selection
PROB_THRESH = None             # None = the model's thresholds.json (else StarDist's 0.5)
NMS_THRESH = None              # None = the model's thresholds.json (else StarDist's 0.4)
N_TILES = None                 # None = one tile; (2, 2) splits each plane to save memory
SCALE = 1.0                    # resize factor for nuclei larger/smaller than the model's
LABEL_DTYPE = "auto"           # "auto", "uint16", "uint32" or "float32"
OVERWRITE = False              # replace an existing output
# ---------------------------------------------------------------------------

import os
import sys

DEMO_DIR = "demo_output"


def user_settings() -> dict:
    """The settings block above, as ``{NAME: value}``."""
    return {name: value for name, value in globals().items() if name.isupper() and name != "DEMO_DIR"}


def run(config, host):
    """Segment with ``config`` through ``host``; returns a RunSummary. Every route calls this."""
    from stardist_v4d.pipeline.run import run as run_pipeline
    return run_pipeline(config, host)


def _headless(argv: list[str]) -> int:
    from stardist_v4d.config import ConfigError, build_config
    from stardist_v4d.pipeline.model import ModelError
    from stardist_v4d.pipeline.run import LabelOverflowError

    try:
        config = build_config(user_settings(), argv)
        if config.is_demo:
            config = _demo_config(config)
        from stardist_v4d.host_api.tiff import TiffHost
        host = TiffHost(config.input_path, config.output_path, overwrite=config.overwrite,
                        time_point=config.time_point)
        summary = run(config, host)
    except (ConfigError, ModelError, LabelOverflowError, OSError, ValueError) as error:
        if os.environ.get("STARDIST_V4D_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted: planes written so far are kept (see the line above).", file=sys.stderr)
        return 130
    return 0 if summary.completed else 1


def _demo_config(config):
    """The embedded demo: a generated stack in ./demo_output, replacing earlier demo output."""
    from dataclasses import replace
    from pathlib import Path

    from stardist_v4d.demo.demo_stack import make_demo_stack

    folder = Path.cwd() / DEMO_DIR
    folder.mkdir(exist_ok=True)
    stack = make_demo_stack(folder / "demo_stack.ome.tif")
    print(f"Demo: segmenting {stack} (nuclei in channel 0, all time points)")
    return replace(config, input_path=stack, output_path=folder / "demo_stack_stardist.ome.tif",
                   current_time_point=False, overwrite=True)


def main(argv: list[str] | None = None) -> int:
    """Pick the host and run. Headless on TIFF for now."""
    return _headless(sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    try:
        import stardist_v4d  # noqa: F401
    except ImportError:
        sys.exit("error: the stardist-v4d package is not installed in this Python; "
                 "run `pip install -e .` in the project folder (see README.md)")
    sys.exit(main())
