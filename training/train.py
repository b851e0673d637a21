"""Train a StarDist 2D model folder that the plugin can load.

StarDist's own ``Config2D`` / ``train`` / ``optimize_thresholds`` do the work; this
module adds what a user of the plugin needs around them: a validation split,
augmentation, a progress line with an ETA per epoch, a loss plot with an
overfitting verdict, and Ctrl-C that keeps the best weights so far.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .augment import Augmenter
from .loss_report import overfitting_verdict, plot_losses


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


class _EpochProgress:
    """Keras callback printing one line per epoch with losses and an ETA.

    Also keeps the history itself, so a run stopped with Ctrl-C still gets its plot.
    The line is printed when the next epoch begins (or training ends): Keras runs its
    progress bar callback last, so a line printed at epoch end would land inside the bar.
    """

    def __init__(self, epochs: int, log=print) -> None:
        import keras

        class _Callback(keras.callbacks.Callback):
            def on_train_begin(cb, logs=None):
                self.start = time.monotonic()

            def on_epoch_begin(cb, epoch, logs=None):
                self.flush()

            def on_train_end(cb, logs=None):
                self.flush()

            def on_epoch_end(cb, epoch, logs=None):
                logs = logs or {}
                for key in ("loss", "val_loss"):
                    if key in logs:
                        self.history.setdefault(key, []).append(float(logs[key]))
                elapsed = time.monotonic() - self.start
                eta = elapsed / (epoch + 1) * (self.epochs - epoch - 1)
                self.pending = (f"epoch {epoch + 1}/{self.epochs}  loss {logs.get('loss', float('nan')):.4f}  "
                                f"val_loss {logs.get('val_loss', float('nan')):.4f}  "
                                f"elapsed {elapsed / 60:.1f} min  ETA {eta / 60:.1f} min")

        self.epochs, self.log = epochs, log
        self.history: dict[str, list[float]] = {}
        self.pending = ""
        self.start = time.monotonic()
        self.callback = _Callback()

    def flush(self) -> None:
        """Print the last finished epoch's line, if not printed yet."""
        if self.pending:
            self.log(self.pending)
            self.pending = ""


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
        train_learning_rate=settings.learning_rate, train_tensorboard=_tensorboard_available())


def train_model(images: list[np.ndarray], masks: list[np.ndarray], model_dir: Path,
                settings: TrainSettings = TrainSettings(), log=print,
                validation: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
                start_weights: Path | None = None) -> TrainResult:
    """Train on raw ``(Y, X)`` images and instance masks; write a model folder.

    ``start_weights`` (an ``.h5`` of the same architecture) continues training from an
    earlier model instead of from random weights.

    ``validation`` gives a separate validation set; otherwise ``settings.val_fraction``
    of the images are held out. The folder gets ``config.json``, ``weights_best.h5``,
    ``thresholds.json`` (optimized on the validation images), ``loss.png`` and
    ``training.json`` (settings, history, verdict).
    """
    from stardist.models import Config2D, StarDist2D

    model_dir = Path(model_dir)
    started = time.monotonic()
    images = normalize_images(images)
    if validation is None:
        train_idx, val_idx = split_validation(len(images), settings.val_fraction, settings.seed)
        x_val, y_val = [images[i] for i in val_idx], [masks[i] for i in val_idx]
        images, masks = [images[i] for i in train_idx], [masks[i] for i in train_idx]
    else:
        x_val, y_val = normalize_images(validation[0]), list(validation[1])
    log(f"Training on {len(images)} images, validating on {len(x_val)}.")

    config = Config2D(**config_values(settings), **settings.extra_config)
    model = StarDist2D(config, name=model_dir.name, basedir=str(model_dir.parent))
    if start_weights is not None:
        try:
            model.keras_model.load_weights(str(start_weights))
        except Exception as error:   # a wrong or broken file must not end in a Keras traceback
            raise StartWeightsError(f"weights {start_weights} could not be loaded into this architecture "
                                    f"({type(error).__name__}); are they from a model with the same config.json?") from None
        log(f"Continuing from {start_weights}.")
    model.prepare_for_training()
    progress = _EpochProgress(settings.epochs, log)
    model.callbacks.append(progress.callback)

    interrupted = False
    try:
        model.train(images, masks, validation_data=(x_val, y_val),
                    augmenter=Augmenter(settings.seed, settings.augment_scale, settings.augment_blur), seed=settings.seed)
    except KeyboardInterrupt:
        interrupted = True
        log("")                   # end the progress bar's line
        progress.flush()
        best = model_dir / "weights_best.h5"
        if not best.exists():
            raise
        try:
            model.load_weights("weights_best.h5")
            log(f"Interrupted: keeping the best weights so far ({best}).")
        except Exception:   # Ctrl-C while Keras was writing the file leaves it unreadable
            model.keras_model.save_weights(str(best))
            log(f"Interrupted while the best weights were being saved: keeping the current ones ({best}).")

    thresholds = dict(model.optimize_thresholds(x_val, y_val, optimize_kwargs={"verbose": 0}))
    (model_dir / "weights_now.h5").unlink(missing_ok=True)
    history = progress.history
    verdict = overfitting_verdict(history)
    plot_losses(history, model_dir / "loss.png")
    seconds = time.monotonic() - started
    (model_dir / "training.json").write_text(json.dumps({
        "settings": {k: v for k, v in settings.__dict__.items()},
        "start_weights": str(start_weights) if start_weights is not None else None,
        "history": history, "thresholds": thresholds, "verdict": verdict,
        "interrupted": interrupted, "seconds": round(seconds, 1),
    }, indent=2, default=str))
    log(verdict)
    log(f"Thresholds (optimized on validation): prob {thresholds['prob']:.3f}, nms {thresholds['nms']:.2f}")
    return TrainResult(model_dir, history, thresholds, verdict, interrupted, seconds)
