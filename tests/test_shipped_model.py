"""The shipped default model: complete, documented, and as good on real nuclei as its card says.

Three real annotated images ship with the demo (``demo/data``: images of the model's
validation split, never trained on). The model's pooled AP@0.5 on them is held to a
floor a little below the value measured when it was shipped, so a broken or swapped
model cannot ship.
"""
from __future__ import annotations

import json

import pytest

from stardist_v4d.config import DEFAULT_MODEL, shipped_models_dir
from stardist_v4d.demo.demo_stack import real_pairs

FOLDER = shipped_models_dir() / DEFAULT_MODEL
#: Pooled AP@0.5 on the three embedded images when the model shipped: 0.913 (the card), less a margin.
AP_FLOOR = 0.87
ATTRIBUTION = "Trained on BBBC038 (2018 Data Science Bowl), CC0 1.0."


@pytest.fixture(scope="module")
def model():
    from stardist_v4d.pipeline.model import load_model
    return load_model(shipped_models_dir(), DEFAULT_MODEL)


def test_the_default_model_folder_is_small_complete_and_carded():
    shipped = [p for p in FOLDER.iterdir() if p.name != ".openvino"]    # a bf16 run's cache is not shipped
    assert sorted(p.name for p in shipped) == ["README.md", "config.json", "fine_tune.png", "thresholds.json", "weights_best.h5"]
    card = (FOLDER / "README.md").read_text()
    assert "fine_tune.png" in card                                   # the card's figure, shipped beside it
    assert sum(p.stat().st_size for p in shipped) < 10 * 2 ** 20
    assert ATTRIBUTION in card
    for section in ("Training data", "Recipe", "Thresholds", "Scores", "Reproduce"):
        assert section in card, section


def test_thresholds_are_read_from_the_shipped_folder(model):
    saved = json.loads((FOLDER / "thresholds.json").read_text())
    assert model.thresholds.prob == pytest.approx(saved["prob"]) and model.thresholds.nms == pytest.approx(saved["nms"])
    assert saved["prob"] != 0.5 or saved["nms"] != 0.4              # optimized, not StarDist's defaults


def test_the_shipped_model_finds_real_nuclei(model):
    from stardist_v4d.training.evaluate import pooled, score_model

    pairs = real_pairs()
    assert len(pairs) == 3 and sum(int(mask.max()) for _, _, mask in pairs) > 150
    total = pooled(score_model(model, pairs))
    assert total.ap >= AP_FLOOR, f"pooled AP@0.5 {total.ap:.3f} on {total.n_true} real nuclei"
