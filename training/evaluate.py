"""Score a model folder on real nuclei images with ground truth.

    python -m stardist_v4d eval [--model-path DIR] [--model NAME] [--eval-dir DIR]

Uses StarDist's own ``matching``: AP at IoU 0.5 as StarDist reports it,
TP / (TP + FP + FN) ("accuracy"), and F1, per image and pooled over all images,
with the AP's binomial standard error: on a few hundred nuclei two models 0.05
apart may not differ at all, and the table should say so.
The images are for measuring only: nothing here trains or picks thresholds.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_EVAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "eval"


@dataclass(frozen=True)
class Score:
    name: str
    n_true: int
    n_pred: int
    tp: int
    fp: int
    fn: int

    @property
    def ap(self) -> float:
        return self.tp / max(1, self.tp + self.fp + self.fn)

    @property
    def ap_se(self) -> float:
        """Standard error of ``ap``, each match/miss/false detection counted as one trial."""
        return float(np.sqrt(self.ap * (1 - self.ap) / max(1, self.tp + self.fp + self.fn)))

    @property
    def f1(self) -> float:
        return 2 * self.tp / max(1, 2 * self.tp + self.fp + self.fn)


def evaluation_images(eval_dir: Path | None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image, mask) triples: ``*_img.tif`` / ``*_mask.tif`` pairs plus StarDist's own."""
    import tifffile
    from stardist.data import test_image_nuclei_2d

    pairs = []
    if eval_dir is not None and Path(eval_dir).is_dir():
        for image_path in sorted(Path(eval_dir).glob("*_img.tif")):
            mask_path = image_path.with_name(image_path.name.replace("_img.tif", "_mask.tif"))
            if mask_path.exists():
                pairs.append((image_path.stem, tifffile.imread(image_path), tifffile.imread(mask_path)))
    image, mask = test_image_nuclei_2d(return_mask=True)
    pairs.append(("stardist.data.test_image_nuclei_2d", image, mask))
    return pairs


def score_model(model, pairs, iou: float = 0.5, **predict_kwargs) -> list[Score]:
    """One Score per image; predictions at the model's own thresholds (``predict_kwargs``
    go to ``predict_instances``, e.g. ``scale``)."""
    from csbdeep.utils import normalize
    from stardist.matching import matching

    scores = []
    for name, image, mask in pairs:
        labels, _ = model.predict_instances(normalize(image, 1, 99.8), show_tile_progress=False, **predict_kwargs)
        m = matching(mask, labels, thresh=iou)
        scores.append(Score(name, m.n_true, m.n_pred, m.tp, m.fp, m.fn))
    return scores


def pooled(scores: list[Score]) -> Score:
    return Score("pooled", *(sum(getattr(s, f) for s in scores) for f in ("n_true", "n_pred", "tp", "fp", "fn")))


def report(scores: list[Score]) -> str:
    """A small table: per image and pooled."""
    lines = [f"{'image':40s} {'true':>5s} {'pred':>5s} {'TP':>5s} {'FP':>5s} {'FN':>5s} {'AP@0.5':>7s} "
             f"{'±SE':>6s} {'F1':>6s}"]
    for s in scores + [pooled(scores)]:
        lines.append(f"{s.name:40s} {s.n_true:5d} {s.n_pred:5d} {s.tp:5d} {s.fp:5d} {s.fn:5d} {s.ap:7.3f} "
                     f"{s.ap_se:6.3f} {s.f1:6.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ..config import shipped_models_dir
    parser = argparse.ArgumentParser(prog="python -m stardist_v4d eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", type=Path, default=shipped_models_dir())
    parser.add_argument("--model", default="demo")
    parser.add_argument("--eval-dir", type=Path, default=DEFAULT_EVAL_DIR,
                        help="folder of NAME_img.tif / NAME_mask.tif pairs (default: ../shared/eval)")
    args = parser.parse_args(argv)
    from ..pipeline.model import ModelError, load_model, read_model_folder
    folder = args.model_path / args.model
    try:
        if not folder.is_dir():
            raise ModelError(f"no model folder {folder}")
        read_model_folder(folder)
    except ModelError as error:              # checked before TensorFlow loads, in one line
        print(f"error: {error}", file=sys.stderr)
        return 2
    model = load_model(args.model_path, args.model)
    print(report(score_model(model, evaluation_images(args.eval_dir))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
