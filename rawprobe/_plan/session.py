"""What a backend is given and what it must do: the plan, and the :class:`Session` protocol.

The planner (:mod:`rawprobe._plan.planner`) turns probe words into a :class:`Plan`: one frozen
:class:`PlannedEvent` per event id, and the BPF configurations they use. A backend's session
plants the plan's uprobes and hands back what the kernel recorded. Both backends, BPF
(:mod:`rawprobe._bpf`) and tracefs (:mod:`rawprobe._tracefs`), implement :class:`Session` in
full: what one backend cannot do in the kernel (tracefs filters, aggregates, stacks) it does
in a stage of its own, so the Tracer above never needs to know which backend it drives.

The records here are on the start-up path, so they are :class:`rawprobe._values.Record`
classes rather than dataclasses, and nothing here imports typing at run time (the protocol is a
:class:`typing.Protocol` to the type checker, a plain class at run time).
"""

from __future__ import annotations

from .._values import Record
from .abi import COOKIE_TALLY
from .cells import AggregateCell, SyscallTotal

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    from .._probe.aggregations import AggregationSpec
    from .._probe.fetchargs import FetchArg, UsdtArgument
    from .._probe.filters import FilterExpr
    from .aggregate import KeyPart
    from .events import Batch, RecordLayout

    _Details = tuple[tuple[FetchArg, ...], tuple[UsdtArgument, ...] | None, FilterExpr | None]
else:
    Protocol = object

__all__ = [
    "AggregateCell",
    "EventDetails",
    "Plan",
    "PlannedEvent",
    "ProbeCounters",
    "Session",
    "SpanCounters",
    "SyscallTotal",
    "TraceStats",
    "TraceTarget",
    "summarize",
]

_setattr = object.__setattr__


class EventDetails:
    """A planned event's fetch-args as parsed, USDT argument specs and filter expression:
    what only the tracefs backend reads (the BPF backend runs the compiled configuration). A
    plan from the cache keeps them pickled, and unpickles them on first use.

    Args:
        values: ``(fetchargs, usdt_args, filter)``.
        pickled: The same, pickled (when ``values`` is None).
    """

    __slots__ = ("_pickled", "_values")

    def __init__(self, values: _Details | None = None, pickled: bytes = b"") -> None:
        self._values = values
        self._pickled = pickled

    def get(self) -> _Details:
        if self._values is None:
            import pickle

            self._values = pickle.loads(self._pickled)
        return self._values

    def pickled(self) -> bytes:
        """The details, pickled (for the plan cache)."""
        if not self._pickled:
            import pickle

            self._pickled = pickle.dumps(self.get(), protocol=pickle.HIGHEST_PROTOCOL)
        return self._pickled


class PlannedEvent(Record):
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
        role: ``start`` or ``end`` for the two probes of a span (a latency measurement's
            entry and return, or ``--span START END``), else ``""``; a latency pair's return
            is planned right after its entry (event id + 1).
        from_glob: Matched by a glob among others: a site the kernel refuses is left out with
            a warning instead of failing the run.
        at_entry: On a function's first instruction, where a frame-pointer walk misses the
            caller (stacks add it from the top of the stack).
        filter: The filter expression, for a backend that filters in user space.
        key_decoder: Turns an aggregation key's bytes back into a value (None: not grouped).
        key_parts: The grouping key's layout (a backend aggregating in user space builds the
            same bytes from it).
        span_id: For a span's probes, the id START and END share (a latency pair's: its
            entry's event id), else -1.
        match: For a span's probes, what START and END match on: ``tid`` or a field name.
        value_signed: The aggregated value sums and compares as a signed integer.
        kind: ``uprobe``, or a kernel-side probe: ``tracepoint`` (``tp:``) or ``syscall``
            (``sys:``). Kernel-side events have no file: ``path`` describes them
            (``tp:sched:sched_switch``, ``sys:openat``), ``kernel_path`` is empty.
        tracepoint_id: A tracepoint's id (the ``PERF_TYPE_TRACEPOINT`` config), else 0.
        syscall_nr: A system call's number, else -1.
        syscall_flags: How the system call programs treat it (``abi.SysFlag``), else 0.
        details: ``fetchargs``, ``usdt_args`` and ``filter``, kept pickled in a plan from the
            cache until asked for.
    """

    __slots__ = ("at_entry", "config_id", "details", "event_id", "file_offset", "from_glob",
                 "kernel_path", "key_decoder", "key_parts", "kind", "layout", "match", "path",
                 "reads_memory", "ref_ctr_offset", "retprobe", "role", "span_id", "syscall_flags",
                 "syscall_nr", "tally", "tally_only", "tracepoint_id", "value_signed")

    event_id: int
    config_id: int
    path: str
    kernel_path: str
    file_offset: int
    retprobe: bool
    ref_ctr_offset: int
    layout: RecordLayout
    reads_memory: bool
    tally: bool
    tally_only: bool
    role: str
    from_glob: bool
    at_entry: bool
    key_decoder: Callable[[bytes], Any] | None
    key_parts: tuple[KeyPart, ...]
    span_id: int
    match: str
    value_signed: bool
    kind: str
    tracepoint_id: int
    syscall_nr: int
    syscall_flags: int
    details: EventDetails

    def __init__(
        self,
        event_id: int,
        config_id: int,
        path: str,
        kernel_path: str,
        file_offset: int,
        retprobe: bool,
        ref_ctr_offset: int,
        fetchargs: tuple[FetchArg, ...] | None,
        layout: RecordLayout,
        reads_memory: bool = False,
        tally: bool = False,
        tally_only: bool = False,
        usdt_args: tuple[UsdtArgument, ...] | None = None,
        role: str = "",
        from_glob: bool = False,
        at_entry: bool = False,
        filter: FilterExpr | None = None,
        key_decoder: Callable[[bytes], Any] | None = None,
        key_parts: tuple[KeyPart, ...] = (),
        span_id: int = -1,
        match: str = "tid",
        value_signed: bool = True,
        kind: str = "uprobe",
        tracepoint_id: int = 0,
        syscall_nr: int = -1,
        syscall_flags: int = 0,
        details: EventDetails | None = None,
    ) -> None:
        _setattr(self, "event_id", event_id)
        _setattr(self, "config_id", config_id)
        _setattr(self, "path", path)
        _setattr(self, "kernel_path", kernel_path)
        _setattr(self, "file_offset", file_offset)
        _setattr(self, "retprobe", retprobe)
        _setattr(self, "ref_ctr_offset", ref_ctr_offset)
        _setattr(self, "layout", layout)
        _setattr(self, "reads_memory", reads_memory)
        _setattr(self, "tally", tally)
        _setattr(self, "tally_only", tally_only)
        _setattr(self, "role", role)
        _setattr(self, "from_glob", from_glob)
        _setattr(self, "at_entry", at_entry)
        _setattr(self, "key_decoder", key_decoder)
        _setattr(self, "key_parts", key_parts)
        _setattr(self, "span_id", span_id)
        _setattr(self, "match", match)
        _setattr(self, "value_signed", value_signed)
        _setattr(self, "kind", kind)
        _setattr(self, "tracepoint_id", tracepoint_id)
        _setattr(self, "syscall_nr", syscall_nr)
        _setattr(self, "syscall_flags", syscall_flags)
        _setattr(self, "details", details if details is not None else EventDetails(
            (fetchargs or (), usdt_args, filter)))

    @property
    def fetchargs(self) -> tuple[FetchArg, ...]:
        return self.details.get()[0]

    @property
    def usdt_args(self) -> tuple[UsdtArgument, ...] | None:
        return self.details.get()[1]

    @property
    def filter(self) -> FilterExpr | None:
        return self.details.get()[2]

    @property
    def name(self) -> str:
        return self.layout.event

    @property
    def cookie(self) -> int:
        """The BPF cookie: the event id, and the configuration id (RP_COOKIE_TALLY set when
        the probe only counts, so the program need not look its configuration up)."""
        config = self.config_id | (COOKIE_TALLY if self.tally_only else 0)
        return (config << 32) | self.event_id


class Plan(Record):
    """Everything a backend needs to run: the events and how they aggregate.

    Attributes:
        events: Indexed by event id.
        configs: ``struct rp_probe`` bytes, indexed by configuration id.
        aggregation: How events aggregate (None: they stream).
        stack: Streamed events carry the user stack; aggregations group by it.
        string_size: Bytes kept per string, NUL included.
        targets: Each probed file's path and its identity when the planner opened it
            (``TargetFile.key``: device, inode, size, mtime, ctime): a file replaced on disk
            since (a package upgrade) no longer matches ``os.stat(path)``.
    """

    __slots__ = ("aggregation", "configs", "events", "stack", "string_size", "targets")

    events: tuple[PlannedEvent, ...]
    configs: tuple[bytes, ...]
    aggregation: AggregationSpec | None
    stack: bool
    string_size: int
    targets: tuple[tuple[str, tuple[int, int, int, int, int]], ...]

    def __init__(self, events: tuple[PlannedEvent, ...], configs: tuple[bytes, ...],
                 aggregation: AggregationSpec | None = None, stack: bool = False,
                 string_size: int = 256,
                 targets: tuple[tuple[str, tuple[int, int, int, int, int]], ...] = ()) -> None:
        _setattr(self, "events", events)
        _setattr(self, "configs", configs)
        _setattr(self, "aggregation", aggregation)
        _setattr(self, "stack", stack)
        _setattr(self, "string_size", string_size)
        _setattr(self, "targets", targets)

    @property
    def layouts(self) -> list[RecordLayout]:
        return [event.layout for event in self.events]


class TraceTarget(Record):
    """Which processes to trace.

    Attributes:
        pids: Exactly these processes (all their threads).
        command_pid: This process and every process it forks from now on.

    With neither, every process on the host that runs the probed code.
    """

    __slots__ = ("command_pid", "pids")

    pids: tuple[int, ...]
    command_pid: int | None

    def __init__(self, pids: tuple[int, ...] = (), command_pid: int | None = None) -> None:
        _setattr(self, "pids", pids)
        _setattr(self, "command_pid", command_pid)


class ProbeCounters(Record):
    """What was counted for one event id.

    Attributes:
        hits: Times the probe fired in traced processes.
        filtered: Hits a filter rejected.
        lost: Records that could not be kept (ring buffer full, maps full, nesting).
        unmatched: A span's END: hits no open span matched (begun before the probes were
            in place, or evicted from the full spans map).
        replaced: A span's START: hits that replaced an open span with the same match (a
            recursive call, a reused id); the one replaced never ends.
    """

    __slots__ = ("filtered", "hits", "lost", "replaced", "unmatched")

    hits: int
    filtered: int
    lost: int
    unmatched: int
    replaced: int

    def __init__(self, hits: int = 0, filtered: int = 0, lost: int = 0, unmatched: int = 0,
                 replaced: int = 0) -> None:
        _setattr(self, "hits", hits)
        _setattr(self, "filtered", filtered)
        _setattr(self, "lost", lost)
        _setattr(self, "unmatched", unmatched)
        _setattr(self, "replaced", replaced)


class SpanCounters(Record):
    """What became of the spans of one span id, at the time of reading.

    Every span started ends in exactly one way: ``ended``, ``replaced`` by a later START
    with the same match, still ``open``, or ``evicted`` from the full spans map (the kernel
    does not say which; it is what the other counts leave).

    Attributes:
        start: The START event's name; end: the END event's name.
        started: START hits that opened a span (filtered and lost ones aside).
        ended: END hits that closed one.
        unmatched: END hits no open span matched.
        replaced, open, evicted: As above.
    """

    __slots__ = ("end", "ended", "evicted", "open", "replaced", "start", "started", "unmatched")

    start: str
    end: str
    started: int
    ended: int
    unmatched: int
    replaced: int
    open: int
    evicted: int

    def __init__(self, start: str, end: str, started: int, ended: int, unmatched: int,
                 replaced: int, open: int, evicted: int) -> None:
        for name, value in (("start", start), ("end", end), ("started", started),
                            ("ended", ended), ("unmatched", unmatched), ("replaced", replaced),
                            ("open", open), ("evicted", evicted)):
            _setattr(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (
            "start", "end", "started", "ended", "unmatched", "replaced", "open", "evicted")}


class Session(Protocol):
    """A backend's run of one plan: created, attached, read, closed.

    Attributes:
        unplaced: After :meth:`attach_all`, the events the kernel refused to place (an
            instruction it cannot probe), each with the reason; they are left out.
        poll_interval: How often a reader waiting on :meth:`fileno` must look anyway, in
            seconds (a backend whose buffers wake their reader only when well filled finds
            sparse events by looking); None when :meth:`fileno` always wakes it.
        follow_at_exec: A command's probes are planted on the command itself, once it has
            exec'd and before it runs (it is spawned to stop at its exec); otherwise they are
            planted before it is released to exec.
    """

    unplaced: list[tuple[PlannedEvent, str]]
    poll_interval: float | None
    follow_at_exec: bool

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

    def read_batches(self) -> list[Batch]:
        """Every event ready now that passed its filter, in time order, in batches (a batch
        of a run of one probe's fixed-size records decodes them when asked). With an
        aggregation, events are aggregated instead and nothing is returned."""

    def read_records(self, sink: Callable[[memoryview], object]) -> int:
        """Hand ``sink`` every whole record ready now, as the kernel wrote it (framing
        included, nothing decoded: ``rawprobe record``); return how many bytes.

        Raises:
            UsageError: The backend keeps no such records (tracefs).
        """

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

    def open_spans(self) -> dict[int, int]:
        """Per span id, how many spans are open (started, not yet ended)."""

    def close(self) -> None:
        """Detach and free everything (idempotent)."""


class TraceStats(Record):
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
        spans: For a run that measures spans (``--span``, latencies), what became of them,
            per span id.
    """

    __slots__ = ("events", "filtered", "hits", "lost", "not_delivered", "probes", "spans",
                 "truncated")

    events: int
    lost: int
    hits: int
    filtered: int
    truncated: int
    probes: dict[str, ProbeCounters]
    not_delivered: int
    spans: tuple[SpanCounters, ...]

    def __init__(self, events: int, lost: int, hits: int, filtered: int, truncated: int = 0,
                 probes: dict[str, ProbeCounters] | None = None, not_delivered: int = 0,
                 spans: tuple[SpanCounters, ...] = ()) -> None:
        _setattr(self, "events", events)
        _setattr(self, "lost", lost)
        _setattr(self, "hits", hits)
        _setattr(self, "filtered", filtered)
        _setattr(self, "truncated", truncated)
        _setattr(self, "probes", {} if probes is None else probes)
        _setattr(self, "not_delivered", not_delivered)
        _setattr(self, "spans", spans)


def _add(a: ProbeCounters, b: ProbeCounters) -> ProbeCounters:
    return ProbeCounters(a.hits + b.hits, a.filtered + b.filtered, a.lost + b.lost,
                         a.unmatched + b.unmatched, a.replaced + b.replaced)


def summarize(plan: Plan, counters: list[ProbeCounters], delivered: int,
              open_spans: dict[int, int] | None = None) -> TraceStats:
    """A run's accounting from its session's counters (sites of one event name summed), and
    what became of its spans (``open_spans``: :meth:`Session.open_spans`)."""
    probes: dict[str, ProbeCounters] = {}
    for event, counter in zip(plan.events, counters, strict=True):
        seen = probes.get(event.name)
        probes[event.name] = counter if seen is None else _add(seen, counter)
    return TraceStats(
        events=delivered,
        lost=sum(c.lost for c in counters),
        hits=sum(c.hits for c in counters),
        filtered=sum(c.filtered for c in counters),
        probes=probes,
        spans=_spans(plan, counters, open_spans or {}),
    )


def _spans(plan: Plan, counters: list[ProbeCounters],
           open_spans: dict[int, int]) -> tuple[SpanCounters, ...]:
    starts: dict[int, tuple[str, ProbeCounters]] = {}
    ends: dict[int, tuple[str, ProbeCounters]] = {}
    for event, counter in zip(plan.events, counters, strict=True):
        if event.role:
            side = starts if event.role == "start" else ends
            name, seen = side.get(event.span_id, (event.name, ProbeCounters()))
            side[event.span_id] = (name, _add(seen, counter))
    result = []
    for span_id, (start_name, start) in starts.items():
        end_name, end = ends.get(span_id, ("", ProbeCounters()))
        started = start.hits - start.filtered - start.lost
        ended = end.hits - end.filtered - end.unmatched
        still_open = open_spans.get(span_id, 0)
        evicted = max(0, started - ended - start.replaced - still_open)
        result.append(SpanCounters(start_name, end_name, started, ended, end.unmatched,
                                   start.replaced, still_open, evicted))
    return tuple(result)
