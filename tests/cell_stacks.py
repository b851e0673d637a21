"""Generated 3D + time stacks of ellipsoidal nuclei with known truth (objects, tracks, divisions).

For the tests of objects and tracking, and ``bench/tracking.py``. Each cell is an
ellipsoid spanning 3-8 Z planes; it moves up to ``max_step`` nuclear radii per time
point; some cells divide (the mother ends, two daughters start beside where it was);
one detection can be dropped (``missed``: a cell absent at one time point, as a
segmentation miss). Cells whose projections overlap are kept apart in Z by at least
one empty plane, so the truth is unambiguous for overlap linking across Z.

``truth`` rows: ``(time_point, cell, parent, z, y, x, ry, rx, rz)``; ``cell`` is the
track ID (a daughter is a new cell with its mother as ``parent``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CellStack:
    labels: np.ndarray            # (T, Z, Y, X) uint16, a cell's track ID in every voxel
    image: np.ndarray             # (T, Z, Y, X) float32, bright nuclei on a dim background
    truth: list[tuple]            # (t, cell, parent, z, y, x, ry, rx, rz) per cell per time point, as drawn
    truth_all: list[tuple]        # the same with the missed detection (a cell that was there, not drawn)
    divisions: list[tuple[int, int, int, int]]   # (time point of the daughters, mother, daughter, daughter)


def _fits(cells, z, y, x, ry, rx, rz, shape, margin=2.0) -> bool:
    size_z, size_y, size_x = shape
    if not (rz <= z <= size_z - 1 - rz and ry + 1 <= y <= size_y - 2 - ry and rx + 1 <= x <= size_x - 2 - rx):
        return False
    for c in cells:
        apart_xy = np.hypot(y - c["y"], x - c["x"]) > max(ry, rx) + max(c["ry"], c["rx"]) + margin
        apart_z = abs(z - c["z"]) > rz + c["rz"] + 1.0
        if not (apart_xy or apart_z):
            return False
    return True


def _draw(labels: np.ndarray, image: np.ndarray, cells, rng) -> None:
    zz, yy, xx = np.mgrid[:labels.shape[0], :labels.shape[1], :labels.shape[2]]
    for c in cells:
        inside = ((zz - c["z"]) / c["rz"]) ** 2 + ((yy - c["y"]) / c["ry"]) ** 2 + ((xx - c["x"]) / c["rx"]) ** 2 <= 1
        labels[inside] = c["id"]
        image[inside] = c["brightness"]


def cell_stack(seed: int = 0, size_t: int = 3, shape: tuple[int, int, int] = (12, 96, 96), n_cells: int = 8,
               max_step: float = 1.0, divisions: int = 0, missed: tuple[int, int] | None = None) -> CellStack:
    """A seeded stack; ``missed = (t, k)`` drops the k-th cell at time point t from the labels."""
    rng = np.random.default_rng(seed)
    cells: list[dict] = []
    next_id = 1
    for _ in range(5000):
        if len(cells) == n_cells:
            break
        rz = float(rng.uniform(1.5, 3.5))                 # 3-8 planes (2 rz + 1, rounded)
        ry, rx = float(rng.uniform(5, 8)), float(rng.uniform(5, 8))
        z, y, x = rng.uniform(rz, shape[0] - 1 - rz), rng.uniform(ry + 1, shape[1] - 2 - ry), \
            rng.uniform(rx + 1, shape[2] - 2 - rx)
        if _fits(cells, z, y, x, ry, rx, rz, shape, margin=2 * max_step * 8 + 4):
            cells.append(dict(id=next_id, parent=0, z=float(z), y=float(y), x=float(x), ry=ry, rx=rx, rz=rz,
                              brightness=float(rng.uniform(0.6, 1.0))))
            next_id += 1
    labels = np.zeros((size_t,) + shape, np.uint16)
    image = np.zeros((size_t,) + shape, np.float32)
    truth, truth_all, division_list = [], [], []
    dividing = set(c["id"] for c in cells[:divisions])
    for t in range(size_t):
        if t > 0:
            moved = []
            for c in cells:
                if t == 1 and c["id"] in dividing:       # divides: two daughters beside the mother
                    angle = rng.uniform(0, np.pi)
                    offset = 0.8 * max(c["ry"], c["rx"])
                    daughters = []
                    for sign in (1, -1):
                        d = dict(c, id=next_id, parent=c["id"], ry=c["ry"] * 0.8, rx=c["rx"] * 0.8,
                                 y=c["y"] + sign * offset * np.sin(angle), x=c["x"] + sign * offset * np.cos(angle))
                        next_id += 1
                        daughters.append(d)
                    division_list.append((t, c["id"], daughters[0]["id"], daughters[1]["id"]))
                    moved += daughters
                    continue
                step = rng.uniform(0, max_step) * min(c["ry"], c["rx"])
                angle = rng.uniform(0, 2 * np.pi)
                y = float(np.clip(c["y"] + step * np.sin(angle), c["ry"] + 1, shape[1] - 2 - c["ry"]))
                x = float(np.clip(c["x"] + step * np.cos(angle), c["rx"] + 1, shape[2] - 2 - c["rx"]))
                moved.append(dict(c, y=y, x=x))
            cells = moved
        shown = [c for k, c in enumerate(cells) if missed is None or (t, k) != missed]
        _draw(labels[t], image[t], shown, rng)
        truth += [(t, c["id"], c["parent"], c["z"], c["y"], c["x"], c["ry"], c["rx"], c["rz"]) for c in shown]
        truth_all += [(t, c["id"], c["parent"], c["z"], c["y"], c["x"], c["ry"], c["rx"], c["rz"]) for c in cells]
    noise = np.random.default_rng(seed + 1).normal(0.05, 0.01, image.shape).astype(np.float32)
    return CellStack(labels, image + noise, truth, truth_all, division_list)
