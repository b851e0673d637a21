"""The fast paths compute what the plain path computes, in bounded memory.

Speed itself is measured by hand in ``bench/`` (against the plain loop in the same
run), never here: these tests check the things speed could break. Each test that
starts worker processes pays ~2 s for it; the memory test runs two subprocesses.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from model_factory import make_tiny_model, tiny_models_dir
from stardist_v4d.config import Config
from stardist_v4d.host_api.tiff import TiffHost
from stardist_v4d.pipeline.backends.tensorflow_cnn import use_compiled_cnn
from stardist_v4d.pipeline.predict import instances, predict_sparse
from stardist_v4d.pipeline.run import run
from stardist_v4d.pipeline.tiling import auto_tiles, needs_blocks
from stardist_v4d.training.synthetic import synthetic_nuclei
from test_pipeline import StopAfter, nuclei_stack, read_tzcyx, write_ome

SIZE = 128
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tiny_models_dir(tmp_path_factory, SIZE)


@pytest.fixture(scope="module")
def model(models_dir):
    from stardist.models import StarDist2D
    return StarDist2D(None, name="tiny", basedir=str(models_dir))


@pytest.fixture(scope="module")
def plane() -> np.ndarray:
    from csbdeep.utils import normalize
    return normalize(synthetic_nuclei((200, 168), np.random.default_rng(3))[0], 1, 99.8)


def same(a: tuple[np.ndarray, dict], b: tuple[np.ndarray, dict]) -> bool:
    return np.array_equal(a[0], b[0]) and all(np.array_equal(a[1][k], b[1][k])
                                               for k in ("coord", "points", "prob"))


@pytest.mark.parametrize("settings", [dict(), dict(scale=0.6), dict(scale=1.5, n_tiles=(2, 3)),
                                      dict(prob_thresh=0.5003, nms_thresh=0.2)])
def test_split_prediction_equals_predict_instances(model, plane, settings):
    expected = model.predict_instances(plane, show_tile_progress=False, **settings)
    assert expected[0].max() > 0
    assert same(instances(predict_sparse(model, plane, **settings)), expected)


def test_compiled_cnn_gives_keras_predicts_bits(models_dir, plane):
    from stardist.models import StarDist2D
    model = StarDist2D(None, name="tiny", basedir=str(models_dir))
    x = plane[np.newaxis, ..., np.newaxis]
    expected = model.keras_model.predict(x, verbose=0)
    use_compiled_cnn(model)
    for a, b in zip(model.keras_model.predict(x), expected):
        np.testing.assert_array_equal(a, b)


def segment(folder: Path, stack: np.ndarray, models_dir: Path, host=TiffHost, **settings):
    source = write_ome(folder / "in.ome.tif", stack, "TZYX")
    target = folder / "out.ome.tif"
    config = Config(model2d_path=models_dir, model_name="tiny", input_path=source,
                    output_path=target, current_time_point=False, **settings)
    summary = run(config, host(source, target, show_progress=False))
    return summary, read_tzcyx(Path(summary.output.location))


def test_parallel_and_sequential_runs_write_identical_labels_and_objects(tmp_path, models_dir, capsys):
    import roifile
    stack = nuclei_stack((2, 4, SIZE, SIZE), seed=7)
    results = {}
    for workers in (0, 2):
        folder = tmp_path / f"w{workers}"
        folder.mkdir()
        summary, out = segment(folder, stack, models_dir, workers=workers, label_ids="link_z")
        rois = roifile.roiread(folder / "out_rois.zip")
        results[workers] = (summary, out, [(r.name, r.coordinates().tolist()) for r in rois])
    assert "2 worker process(es)" in capsys.readouterr().out
    (seq, seq_out, seq_rois), (par, par_out, par_rois) = results[0], results[2]
    assert seq.completed and par.completed and seq.total_nuclei > 8
    np.testing.assert_array_equal(par_out, seq_out)
    assert par.nuclei_per_plane == seq.nuclei_per_plane and list(par.nuclei_per_plane) == list(seq.nuclei_per_plane)
    assert par_rois == seq_rois
    for table in ("out_nuclei.csv", "out_planes.csv"):       # measured in the workers, or here
        assert (tmp_path / "w2" / table).read_bytes() == (tmp_path / "w0" / table).read_bytes()


def test_cancel_with_workers_keeps_exactly_the_planes_written(tmp_path, models_dir):
    stack = nuclei_stack((1, 6, SIZE, SIZE))
    stop = lambda *args, **kwargs: StopAfter(*args, planes=2, **kwargs)  # noqa: E731
    summary, out = segment(tmp_path, stack, models_dir, host=stop, workers=1)
    assert not summary.completed and summary.planes_done == 2
    assert out[0, :2, 1].any() and not out[0, 2:, 1].any()


class NoProcesses(TiffHost):
    def allows_worker_processes(self) -> bool:
        return False


def test_host_without_processes_runs_sequentially_with_one_line(tmp_path, models_dir, capsys):
    summary, _ = segment(tmp_path, nuclei_stack((1, 2, SIZE, SIZE)), models_dir, host=NoProcesses,
                         workers=2)
    printed = capsys.readouterr().out
    assert summary.completed
    assert printed.count("Worker processes are not available inside this application") == 1
    assert "worker process(es) post-process" not in printed


def test_auto_tiling_picks_more_tiles_for_bigger_planes():
    from stardist.models import Config2D
    standard = Config2D(n_rays=32, grid=(2, 2), n_channel_in=1)
    assert auto_tiles((2048, 2048), standard, 2048) is None
    counts = [np.prod(auto_tiles((n, n), standard, 2048, overlap=96) or (1, 1)) for n in (2500, 3500, 4000)]
    assert 1 < counts[0] < counts[1] < counts[2]
    assert needs_blocks((20000, 20000), 2048) and not needs_blocks((4000, 4000), 2048)


@pytest.mark.parametrize("side", [5000, 8192, 20000])
def test_blocks_split_a_plane_evenly_within_the_budget(side):
    from stardist_v4d.pipeline.tiling import PLANE_BYTES_PER_PIXEL, block_size
    budget_mb, overlap, context = 2048, 128, 94
    block = block_size((side, side), budget_mb, overlap, context)
    n = -(-(side - overlap) // (block - overlap))                  # blocks per axis
    assert (block + 2 * context) ** 2 * PLANE_BYTES_PER_PIXEL <= budget_mb * 2 ** 20 / 2
    assert n * block - (n - 1) * overlap >= side                       # they cover the plane
    assert (n * (block + 2 * context)) ** 2 / side ** 2 < 1.4          # without a spare block


def test_auto_tiled_labels_match_untiled_ones(model):
    from csbdeep.utils import normalize
    from stardist.matching import matching
    plane = normalize(synthetic_nuclei((384, 384), np.random.default_rng(11))[0], 1, 99.8)
    overlap = max(model._axes_tile_overlap("YX"))
    n_tiles = auto_tiles(plane.shape, model.config, 2, overlap)     # a 2 MB budget forces tiles
    assert n_tiles is not None and np.prod(n_tiles) > 1
    whole, _ = model.predict_instances(plane)
    tiled, _ = model.predict_instances(plane, n_tiles=n_tiles, show_tile_progress=False)
    assert whole.max() > 5
    assert matching(whole, tiled, thresh=0.9).f1 == 1.0


def test_huge_planes_are_predicted_in_blocks_that_join_up(tmp_path, models_dir, model, capsys):
    from csbdeep.utils import normalize
    from stardist.matching import matching
    stack = nuclei_stack((1, 1, 768, 768), seed=4)
    summary, out = segment(tmp_path, stack, models_dir, plane_memory_mb=64, block_overlap=64)
    assert "predicting each in blocks" in capsys.readouterr().out
    whole, _ = model.predict_instances(normalize(stack[0, 0], 1, 99.8))
    assert summary.completed and whole.max() > 20
    assert matching(whole, out[0, 0, 1], thresh=0.9).f1 == 1.0


MEMORY_SCRIPT = """
import json, sys, time
sys.path.insert(0, {bench!r})
from pathlib import Path
import numpy as np, tifffile
from anon_memory import AnonTimeline, anon_mb
from stardist_v4d.config import Config
from stardist_v4d.host_api.tiff import TiffHost
from stardist_v4d.pipeline.run import run
folder, n = Path({folder!r}), int(sys.argv[1])
from stardist_v4d.training.synthetic import synthetic_nuclei
tile = synthetic_nuclei((256, 256), np.random.default_rng(0))[0]
plane = (np.tile(tile, ({size} // 256, {size} // 256)) * 1000).astype(np.uint16)
planes = np.stack([np.stack([plane, plane[::-1]])] * n)       # two channels: both are measured
tifffile.imwrite(folder / "in.tif", planes, ome=True, metadata={{"axes": "ZCYX"}})
marks = []
class Marked(TiffHost):
    def write_plane(self, *args):
        super().write_plane(*args)
        marks.append(time.perf_counter())
    def finish(self, completed):
        marks.append(time.perf_counter())              # then: tables, workbook, plots
        before_finish.append(anon_mb())
        return super().finish(completed)
result, before_finish = {{}}, []
for workers in (0, 2):
    marks.clear()
    config = Config(model2d_path=Path({models!r}), model_name="tiny", input_path=folder / "in.tif",
                    output_path=folder / f"out{{workers}}.tif", workers=workers, write_objects=False,
                    measure=True, prob_thresh=0.5012)   # the tiny model's probabilities are all near 0.5
    host = Marked(config.input_path, config.output_path, show_progress=False)
    with AnonTimeline() as timeline:
        run(config, host)
    peaks = timeline.peaks_between(marks)
    result[workers] = dict(planes=peaks[:-2], finish=peaks[-1] - before_finish[-1])
print(json.dumps(result))
"""


def test_memory_does_not_grow_with_the_stack_while_measuring(tmp_path, models_dir):
    """Planes N..2N and 3N..4N of a 4N-plane run live in the same memory, and the end
    (tables, workbook, plots of 4x the rows) takes no more than the end of an N-plane run.

    Per-plane peaks (between two planes written), not the run's overall peak: start-up
    transients (worker spawn beside the model's load and first CNN call) vary by tens of
    MB from run to run, and the allocators warm up over the first ~8 planes (+50 MB,
    then flat), so neither says anything about the stack's length. Medians of per-plane
    peaks are compared, so one noisy plane does not decide; the end is measured above
    the memory in use when it starts.
    """
    size, n = 1024, 6
    runs = []
    for planes in (n, 4 * n):
        folder = tmp_path / f"n{planes}"
        folder.mkdir()
        script = MEMORY_SCRIPT.format(bench=str(REPO / "bench"), folder=str(folder), size=size,
                                      models=str(models_dir))
        done = subprocess.run([sys.executable, "-c", script, str(planes)], capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    plane_mb = size * size * 10 / 2 ** 20        # raw uint16 + float32 copy + int32 labels
    whole_stack_mb = 3 * n * size * size * 2 * 2 / 2 ** 20   # 3N more two-channel uint16 planes
    for workers in ("0", "2"):
        short, long = runs[0][workers], runs[1][workers]
        middle = float(np.median(long["planes"][n:2 * n]))
        late = float(np.median(long["planes"][3 * n:]))
        assert late - middle < 2 * plane_mb < whole_stack_mb, (workers, runs)
        assert long["finish"] - short["finish"] < 2 * plane_mb, (workers, runs)


@pytest.mark.parametrize("flags, message", [
    (["--workers", "-1"], "WORKERS (--workers) = -1: must be None (one per core), 0 (none)"),
    (["--plane-memory-mb", "10"], "PLANE_MEMORY_MB (--plane-memory-mb) = 10: must be whole megabytes >= 64"),
    (["--block-overlap", "8"], "BLOCK_OVERLAP (--block-overlap) = 8: must be whole pixels >= 16"),
    (["--n-tiles", "2"], "N_TILES (--n-tiles) = [2]: must be None (one tile) or two whole numbers"),
])
def test_new_settings_are_checked_with_one_line(models_dir, flags, message):
    from stardist_v4d.config import ConfigError, build_config
    with pytest.raises(ConfigError) as error:
        build_config({"MODEL2D_PATH": models_dir, "MODEL_NAME": "tiny"}, flags)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("words, n_tiles", [(["auto"], "auto"), (["none"], None), (["2", "3"], [2, 3])])
def test_n_tiles_flag_takes_auto_none_or_two_numbers(models_dir, words, n_tiles):
    from stardist_v4d.config import build_config
    config = build_config({"MODEL2D_PATH": models_dir, "MODEL_NAME": "tiny"}, ["--n-tiles", *words])
    assert config.n_tiles == n_tiles


UNGUARDED_SCRIPT = """
from pathlib import Path
from stardist_v4d.config import Config
from stardist_v4d.host_api.tiff import TiffHost
from stardist_v4d.pipeline.run import run
folder = Path({folder!r})
config = Config(model2d_path=Path({models!r}), model_name="tiny", input_path=folder / "in.ome.tif",
                output_path=folder / "out.ome.tif", workers=2, write_objects=False)
summary = run(config, TiffHost(config.input_path, config.output_path, show_progress=False))
print("SUMMARY", summary.completed, summary.planes_done)
"""


def test_script_without_main_guard_falls_back_instead_of_rerunning_in_workers(tmp_path, models_dir):
    write_ome(tmp_path / "in.ome.tif", nuclei_stack((1, 3, SIZE, SIZE)), "TZYX")
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_SCRIPT.format(folder=str(tmp_path), models=str(models_dir)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("SUMMARY True 3") == 1            # the workers did not run it again
    assert "segmenting sequentially" in done.stdout and 'if __name__ == "__main__":' in done.stdout
