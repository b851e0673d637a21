"""Pick the demo model to ship on generated images only, never on the real evaluation set.

    python bench/select_demo_model.py MODEL_DIR [MODEL_DIR ...]

Scores each candidate model folder (at its own thresholds) on a held-out generated set
that no training or validation run used: plain and domain-randomized images in turn
(``synthetic_mix``, seed 99, 80 images of 256 x 256). The rule written before any v3
score existed: ship the candidate with the highest pooled AP@0.5 here. The real images
are scored afterwards, once per shipped model (``python -m stardist_v4d eval``).
"""
from __future__ import annotations

import sys
from pathlib import Path

from stardist_v4d.pipeline.model import load_model
from stardist_v4d.training.evaluate import pooled, score_model
from stardist_v4d.training.synthetic import synthetic_mix

HELD_OUT_SEED, N_IMAGES = 99, 80


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    images, masks = synthetic_mix(N_IMAGES, (256, 256), seed=HELD_OUT_SEED)
    pairs = [(f"generated_{i}", image, mask) for i, (image, mask) in enumerate(zip(images, masks))]
    print(f"{'model':32s} {'AP@0.5':>7s} {'F1':>6s} {'plain AP':>9s} {'randomized AP':>14s}")
    for folder in map(Path, argv):
        scores = score_model(load_model(folder.parent, folder.name), pairs)
        total, plain, randomized = pooled(scores), pooled(scores[0::2]), pooled(scores[1::2])
        print(f"{str(folder):32s} {total.ap:7.3f} {total.f1:6.3f} {plain.ap:9.3f} {randomized.ap:14.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
