"""The outline overlay: one input plane with every nucleus outline drawn on it.

The direct check of the masks, at one image pixel per PNG pixel: written as raw
pixels (title strip drawn by matplotlib above them, saved with PIL) rather than
through ``imshow``, which on a 4000 x 4000 plane took ~460 MB and 4 s against
~55 MB and 2.7 s here. Small planes are enlarged by a whole factor, large ones
block-reduced (an outline survives if any pixel of its block is one), in strips.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .figures import DPI, RC as _RC, agg_figure as _figure

#: Planes larger than this (longer side, px) are block-reduced for the overlay.
OVERLAY_MAX_PX = 2000
#: Planes smaller than this (longer side, px) are enlarged by an integer factor for the overlay.
OVERLAY_MIN_PX = 500
#: Outline colour of the overlay (RGB, 0-255): yellow stands out on any grey.
OUTLINE_RGB = (255, 255, 0)


@dataclass(frozen=True)
class Overlay:
    """One input plane and its labels, to draw the nucleus outlines on the image.

    ``image`` is the channel the nuclei were segmented in, ``(Y, X)``, any dtype;
    ``labels`` the label image as written, ``(Y, X)``, 0 = background.
    """

    image: np.ndarray
    labels: np.ndarray
    time_point: int
    z: int



def _contrast_limits(image: np.ndarray) -> tuple[float, float] | None:
    """1 and 99.8 percentiles of ``image`` (from <= ~4 M finite pixels); None if all NaN.

    Falls back to min/max when the percentiles coincide (a mostly flat plane) so
    the few structured pixels still show.
    """
    step = max(1, int(math.sqrt(image.size / 4e6)))
    sample = np.asarray(image[::step, ::step], dtype=np.float32)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return None
    lo, hi = (float(v) for v in np.percentile(sample, (1.0, 99.8)))
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    return lo, hi


def _block_reduce(values: np.ndarray, factor: int, reducer) -> np.ndarray:
    """``reducer`` over ``factor`` x ``factor`` blocks; partial end blocks are edge-padded."""
    if factor == 1:
        return values
    rows, cols = values.shape
    padded = np.pad(values, ((0, -rows % factor), (0, -cols % factor)), mode="edge")
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    return reducer(blocks, axis=(1, 3))


def overlay_rgb(overlay: Overlay, strip_rows: int = 512) -> np.ndarray:
    """``(Y', X', 3)`` uint8: the stretched image in grey with every outline in :data:`OUTLINE_RGB`.

    Planes over :data:`OVERLAY_MAX_PX` are block-reduced (image by mean, outlines
    by "any outline pixel in the block") so outlines survive the downscaling;
    outlines are always found at full resolution. The plane is worked through in
    strips of about ``strip_rows`` rows (outlines with a one-row halo, so the
    result is the whole plane's), which keeps the extra memory to a few strips
    for planes of any size.
    """
    from skimage.segmentation import find_boundaries

    image, labels = np.asarray(overlay.image), np.asarray(overlay.labels)
    if image.ndim != 2 or image.shape != labels.shape:
        raise ValueError(f"overlay image {image.shape} and labels {labels.shape} must be the "
                         "same (Y, X) shape")
    rows, cols = image.shape
    factor = max(1, math.ceil(max(rows, cols) / OVERLAY_MAX_PX))
    limits = _contrast_limits(image)
    step = factor * max(1, math.ceil(strip_rows / factor))  # strips of whole blocks
    rgb = np.empty((math.ceil(rows / factor), math.ceil(cols / factor), 3), np.uint8)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        data = image[r0:r1].astype(np.float32)
        if limits is None or limits[1] <= limits[0]:
            grey = np.where(np.isfinite(data), 0.5 if limits else 0.0, 0.0).astype(np.float32)
        else:
            grey = (data - np.float32(limits[0])) / np.float32(limits[1] - limits[0])
            grey = np.nan_to_num(np.clip(grey, 0.0, 1.0), nan=0.0)
        h0, h1 = max(0, r0 - 1), min(rows, r1 + 1)
        outline = find_boundaries(labels[h0:h1], mode="inner")[r0 - h0:r0 - h0 + (r1 - r0)]
        grey = _block_reduce(grey, factor, np.mean)
        outline = _block_reduce(outline, factor, np.any)
        out = rgb[r0 // factor:r0 // factor + grey.shape[0]]
        out[:] = np.round(grey * 255).astype(np.uint8)[..., None]
        out[outline] = OUTLINE_RGB
    return rgb


def _count_labels(labels: np.ndarray, strip_rows: int = 512) -> int:
    """Distinct non-zero labels, strip by strip (no full-plane copy)."""
    seen = np.zeros(0, labels.dtype)
    for r0 in range(0, labels.shape[0], strip_rows):
        strip = labels[r0:r0 + strip_rows]
        seen = np.union1d(seen, np.unique(strip[strip != 0]))
    return int(seen.size)


def _title_strip(text: str, width: int) -> np.ndarray:
    """``(h, width, 3)`` uint8: ``text`` centred in black on white, rendered by Agg."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        figure = _figure(width / DPI, 0.32)
        figure.text(0.5, 0.5, text, ha="center", va="center",
                    fontsize=11 if width >= 400 else 9)
        figure.canvas.draw()
        strip = np.array(figure.canvas.buffer_rgba())[..., :3]
        figure.clear()
    return strip


#: Above this many nuclei the overlay shows outlines without their IDs (the numbers would hide them).
MAX_LABELLED_NUCLEI = 1500
_NICE_LENGTHS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def _label_centres(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, rows, cols)``: each label's centroid in pixels."""
    flat = labels.ravel()
    where = np.flatnonzero(flat)
    ids, inverse = np.unique(flat[where], return_inverse=True)
    rows, cols = np.divmod(where, labels.shape[1])
    counts = np.bincount(inverse)
    return ids, np.bincount(inverse, rows) / counts, np.bincount(inverse, cols) / counts


def _font(size: int):
    """matplotlib's DejaVu Sans (it has µ, PIL's built-in font has not)."""
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def _digit_stamps(font) -> dict[str, tuple]:
    """Each digit drawn once (cyan, outlined in black for any background) as an RGBA tile with
    its offset and advance: a crowded plane's ~1,000 IDs are pasted from these, not drawn."""
    from PIL import Image, ImageDraw

    stamps = {}
    for digit in "0123456789":
        left, top, right, bottom = font.getbbox(digit, stroke_width=1)
        tile = Image.new("RGBA", (right - left, bottom - top), (0, 0, 0, 0))
        ImageDraw.Draw(tile).text((-left, -top), digit, fill=(0, 255, 255, 255), font=font,
                                  stroke_width=1, stroke_fill=(0, 0, 0, 255))
        stamps[digit] = (tile, left, top, bottom, font.getlength(digit))
    return stamps


def _stamp(picture, text: str, x: float, y: float, stamps: dict) -> None:
    """``text`` (digits) pasted from ``stamps``, centred on (x, y) as ``anchor="mm"`` draws it."""
    width = sum(stamps[d][4] for d in text)
    top = min(stamps[d][2] for d in text)
    bottom = max(stamps[d][3] for d in text)
    pen, middle = x - width / 2, y - (top + bottom) / 2
    for digit in text:
        tile, left, top_, _, advance = stamps[digit]
        picture.paste(tile, (int(round(pen + left)), int(round(middle + top_))), tile)
        pen += advance


def _annotate(rgb: np.ndarray, labels: np.ndarray, scale: float, pixel_size: float | None, unit: str) -> np.ndarray:
    """The label IDs at their nuclei's centres, and a scale bar in the bottom-right corner.

    ``scale`` is PNG pixels per image pixel; ``pixel_size`` the image pixel's size in ``unit``.
    """
    from PIL import Image, ImageDraw

    picture = Image.fromarray(rgb)
    draw = ImageDraw.Draw(picture)
    ids, rows, cols = _label_centres(labels)
    if 0 < ids.size <= MAX_LABELLED_NUCLEI:
        stamps = _digit_stamps(_font(max(9, min(14, int(6 * scale)))))
        for label, r, c in zip(ids.tolist(), rows * scale, cols * scale):
            _stamp(picture, str(int(label)), c, r, stamps)
    size = pixel_size or 1.0
    width_units = rgb.shape[1] / scale * size
    length = max([n for n in _NICE_LENGTHS if n <= width_units / 5] or [_NICE_LENGTHS[0]])
    bar = length / size * scale
    margin = max(8, rgb.shape[1] // 50)
    y1 = rgb.shape[0] - margin
    x1 = rgb.shape[1] - margin
    draw.rectangle((x1 - bar, y1 - max(3, rgb.shape[0] // 150), x1, y1), fill=(255, 255, 255))
    font = _font(max(11, rgb.shape[1] // 45))
    draw.text((x1 - bar / 2, y1 - max(3, rgb.shape[0] // 150) - 4), f"{length:g} {unit}", fill=(255, 255, 255),
              font=font, anchor="md", stroke_width=1, stroke_fill=(0, 0, 0))
    return np.asarray(picture)


def plot_overlay(overlay: Overlay, path: Path, pixel_size: float | None = None, annotate: bool = True) -> Path:
    """The overlay, one image pixel per PNG pixel (whole-number enlarged when small), titled,
    with each nucleus' ID and a scale bar (µm with ``pixel_size``, the pixel's width in µm, else px)
    unless ``annotate`` is False.

    Written as pixels (the title rendered by Agg above them), not through
    ``imshow``: that maps image pixels to PNG pixels exactly, and a 2000 x 2000
    plane costs ~30 MB and a second instead of imshow's ~0.5 GB and several.
    """
    from PIL import Image  # a dependency of matplotlib

    rgb = overlay_rgb(overlay)
    labels = np.asarray(overlay.labels)
    n = _count_labels(labels)
    rows, cols = rgb.shape[:2]
    zoom = max(1, OVERLAY_MIN_PX // max(rows, cols))
    if zoom > 1:
        rgb = np.repeat(np.repeat(rgb, zoom, axis=0), zoom, axis=1)
    if annotate:
        rgb = _annotate(rgb, labels, rgb.shape[1] / labels.shape[1], pixel_size, "µm" if pixel_size else "px")
    shrunk = (rows, cols) != labels.shape
    note = f" (shown at 1/{math.ceil(max(labels.shape) / OVERLAY_MAX_PX)})" if shrunk else ""
    title = (f"{n:,} {'nucleus' if n == 1 else 'nuclei'}, time point {overlay.time_point}, "
             f"z {overlay.z}{note}")
    width = max(rgb.shape[1], 400)  # room for the title above narrow planes
    margin = width - rgb.shape[1]
    if margin:
        rgb = np.pad(rgb, ((0, 0), (margin // 2, margin - margin // 2), (0, 0)),
                     constant_values=255)
    picture = np.concatenate([_title_strip(title, width), rgb], axis=0)
    Image.fromarray(picture).save(path, format="PNG", dpi=(DPI, DPI), compress_level=1)
    return Path(path)
