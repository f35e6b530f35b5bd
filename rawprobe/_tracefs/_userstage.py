"""What the kernel's own tracer cannot do, done in user space for the tracefs backend.

uprobe_events records every hit: it cannot run rawprobe's filters, count by key, bucket a
histogram, pair an entry with its return for a latency, or group by stack. The stage below
does all of that on decoded events, with the BPF programs' semantics, and produces the same
:class:`~rawprobe._plan.session.AggregateCell` cells the BPF backend reads from its maps, so
the tracefs session meets :class:`~rawprobe._plan.session.Session` in full.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._plan import abi
from .._plan.events import Event
from .._plan.session import AggregateCell, PlannedEvent
from .._probe.aggregations import AggregationSpec, bucket_of
from .._probe.filters import evaluate_filter

__all__ = ["UserStage"]


class UserStage:
    """Filters events and, for an aggregation, aggregates them.

    Args:
        events: The planned events, by event id.
        aggregation: The aggregation, or None for a streaming run.
    """

    def __init__(self, events: Sequence[PlannedEvent],
                 aggregation: AggregationSpec | None) -> None:
        self._events = list(events)
        self._aggregation = aggregation
        self.filtered = [0] * len(events)
        self._cells: dict[tuple[int, int, int, bytes], int] = {}
        self._starts: dict[tuple[int, int], int] = {}  # (entry event id, tid) -> ts_ns
        self._stacks: dict[tuple[int, ...], int] = {}
        self._stack_list: list[tuple[int, ...]] = []
        self._stack_pids: list[int] = []

    def process(self, events: list[Event]) -> list[Event]:
        """The events that pass their filters; with an aggregation, none (they are counted)."""
        kept = []
        for event in events:
            planned = self._events[event.event_id]
            if planned.filter is not None and not evaluate_filter(planned.filter, event):
                self.filtered[event.event_id] += 1
                continue
            if self._aggregation is not None:
                self._add(planned, event)
            else:
                kept.append(event)
        return kept

    def _add(self, planned: PlannedEvent, event: Event) -> None:
        spec = self._aggregation
        assert spec is not None
        if planned.role == "entry":
            self._starts[(planned.event_id, event.tid)] = event.ts_ns
            return
        bucket = 0
        if planned.role == "return":
            start = self._starts.pop((planned.event_id - 1, event.tid), None)
            if start is None:
                return  # the call began before the probes were in place
            assert spec.hist is not None
            bucket = bucket_of(spec.hist, event.ts_ns - start)
        elif spec.kind == "hist":
            assert spec.hist is not None
            value = event.values[event.layout.names.index(spec.hist.field)]
            if value is None:
                return
            bucket = bucket_of(spec.hist, int(value))
        key = b"" if spec.by is None else _key_bytes(spec.by, event)
        stack_id = -1
        if spec.stack and event.stack is not None:
            stack_id = self._stack_id(event.stack, event.pid)
        cell = (planned.event_id, stack_id, bucket, key)
        self._cells[cell] = self._cells.get(cell, 0) + 1

    def _stack_id(self, stack: tuple[int, ...], pid: int) -> int:
        stack_id = self._stacks.get(stack)
        if stack_id is None:
            stack_id = self._stacks[stack] = len(self._stack_list)
            self._stack_list.append(stack)
            self._stack_pids.append(pid)
        return stack_id

    def cells(self, reset: bool) -> list[AggregateCell]:
        """The cells as the BPF backend reads them (keys padded to the key size)."""
        cells = [AggregateCell(event_id, stack_id, bucket, key.ljust(abi.KEY_LEN, b"\0"), count)
                 for (event_id, stack_id, bucket, key), count in self._cells.items()]
        if reset:
            self._cells = {}
        return cells

    def stack(self, stack_id: int) -> tuple[int, ...]:
        return self._stack_list[stack_id] if 0 <= stack_id < len(self._stack_list) else ()

    def stack_pid(self, stack_id: int) -> int | None:
        return self._stack_pids[stack_id] if 0 <= stack_id < len(self._stack_pids) else None


def _key_bytes(by: str, event: Event) -> bytes:
    """The key bytes the BPF side would have copied for ``--by``."""
    layout = event.layout
    if by in layout.names:
        index = layout.names.index(by)
        field = layout.fields[index]
        value = event.values[index]
        if field.type.kind == "string":
            text: str = value or ""
            return text.encode()[: abi.KEY_LEN - 9] + b"\0"
        if field.type.kind == "char":
            return str(value).encode("latin-1", "replace")[:1]
        size = field.type.size
        return bytes(int(value or 0).to_bytes(size, "little", signed=field.type.signed))
    if by == "comm":
        return event.comm.encode()[: abi.COMM_LEN]
    return int(getattr(event, by)).to_bytes(4, "little")
