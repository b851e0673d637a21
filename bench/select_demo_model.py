"""Pick the demo model to ship on generated images only, never on the real evaluation set.

    python bench/select_demo_model.py MODEL_DIR [MODEL_DIR ...] [--style shifted] [--seed 100] [--n-images 240]

Scores each candidate model folder (at its own thresholds) on a held-out generated set
that no training or validation run used (256 x 256; training used seeds 2026-2034,
validation seed 7), with the two halves of the set (even / odd images) beside the total:

- ``shifted`` (the rule from v9 on): a held-out *domain*, a look no training stage draws
  (``training/domain_shift.py``); halves: packed monolayers / free layouts.
- ``mixed-visible`` (the rule for v6-v8): the training generator's styles on new seeds,
  only annotator-visible nuclei labelled; halves: plain / domain-randomized.
- ``mixed``: the same images with every nucleus labelled (the rule until v5).

Rule: ship the candidate with the highest pooled AP@0.5 on the rule's set (the defaults).
The real images are scored afterwards, once per candidate (``python -m stardist_v4d eval``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stardist_v4d.pipeline.model import load_model
from stardist_v4d.training.evaluate import pooled, score_model
from stardist_v4d.training.domain_shift import shifted_dataset
from stardist_v4d.training.train_demo_model import STYLES

#: Held-out generators by name: ``(n_images, shape, seed) -> (images, masks)``.
HELD_OUT = {"shifted": shifted_dataset, "mixed-visible": STYLES["mixed-visible"], "mixed": STYLES["mixed"]}
#: The selection rule's set (see docs/demo-model/README.md).
RULE_STYLE = "shifted"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="candidate model folders")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--n-images", type=int, default=240)
    parser.add_argument("--style", choices=sorted(HELD_OUT), default=RULE_STYLE,
                        help="held-out generator (default: the rule's, %(default)s)")
    args = parser.parse_args(argv)
    images, masks = HELD_OUT[args.style](args.n_images, (256, 256), args.seed)
    pairs = [(f"generated_{i}", image, mask) for i, (image, mask) in enumerate(zip(images, masks))]
    print(f"{args.style}, seed {args.seed}, {args.n_images} images")
    print(f"{'model':32s} {'AP@0.5':>7s} {'F1':>6s} {'even-half AP':>13s} {'odd-half AP':>12s}")
    for folder in args.models:
        scores = score_model(load_model(folder.parent, folder.name), pairs)
        total, even, odd = pooled(scores), pooled(scores[0::2]), pooled(scores[1::2])
        print(f"{str(folder):32s} {total.ap:7.3f} {total.f1:6.3f} {even.ap:13.3f} {odd.ap:12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
