"""Aggregation specs, pure: what ``--count``, ``--hist`` and ``--by`` ask for, and the
bucket arithmetic every backend and the output share.

Buckets are numbered as the BPF programs number them (``bucket_of()`` in
clang/rawprobe.bpf.c): log2 histograms put 0 in bucket 0, ``[2^(n-1), 2^n)`` in bucket n and
negative values in bucket -1; linear ones put ``[min + n*step, min + (n+1)*step)`` in bucket n,
values below ``min`` in -1 and values at or above ``max`` in the last bucket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._errors import UsageError

__all__ = ["AggregationSpec", "HistSpec", "bucket_bounds", "bucket_of", "parse_hist"]


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
        kind: ``count``, ``hist``, or ``syscalls``: per system call, calls, errors and time
            in the kernel (``rawprobe syscalls``, ``sys:`` probes only; ``by`` may be
            ``pid``, ``hist`` a latency histogram per system call).
        by: Group by ``comm``, ``pid``, ``tid``, ``cpu`` or a fetch-arg name.
        hist: For ``hist``: what to measure.
        stack: Also group by the user stack.
    """

    kind: str
    by: str | None = None
    hist: HistSpec | None = None
    stack: bool = False


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
