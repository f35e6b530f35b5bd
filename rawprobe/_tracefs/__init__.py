"""The tracefs backend: the kernel's own uprobe_events, read through perf ring buffers.

This version of rawprobe has no tracefs backend yet; the constructor below is what the Tracer
calls.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._backend import PlannedUprobe
from .._errors import UsageError

__all__ = ["TracefsSession"]


class TracefsSession:
    """A run of the tracefs backend (implements :class:`rawprobe._backend.Session`)."""

    def __init__(
        self,
        uprobes: Sequence[PlannedUprobe],
        *,
        ring_size: int,
        string_size: int,
        follow: bool,
    ) -> None:
        raise UsageError("the tracefs backend is not available in this version; use --backend bpf")
