"""Seconds per training step: StarDist's own loop against ours, fp32 and bf16, on this CPU.

    python bench/training_speed.py [--data ../shared/data/dsb2018_fluo] [--steps 30] [--images 60]

Same model (StarDist's standard 2D network: 32 rays, grid 2, U-Net depth 3, 32
filters), same real images, batch 4 of 256 x 256, same augmentation. Each variant
trains two epochs of ``--steps`` steps in a fresh model; the first (graph tracing) is not timed, so
the figure is the steady state a long training sees. Variants, in one process, in
turn:

- ``stardist``: ``StarDist2D.train`` as shipped (batches made between steps, Keras'
  default compilation: no XLA on a CPU);
- ``ours no-xla``: ``training.fit`` (batches made one step ahead in a thread), no XLA;
- ``ours fp32``: the same with the XLA-compiled step, as ``train`` runs long trainings;
- ``ours bf16``: that with Keras ``mixed_bfloat16`` (float32 outputs); native only on
  CPUs with AVX512_BF16 or AMX, emulated (slow) elsewhere, where it is skipped unless
  named in ``--variants``.

Prints the CPU, whether bf16 is native, s/step per variant and each as a ratio of
StarDist's. Run it with nothing else busy.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from stardist_v4d.training.augment import Augmenter  # noqa: E402
from stardist_v4d.training.dataset import load_training_pairs  # noqa: E402
from stardist_v4d.training.train import TrainSettings, config_values, normalize_images  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018_fluo"


class _StepTimer:
    """Keras callback: wall time of the steps after the first epoch."""

    def __init__(self) -> None:
        import keras

        timer = self

        class _Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == 1:
                    timer.start = time.perf_counter()

            def on_train_end(self, logs=None):
                timer.end = time.perf_counter()

        self.callback = _Callback()
        self.start = self.end = 0.0


def _model(settings: TrainSettings, folder: Path, xla: bool):
    from stardist.models import Config2D, StarDist2D

    from stardist_v4d.training.fit import compile_with_xla
    from stardist_v4d.training.precision import building_in, float32_outputs

    with building_in(settings.precision):
        model = StarDist2D(Config2D(**config_values(settings)), name=settings.precision, basedir=str(folder))
    float32_outputs(model.keras_model)
    if xla:
        compile_with_xla(model, steps=10 ** 9)
    model.prepare_for_training()
    return model


def seconds_per_step(variant: str, images, masks, steps: int, folder: Path) -> float:
    """Steady-state seconds per step of one variant (the first, warm-up epoch is not counted)."""
    from stardist_v4d.training.fit import fit

    precision = "bf16" if variant == "ours bf16" else "fp32"
    settings = TrainSettings(epochs=2, steps_per_epoch=steps, precision=precision)
    model = _model(settings, folder / variant.replace(" ", "_"), xla=variant in ("ours fp32", "ours bf16"))
    timer = _StepTimer()
    validation = (images[:4], masks[:4])
    if variant == "stardist":
        model.callbacks.append(timer.callback)
        # StarDist's loop: epoch 1 warms up, epoch 2 is timed
        model.train(images, masks, validation_data=validation, augmenter=Augmenter(1), epochs=2, steps_per_epoch=steps)
    else:
        fit(model, images, masks, validation, Augmenter(1), settings, run={}, extra_callbacks=[timer.callback])
    return (timer.end - timer.start) / steps


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--images", type=int, default=60, help="real images loaded (of the set's 491)")
    parser.add_argument("--variants", nargs="+", default=None,
                        help="default: stardist, ours no-xla, ours fp32, and ours bf16 where bf16 is native")
    args = parser.parse_args(argv)

    from report import machine

    from stardist_v4d.training.precision import native_bf16

    variants = args.variants or ["stardist", "ours no-xla", "ours fp32"] + (["ours bf16"] if native_bf16() else [])
    images, masks, _ = load_training_pairs(args.data, args.data, (256, 256))
    images, masks = normalize_images(images[: args.images]), masks[: args.images]
    print(f"machine: {machine()}; bf16 native: {'yes' if native_bf16() else 'no (emulated by TensorFlow)'}")
    print(f"batch 4 x 256 x 256, {args.steps} timed steps per variant, {len(images)} real images")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            results[variant] = seconds_per_step(variant, images, masks, args.steps, Path(tmp))
            print(f"{variant:10s} {results[variant]:.3f} s/step", flush=True)
    base = results.get("stardist")
    print("\nvariant     s/step   vs StarDist's loop")
    for variant, seconds in results.items():
        ratio = f"{base / seconds:.2f}x faster" if base else "-"
        print(f"{variant:10s} {seconds:7.3f}   {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
