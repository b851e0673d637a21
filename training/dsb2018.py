"""The real training set's split for the shipped model and the fine-tuning study.

    python -m stardist_v4d.training.dsb2018 --data ../shared/data/dsb2018_fluo --out DIR

The fine-tuning study (``bench/fine_tune_real.py``) needs images of one kind that the
shipped model never saw. The kind is chosen by a rule on the images themselves, not a
list, so anyone with the data set gets the same split: 256 x 256 images whose nuclei
average 256-511 px in area and whose nuclei are dim (mean foreground intensity at most
60 of 255). 43 of the 491 images; the model shipped before this one scored AP@0.5 0.52
on them. Writes ``DIR/default`` (every other pair), ``DIR/kind`` (that kind) and
``DIR/val`` (the validation images ``train --images DIR/default`` holds out with its
default ``--val-fraction 0.1 --seed 42``, for ``eval --eval-dir DIR/val``), as symbolic
links to the data.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tifffile

from .dataset import pair_files

KIND_SHAPE = (256, 256)
KIND_AREA_PX = (256, 512)
KIND_MAX_FOREGROUND = 60.0


def is_held_out_kind(image: np.ndarray, mask: np.ndarray) -> bool:
    """Whether a pair belongs to the kind kept out of the shipped model's training."""
    n = len(np.unique(mask)) - 1
    if image.shape != KIND_SHAPE or n == 0:
        return False
    area = np.count_nonzero(mask) / n
    return KIND_AREA_PX[0] <= area < KIND_AREA_PX[1] and float(image[mask > 0].mean()) <= KIND_MAX_FOREGROUND


def split(data: Path) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]]]:
    """``(default, kind)`` lists of ``(image, mask)`` paths."""
    default, kind = [], []
    for image, mask in pair_files(data, data):
        (kind if is_held_out_kind(tifffile.imread(image), tifffile.imread(mask)) else default).append((image, mask))
    return default, kind


def link_pairs(pairs: list[tuple[Path, Path]], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for image, mask in pairs:
        for path in (image, mask):
            link = folder / path.name
            if not link.exists():
                link.symlink_to(path.resolve())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stardist_v4d.training.dsb2018", allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the dsb2018_fluo folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for default/ and kind/")
    args = parser.parse_args(argv)
    from .train import TrainSettings, split_validation

    default, kind = split(args.data)
    link_pairs(default, args.out / "default")
    link_pairs(kind, args.out / "kind")
    _, val = split_validation(len(default), TrainSettings.val_fraction, TrainSettings.seed)
    link_pairs([default[i] for i in val], args.out / "val")
    print(f"{len(default)} pairs in {args.out / 'default'} ({len(val)} of them, the validation split, also in "
          f"{args.out / 'val'}), {len(kind)} of the held-out kind in {args.out / 'kind'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
