"""Training command: what a user gets from good data, and what they are told about bad data.

Only the first test trains (a tiny network for two short epochs); every bad-input
test stops before TensorFlow is imported, as the command itself does.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from stardist_v4d.training.cli import build_parser, main
from stardist_v4d.training.dataset import load_training_pairs
from stardist_v4d.training.loss_report import overfitting_verdict

TINY = ["--patch-size", "64", "64", "--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "2",
        "--n-rays", "8", "--unet-depth", "1", "--unet-filters", "4", "--val-fraction", "0.25"]


def disks(shape=(64, 64), n=6, radius=5) -> np.ndarray:
    """Instance labels: ``n`` separate disks on a grid, IDs 1..n."""
    labels = np.zeros(shape, np.uint16)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cols = int(np.ceil(np.sqrt(n)))
    step_y, step_x = shape[0] // (cols + 1), shape[1] // (cols + 1)
    for i in range(n):
        cy, cx = step_y * (i // cols + 1), step_x * (i % cols + 1)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = i + 1
    return labels


def write_pairs(root: Path, pairs: dict[str, tuple[np.ndarray | None, np.ndarray | None]],
                mask_suffix: str = "") -> tuple[Path, Path]:
    """Write ``{name: (image, mask)}`` as images/NAME.tif and masks/NAME{suffix}.tif; None skips a file."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for name, (image, mask) in pairs.items():
        if image is not None:
            tifffile.imwrite(images / f"{name}.tif", image)
        if mask is not None:
            tifffile.imwrite(masks / f"{name}{mask_suffix}.tif", mask)
    return images, masks


def good_pair(shape=(64, 64), n=6) -> tuple[np.ndarray, np.ndarray]:
    mask = disks(shape, n)
    image = (mask > 0) * 200.0 + np.random.default_rng(n).normal(100, 5, shape)
    return image.astype(np.float32), mask


def cli_error(tmp_path: Path, capsys, images: Path, masks: Path, *extra: str, out: Path | None = None) -> str:
    """Run the command expecting a data error: exit code 2 and one ``error:`` line on stderr."""
    code = main(["--images", str(images), "--masks", str(masks), "--out", str(out or tmp_path / "model"),
                 *TINY, *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err, err
    assert not (tmp_path / "model").exists()
    return err


# --- good data -------------------------------------------------------------------

def test_training_on_tiny_generated_set_gives_loadable_model_folder(tmp_path, capsys, recwarn):
    from stardist_v4d.training.synthetic import synthetic_dataset

    images, masks = synthetic_dataset(4, shape=(96, 96), seed=1)
    images_dir, masks_dir = write_pairs(
        tmp_path, {f"img{i}": pair for i, pair in enumerate(zip(images, masks))}, mask_suffix="_masks")
    out = tmp_path / "models" / "tiny"

    assert main(["--images", str(images_dir), "--masks", str(masks_dir), "--out", str(out), *TINY,
                 "--augment-scale", "0.8", "1.25", "--augment-blur", "1.0"]) == 0

    stdout = capsys.readouterr().out
    assert "Found 4 image/mask pairs" in stdout
    assert "epoch 2/2" in stdout and "ETA" in stdout                     # progress with an ETA
    assert "overfitting" in stdout.lower()                                # the verdict line
    assert "Using default values" not in stdout                          # StarDist's lines, said by ours
    noise = [str(w.message) for w in recwarn if any(words in str(w.message) for words in
             ("output path for model", "shuffle=True", "filename suffix"))]
    assert noise == []
    for name in ("config.json", "weights_best.h5", "thresholds.json", "loss.png", "training.json"):
        assert (out / name).is_file(), name
    thresholds = json.loads((out / "thresholds.json").read_text())
    recorded = json.loads((out / "training.json").read_text())["settings"]
    assert (recorded["augment_scale"], recorded["augment_blur"]) == ([0.8, 1.25], 1.0)
    assert set(thresholds) == {"prob", "nms"}
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    assert json.loads((out / "config.json").read_text())["train_tensorboard"] == tensorboard

    from stardist.models import StarDist2D
    from csbdeep.utils import normalize
    model = StarDist2D(None, name="tiny", basedir=str(out.parent))
    expected, _ = model.predict_instances(normalize(images[0], 1, 99.8))
    assert expected.shape == images[0].shape

    # and the plugin runs with it, headless, by model folder and name
    from stardist_v4d.stardist_2d import main as plugin_main
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack(images[:2]), imagej=True, metadata={"axes": "ZYX"})
    labelled = tmp_path / "labelled.ome.tif"
    assert plugin_main(["--input", str(stack), "--output", str(labelled), "--model-path", str(out.parent),
                        "--model", "tiny", "--workers", "0"]) == 0
    written = tifffile.imread(labelled)                 # ZCYX (T of 1 squeezed): input, then labels
    assert written.shape == (2, 2, *images[0].shape)
    assert np.array_equal(written[0, -1], expected)


# --- pairing ---------------------------------------------------------------------

def test_masks_pair_by_name_with_common_suffixes_and_holes_are_filled(tmp_path):
    image, mask = good_pair()
    holed = mask.copy()
    holed[disks(n=6, radius=1) > 0] = 0                   # a hole in every nucleus
    images_dir, masks_dir = write_pairs(tmp_path, {"a": (image, None), "b": (image, None), "c": (image, None)})
    tifffile.imwrite(masks_dir / "a.tif", mask)
    tifffile.imwrite(masks_dir / "b_mask.tif", holed)
    tifffile.imwrite(masks_dir / "C_Labels.tiff", mask[None])  # ImageJ-style (1, Y, X), other case
    (masks_dir / "notes.txt").write_text("not a TIFF: ignored")

    images, masks, names = load_training_pairs(images_dir, masks_dir)

    assert names == ["a.tif", "b.tif", "c.tif"]
    assert all(m.shape == (64, 64) for m in images + masks)
    assert np.array_equal(masks[1] > 0, mask > 0)           # holes filled


def test_images_and_masks_may_share_one_folder(tmp_path):
    image, mask = good_pair()
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("a", "b"):
        tifffile.imwrite(folder / f"{name}.tif", image)
        tifffile.imwrite(folder / f"{name}_mask.tif", mask)
    assert load_training_pairs(folder, folder)[2] == ["a.tif", "b.tif"]


# --- bad data: one clear line each, before TensorFlow ----------------------------

def test_image_without_mask(tmp_path, capsys):
    image, mask = good_pair()
    images, masks = write_pairs(tmp_path, {"a": (image, mask), "b": (image, None)})
    err = cli_error(tmp_path, capsys, images, masks)
    assert "image 'b.tif' has no mask" in err and "b_mask.tif" in err


def test_mask_without_image(tmp_path, capsys):
    image, mask = good_pair()
    images, masks = write_pairs(tmp_path, {"a": (image, mask), "b": (image, mask)})
    tifffile.imwrite(masks / "c_mask.tif", mask)
    err = cli_error(tmp_path, capsys, images, masks)
    assert "mask 'c_mask.tif' has no image" in err and "c.tif" in err


def test_mismatched_shapes(tmp_path, capsys):
    image, mask = good_pair()
    images, masks = write_pairs(tmp_path, {"a": (image, mask), "b": (image, mask[:, :48])})
    err = cli_error(tmp_path, capsys, images, masks)
    assert "image 'b.tif' is 64x64" in err and "'b.tif' is 64x48" in err and "same shape" in err


def test_empty_mask(tmp_path, capsys):
    image, mask = good_pair()
    images, masks = write_pairs(tmp_path, {"a": (image, mask), "b": (image, np.zeros_like(mask))})
    err = cli_error(tmp_path, capsys, images, masks)
    assert "mask 'b.tif' is empty" in err


@pytest.mark.parametrize("foreground", [1, 255])
def test_binary_mask_gets_a_hint(tmp_path, capsys, foreground):
    image, mask = good_pair()
    binary = ((mask > 0) * foreground).astype(np.uint8)
    images, masks = write_pairs(tmp_path, {"a": (image, mask), "b": (image, binary)})
    err = cli_error(tmp_path, capsys, images, masks)
    assert f"mask 'b.tif' looks binary (only 0 and {foreground}" in err
    assert "one ID per nucleus, e.g. skimage.measure.label" in err


def test_class_mask_is_not_instance_labels(tmp_path, capsys):
    image, mask = good_pair()
    classes = (mask % 2 + 1) * (mask > 0)                  # two classes, three blobs each
    images, masks = write_pairs(tmp_path, {"a": (image, mask), "b": (image, classes.astype(np.uint8))})
    err = cli_error(tmp_path, capsys, images, masks)
    assert "looks like a class mask" in err and "skimage.measure.label" in err


def test_too_few_objects_for_patch_size(tmp_path, capsys):
    image, mask = good_pair((128, 128), n=1)
    images, masks = write_pairs(tmp_path, {"a": (image, mask), "b": (image, mask)})
    err = cli_error(tmp_path, capsys, images, masks)
    assert "too few nuclei for the 64x64 patch size" in err and "2 nuclei in 2 masks" in err


def test_images_smaller_than_the_patch(tmp_path, capsys):
    image, mask = good_pair((48, 64))
    images, masks = write_pairs(tmp_path, {"a": good_pair(), "b": (image, mask)})
    err = cli_error(tmp_path, capsys, images, masks)
    assert "image 'b.tif' is 48x64, smaller than the 64x64 training patch" in err


@pytest.mark.parametrize("shape, found", [((5, 64, 64), "5 planes or channels"),
                                          ((64, 64, 3), "RGB")])
def test_non_2d_data_says_what_was_found(tmp_path, capsys, shape, found):
    image, mask = good_pair()
    stack = np.broadcast_to(image[..., None] if shape[-1] == 3 else image, shape).astype(np.uint8)
    images, masks = write_pairs(tmp_path, {"a": (image, mask), "b": (stack, mask)})
    err = cli_error(tmp_path, capsys, images, masks)
    assert f"image 'b.tif' has shape {shape}" in err and found in err
    assert "expected a 2D (Y, X) single-channel image" in err


def test_existing_model_folder_needs_overwrite(tmp_path, capsys):
    images, masks = write_pairs(tmp_path, {"a": good_pair(), "b": good_pair()})
    (tmp_path / "model").mkdir()
    code = main(["--images", str(images), "--masks", str(masks), "--out", str(tmp_path / "model"), *TINY])
    assert code == 2 and "pass --overwrite" in capsys.readouterr().err


def test_data_errors_come_before_tensorflow_loads(tmp_path):
    image, mask = good_pair()
    images, masks = write_pairs(tmp_path, {"a": (image, mask), "b": (image, np.zeros_like(mask))})
    script = ("import sys; from stardist_v4d.__main__ import main; "
              f"code = main(['train', '--images', {str(images)!r}, '--masks', {str(masks)!r}, "
              f"'--out', {str(tmp_path / 'model')!r}]); "
              "print('tensorflow' in sys.modules); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout.strip() == "False"
    assert done.stderr.strip().startswith("error: mask 'b.tif' is empty")


def test_cli_defaults_are_the_train_settings_defaults():
    from stardist_v4d.training.cli import settings_from
    from stardist_v4d.training.train import TrainSettings

    args = build_parser().parse_args(["--images", "i", "--masks", "m", "--out", "o"])
    assert settings_from(args, None) == TrainSettings()


@pytest.mark.parametrize("extra, message", [
    (["--augment-scale", "1.25", "0.8"], "--augment-scale 1.25 0.8: needs 0 < LOW <= HIGH"),
    (["--augment-scale", "0", "1.2"], "--augment-scale 0 1.2: needs 0 < LOW <= HIGH"),
    (["--augment-blur", "-1"], "--augment-blur -1: must be 0 (off) or a sigma in px"),
])
def test_bad_augmentation_ranges(tmp_path, capsys, extra, message):
    image, mask = good_pair()
    images, masks = write_pairs(tmp_path, {"a": (image, mask)})
    assert message in cli_error(tmp_path, capsys, images, masks, *extra)


# --- loss report -----------------------------------------------------------------

def test_overfitting_verdict():
    falling = [1.0, 0.8, 0.6, 0.5, 0.4, 0.35, 0.3, 0.25]
    rising = [1.0, 0.8, 0.6, 0.55, 0.6, 0.7, 0.8, 0.9]
    assert overfitting_verdict({"loss": falling, "val_loss": rising}).startswith("Overfitting")
    assert overfitting_verdict({"loss": falling, "val_loss": falling}).startswith("No overfitting")
    assert overfitting_verdict({"loss": falling[:2], "val_loss": falling[:2]}).startswith("Too few epochs")
