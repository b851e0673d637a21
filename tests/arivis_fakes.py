"""Fakes of the arivis Python modules, holding exactly the call shapes public scripts show.

Every fake records its calls and rejects shapes ``shared/docs/arivis-python-api.md`` does
not list: a region must be ``((x, y, z), (w, h, 1))`` of ints, channel and time point
ints, arrays ``(Y, X)`` or ``(1, Y, X)``. Any method not listed does not exist here, so
calling one fails with AttributeError, as an invented call would in the host.
Install them with the ``arivis`` fixture (``from arivis_fakes import arivis``).
"""
from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np
import pytest


def _is_int(value: Any) -> bool:
    return type(value) is int            # what a Python script passes; not numpy, not bool


def check_region(region: Any) -> tuple[int, int, int, int, int]:
    """``((x, y, z), (w, h, 1))`` of ints -> x, y, z, w, h."""
    assert isinstance(region, tuple) and len(region) == 2, f"region {region!r} is not ((x, y, z), (w, h, 1))"
    start, size = region
    assert isinstance(start, tuple) and isinstance(size, tuple), f"region {region!r}: parts must be tuples"
    assert len(start) == 3 and len(size) == 3, f"region {region!r}: parts must have 3 entries"
    assert all(_is_int(v) for v in start + size), f"region {region!r}: entries must be ints"
    assert size[2] == 1 and size[0] > 0 and size[1] > 0, f"region {region!r}: size must be (w, h, 1)"
    return start[0], start[1], start[2], size[0], size[1]


# ------------------------------------------------------------------ arivis_core
class Point2D:
    def __init__(self, x: float, y: float) -> None:
        assert all(isinstance(v, Real) and not isinstance(v, bool) for v in (x, y)), (x, y)
        self.x, self.y = x, y


# --------------------------------------------------------------- arivis_objects
class Polygon:
    def __init__(self) -> None:
        self.contour: list[Point2D] | None = None

    def set_contour(self, points: list) -> None:
        assert isinstance(points, list) and len(points) >= 3, "set_contour takes a list of >= 3 Point2D"
        assert all(isinstance(p, Point2D) for p in points), "set_contour takes Point2D objects"
        self.contour = points


class Segment:
    def __init__(self) -> None:
        self.polygons: list[tuple[Polygon, int]] = []
        self.timepoint: int | None = None
        self.tags: list[str] = []
        self.color: Any = None

    def add_polygon(self, polygon: Polygon, z: int) -> None:
        assert isinstance(polygon, Polygon) and polygon.contour is not None, "add_polygon takes a filled Polygon"
        assert _is_int(z), f"add_polygon z must be an int, got {z!r}"
        self.polygons.append((polygon, z))

    def set_timepoint(self, t: int) -> None:
        assert _is_int(t), f"set_timepoint takes an int, got {t!r}"
        self.timepoint = t

    def add_tag(self, tag: str) -> None:
        assert isinstance(tag, str), f"add_tag takes a str, got {tag!r}"
        self.tags.append(tag)

    def set_color(self, color: Any) -> None:
        self.color = color

    @property
    def z(self) -> int:
        return self.polygons[0][1]

    def vertices(self) -> list[tuple[float, float]]:
        """``(x, y)`` of the (single) polygon, for assertions."""
        return [(p.x, p.y) for p in self.polygons[0][0].contour]


class ValueDescriptor:
    TYPE_FLOAT = "TYPE_FLOAT"
    TYPE_STRING = "TYPE_STRING"

    def __init__(self) -> None:
        self.name: str | None = None
        self.type: str | None = None

    def set_name(self, name: str) -> None:
        assert isinstance(name, str) and name, f"set_name takes a non-empty str, got {name!r}"
        self.name = name

    def get_name(self) -> str:
        return self.name

    def set_type(self, kind: str) -> None:
        assert kind in (self.TYPE_FLOAT, self.TYPE_STRING), f"set_type takes a TYPE_ constant, got {kind!r}"
        self.type = kind


class FeatureDescriptor:
    def __init__(self) -> None:
        self.name: str | None = None
        self.values: list[ValueDescriptor] = []

    def set_name(self, name: str) -> None:
        assert isinstance(name, str) and name, f"set_name takes a non-empty str, got {name!r}"
        self.name = name

    def get_name(self) -> str:
        return self.name

    def add_value(self, value: ValueDescriptor) -> None:
        assert isinstance(value, ValueDescriptor) and value.name and value.type, "add_value takes a named, typed ValueDescriptor"
        self.values.append(value)

    def get_values(self) -> list[ValueDescriptor]:
        return list(self.values)


class Feature:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def set_value(self, name: str, value: Any) -> None:
        assert isinstance(name, str), f"set_value takes (name, value), got name {name!r}"
        self.values[name] = value


class Store:
    DOCUMENT_STORE = "DOCUMENT_STORE"

    def __init__(self) -> None:
        self.objects: list[Segment] = []
        self.descriptors: dict[str, FeatureDescriptor] = {}
        self.features: dict[tuple[int, str], dict[str, Any]] = {}   # (id(segment), descriptor) -> values

    def add_object(self, segment: Segment) -> None:
        assert isinstance(segment, Segment) and segment.polygons, "add_object takes a Segment with a polygon"
        self.objects.append(segment)

    def get_feature_descriptors(self) -> list[FeatureDescriptor]:
        return list(self.descriptors.values())

    def get_feature_descriptor(self, name: str) -> FeatureDescriptor | None:
        return self.descriptors.get(name)

    def create_stored_feature(self, descriptor: FeatureDescriptor) -> bool:
        assert isinstance(descriptor, FeatureDescriptor) and descriptor.name and descriptor.values, \
            "create_stored_feature takes a named FeatureDescriptor with values"
        if descriptor.name in self.descriptors:
            return False
        self.descriptors[descriptor.name] = descriptor
        return True

    def set_feature_for_object(self, feature: Feature, descriptor: FeatureDescriptor, segment: Segment) -> None:
        assert isinstance(feature, Feature), "set_feature_for_object(feature, descriptor, object): feature first"
        assert descriptor is self.descriptors.get(descriptor.name), "descriptor must be a stored feature"
        assert any(segment is o for o in self.objects), "the object must be in this store"
        names = {v.name for v in descriptor.values}
        assert set(feature.values) <= names, f"values {set(feature.values)} not in the descriptor's {names}"
        self.features[(id(segment), descriptor.name)] = dict(feature.values)

    def features_of(self, segment: Segment) -> dict[str, Any]:
        """``{value name: value}`` over every descriptor set on ``segment``, for assertions."""
        found: dict[str, Any] = {}
        for (key, _), values in self.features.items():
            if key == id(segment):
                found.update(values)
        return found


# ------------------------------------------------------------- arivis_operation
@dataclass
class Bounds:
    x1: int
    x2: int
    y1: int
    y2: int
    z1: int
    z2: int
    t1: int


class FakeInput:
    """Serves planes of ``stack`` (Z, Y, X in host coordinates) at time point ``bounds.t1``."""

    def __init__(self, stack: np.ndarray, bounds: Bounds, leading_axis: bool = False,
                 channels: int = 1) -> None:
        self.stack, self.bounds, self.leading_axis, self.channels = stack, bounds, leading_axis, channels
        self.reads: list[tuple[tuple, int, int]] = []

    def get_bounds(self) -> Bounds:
        return self.bounds

    def read_imagedata(self, region: Any, channel: int, timepoint: int) -> np.ndarray:
        x, y, z, w, h = check_region(region)
        assert _is_int(channel) and 0 <= channel < self.channels, f"channel {channel!r}"
        assert _is_int(timepoint) and timepoint == self.bounds.t1, f"timepoint {timepoint!r}"
        self.reads.append((region, channel, timepoint))
        if not (0 <= z < len(self.stack) and y + h <= self.stack.shape[1] and x + w <= self.stack.shape[2]):
            raise IndexError(f"region {region!r} outside the image")
        plane = self.stack[z, y:y + h, x:x + w].copy()
        return plane[np.newaxis] if self.leading_axis else plane


class FakeOutput:
    """Stores written planes by host ``(z, channel, timepoint)``, and added objects."""

    def __init__(self) -> None:
        self.writes: list[tuple[tuple, int, int]] = []
        self.planes: dict[tuple[int, int, int], np.ndarray] = {}
        self.objects: list[Segment] = []

    def write_imagedata(self, array: np.ndarray, region: Any, channel: int, timepoint: int) -> None:
        x, y, z, w, h = check_region(region)
        assert isinstance(array, np.ndarray), f"write_imagedata takes a numpy array, got {type(array)}"
        assert array.shape in ((h, w), (1, h, w)), f"array shape {array.shape} does not fit region {region!r}"
        assert _is_int(channel) and _is_int(timepoint), (channel, timepoint)
        self.writes.append((region, channel, timepoint))
        self.planes[(z, channel, timepoint)] = array.copy()

    def add_object(self, segment: Segment) -> None:
        assert isinstance(segment, Segment) and segment.polygons, "add_object takes a Segment with a polygon"
        self.objects.append(segment)


class FakeContext:
    def __init__(self, input: FakeInput, output: FakeOutput | None = None) -> None:
        self.input, self.output = input, output or FakeOutput()
        self.progress: list[int] = []

    def get_input(self) -> FakeInput:
        return self.input

    def get_output(self) -> FakeOutput:
        return self.output

    def notify_progress(self, percent: int) -> None:
        assert isinstance(percent, Real) and 0 <= percent <= 100, f"percent {percent!r}"
        self.progress.append(percent)


def make_context(stack: np.ndarray, bounds: Bounds, leading_axis: bool = False,
                 channels: int = 1) -> FakeContext:
    return FakeContext(FakeInput(stack, bounds, leading_axis, channels))


# ------------------------------------------------------------------------ arivis
class FakeImageset:
    def __init__(self, pixel_size: tuple[float, float] = (0.5, 0.25)) -> None:
        self.pixel_size = pixel_size

    def get_pixel_size(self) -> list[float]:
        return list(self.pixel_size)


class FakeDocument:
    def __init__(self, imageset: FakeImageset) -> None:
        self.imageset, self.store = imageset, Store()

    def get_default_imageset(self) -> FakeImageset:
        return self.imageset

    def get_store(self, imageset: FakeImageset, kind: str) -> Store:
        assert imageset is self.imageset and kind == Store.DOCUMENT_STORE, (imageset, kind)
        return self.store


class FakeViewer:
    def __init__(self, document: FakeDocument) -> None:
        self.document = document

    def get_document(self) -> FakeDocument:
        return self.document

    def get_imageset(self) -> FakeImageset:
        return self.document.imageset


@dataclass
class Arivis:
    """The installed fake modules and what they hand out; set ``context`` per test."""

    context: FakeContext | None = None
    viewer: FakeViewer = field(default_factory=lambda: FakeViewer(FakeDocument(FakeImageset())))
    modules: dict[str, types.ModuleType] = field(default_factory=dict)


def install(monkeypatch: pytest.MonkeyPatch) -> Arivis:
    """Put fake ``arivis``, ``arivis_core``, ``arivis_objects``, ``arivis_operation`` in sys.modules."""
    state = Arivis()

    class Operation:
        @staticmethod
        def get_context() -> FakeContext:
            assert state.context is not None, "no operation is running"
            return state.context

    class App:
        @staticmethod
        def get_active_viewer() -> FakeViewer:
            return state.viewer

    contents = {"arivis_core": {"Point2D": Point2D},
                "arivis_objects": {"Polygon": Polygon, "Segment": Segment, "Store": Store,
                                   "FeatureDescriptor": FeatureDescriptor,
                                   "ValueDescriptor": ValueDescriptor, "Feature": Feature},
                "arivis_operation": {"Operation": Operation},
                "arivis": {"App": App}}
    for name, members in contents.items():
        module = types.ModuleType(name)
        module.__dict__.update(members)
        monkeypatch.setitem(sys.modules, name, module)
        state.modules[name] = module
    return state


@pytest.fixture
def arivis(monkeypatch: pytest.MonkeyPatch) -> Arivis:
    """The fake arivis modules, installed for one test."""
    return install(monkeypatch)
