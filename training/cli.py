"""``python -m stardist_v4d train``: train a StarDist 2D model folder from TIFF pairs.

Everything that can be wrong with the arguments or the data is reported as one
``error: ...`` line (exit code 2) before TensorFlow is imported, so a typo costs a
second, not the half minute TensorFlow takes to load.
"""
from __future__ import annotations

import argparse
import functools
from dataclasses import replace
import sys
from pathlib import Path

from .dataset import TrainingDataError, load_training_pairs
from .fine_tune import FINE_TUNE_LEARNING_RATE, BaseModel, BaseModelError, check_architecture_flags, find_base_model
from .train import TrainSettings

MODEL_FILES = ("config.json", "weights_best.h5", "weights_last.h5", "weights_now.h5",
               "thresholds.json", "loss.png", "training.json")

USAGE_EXAMPLE = """\
Images and masks pair by name: image NAME.tif takes the mask NAME.tif or
NAME_mask.tif / NAME_masks.tif / NAME_label.tif / NAME_labels.tif (.tif or .tiff)
from --masks; --images and --masks may be the same folder. Images are 2D (Y, X)
single-channel; masks are instance labels (0 background, one ID per nucleus).

The model folder gets config.json, weights_best.h5, thresholds.json (optimized on
the validation images), loss.png and training.json. A checkpoint is written after
every epoch: Ctrl-C (or a killed run) keeps the best weights so far, and
--resume MODEL_DIR continues where the run stopped.

With --from, training starts from an existing model (fine-tuning): a few dozen
annotated images adapt it to your microscope, where training from scratch on the
same images falls far short. The model keeps its architecture; the learning rate
defaults lower.

examples:
  python -m stardist_v4d train --images data/images --masks data/masks --out models/my_nuclei
  python -m stardist_v4d train --from demo --images data/images --masks data/masks --out models/my_nuclei
  python -m stardist_v4d train --resume models/my_nuclei
"""


class _UsageError(ValueError):
    """A bad argument; reported like a data error (one line, exit code 2)."""


def add_augmentation_arguments(parser: argparse.ArgumentParser) -> None:
    """The optional augmentations, shared by ``train`` and the demo-model recipe."""
    parser.add_argument("--augment-scale", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="also zoom half the patches by a factor in LOW..HIGH (another pixel size), e.g. 0.8 1.25")
    parser.add_argument("--augment-blur", type=float, default=0.0, metavar="SIGMA",
                        help="also blur half the patches, Gaussian sigma up to SIGMA px (another focus); default off")


def augmentation_settings(args: argparse.Namespace) -> dict:
    """``TrainSettings`` keywords of the augmentation flags; a bad range raises a ``ValueError``."""
    if args.augment_scale is not None and not 0 < args.augment_scale[0] <= args.augment_scale[1]:
        low, high = args.augment_scale
        raise _UsageError(f"--augment-scale {low:g} {high:g}: needs 0 < LOW <= HIGH, e.g. --augment-scale 0.8 1.25")
    if args.augment_blur < 0:
        raise _UsageError(f"--augment-blur {args.augment_blur:g}: must be 0 (off) or a sigma in px, e.g. 1.0")
    return {"augment_scale": tuple(args.augment_scale) if args.augment_scale else None,
            "augment_blur": args.augment_blur}


def build_parser() -> argparse.ArgumentParser:
    """The ``train`` argument parser; defaults are StarDist's standard 2D model (see TrainSettings)."""
    parser = argparse.ArgumentParser(
        prog="python -m stardist_v4d train", allow_abbrev=False, description=__doc__.splitlines()[0].split(": ", 1)[1],
        epilog=USAGE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, metavar="DIR", help="folder of image TIFFs (required)")
    parser.add_argument("--masks", type=Path, metavar="DIR", help="folder of label-mask TIFFs (required)")
    parser.add_argument("--out", type=Path, metavar="MODEL_DIR",
                        help="model folder to create (its name is the model name; required)")
    parser.add_argument("--resume", type=Path, metavar="MODEL_DIR",
                        help="continue a stopped training of this model folder at its next epoch (same data, "
                             "settings, history and learning-rate schedule); no other flag is needed or allowed")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the model files in an existing --out folder")
    parser.add_argument("--from", type=Path, dest="base_model", metavar="MODEL_DIR",
                        help="fine-tune this model folder (or a shipped model's name, e.g. demo) "
                             "instead of starting from random weights")
    parser.add_argument("--epochs", type=int, help=f"default: {TrainSettings.epochs}; with --resume: a new planned "
                        "length for the stopped run (the learning rate follows the new plan from the next epoch)")
    parser.add_argument("--steps-per-epoch", type=int, default=100, help="default: %(default)s")
    parser.add_argument("--patch-size", type=int, nargs=2, default=(256, 256), metavar=("Y", "X"),
                        help="training patch in pixels, a multiple of 2^unet-depth x grid (default: 256 256)")
    parser.add_argument("--batch-size", type=int, default=4, help="default: %(default)s")
    parser.add_argument("--learning-rate", type=float, metavar="RATE",
                        help=f"default: {TrainSettings.learning_rate:g}, or {FINE_TUNE_LEARNING_RATE:g} with --from")
    parser.add_argument("--n-rays", type=int, help=f"default: {TrainSettings.n_rays} (with --from: the model's)")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of the pairs held out for validation and thresholds (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="default: %(default)s")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: Keras mixed precision (bfloat16 compute, float32 weights), faster on CPUs "
                             "with AVX512_BF16 or AMX; default: %(default)s")
    add_augmentation_arguments(parser)
    advanced = parser.add_argument_group("architecture (advanced)")
    advanced.add_argument("--unet-depth", type=int,
                          help=f"U-Net levels (default: {TrainSettings.unet_n_depth}; with --from: the model's)")
    advanced.add_argument("--unet-filters", type=int, help="filters in the first U-Net level "
                          f"(default: {TrainSettings.unet_n_filter_base}; with --from: the model's)")
    advanced.add_argument("--grid", type=int, choices=(1, 2, 4),
                          help=f"subsampling of the predicted maps, both axes (default: {TrainSettings.grid[0]}; "
                               "1 finds smaller nuclei at 2-3x the network's cost; with --from: the model's)")
    return parser


def settings_from(args: argparse.Namespace, base: BaseModel | None) -> TrainSettings:
    """The training settings the flags ask for; with ``--from``, the architecture is the model's."""
    if base is not None:
        check_architecture_flags(args, base)
        architecture = base.architecture(deeper=args.unet_depth, finer_grid=args.grid)
    else:
        given = {"n_rays": args.n_rays, "unet_n_depth": args.unet_depth, "unet_n_filter_base": args.unet_filters,
                 "grid": (args.grid, args.grid) if args.grid is not None else None}
        architecture = {key: value for key, value in given.items() if value is not None}
    learning_rate = args.learning_rate
    if learning_rate is None:
        learning_rate = FINE_TUNE_LEARNING_RATE if base is not None else TrainSettings.learning_rate
    return TrainSettings(patch_size=tuple(args.patch_size), batch_size=args.batch_size,
                         epochs=args.epochs if args.epochs is not None else TrainSettings.epochs,
                         steps_per_epoch=args.steps_per_epoch, learning_rate=learning_rate,
                         val_fraction=args.val_fraction, seed=args.seed, precision=args.precision, **architecture,
                         **augmentation_settings(args))


def _check_arguments(args: argparse.Namespace, base: BaseModel | None) -> None:
    for flag, value, low in (("--epochs", args.epochs, 1), ("--steps-per-epoch", args.steps_per_epoch, 1),
                             ("--batch-size", args.batch_size, 1), ("--n-rays", args.n_rays, 3),
                             ("--unet-depth", args.unet_depth, 1), ("--unet-filters", args.unet_filters, 1),
                             ("--seed", args.seed, 0)):
        if value is not None and value < low:
            raise _UsageError(f"{flag} {value}: must be at least {low}")
    if args.learning_rate is not None and not 0 < args.learning_rate < 1:
        raise _UsageError(f"--learning-rate {args.learning_rate:g}: must be between 0 and 1, e.g. 0.0003")
    if not 0 < args.val_fraction < 1:
        raise _UsageError(f"--val-fraction {args.val_fraction:g}: must be between 0 and 1, e.g. 0.1")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise _UsageError(f"--out '{out}' is a file: give a folder for the model")
    if base is not None and out == base.folder:
        raise _UsageError(f"--out '{out}' is the --from model: write the fine-tuned model to a new folder")
    if out.exists() and not args.overwrite:
        raise _UsageError(f"model folder '{out}' already exists: pass --overwrite to replace "
                          "its model files, or choose another --out")


def _check_patch_size(patch_size: tuple[int, int], settings: TrainSettings) -> None:
    """Each patch side must pass the U-Net's poolings and the grid without remainder."""
    div = 2 ** settings.unet_n_depth * max(settings.grid)
    if any(s < div or s % div for s in patch_size):
        y, x = (max(div, round(s / div) * div) for s in patch_size)
        raise _UsageError(f"--patch-size {patch_size[0]} {patch_size[1]}: each side must be a multiple of "
                          f"{div} (2^unet-depth x grid {max(settings.grid)}), e.g. --patch-size {y} {x}")


def _clear_model_folder(out: Path) -> None:
    """Remove the files a previous training left, and nothing else the user put there."""
    import shutil

    for name in MODEL_FILES:
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "logs", ignore_errors=True)
    from .checkpoint import remove
    remove(out)


def _settings_from_run(run: dict) -> TrainSettings:
    """The ``TrainSettings`` a checkpoint recorded (JSON turned tuples into lists)."""
    values = dict(run["settings"])
    for key in ("grid", "patch_size", "augment_scale"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    known = TrainSettings.__dataclass_fields__
    return TrainSettings(**{key: value for key, value in values.items() if key in known})


def _names_digest(names: list[str]) -> str:
    import hashlib
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def _resume_arguments(args: argparse.Namespace):
    """The checkpoint of ``--resume`` and the run it records; other flags are refused."""
    from . import checkpoint as checkpoints

    given = [flag for flag, value in (("--images", args.images), ("--masks", args.masks), ("--out", args.out),
                                      ("--from", args.base_model)) if value is not None]
    if given:
        raise _UsageError(f"--resume takes its data and settings from the checkpoint: leave out {', '.join(given)}")
    found = checkpoints.find(args.resume.expanduser().resolve())
    run = found.run
    for key in ("images", "masks", "settings", "names_digest"):
        if key not in run:
            raise checkpoints.CheckpointError(f"--resume '{args.resume}': its checkpoint lacks '{key}'; start a new training")
    return found, run


#: Library warnings a training prints that tell its user nothing: the model folder is ours,
#: batches come from our generator, and the checkpoint's Keras 3 format is intended.
QUIET_WARNINGS = (r"output path for model already exists", r".*`shuffle=True` was passed",
                  r"Detected filename suffix '\.weights\.h5'")


def quiet_library_warnings() -> None:
    import warnings
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def main(argv: list[str] | None = None) -> int:
    """Run the ``train`` subcommand; returns the exit code (2 for bad arguments or data)."""
    from .checkpoint import CheckpointError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:          # --help, or argparse's own usage errors
        return int(exit_.code or 0)
    log = functools.partial(print, flush=True)
    quiet_library_warnings()
    resume = None
    try:
        if args.resume is not None:
            resume, run = _resume_arguments(args)
            args.out = args.resume.expanduser().resolve()
            settings = _settings_from_run(run)
            if args.epochs is not None:
                if args.epochs <= resume.epochs_done:
                    raise _UsageError(f"--epochs {args.epochs}: the run has done {resume.epochs_done} epochs already; "
                                      f"give more, or leave --epochs out to finish its {settings.epochs}")
                log(f"Planned length changed from {settings.epochs} to {args.epochs} epochs.")
                settings = replace(settings, epochs=args.epochs)
            base = None
            images, masks, names = load_training_pairs(Path(run["images"]), Path(run["masks"]), settings.patch_size)
            if _names_digest(names) != run["names_digest"]:
                raise _UsageError(f"--resume '{args.resume}': the images in {run['images']} are not the ones the run "
                                  "started with (files added, removed or renamed); start a new training")
            start_weights = run.get("start_weights")
        else:
            missing = [flag for flag, value in (("--images", args.images), ("--masks", args.masks), ("--out", args.out))
                       if value is None]
            if missing:
                raise _UsageError(f"{', '.join(missing)} required (or --resume MODEL_DIR to continue a stopped training)")
            args.out = args.out.expanduser().resolve()
            base = find_base_model(args.base_model) if args.base_model is not None else None
            _check_arguments(args, base)
            settings = settings_from(args, base)
            _check_patch_size(settings.patch_size, settings)
            images, masks, names = load_training_pairs(args.images, args.masks, settings.patch_size)
            start_weights = base.weights if base is not None else None
            run = {"images": str(args.images.expanduser().resolve()), "masks": str(args.masks.expanduser().resolve()),
                   "names_digest": _names_digest(names)}
    except (_UsageError, BaseModelError, TrainingDataError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    log(f"Found {len(names)} image/mask pairs with {sum(int(m.max()) for m in masks)} nuclei.")
    if settings.precision == "bf16":
        from .precision import native_bf16
        if not native_bf16():
            log("This CPU has no bf16 instructions (AVX512_BF16 or AMX): bf16 training is emulated and "
                "slower than fp32 here.")
    if resume is not None:                       # the record of where the run started carries over
        transfer_base = run.get("transferred_from")
    else:
        reshaped = base is not None and (settings.unet_n_depth > base.config["unet_n_depth"]
                                         or list(settings.grid) != list(base.config.get("grid", [1, 1])))
        transfer_base = base.folder if reshaped else None
    if base is not None:
        log(f"Fine-tuning {base.folder.name} ({base.weights}), learning rate {settings.learning_rate:g}.")

    from ..pipeline.model import tensorflow_chatter_filtered
    with tensorflow_chatter_filtered():                     # TensorFlow starts only when training does
        from .train import StartWeightsError, train_model

    created = not args.out.exists()
    if not created and resume is None:
        _clear_model_folder(args.out)
    try:
        result = train_model(images, masks, args.out, settings, log=log, start_weights=start_weights,
                             transfer_base=transfer_base, resume=resume, run=run)
    except StartWeightsError as error:          # nothing trained: leave no half-made model folder
        _clear_model_folder(args.out)
        if created:
            args.out.rmdir()
        print(f"error: --from '{args.base_model}': {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # train_model keeps the best weights itself once an epoch has finished
        saved = (args.out / "weights_best.h5").exists()
        print("error: interrupted " + ("after training: thresholds.json or loss.png may be missing"
                                       if saved else "before the first epoch finished; no model was saved"),
              file=sys.stderr)
        return 130
    state = ("stopped early (Ctrl-C), best weights kept; continue with: "
             f"python -m stardist_v4d train --resume {result.model_dir}") if result.interrupted else "finished"
    log(f"Training {state} in {result.seconds / 60:.1f} min. Model folder: {result.model_dir}")
    log(f"Loss plot: {result.model_dir / 'loss.png'}")
    return 0
