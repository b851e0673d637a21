"""Pick the demo model to ship on generated images only, never on the real evaluation set.

    python bench/select_demo_model.py MODEL_DIR [MODEL_DIR ...] [--style mixed-visible] [--seed 100] [--n-images 240]

Scores each candidate model folder (at its own thresholds) on a held-out generated set
that no training or validation run used: plain and domain-randomized images in turn
(``synthetic_mix``, 256 x 256; training used seeds 2026-2031, validation seed 7), by
default labelled as an annotator could (``mixed-visible``: invisible nuclei unlabelled).
Rule: ship the candidate with the highest pooled AP@0.5 here (the defaults are the rule's
set). The real images are scored afterwards, once per candidate (``python -m stardist_v4d eval``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stardist_v4d.pipeline.model import load_model
from stardist_v4d.training.evaluate import pooled, score_model
from stardist_v4d.training.train_demo_model import DEMO_STYLE, STYLES


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="candidate model folders")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--n-images", type=int, default=240)
    parser.add_argument("--style", choices=["mixed", "mixed-visible"], default=DEMO_STYLE,
                        help="held-out generator: mixed-visible labels only the nuclei an annotator could see")
    args = parser.parse_args(argv)
    images, masks = STYLES[args.style](args.n_images, (256, 256), args.seed)
    pairs = [(f"generated_{i}", image, mask) for i, (image, mask) in enumerate(zip(images, masks))]
    print(f"{'model':32s} {'AP@0.5':>7s} {'F1':>6s} {'plain AP':>9s} {'randomized AP':>14s}")
    for folder in args.models:
        scores = score_model(load_model(folder.parent, folder.name), pairs)
        total, plain, randomized = pooled(scores), pooled(scores[0::2]), pooled(scores[1::2])
        print(f"{str(folder):32s} {total.ap:7.3f} {total.f1:6.3f} {plain.ap:9.3f} {randomized.ap:14.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
