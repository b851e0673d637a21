"""Load a StarDist 2D model once per run: a model folder, or a registered name.

A model folder is read as configuration (``config.json``) and weights (``.h5``,
``weights_best.h5`` preferred, else the newest), plus optional ``thresholds.json``:
data only, nothing in it is executed. TensorFlow is imported here, late.
"""
from __future__ import annotations

import os
from pathlib import Path


class ModelError(RuntimeError):
    """The model could not be loaded; the message says what to do."""


def quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up chatter out of the user's console."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load_model(models_dir: Path, name: str):
    """A ready ``StarDist2D`` from ``models_dir / name``, or a registered pretrained name."""
    quiet_tensorflow()
    from stardist.models import StarDist2D

    folder = Path(models_dir) / name
    if folder.is_dir():
        try:
            return StarDist2D(None, name=name, basedir=str(models_dir))
        except Exception as error:  # a broken folder must not end in a TF traceback
            raise ModelError(f"Model folder {folder} could not be loaded: {type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''}") from None
    try:
        return StarDist2D.from_pretrained(name)
    except Exception as error:
        raise ModelError(
            f"Registered model {name!r} is not cached and could not be downloaded "
            f"({type(error).__name__}). Download it on a connected machine, unzip it, and put "
            f"the folder (config.json + weights .h5) at {folder}") from None
