r"""Train the shipped demo model on generated nuclei; seeded, so it can be re-made.

    python -m stardist_v4d.training.train_demo_model --out DIR [options]

The shipped demo model (v10a) is six seeded stages, ~185 min on 2 CPU cores; every
candidate's command and score is in docs/demo-model/README.md:

    python -m stardist_v4d.training.train_demo_model --style plain --n-train 400 --n-val 40 \
        --epochs 40 --data-seed 2026 --out runs/demo_v0
    python -m stardist_v4d.training.train_demo_model --style mixed-visible --n-train 800 --n-val 60 \
        --epochs 35 --data-seed 2029 --continue-from runs/demo_v0/weights_best.h5 --out runs/demo_v6
    python -m stardist_v4d.training.train_demo_model --style mixed-visible --n-train 800 --n-val 60 \
        --epochs 25 --learning-rate 1.5e-4 --data-seed 2030 --continue-from runs/demo_v6/weights_best.h5 \
        --out runs/demo_v7
    python -m stardist_v4d.training.train_demo_model --style mixed-visible --n-train 800 --n-val 60 \
        --epochs 25 --learning-rate 7.5e-5 --data-seed 2031 --continue-from runs/demo_v7/weights_best.h5 \
        --out runs/demo_v8
    python -m stardist_v4d.training.train_demo_model --style mixed-visible --n-train 800 --n-val 60 \
        --epochs 25 --learning-rate 1.5e-4 --data-seed 2032 --continue-from runs/demo_v8/weights_best.h5 \
        --out runs/demo_v9a
    python -m stardist_v4d.training.train_demo_model --style mixed-visible --n-train 800 --n-val 60 \
        --epochs 25 --learning-rate 1.5e-4 --data-seed 2033 --continue-from runs/demo_v9a/weights_best.h5 \
        --augment-scale 0.8 1.25 --augment-blur 1.0 --out runs/demo_v10a

Checkpoints and thresholds are chosen on generated validation images only; candidates
are compared on held-out generated images (``bench/select_demo_model.py``), and the real
evaluation images are scored once per candidate afterwards (``python -m stardist_v4d eval``).
"""
from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

from .synthetic import RANDOMIZED, VISIBLE_PLAIN, VISIBLE_RANDOMIZED, NucleiStyle, synthetic_dataset, synthetic_mix
from .cli import add_augmentation_arguments, augmentation_settings
from .train import TrainSettings, train_model

TRAIN_SEED, VAL_SEED = 2026, 7
#: Generators of the styles by name: ``(n_images, shape, seed) -> (images, masks)``.
STYLES = {
    "plain": partial(synthetic_dataset, style=NucleiStyle()),
    "randomized": partial(synthetic_dataset, style=RANDOMIZED),
    "mixed": synthetic_mix,                  # plain and randomized in turn
    # the same images as "mixed", labelled as an annotator could: invisible nuclei unlabelled
    "mixed-visible": partial(synthetic_mix, styles=(VISIBLE_PLAIN, VISIBLE_RANDOMIZED)),
}
#: The style of the current recipe: its training, validation and held-out selection images.
DEMO_STYLE = "mixed-visible"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "models" / "demo")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--style", choices=sorted(STYLES), default=DEMO_STYLE,
                        help="generator style of training and validation images (v0: plain)")
    parser.add_argument("--n-train", type=int, default=800)
    parser.add_argument("--n-val", type=int, default=60)
    parser.add_argument("--continue-from", type=Path, help="weights (.h5) of an earlier stage to start from")
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--data-seed", type=int, default=TRAIN_SEED,
                        help="seed of the generated training images (a new seed = new images)")
    add_augmentation_arguments(parser)
    args = parser.parse_args(argv)
    try:
        augmentation = augmentation_settings(args)
    except ValueError as error:
        parser.error(str(error))

    started = time.monotonic()
    generate = STYLES[args.style]
    images, masks = generate(args.n_train, (300, 300), args.data_seed)
    val_images, val_masks = generate(args.n_val, (256, 256), VAL_SEED)
    print(f"Generated {len(images)} + {len(val_images)} images in {time.monotonic() - started:.0f} s")
    settings = TrainSettings(epochs=args.epochs, steps_per_epoch=args.steps, seed=args.data_seed,
                             learning_rate=args.learning_rate,
                             **augmentation,
                             extra_config={"train_reduce_lr": {"factor": 0.5, "patience": 6, "min_delta": 0}})
    result = train_model(images, masks, args.out, settings, validation=(val_images, val_masks),
                         start_weights=args.continue_from)
    (args.out / "weights_last.h5").unlink(missing_ok=True)   # ship one weights file
    print(f"Done in {result.seconds / 60:.1f} min: {args.out}")


if __name__ == "__main__":
    main()
