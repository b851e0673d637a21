"""Find, read and check image/mask TIFF pairs for training.

Why so many checks: StarDist trains on almost anything it is given and then fails
late (after TensorFlow has loaded) or silently (a binary mask trains a model that
merges touching nuclei). Every problem here is caught up front and reported in one
line that names the file and says what would be valid.

Pairing rule (one rule for ``train`` and ``eval``, :func:`pair_files`): an image
``NAME.tif`` or ``NAME_img.tif`` pairs with the mask in the masks folder named ``NAME``
or ``NAME_mask``, ``NAME_masks``, ``NAME_label``, ``NAME_labels`` (``.tif`` or
``.tiff``, case-insensitive). The images folder and the masks folder may be the same
folder: then files with a mask suffix are masks and the rest are images. Files that
are not TIFFs are ignored.

Pure numpy / scipy / tifffile: importing this module never loads TensorFlow.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import tifffile
from scipy import ndimage as ndi

TIFF_SUFFIXES = (".tif", ".tiff")
MASK_SUFFIXES = ("_mask", "_masks", "_label", "_labels")
IMAGE_SUFFIXES = ("_img",)   # optional on images: NAME_img.tif pairs like NAME.tif
MIN_NUCLEI_PER_PATCH = 1.0
_EIGHT_CONNECTED = np.ones((3, 3), bool)


class TrainingDataError(ValueError):
    """Training data that cannot train a model; the message is one line for the user."""


def _tiffs(folder: Path, role: str) -> list[Path]:
    if not folder.is_dir():
        raise TrainingDataError(f"{role} folder '{folder}' does not exist or is not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES)


def _image_stem(mask: Path) -> str:
    """The image name a mask file name points to: its stem without a mask suffix."""
    stem = mask.stem
    for suffix in MASK_SUFFIXES:
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _pair_names(image: Path) -> list[str]:
    """The names (lower case) an image's mask may carry before its mask suffix: its stem,
    and its stem without ``_img``."""
    stem = image.stem.lower()
    names = [stem]
    for suffix in IMAGE_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            names.append(stem[: -len(suffix)])
    return names


def _is_mask_name(path: Path) -> bool:
    return _image_stem(path) != path.stem


def _more(paths: list[Path]) -> str:
    return f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""


def pair_files(images_dir: Path, masks_dir: Path) -> list[tuple[Path, Path]]:
    """``(image, mask)`` paths paired by name (see the module docstring), sorted by image name."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    image_paths, mask_paths = _tiffs(images_dir, "images"), _tiffs(masks_dir, "masks")
    if images_dir.resolve() == masks_dir.resolve():
        mask_paths = [p for p in image_paths if _is_mask_name(p)]
        image_paths = [p for p in image_paths if not _is_mask_name(p)]
    if not image_paths:
        raise TrainingDataError(f"no TIFF images (.tif/.tiff) in images folder '{images_dir}'")

    masks_by_stem: dict[str, list[Path]] = {}
    for path in mask_paths:
        masks_by_stem.setdefault(path.stem.lower(), []).append(path)
    pairs: list[tuple[Path, Path]] = []
    lonely_images: list[Path] = []
    used: dict[Path, Path] = {}
    for image in image_paths:
        found = list(dict.fromkeys(m for name in _pair_names(image) for s in ("",) + MASK_SUFFIXES
                                   for m in masks_by_stem.get(name + s, [])))
        if len(found) > 1:
            raise TrainingDataError(f"image '{image.name}' has {len(found)} masks in '{masks_dir}' "
                                    f"({', '.join(m.name for m in found)}): keep one mask per image")
        if not found:
            lonely_images.append(image)
            continue
        if found[0] in used:
            raise TrainingDataError(f"mask '{found[0].name}' matches both image '{used[found[0]].name}' "
                                    f"and '{image.name}': rename one so each image has its own mask")
        pairs.append((image, found[0]))
        used[found[0]] = image

    if lonely_images:
        first = lonely_images[0]
        name = _pair_names(first)[-1]
        raise TrainingDataError(f"image '{first.name}'{_more(lonely_images)} has no mask in "
                                f"'{masks_dir}': expected a mask named {name}.tif or {name}_mask.tif "
                                f"(also _masks, _label, _labels; .tif or .tiff)")
    lonely_masks = [p for p in mask_paths if p not in used]
    if lonely_masks:
        first = lonely_masks[0]
        raise TrainingDataError(f"mask '{first.name}'{_more(lonely_masks)} has no image in "
                                f"'{images_dir}': expected an image named {_image_stem(first)}.tif "
                                f"or {_image_stem(first)}_img.tif, or remove the mask")
    return pairs


def read_plane(path: Path) -> np.ndarray:
    """Pixels of a TIFF with singleton axes dropped, so ImageJ's ``(1, Y, X)`` counts as 2D."""
    try:
        array = tifffile.imread(path)
    except Exception as error:  # tifffile raises many types for broken files
        raise TrainingDataError(f"cannot read '{path.name}' as TIFF: {error}".replace("\n", " ")) from None
    squeezed = np.squeeze(array)
    return squeezed if squeezed.ndim == 2 else array


def _check_2d(array: np.ndarray, role: str, name: str) -> None:
    if array.ndim == 2:
        return
    shape = tuple(int(s) for s in array.shape)
    if array.ndim == 3 and shape[-1] in (3, 4):
        found, advice = "an RGB colour image", "save the nuclear channel alone as a grey-scale TIFF"
    elif array.ndim == 3:
        found, advice = f"{shape[0]} planes or channels", "save each plane (or the nuclear channel) as its own file"
    else:
        found, advice = f"{array.ndim} dimensions", "save single 2D planes"
    kind = "image"
    if role == "mask":
        kind, advice = "label image", "save one 2D label image per 2D image"
    raise TrainingDataError(f"{role} '{name}' has shape {shape} ({found}): expected a 2D (Y, X) "
                            f"single-channel {kind}; {advice}")


def _count_nuclei(mask: np.ndarray, name: str) -> int:
    """Number of nuclei in an instance mask; raises if the mask is not one."""
    hint = "give one ID per nucleus, e.g. skimage.measure.label"
    if mask.dtype == bool:
        mask = mask.astype(np.uint8)
    if not np.issubdtype(mask.dtype, np.integer):
        if not np.issubdtype(mask.dtype, np.floating) or not np.all(np.isfinite(mask)) \
                or np.any(mask != np.round(mask)):
            raise TrainingDataError(f"mask '{name}' holds non-integer values ({mask.dtype}): expected "
                                    "instance labels, 0 for background and one integer ID per nucleus")
    if mask.min() < 0:
        raise TrainingDataError(f"mask '{name}' has negative values: expected 0 for background "
                                "and one positive integer ID per nucleus")
    ids = np.unique(mask)
    ids = ids[ids != 0]
    if ids.size == 0:
        raise TrainingDataError(f"mask '{name}' is empty (all 0): every mask needs at least one "
                                "labelled nucleus; label its nuclei or leave the pair out")
    if ids.size == 1:
        n_blobs = ndi.label(mask > 0, structure=_EIGHT_CONNECTED)[1]
        if n_blobs > 1:
            raise TrainingDataError(f"mask '{name}' looks binary (only 0 and {ids[0]:g}, {n_blobs} "
                                    f"separate blobs share one ID): {hint}")
        return 1
    labels = mask.astype(np.int64, copy=False)
    split = [label for label, region in enumerate(ndi.find_objects(labels), start=1)
             if region is not None
             and ndi.label(labels[region] == label, structure=_EIGHT_CONNECTED)[1] > 1]
    if 2 * len(split) > ids.size:
        raise TrainingDataError(f"mask '{name}' looks like a class mask, not instance labels "
                                f"({len(split)} of {ids.size} IDs cover several separate blobs): {hint}")
    return int(ids.size)


def check_training_pairs(images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                         names: Sequence[str] | None = None,
                         patch_size: tuple[int, int] | None = None,
                         mask_names: Sequence[str] | None = None) -> int:
    """Raise :class:`TrainingDataError` for the first problem found; return the nucleus count.

    Checks each pair (2D single-channel, same shape, instance labels, not empty)
    before the whole set (at least two pairs, since one is held out for validation;
    with ``patch_size``: every image at least one patch large, and on average at
    least ``MIN_NUCLEI_PER_PATCH`` nucleus per patch, else training sees mostly
    background). ``names`` / ``mask_names`` are used in messages.
    """
    if len(images) != len(masks):
        raise TrainingDataError(f"{len(images)} images but {len(masks)} masks: need one mask per image")
    names = list(names) if names is not None else [f"image {i + 1}" for i in range(len(images))]
    mask_names = list(mask_names) if mask_names is not None else [f"mask of {n}" for n in names]

    n_nuclei = 0
    for image, mask, name, mask_name in zip(images, masks, names, mask_names):
        _check_2d(image, "image", name)
        _check_2d(mask, "mask", mask_name)
        if image.shape != mask.shape:
            raise TrainingDataError(f"image '{name}' is {image.shape[0]}x{image.shape[1]} (Y x X) but its "
                                    f"mask '{mask_name}' is {mask.shape[0]}x{mask.shape[1]}: "
                                    "image and mask must have the same shape")
        n_nuclei += _count_nuclei(mask, mask_name)

    if not images:
        raise TrainingDataError("found no image/mask pair to train on")
    if patch_size is not None:
        py, px = (int(s) for s in patch_size)
        for image, name in zip(images, names):
            if image.shape[0] < py or image.shape[1] < px:
                raise TrainingDataError(f"image '{name}' is {image.shape[0]}x{image.shape[1]}, smaller than "
                                        f"the {py}x{px} training patch: use a smaller --patch-size "
                                        "or leave the image out")
        per_patch = n_nuclei * py * px / sum(image.size for image in images)
        if per_patch < MIN_NUCLEI_PER_PATCH:
            raise TrainingDataError(f"too few nuclei for the {py}x{px} patch size: {n_nuclei} nuclei in "
                                    f"{len(images)} masks give {per_patch:.2f} per patch on average "
                                    f"(need at least {MIN_NUCLEI_PER_PATCH:g}); label more nuclei "
                                    "or use a larger --patch-size")
    return n_nuclei


def prepare_mask(mask: np.ndarray) -> np.ndarray:
    """Checked mask as StarDist wants it: IDs 1..n (int32) with holes filled.

    Sequential IDs keep StarDist's per-ID bookkeeping small however large the IDs
    in the file are; filled holes keep every nucleus star-convex from its centre.
    """
    from stardist import fill_label_holes

    ids, inverse = np.unique(mask, return_inverse=True)
    labels = inverse.reshape(mask.shape).astype(np.int32) + (0 if ids[0] == 0 else 1)
    return fill_label_holes(labels)


def load_training_pairs(images_dir: Path, masks_dir: Path, patch_size: tuple[int, int] | None = None
                        ) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Read, check and prepare all pairs: ``(images, masks, image file names)``.

    Raises :class:`TrainingDataError` for unpaired files or any problem
    :func:`check_training_pairs` finds (``patch_size`` enables the patch checks).
    """
    pairs = pair_files(Path(images_dir), Path(masks_dir))
    images = [read_plane(image_path) for image_path, _ in pairs]
    masks = [read_plane(mask_path) for _, mask_path in pairs]
    names = [image_path.name for image_path, _ in pairs]
    check_training_pairs(images, masks, names, patch_size, [mask_path.name for _, mask_path in pairs])
    return images, [prepare_mask(mask) for mask in masks], names
