"""Aggregation results: count tables, value tables (sums, minimums, maximums, averages,
stats), histograms and system call totals, printable, JSON-ready, and cut to their top N.

Each kind of result has one JSON shape (README "Aggregation in the kernel"): ``{"counts":
[...]}``, ``{"hist": [...]}``, ``{"sums"|"mins"|"maxes"|"avgs"|"stats": [...]}``,
``{"syscalls": [...], "total": {...}}``; a row has ``event``, ``key`` when grouped (a list
when grouped by several keys), ``stack`` when grouped by stack, and its figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._plan.session import AggregateCell, Plan, SyscallTotal
from .._probe.aggregations import HistSpec, bucket_bounds

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from .._syscalls import SyscallSummary

__all__ = [
    "Count",
    "CountTable",
    "Histogram",
    "HistogramSet",
    "Result",
    "SyscallTable",
    "ValueRow",
    "ValueTable",
    "aggregate_results",
    "build_histograms",
    "count_table",
    "sort_counts",
    "value_table",
]

def _key_text(key: Any) -> str:
    """A key as text: several keys comma-separated, as bpftrace prints them."""
    return ", ".join(map(str, key)) if isinstance(key, tuple) else str(key)


def _key_json(key: Any) -> Any:
    return list(key) if isinstance(key, tuple) else key


@dataclass(frozen=True)
class Count:
    """One row of a count table."""

    event: str
    key: Any
    count: int
    stack: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"event": self.event}
        if self.key is not None:
            row["key"] = _key_json(self.key)
        if self.stack is not None:
            row["stack"] = list(self.stack)
        row["count"] = self.count
        return row


@dataclass
class CountTable:
    """Counts, sorted by count (highest first). Printing it gives a table."""

    rows: list[Count] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"counts": [row.to_dict() for row in self.rows]}

    def as_dict(self) -> dict[tuple[str, Any], int]:
        """``{(event, key): count}`` (key None when not grouped)."""
        return {(row.event, row.key): row.count for row in self.rows}

    def top(self, count: int) -> CountTable:
        """The ``count`` rows with the highest counts."""
        return CountTable(self.rows[:count])

    def folded(self) -> str:
        """Stacks in the folded format flame-graph tools read: ``a;b;c COUNT`` per line,
        outermost frame first, each frame the bare function name (as bcc's ``stackcount -f``
        writes them: two calls from different places in one function are one box); stacks
        that become the same are merged."""
        merged: dict[str, int] = {}
        for row in self.rows:
            frames = [frame.split("+0x", 1)[0] for frame in reversed(row.stack or ())]
            line = ";".join([row.event, *frames])
            merged[line] = merged.get(line, 0) + row.count
        return "\n".join(f"{line} {count}" for line, count in merged.items())

    def __str__(self) -> str:
        if not self.rows:
            return "(no calls)"
        return _table(self.rows, ["COUNT"], lambda row: [str(row.count)])


@dataclass
class Histogram:
    """One histogram: buckets of (low, high, count), empty buckets inside the range kept."""

    event: str
    key: Any
    spec: HistSpec
    buckets: list[tuple[int | None, int | None, int]]
    first_bucket: int = 0  # the BPF side's number of the first bucket listed
    stack: tuple[str, ...] | None = None

    @property
    def total(self) -> int:
        return sum(count for _low, _high, count in self.buckets)

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"event": self.event}
        if self.key is not None:
            result["key"] = _key_json(self.key)
        if self.stack is not None:
            result["stack"] = list(self.stack)
        result["buckets"] = [{"low": low, "high": high, "count": count}
                             for low, high, count in self.buckets]
        return result

    def __str__(self) -> str:
        title = f"@{self.event}" + (f"[{_key_text(self.key)}]" if self.key is not None else "")
        unit = " (ns)" if self.spec.is_latency else ""
        lines = [f"{title}{unit}:"]
        lines.extend("    " + frame for frame in self.stack or ())
        peak = max((count for _l, _h, count in self.buckets), default=0) or 1
        labels = [_bucket_label(self.spec, low, high) for low, high, _c in self.buckets]
        label_width = max((len(label) for label in labels), default=0)
        for label, (_low, _high, count) in zip(labels, self.buckets, strict=True):
            bar = "@" * round(52 * count / peak)
            lines.append(f"{label:<{label_width}} {count:>10} |{bar:<52}|")
        return "\n".join(lines)


def _bucket_label(spec: HistSpec, low: int | None, high: int | None) -> str:
    if spec.linear is None:
        if low is None:
            return "(..., 0)"
        if high == low + 1:
            return f"[{_human(low)}]"
        return f"[{_human(low)}, {_human(high)})"
    if low is None:
        return f"(..., {high})"
    if high is None:
        return f"[{low}, ...)"
    return f"[{low}, {high})"


def _human(value: int | None) -> str:
    """Powers of two the way bpftrace prints them: 1K, 2M, ..."""
    if value is None:
        return "..."
    for suffix, shift in (("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if value >= 1 << shift and value % (1 << shift) == 0:
            return f"{value >> shift}{suffix}"
    return str(value)


@dataclass
class HistogramSet:
    """Histograms, one per event and key."""

    histograms: list[Histogram] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"hist": [h.to_dict() for h in self.histograms]}

    def __getitem__(self, event: str) -> Histogram:
        """The histogram of ``event`` (merged over keys when grouped)."""
        matching = [h for h in self.histograms if h.event == event]
        if not matching:
            raise KeyError(event)
        if len(matching) == 1:
            return matching[0]
        cells = [(event, None, bucket, count, None) for h in matching
                 for bucket, (_l, _h, count) in enumerate(h.buckets, start=h.first_bucket)]
        return build_histograms(matching[0].spec, cells).histograms[0]

    def top(self, count: int) -> HistogramSet:
        """The ``count`` histograms with the most values, most first."""
        ranked = sorted(self.histograms, key=lambda h: (-h.total, h.event, _key_text(h.key)))
        return HistogramSet(ranked[:count])

    def __iter__(self) -> Iterator[Histogram]:
        return iter(self.histograms)

    def __len__(self) -> int:
        return len(self.histograms)

    def __str__(self) -> str:
        return "\n\n".join(str(h) for h in self.histograms) or "(no values)"


@dataclass
class SyscallTable:
    """Per system call: calls, errors and time in the kernel (``rawprobe syscalls``), as
    ``strace -c`` tables; one per process when grouped by process; latency histograms per
    system call when asked.

    Attributes:
        summaries: By process id (None when not grouped).
        histograms: Latency histograms (ns) per system call (and process), or None.
    """

    summaries: dict[int | None, SyscallSummary] = field(default_factory=dict)
    histograms: HistogramSet | None = None

    def total(self) -> SyscallSummary:
        """Every process's calls in one summary."""
        from .._syscalls import SyscallSummary  # the system call tables: only for these

        merged = SyscallSummary()
        for summary in self.summaries.values():
            for row in summary.rows():
                merged.add_totals(row.syscall, row.calls, row.errors, row.total_ns, row.number)
        return merged

    def to_dict(self) -> dict[str, Any]:
        """``{"syscalls": [{"syscall", "calls", "errors", "total_ns"} (and "pid"), ...],
        "total": {...}}``, and ``"hist"`` as ``--hist`` prints it."""
        rows = []
        for pid, summary in sorted(self.summaries.items(), key=lambda item: item[0] or 0):
            for row in summary.as_dict()["syscalls"]:
                rows.append(row if pid is None else {"pid": pid, **row})
        result: dict[str, Any] = {"syscalls": rows, "total": self.total().as_dict()["total"]}
        if self.histograms is not None:
            result["hist"] = self.histograms.to_dict()["hist"]
        return result

    def __str__(self) -> str:
        parts = []
        for pid, summary in sorted(self.summaries.items(), key=lambda item: item[0] or 0):
            parts.append(("" if pid is None else f"pid {pid}\n") + summary.render())
        if not parts:
            parts.append("(no system calls)")
        if self.histograms is not None and len(self.histograms):
            parts.append(str(self.histograms))
        return "\n\n".join(parts)


def syscall_table(plan: Plan, totals: Iterable[SyscallTotal],
                  cells: Iterable[AggregateCell]) -> SyscallTable:
    """The totals of a ``syscalls`` aggregation, and its latency histograms."""
    from .._syscalls import SyscallSummary  # the system call tables: only for these

    aggregation = plan.aggregation
    assert aggregation is not None
    events = plan.events
    grouped = aggregation.by is not None
    table = SyscallTable()
    for total in totals:
        event = events[total.event_id]
        summary = table.summaries.setdefault(total.pid if grouped else None, SyscallSummary())
        summary.add_totals(event.name, total.calls, total.errors, total.total_ns,
                           event.syscall_nr)
    if aggregation.hist is not None:
        def key(cell: AggregateCell) -> Any:
            decoder = events[cell.event_id].key_decoder
            return None if decoder is None else decoder(cell.key)

        table.histograms = build_histograms(aggregation.hist, (
            (events[c.event_id].name, key(c), c.bucket, c.value, None) for c in cells))
    return table
_Stack = tuple[str, ...] | None


def build_histograms(
    spec: HistSpec, cells: Iterable[tuple[str, Any, int, int, _Stack]]
) -> HistogramSet:
    """Histograms from ``(event, key, bucket, count, stack)`` cells (bucket as the BPF side
    numbers them); buckets between the lowest and highest seen are filled with zero counts."""
    grouped: dict[tuple[str, Any, _Stack], dict[int, int]] = {}
    for event, key, bucket, count, stack in cells:
        slot = grouped.setdefault((event, key, stack), {})
        slot[bucket] = slot.get(bucket, 0) + count
    result = HistogramSet()
    for (event, key, stack), buckets in sorted(
            grouped.items(), key=lambda item: (item[0][0], _key_text(item[0][1]),
                                               item[0][2] or ())):
        low, high = min(buckets), max(buckets)
        rows = []
        for bucket in range(low, high + 1):
            lo, hi = bucket_bounds(spec, bucket)
            rows.append((lo, hi, buckets.get(bucket, 0)))
        result.histograms.append(Histogram(event, key, spec, rows, low, stack))
    return result


def sort_counts(rows: Sequence[Count]) -> CountTable:
    return CountTable(sorted(rows, key=lambda row: (-row.count, row.event,
                                                    _key_text(row.key), row.stack or ())))


def count_table(rows: Iterable[Count]) -> CountTable:
    """Rows merged where event, key and stack are the same (the sites of one event name, a
    USDT probe inlined at several places), sorted by count."""
    merged: dict[tuple[str, Any, tuple[str, ...] | None], int] = {}
    for row in rows:
        identity = (row.event, row.key, row.stack)
        merged[identity] = merged.get(identity, 0) + row.count
    return sort_counts([Count(event, key, count, stack)
                        for (event, key, stack), count in merged.items()])


@dataclass(frozen=True)
class ValueRow:
    """One row of a value table: how many values, their sum, minimum and maximum.

    ``mean`` is the sum divided by the count, truncated toward zero as bpftrace's ``avg()``
    and ``stats()`` print it (the sum and count give it exactly).
    """

    event: str
    key: Any
    count: int
    sum: int
    min: int
    max: int
    stack: tuple[str, ...] | None = None

    @property
    def mean(self) -> int:
        if not self.count:
            return 0
        quotient = abs(self.sum) // self.count
        return quotient if self.sum >= 0 else -quotient

    def figures(self, kind: str) -> dict[str, int]:
        """The figures a row of ``kind`` shows, by name."""
        if kind == "stats":
            return {"count": self.count, "sum": self.sum, "min": self.min, "max": self.max,
                    "mean": self.mean}
        value = self.mean if kind == "avg" else getattr(self, kind)
        return {"count": self.count, kind: value}

    def to_dict(self, kind: str) -> dict[str, Any]:
        row: dict[str, Any] = {"event": self.event}
        if self.key is not None:
            row["key"] = _key_json(self.key)
        if self.stack is not None:
            row["stack"] = list(self.stack)
        row.update(self.figures(kind))
        return row


# The JSON member of each kind of value table.
VALUE_SHAPES = {"sum": "sums", "min": "mins", "max": "maxes", "avg": "avgs", "stats": "stats"}


@dataclass
class ValueTable:
    """Sums, minimums, maximums, averages or stats (``kind``) of a value per event and key,
    sorted by the kind's figure (stats: by mean), highest first. Printing it gives a table."""

    kind: str
    rows: list[ValueRow] = field(default_factory=list)

    def rank(self, row: ValueRow) -> int:
        return row.mean if self.kind in ("avg", "stats") else int(getattr(row, self.kind))

    def to_dict(self) -> dict[str, Any]:
        return {VALUE_SHAPES[self.kind]: [row.to_dict(self.kind) for row in self.rows]}

    def as_dict(self) -> dict[tuple[str, Any], dict[str, int]]:
        """``{(event, key): figures}`` (key None when not grouped)."""
        return {(row.event, row.key): row.figures(self.kind) for row in self.rows}

    def top(self, count: int) -> ValueTable:
        """The ``count`` rows with the highest figures."""
        return ValueTable(self.kind, self.rows[:count])

    def __str__(self) -> str:
        if not self.rows:
            return "(no values)"
        names = list(self.rows[0].figures(self.kind))
        if self.kind != "stats":
            names = names[1:]
        return _table(self.rows, [name.upper() for name in names],
                      lambda row: [str(row.figures(self.kind)[name]) for name in names])


Result = CountTable | HistogramSet | ValueTable  # what an aggregation reads back as


def value_table(kind: str, rows: Iterable[ValueRow]) -> ValueTable:
    """Rows merged where event, key and stack are the same (the sites of one event name),
    sorted by the kind's figure."""
    merged: dict[tuple[str, Any, _Stack], ValueRow] = {}
    for row in rows:
        identity = (row.event, row.key, row.stack)
        seen = merged.get(identity)
        merged[identity] = row if seen is None else ValueRow(
            row.event, row.key, seen.count + row.count, seen.sum + row.sum,
            min(seen.min, row.min), max(seen.max, row.max), row.stack)
    table = ValueTable(kind)
    table.rows = sorted(merged.values(), key=lambda row: (
        -table.rank(row), row.event, _key_text(row.key), row.stack or ()))
    return table


def _table(rows: Sequence[Count | ValueRow], heads: list[str],
           figures: Callable[[Any], list[str]]) -> str:
    """Rows as aligned columns: event, key (when grouped), figures; stacks under their row."""
    keyed = any(row.key is not None for row in rows)
    cells = [[row.event, *([_key_text(row.key)] if keyed else []), *figures(row)]
             for row in rows]
    head = ["EVENT", *(["KEY"] if keyed else []), *heads]
    widths = [max(len(line[i]) for line in [head, *cells]) for i in range(len(head))]
    lines = []
    for row, line in zip([None, *rows], [head, *cells], strict=True):
        lines.append("  ".join(text.ljust(width) for text, width in zip(
            line, widths, strict=True)).rstrip())
        if row is not None and row.stack:
            lines.extend("    " + frame for frame in row.stack)
    return "\n".join(lines)


def aggregate_results(
    plan: Plan,
    cells: Iterable[AggregateCell],
    describe_stack: Callable[[int, int], tuple[str, ...]],
    totals: Iterable[SyscallTotal] = (),
) -> Result | SyscallTable:
    """A plan's aggregation, from a backend's cells.

    Args:
        plan: The plan (its aggregation, and each event's name and key decoder).
        cells: What the backend counted.
        describe_stack: ``(stack id, caller) → frames``: symbolizes a stack; ``caller`` is the
            return address a probe at a function's first instruction kept (0: none).
        totals: For a ``syscalls`` aggregation, the backend's system call totals.
    """
    aggregation = plan.aggregation
    assert aggregation is not None
    events = plan.events
    if aggregation.kind == "syscalls":
        return syscall_table(plan, totals, cells)

    def key(cell: AggregateCell) -> Any:
        decoder = events[cell.event_id].key_decoder
        return None if decoder is None else decoder(cell.key)

    def stack(cell: AggregateCell) -> _Stack:
        if cell.stack_id < 0:
            return None
        # At a function's entry, the kernel side kept the caller in the key's last 8
        # bytes (RP_PROBE_AT_ENTRY).
        at_entry = events[cell.event_id].at_entry and len(cell.key) >= 8
        caller = int.from_bytes(cell.key[-8:], "little") if at_entry else 0
        return describe_stack(cell.stack_id, caller)

    cells = list(cells)
    if aggregation.hist is not None:
        return build_histograms(aggregation.hist, (
            (events[c.event_id].name, key(c), c.bucket, c.value, stack(c)) for c in cells))
    if aggregation.kind == "count":
        return count_table(Count(events[c.event_id].name, key(c), c.value, stack(c))
                           for c in cells)
    return value_table(aggregation.kind, (
        ValueRow(events[c.event_id].name, key(c), c.value, c.total, c.minimum, c.maximum,
                 stack(c)) for c in cells))
