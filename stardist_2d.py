"""StarDist 2D nuclei segmentation into a new label channel, plane by plane.

Inside arivis Vision4D: open this file in the Script Editor, edit the settings
below, press Run. Headless: ``python stardist_2d.py --input stack.tif`` (``--help``
lists a flag for every setting, and the other commands: ``train``, ``eval``,
``measure``, ``check``); with no arguments it runs on the embedded demo.
"""

# ------------------------------------------------------------- user settings
INPUT_CHANNEL = 0              # 0-based channel holding the nuclei
OUTPUT_CH_NAME = "StarDist"    # name of the new label channel
MODEL2D_PATH = None            # folder holding model folders; None = models shipped with the plugin
MODEL_NAME = "fluo_nuclei"     # model folder in MODEL2D_PATH, or a registered name (2D_versatile_fluo)
CURRENT_TIME_POINT = True      # True: only the active time point; False: every time point
FIRST_PLANE = -1               # first Z plane, 0-based; -1 = bottom
LAST_PLANE = -1                # last Z plane, 0-based and included; -1 = top
NORM_PERCENTILES = (1, 99.8)   # percentile normalization, low and high
NORMALIZE = "plane"            # "plane": percentiles per plane; "stack": one pair for the selection
PROB_THRESH = None             # None = the model's thresholds.json (else StarDist's 0.5)
NMS_THRESH = None              # None = the model's thresholds.json (else StarDist's 0.4)
N_TILES = "auto"               # "auto": tiles only if a plane exceeds PLANE_MEMORY_MB; None = one; (2, 2)
SCALE = 1.0                    # resize factor for nuclei larger/smaller than the model's
AXES = None                    # None = the TIFF's own axes (plain pages: Z planes); else e.g. "TZCYX"
LABEL_DTYPE = "auto"           # "auto", "uint16", "uint32" or "float32"
LABEL_IDS = "per_plane"        # "per_plane", "unique", "track_t" (track IDs, needs MEASURE) or "link_z" (3D objects)
WRITE_OBJECTS = True           # also store one outline per nucleus (arivis objects / ImageJ ROIs)
GPU_MEMORY_MB = None           # None = TensorFlow's GPU memory grows as needed; else a cap in MB
WORKERS = None                 # processes for NMS + label rendering beside the CNN; None = one per core when they pay, 0 = none
PRECISION = "fp32"             # "fp32": exactly StarDist's labels; "bf16": ~2-4x faster CNN on recent CPUs (OpenVINO)
BACKEND = None                 # CNN engine: None = auto (OpenVINO for bf16), "tensorflow" or "openvino"
SCHEDULER = None               # None = this process; "local:N" = N Dask workers here; "tcp://host:8786" = a cluster
SCHEDULER_TIMEOUT_S = 30       # seconds to wait for the scheduler to answer
PLANE_MEMORY_MB = 2048         # memory one plane's prediction may take; bigger planes are tiled or cut in blocks
BLOCK_OVERLAP = 128            # huge planes only: block overlap in pixels, above the largest nucleus' size
MEASURE = True                 # measure every nucleus: area, shape, channel intensities (tables, Excel, plots)
RING_UM = 2.0                  # width of the ring around each nucleus whose channel means are measured
PIXEL_SIZE_UM = None           # None = the image's pixel size; else (x, y) in um
PLOTS = True                   # also the Excel workbook and the pictures; False = CSV tables only
MEASUREMENTS_DIR = None        # None = beside the output (inside arivis: none); else a folder for the tables
TRACK_MAX_DISTANCE_UM = None   # tracks over time: farthest move per time point; None = one nucleus diameter
TRACK_GAP_FRAMES = 1           # tracks: join across this many time points without the nucleus (0 = none)
TRACK_DIVISIONS = True         # tracks: a nucleus may divide into two daughters
OVERWRITE = False              # replace an existing output (file or channel) and its tables
CHECK_ONLY = False             # True: only check installation, model and settings, print a report, write nothing
# ---------------------------------------------------------------------------

import sys


def user_settings() -> dict:
    """The settings block above, as ``{NAME: value}``."""
    return {name: value for name, value in globals().items() if name.isupper()}


def run(config, host):
    """Segment with ``config`` through ``host``; returns a RunSummary. Every route calls this."""
    from stardist_v4d.pipeline.run import run as run_pipeline
    return run_pipeline(config, host)


def main(argv=None, prog=None) -> int:
    """Inside arivis if its modules import, else headless on TIFF (or the demo).

    Headless, a first word ``train``, ``eval``, ``measure``, ``check`` or ``run`` runs that
    command (as ``python -m stardist_v4d``); ``prog`` names the command in usage lines.
    """
    try:
        from stardist_v4d.launch import main as launch
    except ImportError:
        print("error: the stardist-v4d package is not installed in this Python environment; "
              "run `pip install -e .` in the project folder (see README.md)", file=sys.stderr)
        return 2
    return launch(user_settings(), argv, prog=prog)


def console_main() -> None:
    """The installed ``stardist-2d`` command: ``main``, then the process ends at once
    (``process_exit``: no second of TensorFlow teardown after the last line)."""
    from stardist_v4d.process_exit import end_process
    end_process(main())


def _inside_arivis() -> bool:
    """Whether arivis' Python modules import here (asked only when this file is run)."""
    try:
        from stardist_v4d.launch import detect_route
    except ImportError:
        return False
    return detect_route() != "headless"


# Run when executed, never when imported: a real import always has ``__spec__``, while
# the host may set neither ``__name__`` nor ``__file__`` when it executes this file.
if globals().get("__name__") == "__main__":
    _exit_code = main()
    if not _inside_arivis():          # never end the host application's interpreter
        try:
            from stardist_v4d.process_exit import end_process
        except ImportError:
            sys.exit(_exit_code)
        end_process(_exit_code)
elif globals().get("__spec__") is None and _inside_arivis():
    main([])
