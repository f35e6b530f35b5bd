"""What a tracefs session holds, apart from the session itself, and its release: kept
apart so the session's finalizer can free it all without the session."""

from __future__ import annotations

import contextlib
import os
import select
from dataclasses import dataclass, field

from .. import _log
from .._host.perfbuf import PerfBuffer
from .._host.tracefs import Tracefs

__all__ = ["Resources", "release_all", "release_probes"]


@dataclass
class Resources:
    """Everything a session holds, apart from the session (for the finalizer)."""

    tracefs: Tracefs | None = None
    group: str = ""
    defined: list[str] = field(default_factory=list)
    event_fds: list[int] = field(default_factory=list)
    leader_fds: list[int] = field(default_factory=list)
    buffers: list[PerfBuffer] = field(default_factory=list)
    epoll: select.epoll | None = None


def release_probes(resources: Resources) -> None:
    """Close the uprobe events, then remove their definitions (newest first)."""
    fds, resources.event_fds = resources.event_fds, []
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    defined, resources.defined = resources.defined, []
    tracefs = resources.tracefs
    if defined and tracefs is not None:
        try:
            tracefs.remove_group(resources.group)  # every definition, in one write
        except OSError as error:
            _log.warning("removing the uprobe events of group %s failed: %s (run 'rawprobe "
                         "probes --clean' once this process has ended)", resources.group,
                         error)


def release_all(resources: Resources) -> None:
    try:
        release_probes(resources)
    finally:
        if resources.tracefs is not None:
            resources.tracefs.close()
        buffers, resources.buffers = resources.buffers, []
        for buffer in buffers:
            buffer.close()
        leaders, resources.leader_fds = resources.leader_fds, []
        for fd in leaders:
            with contextlib.suppress(OSError):
                os.close(fd)
        if resources.epoll is not None:
            resources.epoll.close()
            resources.epoll = None
