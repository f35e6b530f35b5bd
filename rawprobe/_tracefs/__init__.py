"""The tracefs backend: the kernel's own uprobe_events, read through perf ring buffers.

rawprobe's probe words are written back in the kernel's syntax (:mod:`._render`), defined in
``uprobe_events`` under a group of the run's own (:mod:`rawprobe._host.tracefs`), opened as
perf tracepoint events whose raw samples land in per-CPU perf ring buffers
(:mod:`._perfbuf`), and decoded with layouts built from each event's ``format`` file
(:mod:`rawprobe._host.eventformat`, :mod:`._decode`) into the same
:class:`~rawprobe._plan.events.Event` objects the BPF backend produces. It needs no
BPF at all: root, perf events and tracefs are enough.
"""

from __future__ import annotations

from .._host.eventformat import EventFormat, FormatField, parse_format
from .._host.tracefs import (
    TRACEFS_MOUNTS,
    Tracefs,
    UprobeDefinition,
    find_tracefs,
    parse_definition,
    parse_definitions,
)
from .._host.tracefs_groups import (
    GROUP_PREFIX,
    GroupOwner,
    owner_alive,
    parse_group,
    process_start_time,
)
from ._render import KernelArg, KernelProbe, definition_line, render_probe
from ._session import TracefsSession

__all__ = [
    "GROUP_PREFIX",
    "TRACEFS_MOUNTS",
    "EventFormat",
    "FormatField",
    "GroupOwner",
    "KernelArg",
    "KernelProbe",
    "Tracefs",
    "TracefsSession",
    "UprobeDefinition",
    "definition_line",
    "find_tracefs",
    "owner_alive",
    "parse_definition",
    "parse_definitions",
    "parse_format",
    "parse_group",
    "process_start_time",
    "render_probe",
]
