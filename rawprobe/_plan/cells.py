"""What a backend counted: the cells of an aggregation, and a system call's totals."""

from __future__ import annotations

from .._values import Record

__all__ = ["AggregateCell", "SyscallTotal"]

_setattr = object.__setattr__


class AggregateCell(tuple):  # type: ignore[type-arg]
    """One cell of an aggregation, as a backend counted it.

    Attributes:
        event_id: The event.
        stack_id: The user stack it was grouped by (see :meth:`Session.stack`), or -1.
        bucket: The histogram bucket (numbered as ``bucket_of`` numbers them), 0 for counts.
        key: The grouping key's bytes (``struct rp_agg_key.data``), empty when not grouped.
        value: How many hits fell in it.
        total: The sum of their values (an aggregation of a value; else 0).
        minimum: The smallest of their values (else 0).
        maximum: The largest of their values (else 0).
    """

    __slots__ = ()

    def __new__(cls, event_id: int, stack_id: int, bucket: int, key: bytes, value: int,
                total: int = 0, minimum: int = 0, maximum: int = 0) -> AggregateCell:
        return tuple.__new__(cls, (event_id, stack_id, bucket, key, value, total, minimum,
                                   maximum))

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

    @property
    def total(self) -> int:
        return int(self[5])

    @property
    def minimum(self) -> int:
        return int(self[6])

    @property
    def maximum(self) -> int:
        return int(self[7])


class SyscallTotal(Record):
    """One system call's totals, as ``rawprobe syscalls`` counts them in the kernel.

    Attributes:
        event_id: The system call's event.
        pid: The process (``--by pid``), or 0.
        calls: Calls that ended (and passed the filter).
        errors: Those that returned -4095..-1.
        total_ns: Time spent in them, entry to exit.
    """

    __slots__ = ("calls", "errors", "event_id", "pid", "total_ns")

    event_id: int
    pid: int
    calls: int
    errors: int
    total_ns: int

    def __init__(self, event_id: int, pid: int, calls: int, errors: int,
                 total_ns: int) -> None:
        _setattr(self, "event_id", event_id)
        _setattr(self, "pid", pid)
        _setattr(self, "calls", calls)
        _setattr(self, "errors", errors)
        _setattr(self, "total_ns", total_ns)
