"""Aggregation results: count tables, histograms and system call totals, printable and
JSON-ready."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._plan.session import AggregateCell, Plan, SyscallTotal
from .._probe.aggregations import HistSpec, bucket_bounds
from .._syscalls import SyscallSummary

__all__ = [
    "Count",
    "CountTable",
    "Histogram",
    "HistogramSet",
    "SyscallTable",
    "aggregate_results",
    "build_histograms",
    "count_table",
    "sort_counts",
]


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
            row["key"] = self.key
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

    def folded(self) -> str:
        """Stacks in the folded format flame-graph tools read: ``a;b;c COUNT`` per line,
        outermost frame first."""
        lines = []
        for row in self.rows:
            frames = list(reversed(row.stack or ()))
            lines.append(";".join([row.event, *frames]) + f" {row.count}")
        return "\n".join(lines)

    def __str__(self) -> str:
        if not self.rows:
            return "(no calls)"
        keyed = any(row.key is not None for row in self.rows)
        width = max(len(row.event) for row in self.rows)
        key_width = max((len(str(row.key)) for row in self.rows), default=0)
        head = f"{'EVENT':<{width}}  " + (f"{'KEY':<{key_width}}  " if keyed else "") + "COUNT"
        lines = [head]
        for row in self.rows:
            line = f"{row.event:<{width}}  "
            if keyed:
                line += f"{row.key!s:<{key_width}}  "
            lines.append(line + str(row.count))
            if row.stack:
                lines.extend("    " + frame for frame in row.stack)
        return "\n".join(lines)


@dataclass
class Histogram:
    """One histogram: buckets of (low, high, count), empty buckets inside the range kept."""

    event: str
    key: Any
    spec: HistSpec
    buckets: list[tuple[int | None, int | None, int]]
    first_bucket: int = 0  # the BPF side's number of the first bucket listed

    @property
    def total(self) -> int:
        return sum(count for _low, _high, count in self.buckets)

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"event": self.event}
        if self.key is not None:
            result["key"] = self.key
        result["buckets"] = [{"low": low, "high": high, "count": count}
                             for low, high, count in self.buckets]
        return result

    def __str__(self) -> str:
        title = f"@{self.event}" + (f"[{self.key}]" if self.key is not None else "")
        unit = " (ns)" if self.spec.is_latency else ""
        lines = [f"{title}{unit}:"]
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
        cells = [(event, None, bucket, count) for h in matching
                 for bucket, (_l, _h, count) in enumerate(h.buckets, start=h.first_bucket)]
        return build_histograms(matching[0].spec, cells).histograms[0]

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
            (events[c.event_id].name, key(c), c.bucket, c.value) for c in cells))
    return table


def build_histograms(
    spec: HistSpec, cells: Iterable[tuple[str, Any, int, int]]
) -> HistogramSet:
    """Histograms from ``(event, key, bucket, count)`` cells (bucket as the BPF side numbers
    them); buckets between the lowest and highest seen are filled with zero counts."""
    grouped: dict[tuple[str, Any], dict[int, int]] = {}
    for event, key, bucket, count in cells:
        slot = grouped.setdefault((event, key), {})
        slot[bucket] = slot.get(bucket, 0) + count
    result = HistogramSet()
    for (event, key), buckets in sorted(grouped.items(), key=lambda item: (item[0][0],
                                                                          str(item[0][1]))):
        low, high = min(buckets), max(buckets)
        rows = []
        for bucket in range(low, high + 1):
            lo, hi = bucket_bounds(spec, bucket)
            rows.append((lo, hi, buckets.get(bucket, 0)))
        result.histograms.append(Histogram(event, key, spec, rows, low))
    return result


def sort_counts(rows: Sequence[Count]) -> CountTable:
    return CountTable(sorted(rows, key=lambda row: (-row.count, row.event, str(row.key))))


def count_table(rows: Iterable[Count]) -> CountTable:
    """Rows merged where event, key and stack are the same (the sites of one event name, a
    USDT probe inlined at several places), sorted by count."""
    merged: dict[tuple[str, Any, tuple[str, ...] | None], int] = {}
    for row in rows:
        identity = (row.event, row.key, row.stack)
        merged[identity] = merged.get(identity, 0) + row.count
    return sort_counts([Count(event, key, count, stack)
                        for (event, key, stack), count in merged.items()])


def aggregate_results(
    plan: Plan,
    cells: Iterable[AggregateCell],
    describe_stack: Callable[[int, int], tuple[str, ...]],
    totals: Iterable[SyscallTotal] = (),
) -> CountTable | HistogramSet | SyscallTable:
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

    if aggregation.kind == "hist":
        assert aggregation.hist is not None
        return build_histograms(aggregation.hist, (
            (events[c.event_id].name, key(c), c.bucket, c.value) for c in cells))
    rows = []
    for cell in cells:
        stack = None
        if cell.stack_id >= 0:
            # At a function's entry, the kernel side kept the caller in the key's last 8
            # bytes (RP_PROBE_AT_ENTRY).
            at_entry = events[cell.event_id].at_entry and len(cell.key) >= 8
            caller = int.from_bytes(cell.key[-8:], "little") if at_entry else 0
            stack = describe_stack(cell.stack_id, caller)
        rows.append(Count(events[cell.event_id].name, key(cell), cell.value, stack))
    return count_table(rows)
