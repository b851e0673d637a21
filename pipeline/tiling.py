"""How a plane is cut to fit a memory budget: whole, in tiles, or in blocks.

- Whole: the CNN sees the plane at once (``n_tiles=None``), the usual case.
- Tiles (``N_TILES = "auto"``): StarDist's own tiling inside ``predict_instances``;
  only the CNN's activations shrink, the plane's arrays stay whole.
- Blocks: planes whose whole-plane arrays alone exceed the budget (20k x 20k) go
  through StarDist's ``predict_instances_big``: blocks with context are predicted
  one by one, each object is kept by exactly one block, and the labels join up
  across block borders as long as every object is smaller than the blocks' overlap
  (``BLOCK_OVERLAP``); a larger one stops the run with a message naming it.

The byte counts are estimates measured on this project's standard model (32 rays,
grid 2x2, depth 3, 32 filters: ~340 MB per megapixel in the CNN, untiled) and
scaled by the filter count for other models.
"""
from __future__ import annotations

import contextlib
import io
import math
import tempfile

import numpy as np

#: CNN peak memory per input pixel and per first-layer filter (340 MB/MPixel at 32 filters).
CNN_BYTES_PER_PIXEL_PER_FILTER = 11
#: Whole-plane arrays around the CNN per pixel: input, float32 copy, candidates,
#: labels (int32), renumbered labels (int64) and the output's copy.
PLANE_BYTES_PER_PIXEL = 64
MB = 2 ** 20


def cnn_bytes_per_pixel(model_config) -> float:
    """Estimated CNN peak bytes per input pixel for a model's configuration."""
    return CNN_BYTES_PER_PIXEL_PER_FILTER * getattr(model_config, "unet_n_filter_base", 32)


def needs_blocks(shape: tuple[int, int], budget_mb: float) -> bool:
    """True when the plane's own arrays take more than half the budget."""
    return math.prod(shape) * PLANE_BYTES_PER_PIXEL > budget_mb * MB / 2


def auto_tiles(shape: tuple[int, int], model_config, budget_mb: float,
               overlap: int = 0) -> tuple[int, int] | None:
    """Fewest tiles (Y, X) whose CNN memory fits what the plane's arrays leave of the budget.

    None means one tile. Tiles grow by ``overlap`` pixels on each side (StarDist's
    tile context), which is why tiny tiles stop paying off; the count is capped at
    one tile per 64 pixels.
    """
    per_pixel = cnn_bytes_per_pixel(model_config)
    left = max(budget_mb * MB - math.prod(shape) * PLANE_BYTES_PER_PIXEL, budget_mb * MB / 4)
    tiles = [1, 1]
    while True:
        tile = [math.ceil(s / n) + (2 * overlap if n > 1 else 0) for s, n in zip(shape, tiles)]
        if math.prod(tile) * per_pixel <= left:
            break
        axis = int(np.argmax([s / n for s, n in zip(shape, tiles)]))
        if shape[axis] / (tiles[axis] + 1) < 64:
            break
        tiles[axis] += 1
    return None if tiles == [1, 1] else (tiles[0], tiles[1])


def block_size(shape: tuple[int, int], budget_mb: float, min_overlap: int, context: int,
               grid: int = 16) -> int:
    """Side of square blocks that fit half the budget (with context) and split the plane evenly.

    Even: the fewest blocks per axis that fit, each as small as that count allows, so
    a plane just over two blocks wide is not predicted as three full ones.
    """
    largest = int(math.sqrt(budget_mb * MB / 2 / PLANE_BYTES_PER_PIXEL)) - 2 * context
    largest = max(largest // grid * grid, min_overlap + 2 * context + grid)
    n = max(math.ceil((s - min_overlap) / (largest - min_overlap)) for s in shape)
    side = math.ceil((max(shape) + (n - 1) * min_overlap) / n)
    return min(largest, math.ceil(side / grid) * grid)


def predict_blocks(model, plane: np.ndarray, normalizer, prob_thresh: float | None,
                   nms_thresh: float | None, scale: float | None, budget_mb: float,
                   min_overlap: int, log) -> tuple[np.ndarray, dict]:
    """Labels and details of one huge plane through ``predict_instances_big``.

    The plane is normalized block by block with the whole plane's ``mi``/``ma``
    (the same numbers as normalizing it whole), and the labels go to a temporary
    file-backed array, so memory holds blocks, not float copies of the plane.
    """
    from csbdeep.data import Normalizer
    from csbdeep.utils import normalize_mi_ma

    from .normalization import BACKGROUND, non_finite_count, zero_where_not_finite

    source, holes = plane, non_finite_count(plane) > 0    # NaN/inf: background, labels 0
    if scale is not None:            # zooming integer pixels would round them: normalize first
        plane, limits = np.asarray(normalizer(plane)), None
    else:
        limits = normalizer.limits(plane)

    class BlockNormalizer(Normalizer):
        def before(self, x, axes):
            x = x if limits is None else normalize_mi_ma(x, *limits)
            return np.where(np.isfinite(x), x, np.float32(BACKGROUND)) if holes else x

        def after(self, *args, **kwargs):
            raise NotImplementedError

        @property
        def do_after(self):
            return False

    context = max(model._axes_tile_overlap("YX"))
    side = block_size(plane.shape, budget_mb, min_overlap, context)
    n_tiles = auto_tiles((round((side + 2 * context) * (scale or 1)),) * 2, model.config, budget_mb, context)
    log(f"Plane {plane.shape[0]} x {plane.shape[1]}: blocks of {side} px, overlap {min_overlap} px, "
        f"context {context} px, tiles {n_tiles or (1, 1)} per block.")
    with tempfile.TemporaryFile() as file:
        labels = np.memmap(file, dtype=np.int32, mode="w+", shape=plane.shape)
        try:
            with contextlib.redirect_stdout(io.StringIO()):     # it prints its block sizes
                labels, details = model.predict_instances_big(
                    plane, axes="YX", block_size=side, min_overlap=min_overlap, context=context,
                    labels_out=labels, show_progress=False, show_tile_progress=False,
                    normalizer=BlockNormalizer(),
                    prob_thresh=prob_thresh, nms_thresh=nms_thresh, scale=scale, n_tiles=n_tiles)
        except RuntimeError as error:
            if "min_overlap" in str(error):
                raise BlockOverlapError(f"{error}; raise BLOCK_OVERLAP (--block-overlap) above "
                                        f"{min_overlap} px, the largest nucleus' size") from None
            raise
        if holes:
            zero_where_not_finite(labels, source)
        return labels, details


class BlockOverlapError(ValueError):
    """A nucleus is larger than the blocks' overlap (BLOCK_OVERLAP is too small for the data)."""
