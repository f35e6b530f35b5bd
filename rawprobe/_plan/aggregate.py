"""Aggregation in the kernel: counts, histograms and latencies, read back as tables.

With an aggregation, a probe's BPF program updates a map instead of writing a record: no
per-event record reaches user space. Counts without a key are the per-probe hit counters
themselves; counts by a key, histogram buckets, and latencies (entry time kept per thread,
the delta bucketed at return) live in the ``aggregates`` map, keyed by
``struct rp_agg_key`` (clang/rawprobe.h).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import UsageError
from . import abi
from .compile import CompiledProbe

__all__ = [
    "AggregationSpec",
    "Count",
    "CountTable",
    "HistSpec",
    "Histogram",
    "HistogramSet",
    "aggregation_config",
    "bucket_bounds",
    "parse_hist",
]

# Grouping keys taken from the record header: (offset, size, signed).
_HEADER_KEYS = {"pid": (8, 4), "tid": (12, 4), "cpu": (20, 4)}
_COMM = (32, abi.COMM_LEN)


@dataclass(frozen=True)
class HistSpec:
    """What a histogram measures.

    Attributes:
        field: A fetch-arg name, or ``latency`` (entry to return, in nanoseconds).
        linear: ``(min, max, step)`` for linear buckets; ``None`` for powers of two.
    """

    field: str
    linear: tuple[int, int, int] | None = None

    @property
    def is_latency(self) -> bool:
        return self.field == "latency"


def parse_hist(text: str) -> HistSpec:
    """Parse ``FIELD``, ``latency`` or ``FIELD:linear:MIN:MAX:STEP``.

    Raises:
        UsageError: Anything else, or a linear range that is empty or has a step of 0.
    """
    match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?::linear:(-?\d+):(-?\d+):(\d+))?", text)
    if not match:
        raise UsageError(
            f"--hist {text!r}: write FIELD, latency, or FIELD:linear:MIN:MAX:STEP"
        )
    if match.group(2) is None:
        return HistSpec(match.group(1))
    low, high, step = (int(match.group(i)) for i in (2, 3, 4))
    if step <= 0 or high <= low:
        raise UsageError(f"--hist {text!r}: needs MIN < MAX and STEP > 0")
    return HistSpec(match.group(1), (low, high, step))


@dataclass(frozen=True)
class AggregationSpec:
    """How every probe of a tracer aggregates.

    Attributes:
        kind: ``count`` or ``hist``.
        by: Group by ``comm``, ``pid``, ``tid``, ``cpu`` or a fetch-arg name.
        hist: For ``hist``: what to measure.
        stack: Also group by the user stack.
    """

    kind: str
    by: str | None = None
    hist: HistSpec | None = None
    stack: bool = False


def aggregation_config(
    spec: AggregationSpec,
    compiled: CompiledProbe,
    *,
    word: str,
    role: str = "",
) -> dict[str, object]:
    """The ``struct rp_aggregation`` members for one probe.

    Args:
        spec: The aggregation.
        compiled: The probe's fields.
        word: The probe word (for messages).
        role: For latency: ``entry`` (records the time) or ``return`` (measures; planned
            right after its entry probe, whose event id is one less).

    Raises:
        UsageError: ``--by`` or ``--hist`` names a field the probe does not have, or one of a
            type that cannot be used that way.
    """
    config: dict[str, object] = {"by_stack": int(spec.stack)}
    if role == "entry":
        config.update(action=abi.Action.TIMESTAMP)
        return config
    config.update(_key(spec.by, compiled, word))
    if spec.kind == "count":
        if config["key_kind"] == abi.KeyKind.NONE and not spec.stack:
            config["action"] = abi.Action.TALLY
        else:
            config["action"] = abi.Action.COUNT
        return config
    hist = spec.hist
    assert hist is not None
    if hist.linear is not None:
        low, high, step = hist.linear
        config.update(hist=abi.HistKind.LINEAR, lin_min=low, lin_step=step,
                      lin_buckets=(high - low + step - 1) // step)
    if hist.is_latency:
        config.update(action=abi.Action.LATENCY)
        return config
    value = next((f for f in compiled.fields if f.name == hist.field and f.offset >= 0), None)
    if value is None:
        names = ", ".join(f.name for f in compiled.fields) or "none"
        raise UsageError(
            f"--hist {hist.field}: {word!r} has no field {hist.field!r} (fields: {names}); "
            f"add one, e.g. {hist.field}=%di:u64"
        )
    if value.type.kind not in ("int", "char") or value.type.count is not None:
        raise UsageError(
            f"--hist {hist.field}: a histogram needs an integer field, and {hist.field!r} is "
            f"{value.type.name}; use --count --by {hist.field} to count its values"
        )
    config.update(action=abi.Action.HIST, value_src=value.offset, value_size=value.type.size,
                  value_signed=int(value.type.signed), value_field=value.slots[0])
    return config


def _key(by: str | None, compiled: CompiledProbe, word: str) -> dict[str, object]:
    if by is None:
        return {"key_kind": abi.KeyKind.NONE}
    field = next((f for f in compiled.fields if f.name == by and f.offset >= 0), None)
    if field is not None:
        if field.type.kind == "string" and field.type.count is None:
            return {"key_kind": abi.KeyKind.STRING, "key_src": field.offset, "key_size": 0}
        if field.type.count is not None and field.type.kind != "char":
            raise UsageError(f"--by {by}: {by!r} is an array; group by a scalar field")
        size = field.type.size * (field.type.count or 1)
        return {"key_kind": abi.KeyKind.BYTES, "key_src": field.offset,
                "key_size": min(size, abi.KEY_LEN - 8)}
    if by in _HEADER_KEYS:
        offset, size = _HEADER_KEYS[by]
        return {"key_kind": abi.KeyKind.BYTES, "key_src": offset, "key_size": size}
    if by == "comm":
        return {"key_kind": abi.KeyKind.BYTES, "key_src": _COMM[0], "key_size": _COMM[1]}
    names = [f.name for f in compiled.fields if f.offset >= 0] + ["comm", "pid", "tid", "cpu"]
    raise UsageError(f"--by {by}: {word!r} has no such field; choose one of " + ", ".join(names))


def key_decoder(by: str | None, compiled: CompiledProbe) -> Any:
    """A function turning the key bytes of an ``rp_agg_key`` back into a value."""
    if by is None:
        return None
    field = next((f for f in compiled.fields if f.name == by and f.offset >= 0), None)
    if (by == "comm" and field is None) or (field is not None and (
        field.type.kind == "string" or (field.type.kind == "char" and field.type.count)
    )):
        return lambda data: data.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
    if field is None:
        return lambda data: int.from_bytes(data[:4], "little")
    size, signed = field.type.size, field.type.signed
    if field.type.kind == "char":
        return lambda data: chr(data[0])
    if field.type.hex:
        return lambda data: f"{int.from_bytes(data[:size], 'little'):#x}"
    return lambda data: int.from_bytes(data[:size], "little", signed=signed)


def bucket_of(spec: HistSpec, value: int) -> int:
    """The bucket a value falls in, numbered as the BPF side numbers them (bucket_of() in
    clang/rawprobe.bpf.c)."""
    if spec.linear is None:
        if value < 0:
            return -1
        return value.bit_length()  # 0 -> 0, [2^(n-1), 2^n) -> n
    low, high, step = spec.linear
    if value < low:
        return -1
    count = (high - low + step - 1) // step
    return min((value - low) // step, count)


class UserAggregator:
    """Aggregation done in user space, from streamed events, for a backend that cannot do it
    in the kernel (tracefs). It produces the same cells as the BPF side's ``aggregates`` map.

    Args:
        spec: The aggregation.
        layouts: Per event id, the event's record layout.
        roles: Per event id, ``entry``/``return`` for latency pairs, else ``""``.
    """

    def __init__(self, spec: AggregationSpec, layouts: Sequence[Any], roles: Sequence[str]):
        if spec.stack:
            raise UsageError("--stack needs the BPF backend")
        self.spec = spec
        self.layouts = layouts
        self.roles = roles
        self.cells: dict[tuple[int, int, bytes], int] = {}
        self.starts: dict[tuple[int, int], int] = {}  # (entry event id, tid) -> ts_ns

    def add(self, event_id: int, event: Any) -> None:
        """Count one event (``event`` a :class:`rawprobe.Event`)."""
        spec = self.spec
        role = self.roles[event_id]
        if role == "entry":
            self.starts[(event_id, event.tid)] = event.ts_ns
            return
        bucket = 0
        if role == "return":
            start = self.starts.pop((event_id - 1, event.tid), None)
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
        cell = (event_id, bucket, key)
        self.cells[cell] = self.cells.get(cell, 0) + 1

    def take(self, reset: bool) -> list[tuple[int, int, int, bytes, int]]:
        """The cells as ``(event_id, stack_id, bucket, key bytes, count)``."""
        cells = [(event_id, -1, bucket, key.ljust(KEY_DATA, b"\0"), count)
                 for (event_id, bucket, key), count in self.cells.items()]
        if reset:
            self.cells = {}
        return cells


KEY_DATA = abi.KEY_LEN


def _key_bytes(by: str, event: Any) -> bytes:
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
        comm: str = event.comm
        return comm.encode()[: abi.COMM_LEN]
    return int(getattr(event, by)).to_bytes(4, "little")


def bucket_bounds(spec: HistSpec, bucket: int) -> tuple[int | None, int | None]:
    """``(low, high)`` of a bucket: low inclusive, high exclusive; None where unbounded."""
    if spec.linear is None:
        if bucket < 0:
            return None, 0
        if bucket == 0:
            return 0, 1
        return 1 << (bucket - 1), 1 << bucket
    low, high, step = spec.linear
    count = (high - low + step - 1) // step
    if bucket < 0:
        return None, low
    if bucket >= count:
        return low + count * step, None
    return low + bucket * step, low + (bucket + 1) * step


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

