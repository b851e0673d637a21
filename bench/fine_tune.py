"""What ``train --from`` buys a user whose microscope the demo model never saw.

    python bench/fine_tune.py [--n-train 24] [--epochs 10] [--steps 50] [--zoom 2.0]

"Your microscope" is the demo model's generated look at another magnification
(``--zoom`` 2.0: nuclei twice as large as any the demo model trained on; its scale
augmentation reached 1.25). ``--n-train`` annotated images of it (seed 400, a fifth
held out for validation and thresholds) are what a user would draw by hand; 40 more
(seed 401) are the test. Measured in the same run, all on the same test images:

- baseline: the demo model as shipped;
- the demo model with the plugin's ``SCALE = 1 / zoom`` (no training, just resizing);
- a model trained from random weights on the same images and schedule;
- the demo model fine-tuned on them (``train --from demo``).

Prints AP@0.5 (pooled, with its standard error), F1, training minutes, and each AP
as a ratio of the baseline's. Trains through the ``train`` command, as a user would.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from stardist_v4d.config import shipped_models_dir  # noqa: E402
from stardist_v4d.training.augment import rescale  # noqa: E402
from stardist_v4d.training.cli import main as train  # noqa: E402
from stardist_v4d.training.evaluate import pooled, score_model  # noqa: E402
from stardist_v4d.training.train_demo_model import DEMO_STYLE, STYLES  # noqa: E402

TRAIN_SEED, TEST_SEED, N_TEST, SHAPE = 400, 401, 40, (384, 384)


def your_microscope(n: int, seed: int, zoom: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The demo model's generated look, magnified ``zoom`` times."""
    images, masks = STYLES[DEMO_STYLE](n, SHAPE, seed)
    zoomed = [rescale(image, mask, zoom) for image, mask in zip(images, masks)]
    return [image for image, _ in zoomed], [mask for _, mask in zoomed]


def count_nuclei(masks: list[np.ndarray]) -> int:
    """Nuclei in instance masks (zooming drops IDs, so the largest ID is not the count)."""
    return sum(len(np.unique(mask)) - 1 for mask in masks)


def write_pairs(folder: Path, images: list[np.ndarray], masks: list[np.ndarray]) -> None:
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for i, (image, mask) in enumerate(zip(images, masks)):
        tifffile.imwrite(folder / "images" / f"img{i:03d}.tif", image)
        tifffile.imwrite(folder / "masks" / f"img{i:03d}.tif", mask)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50, help="steps per epoch")
    parser.add_argument("--zoom", type=float, default=2.0)
    args = parser.parse_args(argv)

    from stardist_v4d.pipeline.model import load_model

    train_images, train_masks = your_microscope(args.n_train, TRAIN_SEED, args.zoom)
    test_images, test_masks = your_microscope(N_TEST, TEST_SEED, args.zoom)
    test = [(f"test_{i}", image, mask) for i, (image, mask) in enumerate(zip(test_images, test_masks))]
    print(f"your microscope: {DEMO_STYLE} look x{args.zoom:g}; {args.n_train} training images "
          f"({count_nuclei(train_masks)} nuclei), {N_TEST} test images ({count_nuclei(test_masks)} nuclei)")

    demo = load_model(shipped_models_dir(), "demo")
    rows = [("demo model as shipped (baseline)", score_model(demo, test), None),
            (f"demo model, SCALE = {1 / args.zoom:g}", score_model(demo, test, scale=1 / args.zoom), None)]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_pairs(data, train_images, train_masks)
        for label, extra in (("from random weights", []), ("fine-tuned from demo (--from demo)", ["--from", "demo"])):
            out = Path(tmp) / "models" / label.split()[0]
            started = time.monotonic()
            code = train(["--images", str(data / "images"), "--masks", str(data / "masks"), "--out", str(out),
                          "--epochs", str(args.epochs), "--steps-per-epoch", str(args.steps),
                          "--val-fraction", "0.2", *extra])
            if code != 0:
                return code
            rows.append((label, score_model(load_model(out.parent, out.name), test), time.monotonic() - started))

    baseline = pooled(rows[0][1]).ap
    print(f"\n{'model':38s} {'AP@0.5':>7s} {'±SE':>6s} {'F1':>6s} {'train min':>9s} {'AP / baseline':>13s}")
    for label, scores, seconds in rows:
        total = pooled(scores)
        minutes = f"{seconds / 60:9.1f}" if seconds is not None else f"{'-':>9s}"
        print(f"{label:38s} {total.ap:7.3f} {total.ap_se:6.3f} {total.f1:6.3f} {minutes} {total.ap / baseline:13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
