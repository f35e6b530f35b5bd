"""Events as a timeline: which events open and close slices, written as Chrome trace events
(:class:`~rawprobe._output.traceevents.TraceEventWriter`) for the Perfetto UI.

- An entry probe at a function's first instruction, in a run that also has a return probe on
  that function (the same file and offset), and only one of each, opens a slice named after
  the entry event; the return closes it, on the same thread. The slice's ``args`` are the
  entry's fields, merged with the return's (the return value).
- An event that carries its own duration, an integer field ``duration_ns`` (as ``sys:`` events
  pair a system call's entry and exit), is a whole slice that ends at the event's time.
- Every other event is an instant on its thread.
- Processes are named after their main thread's ``comm``, threads after their own (metadata
  events, written again when a thread's name changes, at ``exec``).

Fields are exactly the ``args`` of ``--json`` (:meth:`EventFormatter.json_args`); timestamps
are the events' CLOCK_MONOTONIC nanoseconds, written in microseconds from ``base_ns`` (in
``otherData`` with ``epoch_offset_ns``: ``ts * 1000 + base_ns + epoch_offset_ns`` is the time
since the epoch, in nanoseconds, as ``--json`` writes ``ts_ns``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from .._plan.events import Event
from .._plan.session import Plan
from .format import EventFormatter
from .traceevents import TraceEventWriter

__all__ = ["Timeline", "slice_roles"]

BEGIN, END = "begin", "end"


def slice_roles(plan: Plan) -> dict[str, tuple[str, str]]:
    """``{event name: (BEGIN or END, slice name)}`` for the entry and return events that pair
    up (see the module's notes); events not listed are instants."""
    sites: dict[tuple[str, int], tuple[set[str], set[str]]] = {}
    for event in plan.events:
        if event.role:
            continue  # the halves of a latency measurement aggregate; they are never events
        entries, returns = sites.setdefault((event.path, event.file_offset), (set(), set()))
        (returns if event.retprobe else entries).add(event.name)
    roles: dict[str, tuple[str, str]] = {}
    for entries, returns in sites.values():
        if len(entries) == 1 and len(returns) == 1:
            (entry,), (exit_,) = entries, returns
            roles[entry] = (BEGIN, entry)
            roles[exit_] = (END, entry)
    return roles


class Timeline:
    """Writes events to a trace-event document as they come.

    Args:
        stream: Where the JSON goes (opened for text; not closed here).
        plan: The run's plan (which events pair up).
        formatter: Formats the fields (the same one ``--json`` uses, for symbols).
        base_ns: The CLOCK_MONOTONIC time written as 0 (when tracing started).
        metadata: Extra ``otherData`` entries (the command line).
    """

    def __init__(self, stream: TextIO, plan: Plan, formatter: EventFormatter, *,
                 base_ns: int, metadata: Mapping[str, Any] | None = None) -> None:
        self.formatter = formatter
        self.roles = slice_roles(plan)
        self.writer = TraceEventWriter(stream, base_ns=base_ns, metadata={
            "clock": "CLOCK_MONOTONIC",
            "base_ns": base_ns,
            "epoch_offset_ns": formatter.clock.offset_ns,
            **(metadata or {}),
        })
        self._named: set[int] = set()

    def write(self, events: Iterable[Event]) -> None:
        writer, roles, args_of = self.writer, self.roles, self.formatter.json_args
        for event in events:
            pid, tid, comm = event.pid, event.tid, event.comm
            if tid == pid or pid not in self._named:
                # The main thread's name is the process's; until it is seen, the first
                # thread's stands in.
                self._named.add(pid)
                writer.name_process(pid, comm)
            writer.name_thread(pid, tid, comm)
            name = event.layout.event
            args = args_of(event)
            role = roles.get(name)
            if role is not None:
                kind, slice_name = role
                if kind == BEGIN:
                    writer.begin(slice_name, event.ts_ns, pid, tid, args)
                else:
                    writer.end(slice_name, event.ts_ns, pid, tid, args)
                continue
            duration = args.get("duration_ns")
            if isinstance(duration, int) and not isinstance(duration, bool) and duration >= 0:
                writer.complete(name, event.ts_ns - duration, duration, pid, tid, args)
            else:
                writer.instant(name, event.ts_ns, pid, tid, args)

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        """End the open slices (marked unfinished) and the document."""
        self.writer.close(summary=summary)
