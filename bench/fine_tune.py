"""How many annotated images a user needs: fine-tuning the shipped model on 1 ... 20 real images.

    python bench/fine_tune.py [--data ../shared/data/dsb2018_fluo] [--model fluo_nuclei]
                              [--sizes 1 2 5 10 20] [--epochs 5] [--steps 40] [--plot FILE.png]
                              [--precision bf16]

"Your images" are one kind of the real training set that the shipped model never saw
(``training/dsb2018.py``: 256 x 256, dim nuclei of 256-511 px; 43 images, kept out of the
shipped model's training). They are split once (seeded): 20 are the test, the rest the
pool a user would annotate. For each size N, the first N pool images fine-tune the
shipped model through the ``train --from`` command, as a user would (with fewer than 5
images the thresholds come from the training images themselves), and the result is
scored on the same 20 test images. The baseline is the shipped model as it is.

Prints, per N: pooled AP@0.5 (± its standard error), F1, training minutes, and AP as a
ratio of the baseline's; draws AP against N (``--plot``), the figure in the model card.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from stardist_v4d.config import DEFAULT_MODEL, shipped_models_dir  # noqa: E402
from stardist_v4d.training.cli import main as train  # noqa: E402
from stardist_v4d.training.dsb2018 import link_pairs, split  # noqa: E402
from stardist_v4d.training.evaluate import pooled, score_model  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018_fluo"
N_TEST, SEED = 20, 7


def plot(rows: list[tuple[int, float, float]], baseline: float, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes, aps, errors = zip(*rows)
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=110)
    ax.errorbar(sizes, aps, yerr=errors, marker="o", capsize=3, label="fine-tuned (train --from)")
    ax.axhline(baseline, color="grey", linestyle="--", label="shipped model, no fine-tuning")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_xlabel("annotated images of your kind")
    ax.set_ylabel(f"AP@0.5 on {N_TEST} other images")
    ax.set_ylim(min(min(aps), baseline) - 0.05, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 5, 10, 20])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40, help="steps per epoch")
    parser.add_argument("--plot", type=Path, help="write the AP-against-N figure here")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="train's --precision: bf16 is ~1.7x faster on CPUs with AMX or AVX512_BF16")
    args = parser.parse_args(argv)

    from stardist_v4d.pipeline.model import load_model
    from stardist_v4d.training.dataset import read_plane

    _, kind = split(args.data)
    order = np.random.default_rng(SEED).permutation(len(kind))
    test_pairs = [kind[i] for i in order[:N_TEST]]
    pool = [kind[i] for i in order[N_TEST:]]
    if max(args.sizes) > len(pool):
        print(f"error: the pool holds {len(pool)} images; --sizes up to {len(pool)}", file=sys.stderr)
        return 2
    test = [(image.stem, read_plane(image), read_plane(mask)) for image, mask in test_pairs]
    n_test = sum(int(len(np.unique(mask)) - 1) for _, _, mask in test)
    print(f"your kind: {len(kind)} images of the held-out kind; test {len(test)} images ({n_test} nuclei), "
          f"pool {len(pool)}; fine-tuning {args.epochs} x {args.steps} steps from '{args.model}'")

    shipped = load_model(shipped_models_dir(), args.model)
    baseline = pooled(score_model(shipped, test))
    rows: list[tuple[str, object, float | None]] = [("shipped model (baseline)", baseline, None)]
    curve = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            data, out = Path(tmp) / f"data_{n}", Path(tmp) / "models" / f"n{n}"
            link_pairs(pool[:n], data)
            started = time.monotonic()
            code = train(["--from", args.model, "--images", str(data), "--masks", str(data), "--out", str(out),
                          "--epochs", str(args.epochs), "--steps-per-epoch", str(args.steps),
                          "--precision", args.precision])
            if code != 0:
                return code
            score = pooled(score_model(load_model(out.parent, out.name), test))
            rows.append((f"fine-tuned on {n} image{'s' if n > 1 else ''}", score, time.monotonic() - started))
            curve.append((n, score.ap, score.ap_se))
            print(f"n={n}: AP@0.5 {score.ap:.3f}", flush=True)

    print(f"\n{'model':30s} {'AP@0.5':>7s} {'±SE':>6s} {'F1':>6s} {'train min':>9s} {'AP / baseline':>13s}")
    for label, total, seconds in rows:
        minutes = f"{seconds / 60:9.1f}" if seconds is not None else f"{'-':>9s}"
        print(f"{label:30s} {total.ap:7.3f} {total.ap_se:6.3f} {total.f1:6.3f} {minutes} {total.ap / baseline.ap:13.2f}")
    if args.plot:
        plot(curve, baseline.ap, args.plot)
        print(f"figure: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
