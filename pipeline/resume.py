"""Continuing a stopped run: which planes are left, and the state to continue from.

The host keeps the journal (which planes are complete and the state recorded with
the last one); the loop only asks it. What the pipeline itself must carry over is
small: the next label ID, the last plane's labels for the modes that link planes
(read back from the output), and the tables' sizes and open tracks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..host_api.base import Host
from .label_ids import LabelNumbering

Step = tuple[int, int]


@dataclass
class Resume:
    """What an earlier run of this output completed."""

    done: dict[Step, int] = field(default_factory=dict)      # (t, z) -> nuclei
    state: dict = field(default_factory=dict)

    def left(self, steps: Sequence[Step]) -> list[Step]:
        """The steps still to do, in walk order (the complete ones are always a prefix)."""
        return [step for step in steps if step not in self.done]

    def measurements(self) -> dict | None:
        """The tables' part of the state, with the complete planes (None for a fresh run)."""
        if not self.done:
            return None
        return {**self.state.get("measurements", {}), "planes": [list(s) for s in self.done]}


def resume_for(host: Host, steps: Sequence[Step]) -> Resume:
    """The host's record of a stopped run, limited to this run's steps (said in one line)."""
    done = {step: n for step, n in host.completed_planes().items() if step in set(steps)}
    resume = Resume(done, host.resume_state() if done else {})
    if done:
        host.log(f"Resuming: {len(done)} of {len(steps)} planes already done.")
    return resume


def restore_numbering(numbering: LabelNumbering, resume: Resume, host: Host) -> None:
    """Label IDs continue where the earlier run stopped; linking modes see its last plane."""
    if not resume.done:
        return
    t, z = list(resume.done)[-1]
    previous = (t, z, host.read_output_plane(t, z)) if numbering.mode in ("track_t", "link_z") else None
    numbering.restore(resume.state.get("numbering", {}), previous)


def plane_state(numbering: LabelNumbering, tables) -> dict:
    """The state recorded with each complete plane."""
    state = {"numbering": numbering.state()}
    if tables is not None:
        state["measurements"] = tables.state()
    return state
