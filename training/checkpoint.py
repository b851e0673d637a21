"""Resumable training: everything a stopped run needs to continue as if never stopped.

A long training outlives a working day. After every epoch the folder
``MODEL_DIR/checkpoint/`` holds the network weights, the optimizer's state (Adam's
moments and step count), the epochs done, the loss history, the best validation loss
so far (so ``weights_best.h5`` keeps meaning "best of the whole run"), and what the run
was started with (settings, data folders). The batches need no saved state: batch ``i``
is a function of the seed and ``i`` (``fit.seeded_batches``).
``train --resume MODEL_DIR`` reads it and carries on at the next epoch with the same
learning-rate schedule (a function of the epoch, see ``schedule.py``).

The folder is written beside the old one and swapped in with renames, so a run killed
while saving leaves the previous epoch's checkpoint whole. Nothing here imports
TensorFlow at module level.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHECKPOINT = "checkpoint"
_WEIGHTS = "model.weights.h5"
_OPTIMIZER = "optimizer.npz"
_STATE = "state.json"


class CheckpointError(ValueError):
    """No usable checkpoint in a model folder; the message is one line for the user."""


@dataclass(frozen=True)
class Checkpoint:
    folder: Path
    epochs_done: int
    history: dict[str, list[float]]
    best_val_loss: float | None
    run: dict               # what the run was started with: settings, data folders, start weights

    @property
    def weights(self) -> Path:
        return self.folder / _WEIGHTS


def save(model_dir: Path, keras_model, epochs_done: int, history: dict, best_val_loss: float | None,
         run: dict) -> Path:
    """Write the checkpoint for ``epochs_done`` finished epochs; the old one stays until the new is whole."""
    model_dir = Path(model_dir)
    final, fresh, old = (model_dir / CHECKPOINT, model_dir / f"{CHECKPOINT}.new", model_dir / f"{CHECKPOINT}.old")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    keras_model.save_weights(str(fresh / _WEIGHTS))
    optimizer = keras_model.optimizer
    np.savez(fresh / _OPTIMIZER, **{f"{i:04d}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
    (fresh / _STATE).write_text(json.dumps({
        "epochs_done": epochs_done, "history": history, "best_val_loss": best_val_loss,
        "optimizer_variables": [v.path for v in optimizer.variables], "run": run}, default=str))
    _fsync_folder(fresh)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(fresh, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync_folder(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


def find(model_dir: Path) -> Checkpoint:
    """The model folder's checkpoint; a killed swap falls back to the previous one."""
    model_dir = Path(model_dir)
    for folder in (model_dir / CHECKPOINT, model_dir / f"{CHECKPOINT}.old"):
        state_file = folder / _STATE
        if state_file.is_file() and (folder / _WEIGHTS).is_file() and (folder / _OPTIMIZER).is_file():
            try:
                state = json.loads(state_file.read_text())
            except (OSError, ValueError):
                continue
            return Checkpoint(folder, int(state["epochs_done"]), state["history"], state["best_val_loss"],
                              state["run"])
    if not model_dir.is_dir():
        raise CheckpointError(f"--resume '{model_dir}': no such model folder")
    raise CheckpointError(f"--resume '{model_dir}': no training checkpoint in it (a '{CHECKPOINT}' folder is written "
                          "after each epoch of a training started by this version); start a new training instead")


def restore_optimizer(keras_model, checkpoint: Checkpoint) -> None:
    """Put Adam's moments and step count back, so the first resumed step is the step the run would have taken."""
    optimizer = keras_model.optimizer
    optimizer.build(keras_model.trainable_variables)
    saved = np.load(checkpoint.folder / _OPTIMIZER)
    values = [saved[key] for key in sorted(saved.files)]
    if len(values) != len(optimizer.variables):
        raise CheckpointError(f"{checkpoint.folder}: the optimizer state has {len(values)} variables, "
                              f"this model's optimizer {len(optimizer.variables)}: not the same model")
    for variable, value in zip(optimizer.variables, values):
        if tuple(variable.shape) != value.shape:
            raise CheckpointError(f"{checkpoint.folder}: optimizer variable {variable.path} has shape {value.shape}, "
                                  f"expected {tuple(variable.shape)}: not the same model")
        variable.assign(value)


def remove(model_dir: Path) -> None:
    """Drop the checkpoint once the model is final (it is only for continuing)."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.new", f"{CHECKPOINT}.old"):
        shutil.rmtree(Path(model_dir) / name, ignore_errors=True)
