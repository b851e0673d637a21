"""The README's first command: the embedded demo, end to end, with the shipped demo model."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


ENTRY = Path(__file__).resolve().parents[1] / "stardist_2d.py"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """``python stardist_2d.py`` with no arguments, in an empty folder, twice."""
    folder = tmp_path_factory.mktemp("demo")
    (folder / "demo_output").mkdir()
    (folder / "demo_output" / "demo_stack_stardist.ome.tif").write_bytes(b"stale earlier demo output")
    result = subprocess.run([sys.executable, str(ENTRY)], capture_output=True, text=True, cwd=folder)
    return folder / "demo_output", result


def test_demo_runs_with_no_arguments_and_replaces_its_earlier_output(demo_run):
    out_dir, result = demo_run
    assert result.returncode == 0, result.stderr
    assert "Done: 15 of 15 planes" in result.stdout
    assert (out_dir / "demo_stack_stardist.ome.tif").stat().st_size > 1_000_000
    assert (out_dir / "demo_stack_stardist_rois.zip").exists()
    said = result.stdout + result.stderr
    thresholds = json.loads((ENTRY.parent / "models" / "fluo_nuclei" / "thresholds.json").read_text())
    assert said.count("Thresholds: ") == 1 and "Using default values" not in said and "Loading thresholds" not in said
    assert f"Thresholds: probability {thresholds['prob']:.3g} (" in said


def test_demo_labels_find_the_demo_nuclei(demo_run):
    from stardist.matching import matching

    from stardist_v4d.demo.demo_stack import demo_ground_truth
    from stardist_v4d.host_api.tiff import TiffHost

    out_dir, _ = demo_run
    with TiffHost(out_dir / "demo_stack_stardist.ome.tif", out_dir / "unused.tif", show_progress=False) as out:
        info = out.dataset_info()
        assert info.channel_names == ("Nuclei", "Membrane", "StarDist")
        truth = demo_ground_truth()
        # the centre plane of each time point: in focus, where a person would judge the demo
        scores = [matching(truth[t, 2], out.read_plane(2, t, 2), thresh=0.5).f1 for t in range(3)]
    assert min(scores) > 0.8, scores


def test_demo_measures_its_nuclei_into_tables_a_workbook_and_plots(demo_run):
    import pandas as pd

    from stardist_v4d.demo.demo_stack import PIXEL_SIZE_UM, demo_ground_truth

    out_dir, result = demo_run
    nuclei = pd.read_csv(out_dir / "demo_stack_stardist_nuclei.csv")
    objects = pd.read_csv(out_dir / "demo_stack_stardist_objects.csv")
    planes = pd.read_csv(out_dir / "demo_stack_stardist_planes.csv")
    assert len(planes) == 15 and planes["nuclei"].sum() == len(nuclei)
    assert f"Done: 15 of 15 planes, {len(objects)} nuclei ({len(nuclei)} slices)" in result.stdout
    # each real nucleus once per time point: about as many objects as the truth has nuclei
    truth = demo_ground_truth()
    true_counts = [len(np.unique(truth[t][truth[t] > 0])) for t in range(3)]
    counts = objects.groupby("time_point").size().tolist()
    assert all(abs(c - n) <= 0.25 * n for c, n in zip(counts, true_counts)), (counts, true_counts)
    # projected areas: the real nuclei's own, at 0.5 um pixels
    px_area = PIXEL_SIZE_UM[0] * PIXEL_SIZE_UM[1]
    true_areas = [np.count_nonzero(truth[0].max(axis=0) == i) * px_area for i in np.unique(truth[0][truth[0] > 0])]
    median = objects.loc[objects["time_point"] == 0, "projected_area_um2"].median()
    assert abs(median - np.median(true_areas)) < 0.25 * np.median(true_areas), (median, np.median(true_areas))
    assert (out_dir / "demo_stack_stardist_measurements.xlsx").exists()
    plots = sorted(p.name for p in (out_dir / "demo_stack_stardist_plots").glob("*.png"))
    assert {"area_histogram.png", "cells_over_time.png", "tracks.png", "nuclei_per_plane.png",
            "overlay_t0000_z0002.png", "overlay_t0001_z0002.png", "overlay_t0002_z0002.png"} <= set(plots)
