"""Fine-tuning: start ``train`` from an existing model folder instead of random weights.

A few dozen annotated images of one's own are far too few to train StarDist from
scratch, but plenty to adapt a model that already finds nuclei (the shipped demo
model, or a StarDist pretrained folder such as ``2D_versatile_fluo`` put on disk).
The base model's architecture is kept whole, so its weights load; only the training
schedule comes from the command line. Nothing here imports TensorFlow.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..config import shipped_models_dir
from ..pipeline.model import ModelError, read_model_folder
from .train import TrainSettings, config_values

#: Learning rate when fine-tuning: a third of StarDist's default, so the base model's
#: features are adapted rather than overwritten by the first few batches.
FINE_TUNE_LEARNING_RATE = 1e-4
#: ``train`` flags that set the architecture, and the config.json key each one sets.
ARCHITECTURE_FLAGS = {"--n-rays": "n_rays", "--unet-depth": "unet_n_depth", "--unet-filters": "unet_n_filter_base",
                      "--grid": "grid"}


class BaseModelError(ValueError):
    """The model to fine-tune from cannot be used; the message says why, in one line."""


@dataclass(frozen=True)
class BaseModel:
    folder: Path
    weights: Path
    config: dict

    def architecture(self, deeper: int | None = None, finer_grid: int | None = None) -> dict:
        """``TrainSettings`` keywords that rebuild this model's network exactly (or ``deeper``, or on a finer grid)."""
        decided_by_settings = config_values(TrainSettings())
        grid = tuple(self.config.get("grid", (1, 1)))
        return {"n_rays": self.config["n_rays"], "grid": (finer_grid, finer_grid) if finer_grid else grid,
                "unet_n_depth": max(deeper or 0, self.config["unet_n_depth"]),
                "unet_n_filter_base": self.config["unet_n_filter_base"],
                "extra_config": {k: v for k, v in self.config.items() if k not in decided_by_settings}}


def find_base_model(given: Path) -> BaseModel:
    """The model folder ``given`` names: a path, or the name of a model shipped with the plugin."""
    folder = Path(given).expanduser()
    if not folder.exists() and len(folder.parts) == 1 and (shipped_models_dir() / folder.name).is_dir():
        folder = shipped_models_dir() / folder.name
    if not folder.is_dir():
        shipped = sorted(p.name for p in shipped_models_dir().iterdir() if p.is_dir())
        raise BaseModelError(f"--from '{given}': no such model folder; give a folder with config.json and "
                             f"weights .h5, or a shipped model name ({', '.join(shipped)})")
    try:
        config, weights = read_model_folder(folder)
    except ModelError as error:
        raise BaseModelError(f"--from '{given}': {error}") from None
    if config.get("n_classes"):
        raise BaseModelError(f"--from '{given}': the model sorts nuclei into {config['n_classes']} classes; "
                             "train fine-tunes models without classes")
    missing = [key for key in ("n_rays", "unet_n_depth", "unet_n_filter_base") if key not in config]
    if missing:
        raise BaseModelError(f"--from '{given}': config.json lacks {', '.join(missing)}; is it a StarDist 2D U-Net model?")
    return BaseModel(folder.resolve(), weights.resolve(), config)


def check_architecture_flags(args: argparse.Namespace, base: BaseModel) -> None:
    """An architecture flag given with ``--from`` must agree with the model: its weights fix it."""
    for flag, key in ARCHITECTURE_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if flag == "--unet-depth" and value is not None and value > base.config[key]:
            continue                    # deepening: training.transfer carries the upper levels over
        if flag == "--unet-depth" and value is not None and value < base.config[key]:
            raise BaseModelError(f"--unet-depth {value}: the model in --from has unet_n_depth = {base.config[key]}; "
                                 "fine-tuning can deepen a U-Net (a larger number), not make it shallower")
        if flag == "--grid" and value is not None:
            model_grid = list(base.config.get(key, [1, 1]))
            if model_grid == [value, value] or (model_grid[0] == model_grid[1] and value < model_grid[0]):
                continue                # a finer grid: training.transfer carries the U-Net over
            raise BaseModelError(f"--grid {value}: the model in --from has grid = {model_grid[0]}; fine-tuning "
                                 f"can make the grid finer (a smaller number), not coarser; leave out --grid")
        if value is not None and value != base.config[key]:
            raise BaseModelError(f"{flag} {value}: the model in --from has {key} = {base.config[key]}, and "
                                 f"fine-tuning keeps its architecture; leave out {flag}")
