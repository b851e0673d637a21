"""Tiny StarDist 2D model folders for logic tests: seconds to build, fast NMS."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def make_tiny_model(models_dir: Path, name: str = "tiny", n_rays: int = 8, seed: int = 0,
                    prob_thresh: float | None = None, probe: np.ndarray | None = None) -> Path:
    """A random-weight StarDist 2D model folder (config.json, weights_best.h5, thresholds.json).

    Random weights give a smooth probability map; the probability threshold is put at a
    high quantile of that map on ``probe`` so a few dozen candidates survive and NMS
    stays fast, while labels are still non-trivial.
    """
    import keras
    from csbdeep.utils import normalize
    from stardist.models import Config2D, StarDist2D

    keras.utils.set_random_seed(seed)
    config = Config2D(n_rays=n_rays, grid=(2, 2), n_channel_in=1, unet_n_depth=1,
                      unet_n_filter_base=4, train_tensorboard=False)
    model = StarDist2D(config, name=name, basedir=str(models_dir))
    folder = Path(models_dir) / name
    model.keras_model.save_weights(str(folder / "weights_best.h5"))
    if prob_thresh is None:
        probe = probe if probe is not None else np.random.default_rng(seed).random((128, 128))
        prob, _ = model.predict(normalize(probe, 1, 99.8))
        prob_thresh = float(np.quantile(prob, 0.98))
    (folder / "thresholds.json").write_text(json.dumps({"prob": prob_thresh, "nms": 0.3}))
    return folder


def tiny_models_dir(tmp_path_factory, size: int) -> Path:
    """A fresh models folder holding "tiny", thresholded on a synthetic ``size`` x ``size`` probe."""
    from stardist_v4d.training.synthetic import synthetic_nuclei
    folder = tmp_path_factory.mktemp("models")
    probe, _ = synthetic_nuclei((size, size), np.random.default_rng(5))
    make_tiny_model(folder, "tiny", probe=probe)
    return folder
