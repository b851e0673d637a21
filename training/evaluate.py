"""Score a model folder on real nuclei images with ground truth.

    python -m stardist_v4d eval [--model-path DIR] [--model NAME] [--eval-dir DIR [--stardist-image]]

With ``--eval-dir``, scores your image/mask pairs (paired as ``train`` pairs them:
``NAME.tif`` or ``NAME_img.tif`` with ``NAME_mask.tif``, see ``training.dataset``),
pooled on their own; ``--stardist-image`` adds ``stardist.data.test_image_nuclei_2d()``
(which ships with stardist) as a second pool. Without it, scores the evaluation
images beside the project (``../shared/eval``, not part of a clone: without it only
StarDist's image is scored, and the command says so in one line) and StarDist's image.

Uses StarDist's own ``matching``: AP as StarDist reports it, TP / (TP + FP + FN)
("accuracy"), and F1, per image and pooled per group, with the AP's binomial standard
error (on a few hundred nuclei two models 0.05 apart may not differ at all, and the
table should say so); then each pool's AP at IoU 0.5, 0.6, 0.7, 0.8 and 0.9, as the
StarDist paper reports it.
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


def evaluation_groups(eval_dir: Path | None, stardist_image: bool) -> list[tuple[str, list]]:
    """``(group name, [(name, image, mask), ...])``: the folder's pairs (if it is a folder),
    then StarDist's own test image if asked for. Each group is pooled on its own."""
    from stardist.data import test_image_nuclei_2d

    groups = []
    if eval_dir is not None and Path(eval_dir).is_dir():
        groups.append((str(eval_dir), folder_pairs(Path(eval_dir))))
    if stardist_image:
        image, mask = test_image_nuclei_2d(return_mask=True)
        groups.append((STARDIST_IMAGE, [(STARDIST_IMAGE, image, mask)]))
    return groups


def evaluation_images(eval_dir: Path | None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image, mask) triples: the pairs in ``eval_dir`` (if it is a folder), then
    StarDist's own test image (the default evaluation, as one list)."""
    return [pair for _, pairs in evaluation_groups(eval_dir, stardist_image=True) for pair in pairs]


def scored_line(names: list[str], eval_dir: Path, default_dir: Path | None = None) -> str:
    """One line: which images are scored, and, when the default folder is missing, that
    it is and how to point eval at a folder."""
    default_dir = DEFAULT_EVAL_DIR if default_dir is None else default_dir
    own = [n for n in names if n != STARDIST_IMAGE]
    parts = ([f"{len(own)} from {eval_dir} ({', '.join(own) if len(own) <= 12 else ', '.join(own[:12]) + ', ...'})"]
             if own else []) + ([f"{STARDIST_IMAGE}() (ships with stardist)"] if STARDIST_IMAGE in names else [])
    line = f"Scoring {len(names)} image{'s' if len(names) != 1 else ''}: {' + '.join(parts)}."
    if not Path(eval_dir).is_dir() and Path(eval_dir) == Path(default_dir):
        line += (f" The default folder {default_dir} does not exist (a clone of the project has none): "
                 "--eval-dir DIR adds DIR's NAME.tif or NAME_img.tif + NAME_mask.tif pairs.")
    return line


IOU_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def score_model_at(model, pairs, thresholds=IOU_THRESHOLDS, **predict_kwargs) -> dict[float, list[Score]]:
    """Per IoU threshold, one Score per image; each image predicted once, at the model's own
    thresholds (``predict_kwargs`` go to ``predict_instances``, e.g. ``scale``)."""
    from csbdeep.utils import normalize
    from stardist.matching import matching

    scores: dict[float, list[Score]] = {t: [] for t in thresholds}
    for name, image, mask in pairs:
        labels, _ = model.predict_instances(normalize(image, 1, 99.8), show_tile_progress=False, **predict_kwargs)
        matched = matching(mask, labels, thresh=list(thresholds))   # a list in, a tuple of results out
        for t, m in zip(thresholds, matched):
            scores[t].append(Score(name, m.n_true, m.n_pred, m.tp, m.fp, m.fn))
    return scores


def score_model(model, pairs, iou: float = 0.5, **predict_kwargs) -> list[Score]:
    """One Score per image at IoU ``iou``."""
    return score_model_at(model, pairs, (iou,), **predict_kwargs)[iou]


def pooled(scores: list[Score], name: str = "pooled") -> Score:
    return Score(name, *(sum(getattr(s, f) for s in scores) for f in ("n_true", "n_pred", "tp", "fp", "fn")))


def report(scores: list[Score], pools: list[tuple[str, list[Score]]] | None = None) -> str:
    """A small table: per image, then each pool (default: all images as ``pooled``)."""
    pools = pools if pools is not None else [("pooled", scores)]
    lines = [f"{'image':40s} {'true':>5s} {'pred':>5s} {'TP':>5s} {'FP':>5s} {'FN':>5s} {'AP@0.5':>7s} "
             f"{'±SE':>6s} {'F1':>6s}"]
    for s in scores + [pooled(group, name) for name, group in pools]:
        lines.append(f"{s.name[-40:]:40s} {s.n_true:5d} {s.n_pred:5d} {s.tp:5d} {s.fp:5d} {s.fn:5d} {s.ap:7.3f} "
                     f"{s.ap_se:6.3f} {s.f1:6.3f}")
    return "\n".join(lines)


def iou_report(by_threshold: dict[float, list[Score]], pools: list[tuple[str, list[str]]]) -> str:
    """Pooled AP at each IoU threshold, one row per pool (as StarDist's paper reports it)."""
    thresholds = sorted(by_threshold)
    lines = [f"{'pooled AP at IoU':40s} " + " ".join(f"{t:>6.1f}" for t in thresholds)]
    for name, names in pools:
        aps = [pooled([s for s in by_threshold[t] if s.name in names]).ap for t in thresholds]
        lines.append(f"{name[-40:]:40s} " + " ".join(f"{ap:6.3f}" for ap in aps))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ..config import DEFAULT_MODEL, shipped_models_dir
    from ..pipeline.backends.engine import BACKENDS, PRECISIONS, choose_engine, load_for
    parser = argparse.ArgumentParser(prog="python -m stardist_v4d eval", allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", type=Path, default=shipped_models_dir())
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--eval-dir", type=Path,
                        help="your folder of image/mask TIFF pairs, NAME.tif or NAME_img.tif with NAME_mask.tif: "
                             "scored and pooled on its own (default: the evaluation images beside the project, "
                             f"{DEFAULT_EVAL_DIR}, and {STARDIST_IMAGE}())")
    parser.add_argument("--stardist-image", action="store_true",
                        help=f"with --eval-dir: also score {STARDIST_IMAGE}() (pooled on its own)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (TensorFlow, exactly StarDist) or bf16 (OpenVINO), as in a run")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="engine of the CNN (default: tensorflow for fp32, openvino for bf16)")
    args = parser.parse_args(argv)
    if args.backend == "tensorflow" and args.precision != "fp32":
        print("error: --backend tensorflow runs fp32 only; bf16 runs through OpenVINO (leave --backend out)",
              file=sys.stderr)
        return 2
    own_folder = args.eval_dir is not None
    eval_dir = args.eval_dir if own_folder else DEFAULT_EVAL_DIR
    if own_folder and not args.eval_dir.is_dir():
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
        groups = evaluation_groups(eval_dir, stardist_image=args.stardist_image or not own_folder)
    except EvalDataError as error:           # also before TensorFlow loads
        print(f"error: {error}", file=sys.stderr)
        return 2
    if own_folder and not groups[0][1]:
        print(f"error: --eval-dir {args.eval_dir} holds no image/mask pairs (NAME.tif or NAME_img.tif with "
              "NAME_mask.tif)", file=sys.stderr)
        return 2
    pairs = [pair for _, group in groups for pair in group]
    print(scored_line([name for name, _, _ in pairs], eval_dir), flush=True)
    log = lambda line: print(line, flush=True)  # noqa: E731
    engine = choose_engine(args.backend, args.precision, log)
    model = load_for(engine, args.model_path, args.model, log)
    by_threshold = score_model_at(model, pairs)
    names = [(("pooled " + Path(name).name) if name != STARDIST_IMAGE else "pooled stardist image",
              [n for n, _, _ in group]) for name, group in groups]
    if len(groups) > 1:
        names.append(("pooled (all)", [n for n, _, _ in pairs]))
    at_half = by_threshold[0.5]
    print(report(at_half, [(label, [s for s in at_half if s.name in members]) for label, members in names]))
    print()
    print(iou_report(by_threshold, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
