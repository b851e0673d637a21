"""StarDist 2D's prediction around any backend, without TensorFlow.

``stardist.models`` imports TensorFlow at its top, and with it ~9 s of start-up. Once a
network is converted (``ir_cache``), what a run needs of ``StarDist2D`` is small: its
thresholds, its configuration, and ``predict_sparse``: pad the plane to the network's
multiple (reflect), call the CNN whole or tile by tile (csbdeep's ``tile_iterator``),
keep candidates above ``prob_thresh`` (stardist's ``_ind_prob_thresh``). This class
replays stardist 0.9.2's ``_predict_sparse_generator`` step by step for single-channel
2D models, importing only TensorFlow-free modules of stardist and csbdeep; the tests
hold its output, for the same CNN, equal to ``StarDist2D.predict_sparse``'s, whole and
tiled. NMS and rendering stay StarDist's (``predict.instances``). Block mode
(``predict_instances_big``) is not replayed: those runs load ``StarDist2D`` around the
same backend.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

#: StarDist's thresholds when a model folder has no thresholds.json.
DEFAULT_THRESHOLDS = {"prob": 0.5, "nms": 0.4}


class SparseStarDist2D:
    """What the pipeline uses of a ``StarDist2D``, around ``cnn`` (anything with ``predict``)."""

    def __init__(self, folder: Path, config: dict, cnn, tile_overlap: tuple[int, int],
                 div_by: tuple[int, int]) -> None:
        self.name = Path(folder).name
        self.config = SimpleNamespace(**config)
        self.keras_model = cnn
        self._tile_overlap_yx = tuple(int(v) for v in tile_overlap)
        self._div_by_yx = tuple(int(v) for v in div_by)
        thresholds = dict(DEFAULT_THRESHOLDS)
        if (Path(folder) / "thresholds.json").is_file():     # checked by read_model_folder
            thresholds.update(json.loads((Path(folder) / "thresholds.json").read_text()))
        self.thresholds = SimpleNamespace(prob=float(thresholds["prob"]), nms=float(thresholds["nms"]))

    def _axes_tile_overlap(self, query_axes: str) -> tuple[int, ...]:
        overlap = dict(zip("YX", self._tile_overlap_yx))
        return tuple(overlap.get(a, 0) for a in query_axes)

    def _axes_div_by(self, query_axes: str) -> tuple[int, ...]:
        div_by = dict(zip("YX", self._div_by_yx))
        return tuple(div_by.get(a, 1) for a in query_axes)

    def predict_sparse(self, img: np.ndarray, prob_thresh: float | None = None,
                       n_tiles: tuple[int, int] | None = None, show_tile_progress: bool = False,
                       b: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(prob, dist, points)`` of the candidates, as ``StarDist2D.predict_sparse(img, axes="YX")``."""
        from csbdeep.internals.predict import tile_iterator
        from stardist.nms import _ind_prob_thresh

        prob_thresh = self.thresholds.prob if prob_thresh is None else prob_thresh
        n_tiles = (1, 1) if n_tiles is None else tuple(int(n) for n in n_tiles)
        grid = tuple(self.config.grid)
        div_by = self._axes_div_by("YX")
        pad = [(0, (d - s % d) % d) for d, s in zip(div_by, img.shape)]      # only at the end
        x = np.pad(img[..., np.newaxis], pad + [(0, 0)], mode="reflect")
        bounds = np.array([x.shape[0] - pad[0][1], x.shape[1] - pad[1][1]])

        borrowed = getattr(self.keras_model, "predict_borrowed", None)   # no copy of the maps: taken from below

        def cnn(tile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            outputs = borrowed(tile[np.newaxis]) if borrowed else self.keras_model.predict(tile[np.newaxis], verbose=0)
            prob, dist = (y[0] for y in outputs[:2])
            return prob[..., 0], dist      # StarDist's np.maximum(1e-3, dist) follows, on the candidates
            #                                  only: the same values, an eighth of a crowded plane's 33 MB map

        if np.prod(n_tiles) > 1:
            overlaps = [int(np.ceil(o / d)) for o, d in zip(self._axes_tile_overlap("YX"), div_by)] + [0]
            shape = [s // g for s, g in zip(x.shape[:2], grid)]
            probs, dists, points = [], [], []
            for tile, s_src, s_dst in tile_iterator(x, n_tiles + (1,), block_sizes=div_by + (1,),
                                                    n_block_overlaps=overlaps):
                s_src = tuple(slice(s.start // g, s.stop // g) for s, g in zip(s_src[:2], grid))
                s_dst = [slice(s.start // g, s.stop // g) for s, g in zip(s_dst[:2], grid)]
                prob, dist = cnn(tile)
                prob, dist = prob[s_src], dist[s_src]
                borders = [(b if s.start == 0 else -1, b if s.stop == n else -1) for s, n in zip(s_dst, shape)]
                inds = _ind_prob_thresh(prob, prob_thresh, b=borders)
                probs.extend(prob[inds].copy())
                dists.extend(np.maximum(1e-3, dist[inds]))
                found = np.stack(np.where(inds), axis=1) + np.array([s.start for s in s_dst]).reshape(1, 2)
                points.extend(found * np.array(grid).reshape(1, 2))
        else:
            prob, dist = cnn(x)
            inds = _ind_prob_thresh(prob, prob_thresh, b=b)
            probs, dists = prob[inds].copy(), np.maximum(1e-3, dist[inds])
            points = np.stack(np.where(inds), axis=1) * np.array(grid).reshape(1, 2)
        probs = np.asarray(probs)
        dists = np.asarray(dists).reshape((-1, self.config.n_rays))
        points = np.asarray(points).reshape((-1, 2))
        inside = np.where(np.all(points < bounds, 1))                    # not in the padding
        return probs[inside], dists[inside], points[inside]

    def predict_instances(self, img: np.ndarray, prob_thresh: float | None = None,
                          nms_thresh: float | None = None, n_tiles: tuple[int, int] | None = None,
                          **_ignored) -> tuple[np.ndarray, dict]:
        """``(labels, details)`` as ``StarDist2D.predict_instances`` (for eval and the check)."""
        from ..predict import instances, predict_sparse
        return instances(predict_sparse(self, img, prob_thresh, nms_thresh, n_tiles))
