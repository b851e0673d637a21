"""The ``measure`` command: tables, workbook and plots from labels that exist already (edited in
Fiji, or a run's own), and its one-line errors. Checked against a run's own tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from stardist_v4d.remeasure import main as measure_main
from test_measurements_run import (  # noqa: F401, F811  (fixtures are imported by name)
    SIZE, measured_run, models_dir, segment, two_channel_stack, write_input, written_labels)


def test_measure_on_edited_labels_reproduces_the_runs_table_for_unedited_planes(tmp_path, measured_run, capsys):
    summary, stack, target, folder = measured_run
    labels = written_labels(target)
    edited_plane = (1, 2)
    removed = int(np.unique(labels[edited_plane])[1])
    labels[edited_plane][labels[edited_plane] == removed] = 0          # a nucleus deleted in Fiji
    edited = tmp_path / "edited.tif"
    tifffile.imwrite(edited, labels.astype(np.uint16), imagej=True, metadata={"axes": "TZYX"})
    assert measure_main(["--input", str(folder / "in.ome.tif"), "--labels", str(edited)]) == 0
    assert "has one channel" in capsys.readouterr().out
    mine = pd.read_csv(tmp_path / "edited_nuclei.csv").set_index(["time_point", "z", "label"])
    runs = pd.read_csv(folder / "out_nuclei.csv").set_index(["time_point", "z", "label"])
    assert mine["probability"].isna().all()           # a label file carries no StarDist scores
    assert set(mine.index) == set(runs.index) - {edited_plane + (removed,)}
    columns = [c for c in runs.columns if c != "probability"]
    in_edited = runs.index.droplevel("label").isin([edited_plane])
    unedited = runs[~in_edited]
    pd.testing.assert_frame_equal(mine.loc[unedited.index, columns], unedited[columns], rtol=1e-9)
    # in the edited plane the other nuclei keep their shape (their rings may reach into the gap)
    kept = runs[in_edited].drop(index=[edited_plane + (removed,)])
    shape = [c for c in columns if not c.startswith("ring_")]
    pd.testing.assert_frame_equal(mine.loc[kept.index, shape], kept[shape], rtol=1e-9)
    assert (tmp_path / "edited_measurements.xlsx").exists()
    assert (tmp_path / "edited_plots" / "overlay_t0000_z0001.png").exists()


def test_measure_reads_the_planes_a_run_segmented_from_its_record(tmp_path, models_dir, capsys):
    summary, _, target = segment(tmp_path, models_dir, first_plane=1, last_plane=1, plots=False)
    out = tmp_path / "again"
    out.mkdir()
    assert measure_main(["--input", str(tmp_path / "in.ome.tif"), "--labels", str(target),
                         "--output-dir", str(out), "--no-plots"]) == 0
    assert "Measuring the 2 plane(s) the run segmented" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(out / "out_planes.csv"), pd.read_csv(tmp_path / "out_planes.csv"))


def test_measure_without_a_run_record_skips_the_planes_never_segmented_and_takes_a_range(tmp_path, capsys):
    """Edited labels (no record): only the Z range holding labels is measured, unless the flags choose."""
    from skimage.draw import disk
    stack = two_channel_stack(size_t=1, size_z=4)
    source = write_input(tmp_path, stack)
    labels = np.zeros((1, 4, SIZE, SIZE), np.uint16)
    for z in (1, 2):
        labels[(0, z, *disk((40, 40), 8, shape=(SIZE, SIZE)))] = 1
    path = tmp_path / "edited.tif"
    tifffile.imwrite(path, labels, imagej=True, metadata={"axes": "TZYX"})
    assert measure_main(["--input", str(source), "--labels", str(path), "--no-plots"]) == 0
    said = capsys.readouterr().out
    assert "measuring the planes that hold labels, 1-2 of time point(s) 0; 2 all-zero plane(s)" in said
    assert pd.read_csv(tmp_path / "edited_planes.csv")["z"].tolist() == [1, 2]
    assert measure_main(["--input", str(source), "--labels", str(path), "--no-plots", "--overwrite",
                         "--first-plane", "0", "--last-plane", "-1"]) == 0
    assert "planes 0-3 (as asked)" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "edited_planes.csv")["nuclei"].tolist() == [0, 1, 1, 0]
    assert measure_main(["--input", str(source), "--labels", str(path), "--first-plane", "7"]) == 2
    assert "--first-plane 7: the labels have 4 Z plane(s) (valid: 0-3, or -1)" in capsys.readouterr().err


@pytest.mark.parametrize("make_labels, flags, message", [
    (lambda s: s[:, :, 0], ["--channel-name", "Nope"], None),
    (lambda s: s[:, :2, :, : SIZE // 2], [], "has T, Z, Y, X = (2, 2, 48, 96)"),
    (lambda s: np.stack([s[:, :, 0], s[:, :, 1]], 2), ["--channel-name", "Nope"],
     "--channel-name 'Nope': no such channel"),
])
def test_measure_command_errors_are_one_line(tmp_path, make_labels, flags, message, capsys):
    stack = two_channel_stack()
    source = write_input(tmp_path, stack)
    labels = make_labels(stack).astype(np.float32) + 0.5
    path = tmp_path / "labels.ome.tif"
    axes = "TZCYX" if labels.ndim == 5 else "TZYX"
    tifffile.imwrite(path, labels, ome=True, photometric="minisblack", metadata={"axes": axes})
    code = measure_main(["--input", str(source), "--labels", str(path), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err
    assert message in err if message else "not a label image" in err
    assert not list(tmp_path.glob("labels_*"))       # nothing written on an error


@pytest.mark.parametrize("flags, words", [
    (["--ring-um", "nan"], "--ring-um nan: must be above 0 and at most 100 um"),
    (["--pixel-size-um", "inf", "1"], "sizes must be finite and above 0 um"),
])
def test_measure_refuses_nan_and_infinite_sizes_in_one_line(tmp_path, capsys, flags, words):
    code = measure_main(["--input", str(tmp_path / "a.tif"), "--labels", str(tmp_path / "b.tif"), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and words in err and "\n" not in err
