"""The eval command's arithmetic: StarDist's matching, per image and pooled."""
from __future__ import annotations

import numpy as np

from stardist_v4d.training.evaluate import Score, pooled, report, score_model


class EchoModel:
    """Stands in for a model: 'predicts' a given label image, to check the scoring."""

    def __init__(self, answers):
        self.answers = iter(answers)

    def predict_instances(self, image, **kwargs):
        return next(self.answers), {}


def disks(centres, size=64, radius=5):
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.uint16)
    for i, (y, x) in enumerate(centres, start=1):
        labels[(yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2] = i
    return labels


def test_perfect_and_partial_predictions_score_as_stardist_counts_them():
    truth_a, truth_b = disks([(10, 10), (30, 30), (50, 50)]), disks([(15, 40)])
    guess_a = disks([(10, 10), (30, 30)])                # one missed
    guess_b = disks([(15, 40), (50, 10)])                # one false positive
    image = np.random.default_rng(0).random((64, 64))
    scores = score_model(EchoModel([guess_a, guess_b]), [("a", image, truth_a), ("b", image, truth_b)])
    assert (scores[0].tp, scores[0].fp, scores[0].fn) == (2, 0, 1)
    assert (scores[1].tp, scores[1].fp, scores[1].fn) == (1, 1, 0)
    total = pooled(scores)
    assert (total.tp, total.fp, total.fn) == (3, 1, 1)
    assert total.ap == 3 / 5 and total.f1 == 6 / 8
    assert "pooled" in report(scores) and "0.600" in report(scores)


def test_empty_score_is_zero_not_an_error():
    assert Score("none", 0, 0, 0, 0, 0).ap == 0.0


def test_standard_error_says_how_far_apart_two_scores_must_be():
    small, large = Score("small", 10, 10, 8, 2, 2), Score("large", 1000, 1000, 800, 200, 200)
    assert small.ap == large.ap
    assert small.ap_se == np.sqrt(small.ap * (1 - small.ap) / 12)
    assert large.ap_se < small.ap_se / 9                      # 100x the trials, a tenth of the error
    assert Score("perfect", 5, 5, 5, 0, 0).ap_se == 0.0
    assert f"{small.ap_se:6.3f}" in report([small])


def test_eval_of_a_broken_model_folder_is_one_line(tmp_path, capsys):
    from stardist_v4d.training.evaluate import main

    assert main(["--model-path", str(tmp_path), "--model", "missing"]) == 2
    assert capsys.readouterr().err.strip() == f"error: no model folder {tmp_path / 'missing'}"
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text('{"n_dim": 2, "n_channel_in": 1}')
    assert main(["--model-path", str(tmp_path), "--model", "noweights"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "has no weights (.h5 file" in err and "\n" not in err
