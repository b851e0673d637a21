"""``train --from``: fine-tuning an existing model folder on one's own annotated images.

One test trains (a tiny model, one short epoch); the error cases stop before
TensorFlow loads, on fake model folders (config.json + an empty weights file).
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from model_factory import make_tiny_model
from stardist_v4d.config import DEFAULT_MODEL, shipped_models_dir
from stardist_v4d.training.cli import build_parser, main, settings_from
from stardist_v4d.training.fine_tune import FINE_TUNE_LEARNING_RATE, find_base_model
from test_training import cli_error, good_pair, write_pairs

SCHEDULE = ["--patch-size", "64", "64", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2",
            "--val-fraction", "0.25"]


def fake_model(folder: Path, **config) -> Path:
    """A model folder that passes the file checks: config.json and an HDF5 file with no weights.

    Its architecture is the tiny one that ``cli_error``'s flags (``TINY``) ask for."""
    folder.mkdir(parents=True)
    values = {"n_dim": 2, "n_channel_in": 1, "n_rays": 8, "grid": [2, 2], "unet_n_depth": 1,
              "unet_n_filter_base": 4, "train_epochs": 400, **config}
    (folder / "config.json").write_text(json.dumps(values))
    h5py.File(folder / "weights_best.h5", "w").close()   # an empty HDF5 file: no layers to check
    return folder


def error_of(tmp_path: Path, capsys, *extra: str, out: Path | None = None) -> str:
    """Run ``train`` on two good pairs expecting a usage error (see ``cli_error``)."""
    images, masks = write_pairs(tmp_path, {"a": good_pair(), "b": good_pair()})
    return cli_error(tmp_path, capsys, images, masks, *extra, out=out)


def test_fine_tuning_starts_from_the_base_weights_and_keeps_its_architecture(tmp_path, capsys):
    from stardist_v4d.training.synthetic import synthetic_dataset

    base = make_tiny_model(tmp_path / "models", "base", n_rays=8)
    base_bytes = (base / "weights_best.h5").read_bytes()
    images, masks = synthetic_dataset(1, shape=(96, 96), seed=3)     # one annotated image is enough to start
    write_pairs(tmp_path, {f"img{i}": pair for i, pair in enumerate(zip(images, masks))})
    out = tmp_path / "models" / "tuned"

    # a learning rate near zero: the result must still be the base model's weights
    assert main(["--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"), "--out", str(out),
                 "--from", str(base), "--learning-rate", "1e-12", *SCHEDULE]) == 0
    said = capsys.readouterr().out
    assert "Fine-tuning base" in said and "Only 1 image/mask pair: all train" in said

    config = json.loads((out / "config.json").read_text())
    assert (config["n_rays"], config["unet_n_depth"], config["unet_n_filter_base"]) == (8, 1, 4)
    record = json.loads((out / "training.json").read_text())
    assert record["start_weights"] == str((base / "weights_best.h5").resolve())
    assert record["settings"]["learning_rate"] == 1e-12
    assert (base / "weights_best.h5").read_bytes() == base_bytes          # the base model is untouched
    assert (out / "thresholds.json").is_file()

    from stardist.models import StarDist2D
    from csbdeep.utils import normalize
    tuned = StarDist2D(None, name="tuned", basedir=str(out.parent))
    before = StarDist2D(None, name="base", basedir=str(base.parent)).keras_model.get_weights()
    after = tuned.keras_model.get_weights()
    assert len(before) == len(after)
    assert all(np.allclose(b, a, atol=1e-6) for b, a in zip(before, after))
    labels, _ = tuned.predict_instances(normalize(images[0], 1, 99.8))
    assert labels.shape == images[0].shape


def test_fine_tuning_defaults_to_the_lower_learning_rate_and_the_models_architecture(tmp_path):
    base = find_base_model(fake_model(tmp_path / "base", n_rays=16, unet_n_depth=2, unet_kernel_size=[5, 5]))
    args = build_parser().parse_args(["--images", "i", "--masks", "m", "--out", "o", "--from", str(base.folder)])
    settings = settings_from(args, base)
    assert settings.learning_rate == FINE_TUNE_LEARNING_RATE
    assert (settings.n_rays, settings.unet_n_depth, settings.grid) == (16, 2, (2, 2))
    assert settings.extra_config["unet_kernel_size"] == [5, 5]      # the rest of the architecture comes along
    assert "train_epochs" not in settings.extra_config              # the schedule comes from the flags


def test_shipped_model_is_found_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                                     # no ./demo folder here
    base = find_base_model(Path(DEFAULT_MODEL))
    assert base.folder == (shipped_models_dir() / DEFAULT_MODEL).resolve()
    assert base.weights.name == "weights_best.h5"


def test_missing_base_model_says_what_to_give(tmp_path, capsys):
    err = error_of(tmp_path, capsys, "--from", str(tmp_path / "nowhere"))
    assert f"--from '{tmp_path / 'nowhere'}': no such model folder" in err
    assert DEFAULT_MODEL in err                                            # names the shipped models


@pytest.mark.parametrize("config, message", [
    ({"n_channel_in": 3}, "expects 3 input channels"),
    ({"n_dim": 3}, "is a 3D model"),
    ({"n_classes": 4}, "sorts nuclei into 4 classes"),
])
def test_unusable_base_model(tmp_path, capsys, config, message):
    base = fake_model(tmp_path / "base", **config)
    assert message in error_of(tmp_path, capsys, "--from", str(base))


def test_base_model_without_weights(tmp_path, capsys):
    base = fake_model(tmp_path / "base")
    (base / "weights_best.h5").unlink()
    assert "has no weights (.h5 file" in error_of(tmp_path, capsys, "--from", str(base))


def test_architecture_flag_that_contradicts_the_base_model(tmp_path, capsys):
    base = fake_model(tmp_path / "base", n_rays=32)
    err = error_of(tmp_path, capsys, "--from", str(base), "--n-rays", "16")
    assert "--n-rays 16: the model in --from has n_rays = 32" in err and "leave out --n-rays" in err


def test_grid_flag_sets_the_grid_and_can_only_make_the_base_models_finer(tmp_path, capsys):
    args = build_parser().parse_args(["--images", "i", "--masks", "m", "--out", "o", "--grid", "1"])
    assert settings_from(args, None).grid == (1, 1)
    base = fake_model(tmp_path / "base")                                   # grid [2, 2]
    err = error_of(tmp_path, capsys, "--from", str(base), "--grid", "4")
    assert "--grid 4: the model in --from has grid = 2" in err and "not coarser" in err
    finer = build_parser().parse_args(["--images", "i", "--masks", "m", "--out", "o", "--from", str(base), "--grid", "1"])
    assert settings_from(finer, find_base_model(base)).grid == (1, 1)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--grid", "3"])                        # argparse names the choices


def test_fine_tuning_into_the_base_folder_is_refused(tmp_path, capsys):
    base = fake_model(tmp_path / "base")
    err = error_of(tmp_path, capsys, "--from", str(base), "--overwrite", out=base)
    assert "is the --from model: write the fine-tuned model to a new folder" in err
    assert (base / "config.json").is_file() and (base / "weights_best.h5").is_file()


def test_weights_that_do_not_load_leave_no_model_folder(tmp_path, capsys):
    base = fake_model(tmp_path / "base")               # its weights file holds no layers: Keras cannot load it
    err = error_of(tmp_path, capsys, "--from", str(base))
    assert "could not be loaded into this architecture" in err


def test_bad_learning_rate(tmp_path, capsys):
    assert "--learning-rate 0: must be between 0 and 1" in error_of(tmp_path, capsys, "--learning-rate", "0")


def test_deepening_carries_the_upper_levels_over_and_starts_the_new_ones_random(tmp_path, capsys):
    from stardist.models import StarDist2D
    from stardist_v4d.training.synthetic import synthetic_dataset

    base = make_tiny_model(tmp_path / "models", "base", n_rays=8)          # unet_n_depth 1
    images, masks = synthetic_dataset(1, shape=(96, 96), seed=3)
    write_pairs(tmp_path, {f"img{i}": pair for i, pair in enumerate(zip(images, masks))})
    out = tmp_path / "models" / "deeper"
    assert main(["--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"), "--out", str(out),
                 "--from", str(base), "--unet-depth", "2", "--learning-rate", "1e-12", *SCHEDULE]) == 0
    said = capsys.readouterr().out
    assert "Reshaping base: 9 of 15 layers take its weights, 6 (new, or of another shape) start random" in said
    assert json.loads((out / "config.json").read_text())["unet_n_depth"] == 2
    assert json.loads((out / "training.json").read_text())["transferred_from"] == str(base.resolve())

    shallow = {layer.name: layer.get_weights() for layer in
               StarDist2D(None, name="base", basedir=str(base.parent)).keras_model.layers if layer.weights}
    deep = {layer.name: layer.get_weights() for layer in
            StarDist2D(None, name="deeper", basedir=str(out.parent)).keras_model.layers if layer.weights}
    for name in ("down_level_0_no_0", "up_level_0_no_2", "features", "prob", "dist"):      # same level, same shape
        assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(shallow[name], deep[name]))
    assert "down_level_1_no_0" in deep and "down_level_1_no_0" not in shallow
    assert deep["middle_0"][0].shape != shallow["middle_0"][0].shape                      # the middle moved down


def test_a_finer_grid_keeps_the_unet_and_starts_only_its_first_convolution_random(tmp_path, capsys):
    from stardist.models import StarDist2D
    from stardist_v4d.training.synthetic import synthetic_dataset

    base = make_tiny_model(tmp_path / "models", "base", n_rays=8)          # grid 2: two convolutions and a pooling in front
    images, masks = synthetic_dataset(1, shape=(96, 96), seed=3)
    write_pairs(tmp_path, {f"img{i}": pair for i, pair in enumerate(zip(images, masks))})
    out = tmp_path / "models" / "finer"
    assert main(["--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"), "--out", str(out),
                 "--from", str(base), "--grid", "1", "--learning-rate", "1e-12", *SCHEDULE]) == 0
    said = capsys.readouterr().out
    assert "Reshaping base:" in said and "1 (new, or of another shape) start random" in said
    assert json.loads((out / "config.json").read_text())["grid"] == [1, 1]
    assert json.loads((out / "training.json").read_text())["transferred_from"] == str(base.resolve())

    coarse = {layer.name: layer.get_weights() for layer in
              StarDist2D(None, name="base", basedir=str(base.parent)).keras_model.layers if layer.weights}
    fine = {layer.name: layer.get_weights() for layer in
            StarDist2D(None, name="finer", basedir=str(out.parent)).keras_model.layers if layer.weights}
    for name in ("down_level_0_no_1", "middle_0", "up_level_0_no_0", "features", "prob", "dist"):
        assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(coarse[name], fine[name]))
    assert fine["down_level_0_no_0"][0].shape[2] == 1 != coarse["down_level_0_no_0"][0].shape[2]   # sees the image now


def test_fine_tuning_cannot_make_the_unet_shallower(tmp_path, capsys):
    base = fake_model(tmp_path / "base", unet_n_depth=3)
    err = error_of(tmp_path, capsys, "--from", str(base), "--unet-depth", "2")
    assert "--unet-depth 2: the model in --from has unet_n_depth = 3" in err and "not make it shallower" in err
