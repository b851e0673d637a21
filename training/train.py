"""Train a StarDist 2D model folder that the plugin can load.

StarDist's own ``Config2D`` / ``train`` / ``optimize_thresholds`` do the work; this
module adds what a user of the plugin needs around them: a validation split,
augmentation, a progress line with an ETA per epoch, a loss plot with an
overfitting verdict, and Ctrl-C that keeps the best weights so far.
"""
from __future__ import annotations

import contextlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .augment import Augmenter
from .loss_report import overfitting_verdict, plot_losses


#: Fewer pairs than this (a fine-tuning on one or two annotated images) are not split:
#: every pair trains, and validates.
MIN_PAIRS_TO_HOLD_OUT = 5


class StartWeightsError(ValueError):
    """The weights to continue from do not load into the model being trained."""


@dataclass(frozen=True)
class TrainSettings:
    """Architecture and schedule; defaults are StarDist's standard 2D model."""

    n_rays: int = 32
    grid: tuple[int, int] = (2, 2)
    unet_n_depth: int = 3
    unet_n_filter_base: int = 32
    patch_size: tuple[int, int] = (256, 256)
    batch_size: int = 4
    epochs: int = 40
    steps_per_epoch: int = 100
    learning_rate: float = 3e-4
    val_fraction: float = 0.1
    seed: int = 42
    augment_scale: tuple[float, float] | None = None   # zoom range of half the patches, None = off
    augment_blur: float = 0.0                           # max extra blur sigma (px), 0 = off
    precision: str = "fp32"                             # "bf16": Keras mixed_bfloat16 (see precision.py)
    extra_config: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    history: dict[str, list[float]]
    thresholds: dict[str, float]
    verdict: str
    interrupted: bool
    seconds: float


def normalize_images(images: list[np.ndarray]) -> list[np.ndarray]:
    """Percentile-normalize each image (1, 99.8) as the plugin does at prediction."""
    from csbdeep.utils import normalize
    return [normalize(image, 1, 99.8, axis=(0, 1)).astype(np.float32) for image in images]


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices for training and validation; at least one image in each."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, int(round(n * fraction))))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _epoch_lines(epochs: int, first_epoch: int, log=print):
    """Keras callback printing one line per epoch: losses, rate, seconds per step and an ETA."""
    import keras

    class _Lines(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            elapsed = time.monotonic() - self.start
            done = epoch + 1 - first_epoch
            eta = elapsed / done * (epochs - epoch - 1)
            steps = self.params.get("steps") or 1
            log(f"epoch {epoch + 1}/{epochs}  loss {logs.get('loss', float('nan')):.4f}  "
                f"val_loss {logs.get('val_loss', float('nan')):.4f}  "
                f"rate {float(np.asarray(self.model.optimizer.learning_rate)):.2e}  "
                f"{elapsed / done / steps:.2f} s/step  elapsed {elapsed / 60:.1f} min  ETA {eta / 60:.1f} min")

    return _Lines()


def _tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
        return True
    except ImportError:
        return False


def config_values(settings: TrainSettings) -> dict:
    """The ``Config2D`` keywords that ``settings`` decide (``extra_config`` may add others)."""
    return dict(
        n_rays=settings.n_rays, grid=settings.grid, n_channel_in=1,
        unet_n_depth=settings.unet_n_depth, unet_n_filter_base=settings.unet_n_filter_base,
        train_patch_size=settings.patch_size, train_batch_size=settings.batch_size,
        train_epochs=settings.epochs, train_steps_per_epoch=settings.steps_per_epoch,
        train_learning_rate=settings.learning_rate, train_tensorboard=_tensorboard_available(),
        train_reduce_lr=None)          # the rate follows schedule.cosine_rate instead


def train_model(images: list[np.ndarray], masks: list[np.ndarray], model_dir: Path,
                settings: TrainSettings = TrainSettings(), log=print,
                validation: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
                start_weights: Path | None = None, transfer_base: Path | None = None,
                resume=None, run: dict | None = None) -> TrainResult:
    """Train on raw ``(Y, X)`` images and instance masks; write a model folder.

    ``start_weights`` (an ``.h5`` of the same architecture) continues training from an
    earlier model instead of from random weights; with ``transfer_base`` (that model's
    folder: a shallower U-Net, or a coarser grid) only the layers that fit are taken (``transfer``). ``resume`` (a ``checkpoint.Checkpoint``
    of this folder) continues a stopped run at its next epoch; ``run`` describes the
    run for its checkpoint (data folders, ...), so ``train --resume`` can restart it.

    ``validation`` gives a separate validation set; otherwise ``settings.val_fraction``
    of the images are held out. The folder gets ``config.json``, ``weights_best.h5``,
    ``thresholds.json`` (optimized on the validation images), ``loss.png`` and
    ``training.json`` (settings, history, verdict); ``checkpoint/`` while training runs.
    """
    from stardist.models import Config2D, StarDist2D

    from . import checkpoint as checkpoints
    from .fit import compile_with_xla, fit
    from .precision import building_in, float32_outputs

    model_dir = Path(model_dir)
    started = time.monotonic()
    images = normalize_images(images)
    if validation is None and len(images) < MIN_PAIRS_TO_HOLD_OUT:
        x_val, y_val = images, masks
        log(f"Only {len(images)} image/mask pair{'s' if len(images) > 1 else ''}: all train, and the validation loss "
            f"and thresholds come from the same images (annotate {MIN_PAIRS_TO_HOLD_OUT} or more to hold some out).")
    elif validation is None:
        train_idx, val_idx = split_validation(len(images), settings.val_fraction, settings.seed)
        x_val, y_val = [images[i] for i in val_idx], [masks[i] for i in val_idx]
        images, masks = [images[i] for i in train_idx], [masks[i] for i in train_idx]
    else:
        x_val, y_val = normalize_images(validation[0]), list(validation[1])
    log(f"Training on {len(images)} images, validating on {len(x_val)}.")

    import keras
    keras.utils.set_random_seed(settings.seed)      # initial weights; numpy's global generator picks validation patches
    augmenter = Augmenter(settings.seed, settings.augment_scale, settings.augment_blur)
    if resume is None:
        config = Config2D(**config_values(settings), **settings.extra_config)
        with building_in(settings.precision), contextlib.redirect_stdout(io.StringIO()):   # StarDist's own lines
            model = StarDist2D(config, name=model_dir.name, basedir=str(model_dir.parent))
        float32_outputs(model.keras_model)          # StarDist's losses and metrics take float32 predictions
        if start_weights is not None:
            try:
                if transfer_base is not None:
                    from .transfer import transfer_from
                    log(transfer_from(model.keras_model, transfer_base, start_weights).summary(Path(transfer_base)))
                else:
                    model.keras_model.load_weights(str(start_weights))
                    log(f"Continuing from {start_weights}.")
            except Exception as error:   # a wrong or broken file must not end in a Keras traceback
                raise StartWeightsError(f"weights {start_weights} could not be loaded into this architecture "
                                        f"({type(error).__name__}); are they from a model with the same config.json?") from None
        compile_with_xla(model, settings.epochs * settings.steps_per_epoch)
        model.prepare_for_training()
        first_epoch, history, best = 0, {}, None
    else:
        with building_in(settings.precision), contextlib.redirect_stdout(io.StringIO()):
            model = StarDist2D(None, name=model_dir.name, basedir=str(model_dir.parent))
        float32_outputs(model.keras_model)
        model.keras_model.load_weights(str(resume.weights))
        compile_with_xla(model, settings.epochs * settings.steps_per_epoch)
        model.prepare_for_training()
        checkpoints.restore_optimizer(model.keras_model, resume)
        first_epoch, history, best = resume.epochs_done, resume.history, resume.best_val_loss
        log(f"Resuming at epoch {first_epoch + 1} of {settings.epochs}.")

    run = dict(run or {}, settings={k: v for k, v in settings.__dict__.items()},
               start_weights=str(start_weights) if start_weights is not None else None,
               transferred_from=str(transfer_base) if transfer_base is not None else None,
               seconds_before=float(resume.run.get("seconds_so_far", 0.0)) if resume is not None else 0.0)
    interrupted = False
    try:
        if first_epoch < settings.epochs:
            fit(model, images, masks, (x_val, y_val), augmenter, settings, run, initial_epoch=first_epoch,
                history=history, best_val_loss=best, extra_callbacks=[_epoch_lines(settings.epochs, first_epoch, log)])
    except KeyboardInterrupt:
        interrupted = True
        best_file = model_dir / "weights_best.h5"
        if not best_file.exists():
            raise
        try:
            model.load_weights("weights_best.h5")
            log(f"Interrupted: keeping the best weights so far ({best_file}); "
                f"continue with: train --resume {model_dir}")
        except Exception:   # Ctrl-C while Keras was writing the file leaves it unreadable
            model.keras_model.save_weights(str(best_file))
            log(f"Interrupted while the best weights were being saved: keeping the current ones ({best_file}).")

    thresholds = dict(model.optimize_thresholds(x_val, y_val, optimize_kwargs={"verbose": 0}))
    (model_dir / "weights_now.h5").unlink(missing_ok=True)
    if not interrupted:
        checkpoints.remove(model_dir)
    verdict = overfitting_verdict(history)
    plot_losses(history, model_dir / "loss.png")
    seconds = time.monotonic() - started
    (model_dir / "training.json").write_text(json.dumps({
        "settings": {k: v for k, v in settings.__dict__.items()},
        "start_weights": run["start_weights"], "transferred_from": run["transferred_from"],
        "data": {k: v for k, v in run.items() if k not in ("settings", "start_weights", "transferred_from")},
        "history": history, "thresholds": thresholds, "verdict": verdict,
        "interrupted": interrupted, "seconds": round(seconds + run["seconds_before"], 1),
    }, indent=2, default=str))
    log(verdict)
    log(f"Thresholds (optimized on validation): prob {thresholds['prob']:.3f}, nms {thresholds['nms']:.2f}")
    return TrainResult(model_dir, history, thresholds, verdict, interrupted, seconds)
