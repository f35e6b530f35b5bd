"""Aggregation specs, pure: what ``--count``, ``--hist``, ``--sum``, ``--min``, ``--max``,
``--avg``, ``--stats`` and ``--by`` ask for, and the bucket arithmetic every backend and the
output share.

Buckets are numbered as the BPF programs number them (``bucket_of()`` in
clang/rawprobe.bpf.c): log2 histograms put 0 in bucket 0, ``[2^(n-1), 2^n)`` in bucket n and
negative values in bucket -1; linear ones put ``[min + n*step, min + (n+1)*step)`` in bucket n,
values below ``min`` in -1 and values at or above ``max`` in the last bucket.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .._errors import UsageError

__all__ = [
    "HEADER_KEYS",
    "KINDS",
    "LATENCY",
    "VALUE_KINDS",
    "AggregationSpec",
    "HistSpec",
    "bucket_bounds",
    "bucket_of",
    "parse_hist",
    "parse_keys",
]

LATENCY = "latency"  # the value a span (or entry to return) measures, in nanoseconds
KINDS = ("count", "hist", "sum", "min", "max", "avg", "stats", "syscalls")
VALUE_KINDS = ("sum", "min", "max", "avg", "stats")  # aggregations of a value, not buckets
HEADER_KEYS = ("comm", "pid", "tid", "cpu")  # keys every event has (a field of the name wins)
_MAX_KEYS = 4  # RP_MAX_KEYS in clang/rawprobe.h


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
        return self.field == LATENCY


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


def parse_keys(texts: Sequence[str]) -> tuple[str, ...]:
    """The keys of ``--by KEY[,KEY...]`` (repeatable), in order, ``stack`` included.

    Raises:
        UsageError: An empty or malformed key, a key given twice, or more than four.
    """
    keys: list[str] = []
    for text in texts:
        for key in text.split(","):
            key = key.strip()
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise UsageError(f"--by {text!r}: write KEY[,KEY...], each comm, pid, tid, "
                                 "cpu, stack or a field name")
            if key in keys:
                raise UsageError(f"--by: {key!r} is given twice")
            keys.append(key)
    if len([key for key in keys if key != "stack"]) > _MAX_KEYS:
        raise UsageError(f"--by: at most {_MAX_KEYS} keys (and stack) group one aggregation")
    return tuple(keys)


@dataclass(frozen=True)
class AggregationSpec:
    """How every probe of a tracer aggregates.

    Attributes:
        kind: ``count``, ``hist``, ``sum``, ``min``, ``max``, ``avg``, ``stats`` (count, sum,
            min, max and mean together), or ``syscalls``: per system call, calls, errors and
            time in the kernel (``rawprobe syscalls``, ``sys:`` probes only; ``by`` may be
            ``pid``, ``hist`` a latency histogram per system call).
        by: Group by these keys, in order: ``comm``, ``pid``, ``tid``, ``cpu``, a field name,
            or ``stack`` (the user stack). A string may list several, comma-separated.
        hist: For ``hist``: what to measure.
        stack: Also group by the user stack (as ``stack`` in ``by`` does).
        field: For ``sum``, ``min``, ``max``, ``avg`` and ``stats``: the integer field, or
            ``latency``.

    Raises:
        UsageError: An unknown kind, a missing field or histogram, or bad keys.
    """

    kind: str
    by: str | tuple[str, ...] | None = None
    hist: HistSpec | None = None
    stack: bool = False
    field: str | None = None
    _keys: tuple[str, ...] = dataclasses.field(default=(), init=False, repr=False,
                                               compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"unknown aggregation {self.kind!r}: use one of {', '.join(KINDS)}")
        if self.kind == "hist" and self.hist is None:
            raise UsageError("a histogram needs what to measure: HistSpec(FIELD)")
        if self.kind in VALUE_KINDS and not self.field:
            raise UsageError(f"--{self.kind} needs a field (or latency)")
        texts = () if self.by is None else (self.by,) if isinstance(self.by, str) else self.by
        keys = parse_keys(texts)
        # Frozen: what the keys say is set through object.__setattr__, once, here.
        object.__setattr__(self, "_keys", tuple(key for key in keys if key != "stack"))
        if "stack" in keys:
            object.__setattr__(self, "stack", True)

    @property
    def keys(self) -> tuple[str, ...]:
        """The grouping keys, in order (``stack`` aside)."""
        return self._keys

    @property
    def value_field(self) -> str | None:
        """What is measured: the histogram's or the value aggregation's field, or None."""
        if self.hist is not None:
            return self.hist.field
        return self.field if self.kind in VALUE_KINDS else None

    @property
    def measures_latency(self) -> bool:
        """Whether the value is a duration (of a span, or from entry to return)."""
        return self.value_field == LATENCY


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
