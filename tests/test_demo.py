"""The README's first command: the embedded demo, end to end, with the shipped demo model."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stardist_v4d.config import shipped_models_dir

ENTRY = Path(__file__).resolve().parents[1] / "stardist_2d.py"
DEMO_MODEL = shipped_models_dir() / "demo"


def test_shipped_demo_model_folder_is_small_and_complete():
    shipped = [p for p in DEMO_MODEL.iterdir() if p.name != ".openvino"]    # a bf16 run's cache is not shipped
    assert sorted(p.name for p in shipped) == ["README.md", "config.json", "thresholds.json", "weights_best.h5"]
    assert sum(p.stat().st_size for p in shipped) < 10 * 2 ** 20


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

    out_dir, result = demo_run
    nuclei = pd.read_csv(out_dir / "demo_stack_stardist_nuclei.csv")
    planes = pd.read_csv(out_dir / "demo_stack_stardist_planes.csv")
    assert len(planes) == 15 and planes["nuclei"].sum() == len(nuclei)
    assert f"Done: 15 of 15 planes, {len(nuclei)} nuclei" in result.stdout
    # demo nuclei have radii of 6-12 px at 0.5 um: areas of ~ 10-110 um2 at their centre planes
    assert 20 < nuclei["area_um2"].median() < 120 and nuclei["roundness"].median() > 0.8
    assert (out_dir / "demo_stack_stardist_measurements.xlsx").exists()
    assert len(list((out_dir / "demo_stack_stardist_plots").glob("*.png"))) == 6
