"""Start a reshaped network from a trained one (``train --from MODEL --unet-depth N`` or ``--grid 1``).

A StarDist U-Net one level deeper keeps every layer of the shallower one at the same
resolution with the same shape (the down and up convolutions of the upper levels, the
feature and output layers); only the new lowest level and the middle block change. A
finer grid drops the convolutions and pooling in front of the U-Net, so only the U-Net's
first convolution changes shape (it sees the image, not 32 features). Those weights are
copied, the new layers start random, so a larger receptive field or full-resolution
maps cost a short training instead of a run from scratch. Layers are paired by name and by their
order among layers of the same name stem (Keras numbers unnamed layers per process),
and copied only where every weight has the same shape.
"""
from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Transfer:
    copied: int       # layers whose weights came from the base model
    new: int          # layers that start random (new, or of another shape)

    def summary(self, base: Path) -> str:
        return (f"Reshaping {base.name}: {self.copied} of {self.copied + self.new} layers take its weights, "
                f"{self.new} (new, or of another shape) start random.")


def _layer_keys(keras_model) -> dict[tuple[str, int], object]:
    """Layers with weights, keyed by (name without a trailing number, place among that stem)."""
    keys, seen = {}, {}
    for layer in keras_model.layers:
        if not layer.weights:
            continue
        stem = re.sub(r"_\d+$", "", layer.name)
        keys[(stem, seen.get(stem, 0))] = layer
        seen[stem] = seen.get(stem, 0) + 1
    return keys


def copy_matching_weights(target, source) -> Transfer:
    """Copy into Keras model ``target`` every layer of ``source`` that pairs with one of the same shapes."""
    source_layers = _layer_keys(source)
    copied = new = 0
    for key, layer in _layer_keys(target).items():
        match = source_layers.get(key)
        weights = match.get_weights() if match is not None else None
        if weights is not None and [w.shape for w in weights] == [tuple(w.shape) for w in layer.weights]:
            layer.set_weights(weights)
            copied += 1
        else:
            new += 1
    return Transfer(copied, new)


def transfer_from(target, base_folder: Path, weights: Path) -> Transfer:
    """Build the model in ``base_folder``, load ``weights`` into it, and copy what fits into ``target``."""
    from stardist.models import StarDist2D

    base_folder = Path(base_folder)
    with contextlib.redirect_stdout(io.StringIO()):          # StarDist's "Loading network weights" lines
        base = StarDist2D(None, name=base_folder.name, basedir=str(base_folder.parent))
    base.keras_model.load_weights(str(weights))
    return copy_matching_weights(target, base.keras_model)
