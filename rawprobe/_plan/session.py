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

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    from .._probe.aggregations import AggregationSpec
    from .._probe.fetchargs import FetchArg, UsdtArgument
    from .._probe.filters import FilterExpr
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
    """One uprobe to plant, and everything about its event.

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
        details: The three above, kept pickled in a plan from the cache until asked for.
    """

    __slots__ = ("at_entry", "config_id", "details", "event_id", "file_offset", "from_glob",
                 "kernel_path", "key_decoder", "layout", "path", "reads_memory", "ref_ctr_offset",
                 "retprobe", "role", "tally", "tally_only")

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
    """

    __slots__ = ("aggregation", "configs", "events", "stack", "string_size")

    events: tuple[PlannedEvent, ...]
    configs: tuple[bytes, ...]
    aggregation: AggregationSpec | None
    stack: bool
    string_size: int

    def __init__(self, events: tuple[PlannedEvent, ...], configs: tuple[bytes, ...],
                 aggregation: AggregationSpec | None = None, stack: bool = False,
                 string_size: int = 256) -> None:
        _setattr(self, "events", events)
        _setattr(self, "configs", configs)
        _setattr(self, "aggregation", aggregation)
        _setattr(self, "stack", stack)
        _setattr(self, "string_size", string_size)

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
    """

    __slots__ = ("filtered", "hits", "lost")

    hits: int
    filtered: int
    lost: int

    def __init__(self, hits: int = 0, filtered: int = 0, lost: int = 0) -> None:
        _setattr(self, "hits", hits)
        _setattr(self, "filtered", filtered)
        _setattr(self, "lost", lost)


class AggregateCell(tuple):  # type: ignore[type-arg]
    """One cell of an aggregation, as a backend counted it.

    Attributes:
        event_id: The event.
        stack_id: The user stack it was grouped by (see :meth:`Session.stack`), or -1.
        bucket: The histogram bucket (numbered as ``bucket_of`` numbers them), 0 for counts.
        key: The grouping key's bytes (``struct rp_agg_key.data``), empty when not grouped.
        value: How many hits fell in it.
    """

    __slots__ = ()

    def __new__(cls, event_id: int, stack_id: int, bucket: int, key: bytes,
                value: int) -> AggregateCell:
        return tuple.__new__(cls, (event_id, stack_id, bucket, key, value))

    @property
    def event_id(self) -> int:
        return int(self[0])

    @property
    def stack_id(self) -> int:
        return int(self[1])

    @property
    def bucket(self) -> int:
        return int(self[2])

    @property
    def key(self) -> bytes:
        return bytes(self[3])

    @property
    def value(self) -> int:
        return int(self[4])


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
        """Plant every uprobe for ``target``; on failure nothing stays planted."""

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

    def stack(self, stack_id: int) -> tuple[int, ...]:
        """The return addresses of a recorded user stack, innermost first."""

    def stack_pid(self, stack_id: int) -> int | None:
        """A process the stack was seen in (to symbolize its addresses)."""

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
    """

    __slots__ = ("events", "filtered", "hits", "lost", "not_delivered", "probes", "truncated")

    events: int
    lost: int
    hits: int
    filtered: int
    truncated: int
    probes: dict[str, ProbeCounters]
    not_delivered: int

    def __init__(self, events: int, lost: int, hits: int, filtered: int, truncated: int = 0,
                 probes: dict[str, ProbeCounters] | None = None, not_delivered: int = 0) -> None:
        _setattr(self, "events", events)
        _setattr(self, "lost", lost)
        _setattr(self, "hits", hits)
        _setattr(self, "filtered", filtered)
        _setattr(self, "truncated", truncated)
        _setattr(self, "probes", {} if probes is None else probes)
        _setattr(self, "not_delivered", not_delivered)


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
