"""Score a model folder on real nuclei images with ground truth.

    python -m stardist_v4d eval [--model-path DIR] [--model NAME] [--eval-dir DIR]

Scores the image/mask pairs in ``--eval-dir`` (paired as ``train`` pairs them:
``NAME.tif`` or ``NAME_img.tif`` with ``NAME_mask.tif``, see ``training.dataset``)
plus ``stardist.data.test_image_nuclei_2d()``, which ships with stardist. The default
folder, ``../shared/eval`` beside the project, is not part of a clone: without it
only StarDist's image is scored, and the command says so in one line.

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


STARDIST_IMAGE = "stardist.data.test_image_nuclei_2d"


class EvalDataError(ValueError):
    """The evaluation folder cannot be scored; the message is one line for the user."""


def folder_pairs(eval_dir: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image, mask) of every pair in ``eval_dir``, by the rule ``train`` uses.

    Raises :class:`EvalDataError` for a file without its partner, an unreadable file,
    or an image and mask of different shapes.
    """
    from .dataset import TrainingDataError, pair_files, read_plane

    try:
        paths = pair_files(eval_dir, eval_dir)
        pairs = [(image.stem, read_plane(image), read_plane(mask)) for image, mask in paths]
    except TrainingDataError as error:
        raise EvalDataError(f"eval folder {eval_dir}: {error}") from None
    for (name, image, mask), (_, mask_path) in zip(pairs, paths):
        if image.shape != mask.shape:
            raise EvalDataError(f"eval folder {eval_dir}: image '{name}' has shape {image.shape} but its "
                                f"mask '{mask_path.name}' has {mask.shape}: they must match")
    return pairs


def evaluation_images(eval_dir: Path | None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image, mask) triples: the pairs in ``eval_dir`` (if it is a folder), then
    StarDist's own test image."""
    from stardist.data import test_image_nuclei_2d

    pairs = folder_pairs(Path(eval_dir)) if eval_dir is not None and Path(eval_dir).is_dir() else []
    image, mask = test_image_nuclei_2d(return_mask=True)
    pairs.append((STARDIST_IMAGE, image, mask))
    return pairs


def scored_line(names: list[str], eval_dir: Path, default_dir: Path | None = None) -> str:
    """One line: which images are scored, and, when the default folder is missing, that
    it is and how to point eval at a folder."""
    default_dir = DEFAULT_EVAL_DIR if default_dir is None else default_dir
    own = [n for n in names if n != STARDIST_IMAGE]
    what = (f"{len(own)} from {eval_dir} ({', '.join(own)}) + " if own else "") + \
        f"{STARDIST_IMAGE}() (ships with stardist)"
    line = f"Scoring {len(names)} image{'s' if len(names) != 1 else ''}: {what}."
    if not Path(eval_dir).is_dir() and Path(eval_dir) == Path(default_dir):
        line += (f" The default folder {default_dir} does not exist (a clone of the project has none): "
                 "--eval-dir DIR adds DIR's NAME.tif or NAME_img.tif + NAME_mask.tif pairs.")
    return line


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
    from ..pipeline.backends.engine import BACKENDS, PRECISIONS, choose_engine, load_for
    parser = argparse.ArgumentParser(prog="python -m stardist_v4d eval", allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", type=Path, default=shipped_models_dir())
    parser.add_argument("--model", default="demo")
    parser.add_argument("--eval-dir", type=Path, default=DEFAULT_EVAL_DIR,
                        help="folder of image/mask TIFF pairs, NAME.tif or NAME_img.tif with NAME_mask.tif "
                             f"(default: {DEFAULT_EVAL_DIR}, beside the project; a clone has none, "
                             f"then only {STARDIST_IMAGE}() is scored)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (TensorFlow, exactly StarDist) or bf16 (OpenVINO), as in a run")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="engine of the CNN (default: tensorflow for fp32, openvino for bf16)")
    args = parser.parse_args(argv)
    if args.backend == "tensorflow" and args.precision != "fp32":
        print("error: --backend tensorflow runs fp32 only; bf16 runs through OpenVINO (leave --backend out)",
              file=sys.stderr)
        return 2
    if args.eval_dir != DEFAULT_EVAL_DIR and not args.eval_dir.is_dir():
        print(f"error: --eval-dir {args.eval_dir} is not a folder; give the folder of image/mask pairs",
              file=sys.stderr)
        return 2
    from ..pipeline.model import ModelError, read_model_folder
    folder = args.model_path / args.model
    try:
        if not folder.is_dir():
            raise ModelError(f"no model folder {folder}")
        read_model_folder(folder)
    except ModelError as error:              # checked before TensorFlow loads, in one line
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        pairs = evaluation_images(args.eval_dir)
    except EvalDataError as error:           # also before TensorFlow loads
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(scored_line([name for name, _, _ in pairs], args.eval_dir), flush=True)
    log = lambda line: print(line, flush=True)  # noqa: E731
    engine = choose_engine(args.backend, args.precision, log)
    model = load_for(engine, args.model_path, args.model, log)
    print(report(score_model(model, pairs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
