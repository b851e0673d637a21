"""Training that survives being stopped, and training in bfloat16.

A tiny network (8 rays, U-Net depth 1, 4 filters) on generated disks trains for three
short epochs; one run is stopped after its second epoch and resumed with
``train --resume``. The resumed run must continue the epoch count, the history and the
learning-rate schedule, and end with the weights of the undisturbed run.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from stardist_v4d.training import checkpoint as checkpoints
from stardist_v4d.training.cli import main
from stardist_v4d.training.schedule import FINAL_FRACTION, cosine_rate

from test_training import TINY, good_pair, write_pairs

EPOCHS = ["--epochs", "3"]


def tiny_data(root: Path) -> tuple[Path, Path]:
    return write_pairs(root, {f"p{i}": good_pair(n=4 + i) for i in range(4)})


def weights(path: Path) -> list[np.ndarray]:
    """Every array in a weights file, in a fixed order."""
    arrays: list[np.ndarray] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: arrays.append(np.asarray(item)) if isinstance(item, h5py.Dataset) else None)
    return arrays


def interrupt_after_epoch(monkeypatch, epoch: int) -> None:
    """Make the run stop (as Ctrl-C does) once ``epoch`` is checkpointed."""
    original = checkpoints.save

    def save_then_stop(*args, **kwargs):
        path = original(*args, **kwargs)
        if args[2] == epoch:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(checkpoints, "save", save_then_stop)


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("undisturbed")
    images, masks = tiny_data(root)
    assert main(["--images", str(images), "--masks", str(masks), "--out", str(root / "model"), *TINY, *EPOCHS]) == 0
    return root / "model"


def test_a_stopped_training_resumes_where_it_stopped(tmp_path, capsys, monkeypatch, undisturbed):
    images, masks = tiny_data(tmp_path)
    out = tmp_path / "model"
    interrupt_after_epoch(monkeypatch, 2)
    assert main(["--images", str(images), "--masks", str(masks), "--out", str(out), *TINY, *EPOCHS]) == 0
    said = capsys.readouterr().out
    assert f"train --resume {out}" in said
    stopped = checkpoints.find(out)
    assert stopped.epochs_done == 2 and len(stopped.history["loss"]) == 2
    monkeypatch.undo()

    assert main(["--resume", str(out)]) == 0
    said = capsys.readouterr().out
    assert "Resuming at epoch 3 of 3." in said and "epoch 3/3" in said and "epoch 2/3" not in said
    record = json.loads((out / "training.json").read_text())
    whole = json.loads((undisturbed / "training.json").read_text())
    assert len(record["history"]["loss"]) == 3
    assert record["history"]["loss"][:2] == stopped.history["loss"]
    # the schedule is the undisturbed run's: a function of the epoch alone
    np.testing.assert_allclose(record["history"]["learning_rate"], whole["history"]["learning_rate"], rtol=1e-6)
    np.testing.assert_allclose(record["history"]["learning_rate"],
                               [cosine_rate(e, 3, 3e-4) for e in range(3)], rtol=1e-6)
    # same batches, same optimizer state: the same network as if never stopped
    np.testing.assert_allclose(record["history"]["loss"], whole["history"]["loss"], rtol=1e-4)
    for resumed, plain in zip(weights(out / "weights_last.h5"), weights(undisturbed / "weights_last.h5")):
        np.testing.assert_allclose(resumed, plain, rtol=1e-4, atol=1e-6)
    assert not (out / checkpoints.CHECKPOINT).exists()       # finished: nothing left to continue


def test_a_checkpoint_killed_while_being_replaced_falls_back_to_the_previous_one(tmp_path, undisturbed):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / f"{checkpoints.CHECKPOINT}.old").mkdir()
    for name in ("model.weights.h5", "optimizer.npz"):
        (folder / f"{checkpoints.CHECKPOINT}.old" / name).write_bytes(b"x")
    (folder / f"{checkpoints.CHECKPOINT}.old" / "state.json").write_text(json.dumps(
        {"epochs_done": 4, "history": {}, "best_val_loss": None, "run": {}}))
    (folder / f"{checkpoints.CHECKPOINT}.new").mkdir()             # the half-written one
    assert checkpoints.find(folder).epochs_done == 4


@pytest.mark.parametrize("argv, message", [
    (["--resume", "{tmp}/nothing"], "no such model folder"),
    (["--resume", "{tmp}"], "no training checkpoint in it"),
    (["--resume", "{tmp}", "--out", "{tmp}/x"], "leave out --out"),
    (["--images", "{tmp}"], "--masks, --out required (or --resume MODEL_DIR"),
])
def test_resume_errors_are_one_line(tmp_path, capsys, argv, message):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_resume_refuses_data_that_changed(tmp_path, capsys, monkeypatch):
    images, masks = tiny_data(tmp_path)
    out = tmp_path / "model"
    interrupt_after_epoch(monkeypatch, 1)
    assert main(["--images", str(images), "--masks", str(masks), "--out", str(out), *TINY, *EPOCHS]) == 0
    monkeypatch.undo()
    (images / "p0.tif").rename(images / "renamed.tif")
    (masks / "p0.tif").rename(masks / "renamed.tif")
    capsys.readouterr()
    assert main(["--resume", str(out)]) == 2
    assert "are not the ones the run started with" in capsys.readouterr().err


def test_cosine_schedule_starts_at_the_rate_and_ends_low():
    assert cosine_rate(0, 10, 1e-3) == pytest.approx(1e-3)
    assert cosine_rate(9, 10, 1e-3) == pytest.approx(1e-3 * FINAL_FRACTION)
    rates = [cosine_rate(e, 10, 1e-3) for e in range(10)]
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_a_mixed_precision_step_runs_with_a_finite_loss_and_float32_weights(tmp_path, capsys):
    images, masks = tiny_data(tmp_path)
    out = tmp_path / "model"
    assert main(["--images", str(images), "--masks", str(masks), "--out", str(out), *TINY,
                 "--epochs", "1", "--precision", "bf16"]) == 0
    record = json.loads((out / "training.json").read_text())
    assert record["settings"]["precision"] == "bf16"
    assert all(np.isfinite(record["history"]["loss"])) and all(np.isfinite(record["history"]["val_loss"]))
    stored = weights(out / "weights_best.h5")
    assert stored and all(w.dtype == np.float32 for w in stored if w.dtype.kind == "f")
    # the weights load into the ordinary float32 model the plugin runs
    from stardist.models import StarDist2D
    import keras
    assert keras.mixed_precision.global_policy().name == "float32"
    model = StarDist2D(None, name="model", basedir=str(tmp_path))
    prob, dist = model.keras_model.predict(np.zeros((1, 64, 64, 1), np.float32), verbose=0)
    assert prob.dtype == np.float32 and np.isfinite(prob).all()
