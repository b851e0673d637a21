"""arivis Vision4D / arivis Pro as a host: every call into the arivis Python API lives here.

There is no public API reference (it ships with the software's help), so this module
uses only the call shapes that public scripts show (``shared/docs/arivis-python-api.md``).
arivis modules are imported inside functions, so importing this module never needs arivis.

Two routes:

- ``OperationHost``: a "Python Image Filter" operation in an analysis pipeline. The
  host hands over one region (x, y, a range of planes, one time point); every call is
  grounded in public operation scripts.
- ``ScriptEditorHost``: a script run from the Script Editor on the active viewer's image
  set. Objects and pixel size are grounded; image-set sizes, plane I/O and channel
  creation are not, and each is one function below raising ``UnverifiedHostCall``.

Places to check against the installed API help, first to last: ``read_bounds``,
``imageset_dimensions``, ``viewer_time_point``, ``channel_names``,
``read_imageset_plane``, ``create_output_channel``, ``write_imageset_plane``,
``_host_cancel_requested``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .base import DatasetInfo, Host, HostError, Nucleus, OutputTarget
from .vision4d_values import ADAPTER_PATH, Extent, OutputChannelExists, UnverifiedHostCall, unverified_call, as_plane

__all__ = ["Extent", "OperationHost", "ScriptEditorHost", "UnverifiedHostCall",
           "OutputChannelExists", "read_bounds", "nucleus_segment", "SegmentFeatures"]


# ---------------------------------------------------------------- shared helpers
def read_bounds(bounds: Any) -> Extent:
    """The operation's region from ``context.get_input().get_bounds()``.

    CHECK FIRST against the installed API help. Public scripts compute
    ``width = x2 - x1`` (so x2, y2 would be exclusive) yet loop planes ``z1..z2``
    inclusive; if x2/y2 turn out inclusive, add 1 to width and height here, and only here.
    """
    extent = Extent(x1=int(bounds.x1), y1=int(bounds.y1), width=int(bounds.x2) - int(bounds.x1),
                    height=int(bounds.y2) - int(bounds.y1), z1=int(bounds.z1), z2=int(bounds.z2),
                    time_point=int(bounds.t1))
    if extent.width <= 0 or extent.height <= 0 or extent.size_z <= 0:
        raise ValueError(f"Operation bounds give an empty region ({extent}); check read_bounds() "
                         f"in {ADAPTER_PATH} against the installed API help")
    return extent


#: Added to StarDist's vertices (pixel k's centre at k) for arivis' Point2D. ImageJ needs +0.5 (its
#: integers are pixel corners); whether arivis' are corners or centres is not public. 0.0 takes
#: them as centres, as the public ROI-import script passes label-image coordinates; the one place
#: to change once checked against the installed API (filled in arivis, an outline must cover its label).
ARIVIS_VERTEX_OFFSET = 0.0


def nucleus_segment(nucleus: Nucleus, z_host: int, time_point: int, tag: str,
                    x_offset: int = 0, y_offset: int = 0):
    """One arivis ``Segment`` holding the nucleus outline on plane ``z_host``.

    The contour's ``(y, x)`` rows become ``Point2D(x + x_offset, y + y_offset)``, i.e.
    image coordinates, as the public ROI-import scripts pass them (``ARIVIS_VERTEX_OFFSET``).
    """
    from arivis_core import Point2D
    from arivis_objects import Polygon, Segment

    polygon = Polygon()
    shift = ARIVIS_VERTEX_OFFSET
    polygon.set_contour([Point2D(float(x) + x_offset + shift, float(y) + y_offset + shift)
                         for y, x in np.asarray(nucleus.contour, dtype=float)])
    segment = Segment()
    segment.add_polygon(polygon, int(z_host))
    segment.set_timepoint(int(time_point))
    segment.add_tag(tag)
    return segment


class SegmentFeatures:
    """Measurements attached to stored segments as arivis features: one descriptor each.

    Call shapes of isvecova/Implant_layers_analysis ``arivis/build_implant_layers_v1.py``
    (arivis Pro 4.4): a ``FeatureDescriptor`` named ``DESCRIPTION`` holding one float
    ``ValueDescriptor`` named ``NAME``, made once with ``store.create_stored_feature``
    unless ``store.get_feature_descriptors()`` lists it already; per object a
    ``Feature`` with ``set_value(NAME, value)`` and
    ``store.set_feature_for_object(feature, descriptor, segment)``. Descriptions are
    ``"TAG: Area (um2)"``, so runs with other models or channel names stay apart.
    """

    def __init__(self, store: Any, tag: str) -> None:
        self.store, self.tag = store, tag
        self._descriptors: dict[str, Any] = {}

    def _descriptor(self, name: str) -> Any:
        if name not in self._descriptors:
            import arivis_objects as objects

            description = f"{self.tag}: {name}"
            known = {d.get_name() for d in self.store.get_feature_descriptors()}
            if description not in known:
                descriptor = objects.FeatureDescriptor()
                descriptor.set_name(description)
                value = objects.ValueDescriptor()
                value.set_name(name)
                value.set_type(objects.ValueDescriptor.TYPE_FLOAT)
                descriptor.add_value(value)
                if not self.store.create_stored_feature(descriptor):
                    raise HostError(f"arivis refused to create the feature {description!r} "
                                    "(store.create_stored_feature returned False)")
            self._descriptors[name] = self.store.get_feature_descriptor(description)
        return self._descriptors[name]

    def attach(self, segment: Any, features: Mapping[str, float]) -> None:
        """Set every finite value of ``features`` on ``segment`` (already in the store)."""
        import arivis_objects as objects

        for name, value in features.items():
            if not np.isfinite(value):
                continue
            feature = objects.Feature()
            feature.set_value(name, float(value))
            self.store.set_feature_for_object(feature, self._descriptor(name), segment)


def _host_cancel_requested() -> bool:
    """No public script shows a cancel/abort check; CHECK the installed API help for one."""
    return False


# ------------------------------------------------------------ pipeline operation
class OperationHost(Host):
    """A "Python Image Filter" operation: the region the pipeline hands over, one time point.

    The pipeline sees the region as its own small stack: plane ``z`` is host plane
    ``z1 + z``; its single time point 0 is host time point ``t1`` (so both
    CURRENT_TIME_POINT settings segment exactly the operation's time point, and
    FIRST_PLANE/LAST_PLANE count from the region's first plane).

    INPUT_CHANNEL is passed unchanged as ``read_imagedata``'s channel: the operation's
    input holds the channel wired into the operation, which public filters read as
    channel 0. ``input_channels`` says how many channels that input holds (default 1,
    so INPUT_CHANNEL must be 0 unless the installed help says otherwise).
    """

    def __init__(self, context: Any, input_channels: int = 1) -> None:
        self.context = context
        self.input = context.get_input()
        self.output = context.get_output()
        self.extent = read_bounds(self.input.get_bounds())
        self.input_channels = int(input_channels)
        self._info: DatasetInfo | None = None
        self._first_plane: np.ndarray | None = None   # read for the dtype, served once
        self._leading_axis = False
        self._percent = -1

    @classmethod
    def from_running_operation(cls, input_channels: int = 1) -> OperationHost:
        """The host of the operation this script runs in."""
        import arivis_operation
        return cls(arivis_operation.Operation.get_context(), input_channels)

    def _read(self, channel: int, z: int) -> np.ndarray:
        e = self.extent
        data = self.input.read_imagedata(e.region(e.z1 + z), int(channel), e.time_point)
        plane, self._leading_axis = as_plane(data, (e.height, e.width), "read_imagedata")
        return plane

    def dataset_info(self) -> DatasetInfo:
        """The region as a one-time-point stack; dtype from its first plane (kept for reuse)."""
        if self._info is None:
            e = self.extent
            self._first_plane = self._read(0, 0)
            self._info = DatasetInfo(
                size_t=1, size_z=e.size_z, size_c=self.input_channels, size_y=e.height,
                size_x=e.width, dtype=self._first_plane.dtype,
                channel_names=tuple(f"operation input {c}" for c in range(self.input_channels)),
                active_time_point=0, source="the operation input")
            self.log(f"Operation region: x {e.x1}+{e.width}, y {e.y1}+{e.height}, planes "
                     f"{e.z1}..{e.z2}, time point {e.time_point}; plane z below is host plane {e.z1} + z.")
        return self._info

    def read_plane(self, channel: int, time_point: int, z: int) -> np.ndarray:
        info = self.dataset_info()
        if time_point != 0 or not 0 <= z < info.size_z or not 0 <= channel < info.size_c:
            raise IndexError(f"Plane c={channel} t={time_point} z={z} is outside the operation's "
                             f"region (c 0..{info.size_c - 1}, t 0, z 0..{info.size_z - 1})")
        if channel == 0 and z == 0 and self._first_plane is not None:
            plane, self._first_plane = self._first_plane, None
            return plane
        return self._read(channel, z)

    def add_channel(self, name: str, dtype: np.dtype,
                    description: Mapping[str, str] | None = None) -> OutputTarget:
        """The operation's output layer is the output channel; the host pipeline names it."""
        self.log(f"Labels ({np.dtype(dtype).name}) go to the operation output; its name in the "
                 f"image set is the pipeline's output name, not OUTPUT_CH_NAME ({name!r}).")
        return OutputTarget(location="operation output", channel=0)

    def write_plane(self, channel: int, time_point: int, z: int, labels: np.ndarray) -> None:
        """Output layer channel 0, as public filters write it, shaped like the input read."""
        e = self.extent
        labels = np.asarray(labels)
        if labels.shape != (e.height, e.width):
            raise ValueError(f"Label plane has shape {labels.shape}, expected {(e.height, e.width)}")
        if self._leading_axis:
            labels = labels[np.newaxis]
        self.output.write_imagedata(labels, e.region(e.z1 + z), 0, e.time_point)

    def add_objects(self, time_point: int, z: int, nuclei: Sequence[Nucleus], tag: str) -> None:
        """One segment per nucleus in the operation output, in image coordinates."""
        e = self.extent
        for nucleus in nuclei:
            self.output.add_object(nucleus_segment(nucleus, e.z1 + z, e.time_point + time_point,
                                                   tag, e.x1, e.y1))

    def report_progress(self, done: int, total: int) -> None:
        """``notify_progress`` in whole percent, held below 100 until ``finish``."""
        self._notify(min(99, 100 * done // max(total, 1)))

    def _notify(self, percent: int) -> None:
        if percent > self._percent:
            self._percent = percent
            self.context.notify_progress(percent)

    def allows_worker_processes(self) -> bool:   # an embedded interpreter: no spawning
        return False

    def cancelled(self) -> bool:
        return _host_cancel_requested()

    def finish(self, completed: bool) -> OutputTarget:
        if completed:
            self._notify(100)
        notes = [] if completed else ["Planes written before the stop stay in the operation output."]
        return OutputTarget(location="operation output", channel=0, complete=completed, notes=notes)


# ------------------------------------------------- Script Editor: unverified calls
@dataclass(frozen=True)
class ImagesetDimensions:
    """Sizes and pixel type of an image set."""

    size_t: int
    size_z: int
    size_c: int
    size_y: int
    size_x: int
    dtype: np.dtype


def imageset_dimensions(imageset: Any) -> ImagesetDimensions:
    """CHECK: the image set's T, Z, C, Y, X sizes and pixel type (no public call)."""
    raise unverified_call("Image set dimensions (T, Z, C, Y, X sizes, pixel type)", "imageset_dimensions")


def viewer_time_point(viewer: Any) -> int:
    """CHECK: the viewer's active time point, 0-based (no public call)."""
    raise unverified_call("The viewer's active time point", "viewer_time_point")


def channel_names(imageset: Any) -> tuple[str, ...]:
    """CHECK: the names of the image set's channels, in channel order (no public call)."""
    raise unverified_call("Listing the image set's channel names", "channel_names")


def read_imageset_plane(imageset: Any, channel: int, time_point: int, z: int) -> np.ndarray:
    """CHECK: one ``(Y, X)`` plane of the image set (no public call)."""
    raise unverified_call("Reading one plane of an image set", "read_imageset_plane")


def create_output_channel(document: Any, imageset: Any, name: str, dtype: np.dtype) -> int:
    """CHECK: add an empty channel ``name`` to the image set, return its index (no public call)."""
    raise unverified_call("Creating a new named channel", "create_output_channel")


def write_imageset_plane(imageset: Any, channel: int, time_point: int, z: int,
                         labels: np.ndarray) -> None:
    """CHECK: write one ``(Y, X)`` plane into channel ``channel`` (no public call)."""
    raise unverified_call("Writing one plane into a channel", "write_imageset_plane")


# ------------------------------------------------------------------ Script Editor
class ScriptEditorHost(Host):
    """The active viewer's image set, from a script run in the Script Editor.

    Progress is printed as a percent line every 10 % (the Script Editor console is the
    only display a script has; the pipeline prints one line per plane already).
    """

    def __init__(self, viewer: Any, document: Any, imageset: Any, overwrite: bool = False,
                 time_point: int | None = None) -> None:
        self.viewer, self.document, self.imageset = viewer, document, imageset
        self.overwrite = overwrite
        self.time_point = time_point
        self._info: DatasetInfo | None = None
        self._store: Any = None
        self._features: SegmentFeatures | None = None
        self._channel = -1
        self._location = "the active image set"
        self._notes: list[str] = []
        self._shown = 0            # tens of percent already printed

    @classmethod
    def from_active_viewer(cls, overwrite: bool = False, time_point: int | None = None) -> ScriptEditorHost:
        """The image set shown in the active viewer; ``time_point`` None = the viewer's."""
        from arivis import App
        viewer = App.get_active_viewer()
        return cls(viewer, viewer.get_document(), viewer.get_imageset(), overwrite, time_point)

    def dataset_info(self) -> DatasetInfo:
        if self._info is None:
            dims = imageset_dimensions(self.imageset)
            pixel_size = self.imageset.get_pixel_size()
            active = viewer_time_point(self.viewer) if self.time_point is None else self.time_point
            self._info = DatasetInfo(
                size_t=dims.size_t, size_z=dims.size_z, size_c=dims.size_c, size_y=dims.size_y,
                size_x=dims.size_x, dtype=np.dtype(dims.dtype),
                channel_names=tuple(channel_names(self.imageset)),
                pixel_size_um=(float(pixel_size[0]), float(pixel_size[1]), None),
                active_time_point=int(active), source="the active image set")
        return self._info

    def read_plane(self, channel: int, time_point: int, z: int) -> np.ndarray:
        plane, _ = as_plane(read_imageset_plane(self.imageset, channel, time_point, z),
                            self.dataset_info().plane_shape, "read_imageset_plane")
        return plane

    def check_output(self, name: str, description: Mapping[str, str] | None = None) -> None:
        """An existing channel ``name`` stops the run (before the model loads) unless OVERWRITE."""
        if name in tuple(channel_names(self.imageset)) and not self.overwrite:
            raise OutputChannelExists(
                f"OUTPUT_CH_NAME = {name!r}: the image set has a channel of that name already; "
                "choose another name or set OVERWRITE = True")

    def add_channel(self, name: str, dtype: np.dtype,
                    description: Mapping[str, str] | None = None) -> OutputTarget:
        """A new channel ``name``; an existing one is reused only with OVERWRITE."""
        self.check_output(name)
        names = tuple(channel_names(self.imageset))
        if name in names:
            self._channel = names.index(name)
            self._notes.append(f"Channel {name!r} was overwritten; planes outside the selection "
                               "keep their earlier labels.")
        else:
            self._channel = int(create_output_channel(self.document, self.imageset, name, np.dtype(dtype)))
        self._location = f"channel {name!r} of the active image set"
        return OutputTarget(location=self._location, channel=self._channel)

    def write_plane(self, channel: int, time_point: int, z: int, labels: np.ndarray) -> None:
        if channel != self._channel:
            raise ValueError(f"Channel {channel} is not the output channel {self._channel}")
        write_imageset_plane(self.imageset, channel, time_point, z, np.asarray(labels))

    def add_objects(self, time_point: int, z: int, nuclei: Sequence[Nucleus], tag: str) -> None:
        """One segment per nucleus in the document's object store, with its measurements."""
        if self._store is None:
            from arivis_objects import Store
            self._store = self.document.get_store(self.imageset, Store.DOCUMENT_STORE)
            self._features = SegmentFeatures(self._store, tag)
        for nucleus in nuclei:
            segment = nucleus_segment(nucleus, z, time_point, tag)
            self._store.add_object(segment)
            if nucleus.features:
                self._features.attach(segment, nucleus.features)

    def keeps_features(self) -> bool:
        """Measurements go onto the stored segments (files only with MEASUREMENTS_DIR)."""
        return True

    def report_progress(self, done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent // 10 > self._shown:
            self._shown = percent // 10
            self.log(f"Progress: {percent}% ({done} of {total} planes)")

    def allows_worker_processes(self) -> bool:   # an embedded interpreter: no spawning
        return False

    def cancelled(self) -> bool:
        return _host_cancel_requested()

    def finish(self, completed: bool) -> OutputTarget:
        stopped = [] if completed else [f"Planes written before the stop stay in {self._location}."]
        return OutputTarget(self._location, self._channel, complete=completed, notes=self._notes + stopped)
