"""Aggregation results: count tables and histograms, printable and JSON-ready."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._plan.session import AggregateCell, Plan
from .._probe.aggregations import HistSpec, bucket_bounds

__all__ = [
    "Count",
    "CountTable",
    "Histogram",
    "HistogramSet",
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
        keyed = any(row.key is not None for row in self.rows)
        width = max(len("EVENT"), *(len(row.event) for row in self.rows))
        key_width = max(len("KEY"), *(len(str(row.key)) for row in self.rows))
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
) -> CountTable | HistogramSet:
    """A plan's aggregation, from a backend's cells.

    Args:
        plan: The plan (its aggregation, and each event's name and key decoder).
        cells: What the backend counted.
        describe_stack: ``(stack id, caller) → frames``: symbolizes a stack; ``caller`` is the
            return address a probe at a function's first instruction kept (0: none).
    """
    aggregation = plan.aggregation
    assert aggregation is not None
    events = plan.events

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
