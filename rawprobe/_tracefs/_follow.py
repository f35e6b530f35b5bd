"""Following a command's process tree in the samples of host-wide events (tracefs backend).

Per-task events inherited by children lose the first calls of a child that runs before its
copy of the event is in place. So a traced command's probes are host-wide, and the buffers'
owners also record every fork and exit (``task``): a sample is kept when its process is the
command or descends from it. Records are merged across CPUs by time, and one is judged only
once everything stamped before it can have been read: a record is written right after it is
stamped, with preemption off, so whatever was stamped a millisecond before a read began is in
its buffer by then. No fork is ever seen after its child's first call.
"""

from __future__ import annotations

from .._plan.events import Event

__all__ = ["ProcessTree"]

# How long before a read a record must have been stamped to be judged in it.
_SETTLED_NS = 1_000_000
_TASK, _SAMPLE = 0, 1  # at one time, a fork is judged before a sample


class ProcessTree:
    """The command and its descendants, and the records read but not yet judged.

    Args:
        root: The command's pid.
    """

    def __init__(self, root: int) -> None:
        self.members = {root}
        self.pending: list[tuple[int, int, Event | tuple[bool, int, int]]] = []
        self.draining = False  # once detached, everything read is judged at once

    def judge(self, events: list[Event], tasks: list[tuple[int, bool, int, int]],
              read_at: int) -> tuple[list[Event], list[int]]:
        """The samples of the tree, in time order, among those read (and earlier ones held
        back); what was stamped too close to ``read_at`` waits for the next read.

        Args:
            events: Samples just decoded.
            tasks: ``(time, forked, pid, parent)`` of the forks and exits just read.
            read_at: CLOCK_MONOTONIC nanoseconds when the read began.

        Returns:
            The tree's samples, and the event ids of samples of other processes (dropped).
        """
        pending = self.pending
        pending += [(event.ts_ns, _SAMPLE, event) for event in events]
        pending += [(time_ns, _TASK, (forked, pid, parent))
                    for time_ns, forked, pid, parent in tasks]
        pending.sort(key=lambda item: (item[0], item[1]))
        horizon = read_at - _SETTLED_NS
        cut = len(pending) if self.draining else next(
            (index for index, item in enumerate(pending) if item[0] >= horizon), len(pending))
        kept: list[Event] = []
        strangers: list[int] = []
        members = self.members
        for _time, kind, item in pending[:cut]:
            if kind == _TASK:  # an Event is a tuple too: tell them apart by kind
                forked, pid, parent = item
                if forked and parent in members:
                    members.add(pid)
                elif not forked:
                    members.discard(pid)  # its pid may be reused by a stranger
            elif isinstance(item, Event):
                if item.pid in members:
                    kept.append(item)
                else:
                    strangers.append(item.event_id)
        del pending[:cut]
        return kept, strangers
