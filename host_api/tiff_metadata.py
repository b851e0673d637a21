"""What a TIFF says about itself: axes, channel names, pixel size, and the run record.

Kept apart from ``tiff.py`` because it is pure metadata interpretation: the
rules for ImageJ hyperstacks, OME-TIFF and plain TIFF differ, and each rule is
easier to check (and to extend) on its own than inside the host's I/O code.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Mapping

import tifffile

#: The axes a run understands; ``S`` (RGB samples) is read as extra channels.
SUPPORTED_AXES = "TZCYXS"
#: tifffile's letters for a page axis of unknown meaning, read as Z.
UNKNOWN_PAGE_AXES = "IQ"
#: OME MapAnnotation namespace that marks the run record in outputs.
RUN_NAMESPACE = "stardist-v4d:run"

# micrometres per unit; keys are normalised by _unit_key
_UM_PER_UNIT = {
    "m": 1e6, "cm": 1e4, "mm": 1e3, "um": 1.0, "micron": 1.0, "microns": 1.0,
    "micrometer": 1.0, "micrometre": 1.0, "nm": 1e-3, "pm": 1e-6,
    "a": 1e-4, "angstrom": 1e-4,
}


#: File endings of TIFF stacks, longest first.
TIFF_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")


def tiff_stem(name: str) -> str:
    """``stack.ome.tif`` -> ``stack``: the name without its TIFF ending (any case)."""
    for suffix in TIFF_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def normalize_axes(axes: str, source: str = "") -> str:
    """Series axes in ``TZCYX(S)`` letters, or a ValueError a user can act on.

    tifffile names page axes it cannot interpret ``I`` or ``Q`` (plain multi-page
    TIFF, tifffile "shaped" files): a stack of planes is most often a Z stack.
    """
    normalized = "".join("Z" if a in UNKNOWN_PAGE_AXES else a for a in axes)
    unknown = sorted(set(normalized) - set(SUPPORTED_AXES))
    repeated = sorted({a for a in normalized if normalized.count(a) > 1})
    if unknown or repeated or not {"Y", "X"} <= set(normalized):
        problem = (f"axes {', '.join(unknown)} not supported" if unknown
                   else f"axis {', '.join(repeated)} appears twice" if repeated
                   else "no Y and X axes")
        where = f" in {source}" if source else ""
        raise ValueError(
            f"Cannot read image axes {axes!r}{where} ({problem}). Supported axes are "
            "T, Z, C, Y, X in any order and subset; RGB samples (S) are read as channels "
            "and one unnamed page axis (I or Q) as Z; AXES (--axes) declares them, one letter per axis.")
    return normalized


def _unit_key(unit: str) -> str:
    """Lower-case unit with the micro sign variants ImageJ and OME use mapped to 'u'."""
    unit = unit.strip().lower()
    for micro in ("\\u00b5", "\u00b5", "\u03bc"):
        unit = unit.replace(micro, "u")
    return {"å": "a", "\u212b": "a"}.get(unit, unit)


def to_micrometres(value: float | None, unit: str | None) -> float | None:
    """``value`` in ``unit`` as micrometres; None when either is unknown or not positive."""
    if value is None or unit is None:
        return None
    factor = _UM_PER_UNIT.get(_unit_key(unit))
    value = float(value)
    if factor is None or not value > 0:
        return None
    return value * factor


def ome_pixels(tif: tifffile.TiffFile) -> ET.Element | None:
    """The ``Pixels`` element of the first OME Image (series 0), or None."""
    xml = tif.ome_metadata if tif.is_ome else None
    if not xml:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    return root.find("{*}Image/{*}Pixels")


def declared_planes(tif: tifffile.TiffFile) -> int | None:
    """How many planes (pages of Y, X and samples) the file's own metadata promises: ImageJ
    ``images=``, or OME ``SizeT * SizeZ * SizeC`` (the RGB samples of one plane counted once).
    None when the file declares nothing (plain TIFF) or the declaration is unreadable.

    A file cut short keeps its first page, and with it the count of planes it was
    written with: this words a damaged file's error ("declares 3 planes, 1 readable").
    """
    pixels = ome_pixels(tif)
    if pixels is not None:
        try:
            size_t, size_z, size_c = (int(pixels.get(f"Size{a}", 1)) for a in "TZC")
            channel = pixels.find("{*}Channel")
            samples = int(channel.get("SamplesPerPixel", 1)) if channel is not None else 1
        except ValueError:
            return None
        return size_t * size_z * max(1, size_c // max(1, samples))
    images = (tif.imagej_metadata or {}).get("images")
    return images if isinstance(images, int) and images > 0 else None


def channel_names(tif: tifffile.TiffFile, size_c: int) -> tuple[str, ...]:
    """Channel names from OME ``Channel/@Name`` or ImageJ ``Labels``; else ``C0, C1, ...``.

    ImageJ ``Labels`` are per-plane slice labels (channel fastest). They name
    channels only when there is one per channel, or when every plane of a channel
    carries the same label; otherwise they label slices and are not used.
    """
    default = [f"C{i}" for i in range(size_c)]
    pixels = ome_pixels(tif)
    if pixels is not None:
        channels = pixels.findall("{*}Channel")
        if len(channels) == size_c:
            return tuple(ch.get("Name") or default[i] for i, ch in enumerate(channels))
        return tuple(default)
    labels = list((tif.imagej_metadata or {}).get("Labels") or [])
    if labels and size_c > 0:
        periodic = len(labels) % size_c == 0 and all(
            label == labels[i % size_c] for i, label in enumerate(labels))
        if (len(labels) == size_c or periodic) and all(labels[:size_c]):
            return tuple(str(label) for label in labels[:size_c])
    return tuple(default)


def pixel_size_um(tif: tifffile.TiffFile) -> tuple[float | None, float | None, float | None]:
    """``(x, y, z)`` pixel size in micrometres, each None where the file does not say.

    OME: ``PhysicalSize{X,Y,Z}`` with their units (default µm). ImageJ: the
    resolution tags are pixels per ``unit`` and ``spacing`` is the Z step. Plain
    TIFF: resolution tags only when the unit is centimetre (inch resolution is
    almost always a print default such as 72 dpi, not a microscope calibration).
    """
    pixels = ome_pixels(tif)
    if pixels is not None:
        return tuple(  # type: ignore[return-value]
            to_micrometres(pixels.get(f"PhysicalSize{a}"), pixels.get(f"PhysicalSize{a}Unit", "µm"))
            for a in "XYZ")
    ij = tif.imagej_metadata or {}
    page = tif.pages.first
    if ij:
        unit = ij.get("unit")
        z = to_micrometres(ij.get("spacing"), unit)
    else:
        resunit = page.tags.valueof("ResolutionUnit")
        unit = "cm" if resunit == tifffile.RESUNIT.CENTIMETER else None
        z = None
    x, y = (_per_unit_to_size(page.tags.valueof(tag), unit) for tag in ("XResolution", "YResolution"))
    return (x, y, z)


#: seconds per unit of OME ``TimeIncrementUnit`` / ImageJ ``tunit``
_SECONDS_PER_UNIT = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3,
                     "us": 1e-6, "min": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0,
                     "hour": 3600.0, "hours": 3600.0}


def time_increment_s(tif: tifffile.TiffFile) -> float | None:
    """Seconds between time points: OME ``TimeIncrement`` (unit default s), ImageJ ``finterval``."""
    pixels = ome_pixels(tif)
    if pixels is not None:
        value, unit = pixels.get("TimeIncrement"), pixels.get("TimeIncrementUnit", "s")
    else:
        ij = tif.imagej_metadata or {}
        value, unit = ij.get("finterval"), ij.get("tunit", "s")
    factor = _SECONDS_PER_UNIT.get(_unit_key(str(unit)))
    try:
        seconds = float(value) * factor if value is not None and factor else None
    except ValueError:
        return None
    return seconds if seconds and seconds > 0 else None


def _per_unit_to_size(resolution: tuple[int, int] | None, unit: str | None) -> float | None:
    """A TIFF rational resolution (pixels per unit) as micrometres per pixel."""
    if not resolution or not resolution[0] or not resolution[1]:
        return None
    return to_micrometres(resolution[1] / resolution[0], unit)


def output_metadata(channel_names: tuple[str, ...], pixel_size: tuple[float | None, ...],
                    name: str, description: Mapping[str, str] | None,
                    time_increment: float | None = None, uuid: str | None = None) -> dict:
    """tifffile OME metadata for a ``TZCYX`` output: names, pixel size, run record.

    The run record is an OME ``MapAnnotation`` (key/value pairs) in our namespace:
    Fiji, OMERO and tifffile all show it, and ``read_run_description`` reads it back.
    """
    meta: dict = {"axes": "TZCYX", "Name": name, "Channel": {"Name": list(channel_names)}}
    if uuid:                     # else tifffile draws a random one: no two runs the same bytes
        meta["UUID"] = f"urn:uuid:{uuid}"
    for axis, size in zip("XYZ", pixel_size):
        if size is not None:
            meta[f"PhysicalSize{axis}"] = float(size)
            meta[f"PhysicalSize{axis}Unit"] = "µm"
    if time_increment:
        meta["TimeIncrement"] = float(time_increment)
        meta["TimeIncrementUnit"] = "s"
    if description:
        meta["StructuredAnnotations"] = {"MapAnnotation": {
            "Namespace": RUN_NAMESPACE,
            "Description": "stardist-v4d run settings",
            "Value": {str(k): str(v) for k, v in description.items()},
        }}
    return meta


def read_run_description(path: str | os.PathLike) -> dict[str, str]:
    """The run record an output carries (settings, model, versions); ``{}`` if none."""
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata if tif.is_ome else None
    if not xml:
        return {}
    for annotation in ET.fromstring(xml).iterfind(".//{*}MapAnnotation"):
        if annotation.get("Namespace") == RUN_NAMESPACE:
            return {m.get("K", ""): m.text or "" for m in annotation.iterfind("{*}Value/{*}M")}
    return {}
