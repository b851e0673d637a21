"""Load a StarDist 2D model once per run: a model folder, or a registered name.

A model folder is read as configuration (``config.json``) and weights (``.h5``,
``weights_best.h5`` preferred, else the newest), plus optional ``thresholds.json``:
data only, nothing in it is executed. TensorFlow is imported here, late.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


class ModelError(RuntimeError):
    """The model could not be loaded; the message says what to do."""


def read_model_folder(folder: Path) -> tuple[dict, Path]:
    """The ``config.json`` contents and the weights file of a StarDist 2D model folder.

    Checked without TensorFlow, so a wrong folder costs a second, not TensorFlow's start-up.
    Weights are chosen as StarDist loads them: ``weights_best.h5``, else the newest ``.h5``.
    Raises ``ModelError`` saying what is wrong; callers put the setting's name in front.
    """
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelError(f"{folder} has no config.json; is it a StarDist model folder?")
    weights = sorted(folder.glob("*.h5"), key=lambda path: (path.name == "weights_best.h5", path.stat().st_mtime))
    if not weights:
        raise ModelError(f"{folder} has no weights (.h5 file, e.g. weights_best.h5)")
    try:
        model_config = json.loads(config_file.read_text())
    except (OSError, ValueError) as error:
        raise ModelError(f"{config_file} is not readable JSON ({error})") from None
    if model_config.get("n_dim", 2) != 2:
        raise ModelError(f"is a {model_config.get('n_dim')}D model; this plugin needs a StarDist 2D model")
    n_in = model_config.get("n_channel_in", 1)
    if n_in != 1:
        raise ModelError(f"expects {n_in} input channels, but this plugin works on one channel; "
                         "use a single-channel model such as 2D_versatile_fluo")
    return model_config, weights[-1]


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
