"""What a backend is given and what it must do: the plan, and the :class:`Session` protocol.

The planner (:mod:`rawprobe._plan.planner`) turns probe words into a :class:`Plan`: one frozen
:class:`PlannedEvent` per event id, and the BPF configurations they use. A backend's session
plants the plan's uprobes and hands back what the kernel recorded. Both backends, BPF
(:mod:`rawprobe._bpf`) and tracefs (:mod:`rawprobe._tracefs`), implement :class:`Session` in
full: what one backend cannot do in the kernel (tracefs filters, aggregates, stacks) it does
in a stage of its own, so the Tracer above never needs to know which backend it drives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from .._probe.aggregations import AggregationSpec
from .._probe.fetchargs import FetchArg, UsdtArgument
from .._probe.filters import FilterExpr
from .abi import COOKIE_TALLY
from .events import Event, RecordLayout

__all__ = [
    "AggregateCell",
    "Plan",
    "PlannedEvent",
    "ProbeCounters",
    "Session",
    "SyscallTotal",
    "TraceStats",
    "TraceTarget",
    "summarize",
]


@dataclass(frozen=True)
class PlannedEvent:
    """One probe to plant (a uprobe, a tracepoint or a system call), and everything about its
    event.

    Attributes:
        event_id: Index of the event, dense from 0 (the BPF cookie's low half).
        config_id: Index of its BPF configuration (the cookie's high half); probes with the
            same fetch program share one.
        path: The file as the user named it (resolved); what messages show.
        kernel_path: The path handed to the kernel: ``/proc/self/fd/N`` of the file the
            planner opened and resolved, so the probe lands in that very inode even if
            ``path`` is replaced meanwhile.
        file_offset: Where in the file.
        retprobe: A return probe.
        ref_ctr_offset: A USDT semaphore's file offset, or 0.
        fetchargs: The probe's fetch-args as parsed (tracefs renders them again).
        layout: Names, types and the record layout of the event.
        reads_memory: Whether the probe dereferences user memory.
        tally: The probe's count is its hit counter (less what its filter rejected): a plain
            ``--count``, no key, no stack.
        tally_only: ``tally`` without a filter: the program counts the hit and returns.
        usdt_args: A USDT probe's argument specs (``$argN`` reads them), else ``None``.
        role: ``entry`` or ``return`` for the two halves of a latency measurement, else ``""``;
            a return half is planned right after its entry half (event id + 1).
        from_glob: Matched by a glob among others: a site the kernel refuses is left out with
            a warning instead of failing the run.
        at_entry: On a function's first instruction, where a frame-pointer walk misses the
            caller (stacks add it from the top of the stack).
        filter: The filter expression, for a backend that filters in user space.
        key_decoder: Turns an aggregation key's bytes back into a value (None: not grouped).
        kind: ``uprobe``, or a kernel-side probe: ``tracepoint`` (``tp:``) or ``syscall``
            (``sys:``). Kernel-side events have no file: ``path`` describes them
            (``tp:sched:sched_switch``, ``sys:openat``), ``kernel_path`` is empty.
        tracepoint_id: A tracepoint's id (the ``PERF_TYPE_TRACEPOINT`` config), else 0.
        syscall_nr: A system call's number, else -1.
        syscall_flags: How the system call programs treat it (``abi.SysFlag``), else 0.
    """

    event_id: int
    config_id: int
    path: str
    kernel_path: str
    file_offset: int
    retprobe: bool
    ref_ctr_offset: int
    fetchargs: tuple[FetchArg, ...]
    layout: RecordLayout
    reads_memory: bool = False
    tally: bool = False
    tally_only: bool = False
    usdt_args: tuple[UsdtArgument, ...] | None = None
    role: str = ""
    from_glob: bool = False
    at_entry: bool = False
    filter: FilterExpr | None = None
    key_decoder: Callable[[bytes], Any] | None = None
    kind: str = "uprobe"
    tracepoint_id: int = 0
    syscall_nr: int = -1
    syscall_flags: int = 0

    @property
    def name(self) -> str:
        return self.layout.event

    @property
    def cookie(self) -> int:
        """The BPF cookie: the event id, and the configuration id (RP_COOKIE_TALLY set when
        the probe only counts, so the program need not look its configuration up)."""
        config = self.config_id | (COOKIE_TALLY if self.tally_only else 0)
        return (config << 32) | self.event_id


@dataclass(frozen=True)
class Plan:
    """Everything a backend needs to run: the events and how they aggregate.

    Attributes:
        events: Indexed by event id.
        configs: ``struct rp_probe`` bytes, indexed by configuration id.
        aggregation: How events aggregate (None: they stream).
        stack: Streamed events carry the user stack; aggregations group by it.
        string_size: Bytes kept per string, NUL included.
    """

    events: tuple[PlannedEvent, ...]
    configs: tuple[bytes, ...]
    aggregation: AggregationSpec | None = None
    stack: bool = False
    string_size: int = 256

    @property
    def layouts(self) -> list[RecordLayout]:
        return [event.layout for event in self.events]


@dataclass(frozen=True)
class TraceTarget:
    """Which processes to trace.

    Attributes:
        pids: Exactly these processes (all their threads).
        command_pid: This process and every process it forks from now on.

    With neither, every process on the host that runs the probed code.
    """

    pids: tuple[int, ...] = ()
    command_pid: int | None = None


@dataclass(frozen=True)
class ProbeCounters:
    """What was counted for one event id.

    Attributes:
        hits: Times the probe fired in traced processes.
        filtered: Hits a filter rejected.
        lost: Records that could not be kept (ring buffer full, maps full, nesting).
    """

    hits: int = 0
    filtered: int = 0
    lost: int = 0


class AggregateCell(NamedTuple):
    """One cell of an aggregation, as a backend counted it.

    Attributes:
        event_id: The event.
        stack_id: The user stack it was grouped by (see :meth:`Session.stack`), or -1.
        bucket: The histogram bucket (numbered as ``bucket_of`` numbers them), 0 for counts.
        key: The grouping key's bytes (``struct rp_agg_key.data``), empty when not grouped.
        value: How many hits fell in it.
    """

    event_id: int
    stack_id: int
    bucket: int
    key: bytes
    value: int


class SyscallTotal(NamedTuple):
    """One system call's totals, as ``rawprobe syscalls`` counts them in the kernel.

    Attributes:
        event_id: The system call's event.
        pid: The process (``--by pid``), or 0.
        calls: Calls that ended (and passed the filter).
        errors: Those that returned -4095..-1.
        total_ns: Time spent in them, entry to exit.
    """

    event_id: int
    pid: int
    calls: int
    errors: int
    total_ns: int


class Session(Protocol):
    """A backend's run of one plan: created, attached, read, closed.

    Attributes:
        unplaced: After :meth:`attach_all`, the events the kernel refused to place (an
            instruction it cannot probe), each with the reason; they are left out.
        poll_interval: How often a reader waiting on :meth:`fileno` must look anyway, in
            seconds (a backend whose buffers wake their reader only when well filled finds
            sparse events by looking); None when :meth:`fileno` always wakes it.
    """

    unplaced: list[tuple[PlannedEvent, str]]
    poll_interval: float | None

    def attach_all(self, target: TraceTarget) -> None:
        """Plant every probe for ``target``; on failure nothing stays planted."""

    def wait(self, timeout: float | None) -> None:
        """Block until events may be ready, a watched descriptor is readable, or timeout."""

    def watch(self, fd: int) -> None:
        """Also wake :meth:`wait` when ``fd`` becomes readable (a pidfd, at process exit)."""

    def fileno(self) -> int:
        """A descriptor that turns readable when :meth:`wait` would return."""

    def pending(self) -> bool:
        """Whether records are waiting to be read."""

    def read(self) -> list[Event]:
        """Every event ready now that passed its filter, decoded, in time order. With an
        aggregation, events are aggregated instead and nothing is returned."""

    def detach(self) -> None:
        """Remove every uprobe; events already recorded stay readable."""

    def counters(self) -> list[ProbeCounters]:
        """Per event id: hits, filtered and lost."""

    def aggregate_cells(self, reset: bool) -> list[AggregateCell]:
        """Every cell of the aggregation (plain counts included), emptied after reading when
        ``reset``."""

    def syscall_totals(self, reset: bool) -> list[SyscallTotal]:
        """Per system call (and process), what a ``syscalls`` aggregation counted; emptied
        after reading when ``reset``."""

    def stack(self, stack_id: int) -> tuple[int, ...]:
        """The return addresses of a recorded user stack, innermost first."""

    def stack_pid(self, stack_id: int) -> int | None:
        """A process the stack was seen in (to symbolize its addresses)."""

    def close(self) -> None:
        """Detach and free everything (idempotent)."""


@dataclass(frozen=True)
class TraceStats:
    """Accounting of one run.

    Attributes:
        events: Records delivered to the caller.
        lost: Records the kernel side could not keep (ring buffer full).
        hits: Times the probes fired (in traced processes).
        filtered: Hits the filter rejected.
        truncated: Delivered events with a string cut at the string size.
        probes: The counts per event name: ``{event: ProbeCounters}`` (sites of one name
            summed).
        not_delivered: Events decoded but not delivered because the run ended first (the
            command line's ``-n`` limit).
    """

    events: int
    lost: int
    hits: int
    filtered: int
    truncated: int = 0
    probes: dict[str, ProbeCounters] = dataclasses.field(default_factory=dict)
    not_delivered: int = 0


def summarize(plan: Plan, counters: list[ProbeCounters], delivered: int) -> TraceStats:
    """A run's accounting from its session's counters (sites of one event name summed)."""
    probes: dict[str, ProbeCounters] = {}
    for event, counter in zip(plan.events, counters, strict=True):
        seen = probes.get(event.name)
        probes[event.name] = counter if seen is None else ProbeCounters(
            seen.hits + counter.hits, seen.filtered + counter.filtered,
            seen.lost + counter.lost)
    return TraceStats(
        events=delivered,
        lost=sum(c.lost for c in counters),
        hits=sum(c.hits for c in counters),
        filtered=sum(c.filtered for c in counters),
        probes=probes,
    )
