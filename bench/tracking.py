"""Tracking cells: the LAP tracker against overlap linking, on generated 3D + time stacks with known truth.

    python bench/tracking.py [--stacks 5] [--time-points 6] [--cells 14] [--max-step 1.0]

Each stack (``tests/cell_stacks.py``): ellipsoidal nuclei spanning 3-8 planes, moving up
to ``--max-step`` nuclear radii per time point, two divisions and one missed detection.
The nuclei are joined through Z into objects (``analysis.objects``, from the true labels:
this measures the trackers, not a segmentation) and linked over time by:

- ``LAP``: ``analysis.tracking.track`` (laptrack: gap closing over one time point,
  divisions), maximum distance one median nucleus diameter (the default);
- ``overlap``: today's overlap linking (an object continues the object it overlaps most
  at the time point before, IoU >= 0.3 in 3D, one-to-one; no gaps, no divisions).

With ``--segment`` the objects come from the shipped model's segmentation of the stack
instead (XY upsampled ``--zoom`` times, default 2, so the nuclei are 10-16 px in radius as in
the model's training data, and blurred by a Gaussian PSF of ``--psf-sigma`` px, default 1: a
microscope never images a hard edge, and the annotators of the training data drew the outline
where a blurred edge falls to half its height): it prints objects per time point against the truth, the
projected areas of the objects matched to a true nucleus (3D IoU >= 0.5) against that
nucleus' own, and the trackers' scores on the segmented objects (unmatched true nuclei count
as missed detections, unmatched objects are listed).

Prints, per tracker and pooled over the stacks: the CTC TRA score (AOGM with weights
NS 5, FN 10, FP 1, ED 1, EA 1.5, EC 1; detections are the truth's, so NS = FP = EC = 0
and the missed detection costs both trackers the same), link precision and recall,
and divisions found.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cell_stacks import cell_stack  # noqa: E402

from stardist_v4d.analysis.measure import Calibration, measure_plane  # noqa: E402
from stardist_v4d.analysis.objects import ObjectBuilder, overlap_links  # noqa: E402
from stardist_v4d.analysis.tracking import TrackingSettings, default_max_distance, track  # noqa: E402

CAL = Calibration((1.0, 1.0), z_step_um=1.0)


def objects_of(stack, labels: np.ndarray | None = None) -> pd.DataFrame:
    """The objects table of ``labels`` (default: the stack's true labels), with each object's true
    cell ID (segmented objects: the true nucleus it overlaps with 3D IoU >= 0.5, else 0)."""
    segmented = labels is not None
    labels = stack.labels if labels is None else labels
    size_t, size_z = labels.shape[:2]
    builder = ObjectBuilder(CAL, 1, list(range(size_z)))
    rows, ids = [], {}
    for t in range(size_t):
        for z in range(size_z):
            plane = labels[t, z]
            finished = builder.add_plane(t, z, plane, measure_plane(plane, [stack.image[t, z]], None, CAL, t, z))
            if finished is not None:
                rows.append(pd.DataFrame(finished))
        if segmented:               # the builder's objects of t, as one label volume: slices joined through Z
            ids[t] = _object_volume(labels[t], rows[-1])
    table = pd.concat(rows, ignore_index=True)
    if not segmented:
        table["cell"] = table["label_id"].astype(int)         # true labels: one cell ID per object
        return table
    cells = []
    for row in table.itertuples():
        volume = ids[row.time_point] == row.object_id
        truth = stack.labels[row.time_point][volume]
        values, counts = np.unique(truth[truth > 0], return_counts=True)
        best = 0
        if values.size:
            cell = int(values[np.argmax(counts)])
            union = np.count_nonzero(volume | (stack.labels[row.time_point] == cell))
            best = cell if counts.max() / union >= 0.5 else 0
        cells.append(best)
    table["cell"] = cells
    return table


def _object_volume(labels_t: np.ndarray, objects: pd.DataFrame) -> np.ndarray:
    """One time point's slices renumbered with their object's ID (``label_id``: link_z numbering)."""
    lookup = dict(zip(objects["label_id"].astype(int), objects["object_id"].astype(int)))
    volume = np.zeros(labels_t.shape, np.int64)
    for label, object_id in lookup.items():
        volume[labels_t == label] = object_id
    return volume


def segmented_stack(stack, zoom: int, psf_sigma: float = 1.0):
    """The stack XY-upsampled ``zoom`` times (truth too), seen through a Gaussian PSF of
    ``psf_sigma`` px in XY (0: the generated hard edges), and the shipped model's link_z labels of it."""
    from scipy.ndimage import gaussian_filter

    from stardist_v4d.python_api import segment

    up = lambda a: np.repeat(np.repeat(a, zoom, axis=-2), zoom, axis=-1)  # noqa: E731  (pixels stay aligned)
    image = up(stack.image)
    if psf_sigma > 0:
        image = gaussian_filter(image, (0, 0, psf_sigma, psf_sigma))
    big = type(stack)(up(stack.labels), image,
                      [(t, c, p, z, y * zoom, x * zoom, ry * zoom, rx * zoom, rz) for t, c, p, z, y, x, ry, rx, rz in stack.truth],
                      [(t, c, p, z, y * zoom, x * zoom, ry * zoom, rx * zoom, rz) for t, c, p, z, y, x, ry, rx, rz in stack.truth_all],
                      stack.divisions)
    labels, _ = segment(big.image, "TZYX", current_time_point=False, label_ids="link_z", measure=False, normalize="stack",
                        show_progress=False)
    return big, np.asarray(labels)


def segmentation_report(stack, objects: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Objects per time point against the truth's, projected areas of matched objects."""
    per_t = objects.groupby("time_point").size()
    true_t = truth.groupby("time_point").size()
    matched = objects[objects["cell"] > 0].merge(truth[["time_point", "cell", "projected_area_um2"]],
                                                  on=["time_point", "cell"], suffixes=("", "_true"))
    error = (matched["projected_area_um2"] / matched["projected_area_um2_true"] - 1).to_numpy()
    return {"count_error": float(np.max(np.abs(per_t.reindex(true_t.index, fill_value=0) / true_t - 1))),
            "objects": len(objects), "true": len(truth), "matched": len(matched),
            "unmatched": int((objects["cell"] == 0).sum()), "area_error": error}


def lap_links(objects: pd.DataFrame) -> set[tuple[tuple[int, int], tuple[int, int]]]:
    spots = objects.rename(columns={"centroid_x_um": "x", "centroid_y_um": "y", "centroid_z_um": "z"})
    distance = default_max_distance(spots["projected_area_um2"].to_numpy())
    linked, tracks = track(spots, ["x", "y", "z"], TrackingSettings(), distance)
    links = set()
    by_track = {tid: g.sort_values("time_point") for tid, g in linked.groupby("track_id")}
    for tid, points in by_track.items():
        keys = list(zip(points["time_point"], points["object_id"]))
        links |= set(zip(keys, keys[1:]))
        parent = tracks.loc[tracks["track_id"] == tid, "parent_track_id"].iloc[0]
        if not np.isnan(parent):
            last = by_track[int(parent)].iloc[-1]
            links.add(((last["time_point"], last["object_id"]), keys[0]))
    return {((int(a[0]), int(a[1])), (int(b[0]), int(b[1]))) for a, b in links}


def overlap_links_3d(stack, objects: pd.DataFrame) -> set:
    """Today's overlap rule on whole objects: IoU >= 0.3 with the time point before, one-to-one."""
    links = set()
    for t in range(1, stack.labels.shape[0]):
        before, now = stack.labels[t - 1], stack.labels[t]
        for current, previous in overlap_links(before.reshape(-1, before.shape[-1]),
                                               now.reshape(-1, now.shape[-1]), 0.3, "iou").items():
            a = objects[(objects["time_point"] == t - 1) & (objects["cell"] == previous)]["object_id"]
            b = objects[(objects["time_point"] == t) & (objects["cell"] == current)]["object_id"]
            if len(a) and len(b):
                links.add(((t - 1, int(a.iloc[0])), (t, int(b.iloc[0]))))
    return links


def truth_graph(stack, objects: pd.DataFrame):
    """True nodes ``(t, cell)`` (the missed one included) and edges, in object IDs where detected."""
    nodes = {(t, cell) for t, cell, *_ in stack.truth_all}
    edges = set()
    for t, cell, parent, *_ in stack.truth_all:
        if (t - 1, cell) in nodes:
            edges.add(((t - 1, cell), (t, cell)))
        elif parent and (t - 1, parent) in nodes:
            edges.add(((t - 1, parent), (t, cell)))
    to_object = {(int(r.time_point), int(r.cell)): (int(r.time_point), int(r.object_id)) for r in objects.itertuples()}
    return nodes, edges, to_object


def score(links: set, stack, objects: pd.DataFrame) -> dict:
    nodes, edges, to_object = truth_graph(stack, objects)
    true_links = {(to_object[a], to_object[b]) for a, b in edges if a in to_object and b in to_object}
    detected_edges = {(to_object.get(a), to_object.get(b)) for a, b in edges}
    false_negatives = len(nodes) - len(to_object)
    edges_to_delete = len(links - true_links)
    edges_to_add = len([e for e in detected_edges if e not in links])
    aogm = 10 * false_negatives + 1 * edges_to_delete + 1.5 * edges_to_add
    aogm0 = 10 * len(nodes) + 1.5 * len(edges)
    divisions = [((t - 1, m), (t, d)) for t, m, d1, d2 in stack.divisions for d in (d1, d2)]
    found = sum(1 for a, b in divisions if (to_object.get(a), to_object.get(b)) in links)
    return {"tra": 1 - min(aogm, aogm0) / aogm0, "tp": len(links & true_links), "links": len(links),
            "true": len(true_links), "divisions": found, "division_links": len(divisions)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--stacks", type=int, default=5)
    parser.add_argument("--time-points", type=int, default=6)
    parser.add_argument("--cells", type=int, default=14)
    parser.add_argument("--max-step", type=float, default=1.0, help="largest move per time point, in nuclear radii")
    parser.add_argument("--segment", action="store_true", help="objects from the shipped model's segmentation")
    parser.add_argument("--zoom", type=int, default=2, help="XY upsampling before --segment (default 2)")
    parser.add_argument("--psf-sigma", type=float, default=1.0,
                        help="with --segment: the upsampled image seen through a Gaussian PSF of this sigma in XY "
                             "pixels, as a microscope sees nuclei (default 1.0; 0: hard, blocky edges)")
    args = parser.parse_args(argv)
    totals = {"LAP": [], "overlap": []}
    segmentation = []
    for seed in range(args.stacks):
        stack = cell_stack(seed=100 + seed, size_t=args.time_points, shape=(12, 160, 160), n_cells=args.cells,
                           max_step=args.max_step, divisions=2, missed=(args.time_points // 2, 3))
        if args.segment:
            stack, labels = segmented_stack(stack, args.zoom, args.psf_sigma)
            objects = objects_of(stack, labels)
            report = segmentation_report(stack, objects, objects_of(stack))
            segmentation.append(report)
            print(f"stack {seed}: {report['objects']} objects for {report['true']} true "
                  f"(worst time point {report['count_error']:+.1%}), {report['unmatched']} unmatched; "
                  f"projected area error median {np.median(report['area_error']):+.1%}, "
                  f"{np.mean(np.abs(report['area_error']) <= 0.05):.0%} within 5 %")
        else:
            objects = objects_of(stack)
        trackers = [("LAP", lap_links(objects))]
        if not args.segment:             # the overlap rule reads the true labels: truth objects only
            trackers.append(("overlap", overlap_links_3d(stack, objects)))
        for name, links in trackers:
            result = score(links, stack, objects)
            totals[name].append(result)
            print(f"stack {seed}: {name:8s} TRA {result['tra']:.3f}  links {result['tp']}/{result['true']} true, "
                  f"{result['links'] - result['tp']} wrong; divisions {result['divisions']}/{result['division_links']}")
    if segmentation:
        errors = np.concatenate([r["area_error"] for r in segmentation])
        print(f"\nsegmented objects: {sum(r['objects'] for r in segmentation)} for "
              f"{sum(r['true'] for r in segmentation)} true; worst time point count error "
              f"{max(r['count_error'] for r in segmentation):.1%}; projected areas of "
              f"{errors.size} matched: median error {np.median(errors):+.1%}, mean |error| "
              f"{np.mean(np.abs(errors)):.1%}, |error| <= 5 % for {np.mean(np.abs(errors) <= 0.05):.0%}")
    print(f"\n{'tracker':8s} {'TRA':>6s} {'precision':>9s} {'recall':>7s} {'division links':>15s}")
    for name, results in totals.items():
        if not results:
            continue
        tp, links, true = (sum(r[k] for r in results) for k in ("tp", "links", "true"))
        div, div_all = sum(r["divisions"] for r in results), sum(r["division_links"] for r in results)
        print(f"{name:8s} {np.mean([r['tra'] for r in results]):6.3f} {tp / max(links, 1):9.3f} "
              f"{tp / max(true, 1):7.3f} {div:>7d} / {div_all}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
