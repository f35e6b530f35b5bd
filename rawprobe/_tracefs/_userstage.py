"""What the kernel's own tracer cannot do, done in user space for the tracefs backend.

uprobe_events records every hit: it cannot run rawprobe's filters, group by keys, sum, compare
or bucket values, match a span's START with its END, or group by stack. The stage below does
all of that on decoded events, with the BPF programs' semantics (clang/rawprobe.bpf.c:
``rp_aggregate()``, the ``spans`` map), and produces the same
:class:`~rawprobe._plan.session.AggregateCell` cells and span counters the BPF backend reads
from its maps, so the tracefs session meets :class:`~rawprobe._plan.session.Session` in full.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Sequence
from typing import Any

from .._plan import abi
from .._plan.aggregate import fill_key
from .._plan.events import Event
from .._plan.session import AggregateCell, PlannedEvent
from .._probe.aggregations import LATENCY, AggregationSpec, bucket_of
from .._probe.filters import evaluate_filter

__all__ = ["MAX_SPANS", "UserStage"]

MAX_SPANS = 65536  # the spans map's max_entries in clang/rawprobe.bpf.c
_U64 = (1 << 64) - 1

_Cell = tuple[int, int, int, bytes]  # (event id, stack id, bucket, key data)


class UserStage:
    """Filters events and, for an aggregation or a span, aggregates or completes them.

    Args:
        events: The planned events, by event id.
        aggregation: The aggregation, or None for a streaming run.
    """

    def __init__(self, events: Sequence[PlannedEvent],
                 aggregation: AggregationSpec | None) -> None:
        self._events = list(events)
        self._aggregation = aggregation
        self.filtered = [0] * len(events)
        self.lost = [0] * len(events)  # a value or a matching value could not be read
        self.unmatched = [0] * len(events)
        self.replaced = [0] * len(events)
        self._cells: dict[_Cell, list[int]] = {}  # -> [count, sum, min, max]
        # Open spans, oldest first: (span id, match) -> (start ns, key data read at START).
        self._spans: OrderedDict[tuple[int, int], tuple[int, bytes]] = OrderedDict()
        self._stacks: dict[tuple[int, ...], int] = {}
        self._stack_list: list[tuple[int, ...]] = []
        self._stack_pids: list[int] = []
        self._latency = {planned.event_id: planned.layout.names.index(LATENCY)
                         for planned in events
                         if planned.role == "end" and LATENCY in planned.layout.names}

    def process(self, events: list[Event]) -> list[Event]:
        """The events that pass their filters, a streamed span's END events with their
        duration filled in; with an aggregation, none (they are aggregated)."""
        kept = []
        for event in events:
            planned = self._events[event.event_id]
            if planned.filter is not None and not evaluate_filter(planned.filter, event):
                self.filtered[event.event_id] += 1
                continue
            if planned.role == "start":
                self._start(planned, event)
                continue
            data = bytearray(abi.KEY_DATA_LEN)
            duration = 0
            if planned.role == "end":
                started = self._end(planned, event)
                if started is None:
                    continue
                duration = event.ts_ns - started[0]
                data[:] = started[1]
                if self._aggregation is None:
                    kept.append(event.with_value(self._latency[event.event_id], duration))
                    continue
            if self._aggregation is not None:
                self._add(planned, event, data, duration)
            else:
                kept.append(event)
        return kept

    def _match(self, planned: PlannedEvent, event: Event) -> int | None:
        if planned.match == "tid":
            return int(event.tid)
        value = event.values[event.layout.names.index(planned.match)]
        return None if value is None else int(value) & _U64

    def _start(self, planned: PlannedEvent, event: Event) -> None:
        match = self._match(planned, event)
        if match is None:
            self.lost[planned.event_id] += 1
            return
        data = bytearray(abi.KEY_DATA_LEN)
        fill_key(planned.key_parts, _values(event), data, at_start=True)
        key = (planned.span_id, match)
        if key in self._spans:
            self.replaced[planned.event_id] += 1
            del self._spans[key]
        elif len(self._spans) >= MAX_SPANS:
            self._spans.popitem(last=False)  # evicted: the oldest open span
        self._spans[key] = (event.ts_ns, bytes(data))

    def _end(self, planned: PlannedEvent, event: Event) -> tuple[int, bytes] | None:
        match = self._match(planned, event)
        started = None if match is None else self._spans.pop((planned.span_id, match), None)
        if started is None:
            self.unmatched[planned.event_id] += 1
        return started

    def _add(self, planned: PlannedEvent, event: Event, data: bytearray, duration: int) -> None:
        spec = self._aggregation
        assert spec is not None
        name = spec.value_field
        value = duration
        if name is not None and name != LATENCY:
            raw = event.values[event.layout.names.index(name)]
            if raw is None:
                self.lost[planned.event_id] += 1
                return
            value = int(raw) if not isinstance(raw, str) else ord(raw)
        bucket = 0 if spec.hist is None else bucket_of(spec.hist, value)
        fill_key(planned.key_parts, _values(event), data, at_start=False)
        stack_id = -1
        if spec.stack and event.stack is not None:
            stack_id = self._stack_id(event.stack, event.pid)
        key = bytes(data) if planned.key_parts else b""
        cell = self._cells.get((planned.event_id, stack_id, bucket, key))
        if cell is None:
            self._cells[(planned.event_id, stack_id, bucket, key)] = [1, value, value, value]
            return
        cell[0] += 1
        cell[1] += value
        cell[2] = min(cell[2], value)
        cell[3] = max(cell[3], value)

    def _stack_id(self, stack: tuple[int, ...], pid: int) -> int:
        stack_id = self._stacks.get(stack)
        if stack_id is None:
            stack_id = self._stacks[stack] = len(self._stack_list)
            self._stack_list.append(stack)
            self._stack_pids.append(pid)
        return stack_id

    def cells(self, reset: bool) -> list[AggregateCell]:
        """The cells as the BPF backend reads them (keys padded to the key size, sums
        wrapped to 64 bits as the kernel's are)."""
        spec = self._aggregation
        accumulate = spec is not None and spec.kind not in ("count", "hist")
        cells = []
        for (event_id, stack_id, bucket, key), (count, total, low, high) in self._cells.items():
            if not accumulate:
                total = low = high = 0
            else:
                total = _wrap(total, self._events[event_id].value_signed)
            cells.append(AggregateCell(event_id, stack_id, bucket, key.ljust(abi.KEY_LEN, b"\0"),
                                       count, total, low, high))
        if reset:
            self._cells = {}
        return cells

    def open_spans(self) -> dict[int, int]:
        return dict(Counter(span_id for span_id, _match in self._spans))

    def stack(self, stack_id: int) -> tuple[int, ...]:
        return self._stack_list[stack_id] if 0 <= stack_id < len(self._stack_list) else ()

    def stack_pid(self, stack_id: int) -> int | None:
        return self._stack_pids[stack_id] if 0 <= stack_id < len(self._stack_pids) else None


def _values(event: Event) -> dict[str, Any]:
    """What a key part may name: the header's members, and the fields (which win)."""
    return {"comm": event.comm, "pid": event.pid, "tid": event.tid, "cpu": event.cpu,
            **event.args}


def _wrap(value: int, signed: bool) -> int:
    """A sum as a 64-bit register holds it (the BPF side adds modulo 2^64)."""
    value &= _U64
    return value - (1 << 64) if signed and value >> 63 else value
