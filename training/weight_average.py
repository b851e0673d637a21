"""Average the weights of models fine-tuned from one start ("model soup").

    python -m stardist_v4d.training.weight_average --out DIR MODEL_DIR MODEL_DIR [...]

Why: models fine-tuned from the same weights lie in one basin, and their average is
often more robust to unseen data than any of them (Wortsman et al. 2022, "Model
soups"); the demo model's problem is exactly unseen (real) data. The averaged model
gets the first model's config and thresholds re-optimized on the demo recipe's
generated validation images (``--style``, as the models were trained), never on real ones.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np


def average_weights(weight_sets: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Element-wise mean of same-shaped weight lists."""
    shapes = {tuple(tuple(w.shape) for w in weights) for weights in weight_sets}
    if len(shapes) != 1:
        raise ValueError("models differ in architecture; only same-architecture weights can be averaged")
    return [np.mean(np.stack(layer), axis=0) for layer in zip(*weight_sets)]


def main(argv: list[str] | None = None) -> None:
    from ..pipeline.model import load_model
    from .train_demo_model import DEMO_STYLE, STYLES, VAL_SEED
    from .train import normalize_images

    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n-val", type=int, default=60)
    parser.add_argument("--style", choices=sorted(STYLES), default=DEMO_STYLE,
                        help="generator of the validation images the thresholds are optimized on")
    args = parser.parse_args(argv)

    models = [load_model(folder.parent, folder.name) for folder in args.models]
    soup = models[0]
    soup.keras_model.set_weights(average_weights([m.keras_model.get_weights() for m in models]))
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.models[0] / "config.json", args.out / "config.json")
    soup.keras_model.save_weights(str(args.out / "weights_best.h5"))

    images, masks = STYLES[args.style](args.n_val, (256, 256), VAL_SEED)
    thresholds = dict(soup.optimize_thresholds(normalize_images(images), masks, optimize_kwargs={"verbose": 0},
                                              save_to_json=False))   # not into the first model's folder
    (args.out / "thresholds.json").write_text(json.dumps(thresholds))
    print(f"Averaged {len(models)} models into {args.out}; thresholds prob {thresholds['prob']:.3f}, "
          f"nms {thresholds['nms']:.2f} (generated validation)")


if __name__ == "__main__":
    main()
