"""eval: one pairing rule with train, and one line saying what was scored."""
from __future__ import annotations

import numpy as np
import tifffile

from stardist_v4d.config import DEFAULT_MODEL, shipped_models_dir
from stardist_v4d.training import evaluate
from stardist_v4d.training.dataset import pair_files
from test_evaluate import disks


def write_pair(folder, image_name, mask_name, seed):
    mask = disks([(10 + seed, 12), (30, 30 + seed)], size=48)
    image = (mask > 0).astype(np.float32) * 100 + np.random.default_rng(seed).random(mask.shape).astype(np.float32)
    tifffile.imwrite(folder / image_name, image)
    tifffile.imwrite(folder / mask_name, mask)
    return image, mask


class TruthModel:
    """'Predicts' the ground truth of each image in turn (no TensorFlow)."""

    def __init__(self, masks):
        self.masks = iter(masks)

    def predict_instances(self, image, **kwargs):
        return next(self.masks), {}


def test_eval_folder_pairs_both_spellings(tmp_path):
    a = write_pair(tmp_path, "a_img.tif", "a_mask.tif", 0)
    b = write_pair(tmp_path, "b.tif", "b_mask.tif", 1)
    pairs = evaluate.folder_pairs(tmp_path)
    assert [name for name, _, _ in pairs] == ["a_img", "b"]
    for (_, image, mask), (want_image, want_mask) in zip(pairs, (a, b)):
        assert np.array_equal(image, want_image) and np.array_equal(mask, want_mask)


def test_train_pairs_the_img_spelling_too(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    write_pair(images, "a_img.tif", "unused.tif", 0)
    write_pair(images, "b.tif", "unused.tif", 1)
    (images / "unused.tif").unlink()
    for name in ("a_mask.tif", "b_labels.tif"):
        tifffile.imwrite(masks / name, disks([(20, 20)], size=48))
    assert [(i.name, m.name) for i, m in pair_files(images, masks)] == [("a_img.tif", "a_mask.tif"),
                                                                       ("b.tif", "b_labels.tif")]


def test_missing_default_folder_is_said_in_one_line(tmp_path, monkeypatch, capsys):
    from stardist.data import test_image_nuclei_2d

    missing = tmp_path / "shared" / "eval"
    monkeypatch.setattr(evaluate, "DEFAULT_EVAL_DIR", missing)
    truth = test_image_nuclei_2d(return_mask=True)[1]
    monkeypatch.setattr("stardist_v4d.pipeline.backends.engine.load_for", lambda *args, **kwargs: TruthModel([truth]))
    assert evaluate.main(["--model-path", str(shipped_models_dir()), "--model", DEFAULT_MODEL]) == 0
    first, header, *rows = capsys.readouterr().out.splitlines()
    assert first.startswith("Scoring 1 image: stardist.data.test_image_nuclei_2d() (ships with stardist).")
    assert f"The default folder {missing} does not exist" in first and "--eval-dir DIR" in first
    assert header.startswith("image") and rows[0].startswith("stardist.data.test_image_nuclei_2d")


def test_eval_dir_names_the_images_it_scores(tmp_path, monkeypatch, capsys):
    from stardist.data import test_image_nuclei_2d

    _, a = write_pair(tmp_path, "a_img.tif", "a_mask.tif", 0)
    _, b = write_pair(tmp_path, "b.tif", "b_mask.tif", 1)
    truth = test_image_nuclei_2d(return_mask=True)[1]
    monkeypatch.setattr("stardist_v4d.pipeline.backends.engine.load_for", lambda *args, **kwargs: TruthModel([a, b, truth]))
    assert evaluate.main(["--eval-dir", str(tmp_path), "--stardist-image"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"Scoring 3 images: 2 from {tmp_path} (a_img, b) + "
                      "stardist.data.test_image_nuclei_2d() (ships with stardist).")
    table = out[2:out.index("")]
    assert [line.split()[0] for line in table] == ["a_img", "b", "stardist.data.test_image_nuclei_2d",
                                                   "pooled", "pooled", "pooled"]
    assert table[3].startswith(f"pooled {tmp_path.name} ") and table[4].startswith("pooled stardist image")
    assert table[5].startswith("pooled (all)")


def test_a_users_folder_is_scored_and_pooled_alone_at_iou_05_to_09(tmp_path, monkeypatch, capsys):
    _, a = write_pair(tmp_path, "a_img.tif", "a_mask.tif", 0)
    _, b = write_pair(tmp_path, "b.tif", "b_mask.tif", 1)
    shrunk = a.copy()
    shrunk[np.roll(a, 3, axis=1) != a] = 0            # nucleus edges cut: matches at IoU 0.5, not at 0.9
    monkeypatch.setattr("stardist_v4d.pipeline.backends.engine.load_for",
                        lambda *args, **kwargs: TruthModel([shrunk, b]))
    assert evaluate.main(["--eval-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Scoring 2 images: 2 from {tmp_path} (a_img, b)."
    blank = out.index("")
    assert [line.split()[0] for line in out[2:blank]] == ["a_img", "b", "pooled"]
    header, row = out[blank + 1:]
    assert header.split()[-5:] == ["0.5", "0.6", "0.7", "0.8", "0.9"]
    aps = [float(v) for v in row.split()[-5:]]
    assert aps[0] == 1.0                              # a's cut nuclei still overlap theirs at IoU ~0.75
    assert abs(aps[-1] - 2 / 6) < 1e-3                # at 0.9 only b's 2 match: 2 / (2 TP + 2 FP + 2 FN)
    assert all(x >= y for x, y in zip(aps, aps[1:]))


def test_eval_dir_that_is_missing_or_unpaired_is_one_line_error(tmp_path, capsys):
    assert evaluate.main(["--eval-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--eval-dir {tmp_path / 'nope'} is not a folder" in err
    write_pair(tmp_path, "a_img.tif", "a_mask.tif", 0)
    (tmp_path / "a_mask.tif").rename(tmp_path / "c_mask.tif")
    assert evaluate.main(["--eval-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "image 'a_img.tif' has no mask" in err and "a_mask.tif" in err
