"""The journal beside an output: which planes are complete, and what made them.

Why: a run killed with ``kill -9`` leaves ``OUTPUT.partial`` whose unwritten planes
look like "no nuclei". The journal (``OUTPUT.journal``, JSON) lists the planes that
are durable — a plane is added only after its labels were flushed and its table rows
and outlines appended — with the sizes of the files appended to so far and the
run's own state (label numbering, open tracks). It also holds the identity of what
made them: the run record (settings, model and its weights' hash, versions) and the
input's size, modification time and a hash of its first and last planes. A rerun
of the same command resumes from it; anything else refuses to mix.

Each update is written to a temporary file, flushed and renamed over the journal, so
a crash leaves the previous complete journal, never a torn one.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

JOURNAL_SUFFIX = ".journal"
VERSION = 1
#: Settings that change how a run goes, not what it writes: a resume may differ in them.
NOT_IDENTITY = ("setting.overwrite", "setting.workers", "setting.gpu_memory_mb")


def input_identity(path: Path, read_plane: Callable[[int, int, int], np.ndarray],
                   size_c: int, size_t: int, size_z: int) -> dict[str, Any]:
    """Size, modification time and a hash of the first and last planes of the input file."""
    stat = Path(path).stat()
    digest = hashlib.sha256()
    for c, t, z in ((0, 0, 0), (size_c - 1, size_t - 1, size_z - 1)):
        digest.update(np.ascontiguousarray(read_plane(c, t, z)).tobytes())
    return {"file": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "planes_sha256": digest.hexdigest()}


def differences(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``"LABEL_IDS was 'unique', now 'per_plane'"`` for every identity key that differs.

    Keys are flattened (``record.setting.label_ids``, ``input.mtime_ns``) and said in
    the user's words: a setting by its constant's name, the input file as one item.
    """
    found: list[str] = []
    for key in sorted(set(before) | set(now)):
        if before.get(key) == now.get(key):
            continue
        if key.startswith("input."):
            text = f"the input file changed ({key[len('input.'):]})"
        elif key.startswith("record.setting."):
            text = (f"{key[len('record.setting.'):].upper()} was {before.get(key, '(not set)')!r}, "
                    f"now {now.get(key, '(not set)')!r}")
        elif key == "record.model.weights_sha256":
            text = "the model's weights changed"
        else:
            name = key.split(".", 1)[-1]
            text = f"{name} was {before.get(key, '(not set)')!r}, now {now.get(key, '(not set)')!r}"
        if text not in found:
            found.append(text)
    return found


@dataclass
class Journal:
    """What is complete in an output, written atomically after every plane."""

    path: Path
    identity: dict[str, Any]
    planes: list[list[int]] = field(default_factory=list)      # [t, z, nuclei]
    files: dict[str, int] = field(default_factory=dict)         # appended file -> bytes
    state: dict[str, Any] = field(default_factory=dict)         # the pipeline's, opaque here
    prepared: bool = False                                      # input channels copied

    @classmethod
    def load(cls, path: Path) -> Journal | None:
        """The journal at ``path``, or None when there is none or it is not ours."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            return None
        return cls(Path(path), data.get("identity", {}), data.get("planes", []),
                   data.get("files", {}), data.get("state", {}), bool(data.get("prepared")))

    def save(self) -> None:
        """Write atomically: temp file, flush to disk, rename over the journal."""
        data = {"version": VERSION, "identity": self.identity, "prepared": self.prepared,
                "planes": self.planes, "files": self.files, "state": self.state}
        temporary = Path(str(self.path) + ".tmp")
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(data, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)

    def add_plane(self, time_point: int, z: int, nuclei: int, files: Mapping[str, int],
                  state: Mapping[str, Any]) -> None:
        self.planes.append([int(time_point), int(z), int(nuclei)])
        self.files.update(files)
        self.state = dict(state)
        self.save()

    @property
    def done(self) -> dict[tuple[int, int], int]:
        """``{(t, z): nuclei}`` of the complete planes, in the order they were done."""
        return {(t, z): n for t, z, n in self.planes}

    def remove(self) -> None:
        Path(self.path).unlink(missing_ok=True)
        Path(str(self.path) + ".tmp").unlink(missing_ok=True)


def flat_identity(identity: Mapping) -> dict[str, object]:
    """``{"record": {...}, "input": {...}}`` -> ``{"record.k": v, "input.k": v}`` for comparing."""
    flat: dict[str, object] = {}
    for part, values in identity.items():
        for key, value in (values.items() if isinstance(values, Mapping) else [("", values)]):
            flat[f"{part}.{key}" if key else part] = value
    return flat


def identity_uuid(identity: Mapping) -> str:
    """The OME UUID of an output, from what made it: the same run gives the same bytes."""
    import json
    import uuid
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "stardist-v4d:" + json.dumps(identity, sort_keys=True)))
