"""One-call measurements: count calls, or histogram a value or a latency, for a while."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._output.tables import CountTable, HistogramSet, SyscallTable
from ._probe.aggregations import AggregationSpec, HistSpec, parse_hist
from ._probe.typed import Probe
from ._tracer import Tracer

__all__ = ["count", "histogram", "latency"]


def _run(
    probes: Sequence[str | Probe],
    spec: AggregationSpec,
    duration: float | None,
    pid: int | Sequence[int] | None,
    command: Sequence[str] | None,
    filter: str | None,
) -> CountTable | HistogramSet:
    if duration is None and pid is None and command is None:
        raise ValueError("give a duration, a pid or a command: something must end the run")
    with Tracer(pid, command=command, aggregation=spec) as tracer:
        for probe in probes:
            tracer.add(probe, filter=filter)
        tracer.run(duration)
        result = tracer.aggregates()
        assert not isinstance(result, SyscallTable)  # only a "syscalls" spec gives one
        return result


def count(
    *probes: str | Probe,
    duration: float | None = None,
    pid: int | Sequence[int] | None = None,
    command: Sequence[str] | None = None,
    by: str | None = None,
    filter: str | None = None,
) -> dict[Any, int]:
    """Count the calls of each probe in the kernel, for ``duration`` seconds or until the
    ``pid`` processes or the ``command`` end.

    Example::

        rawprobe.count("p:libc:mem*", duration=2.0)   # {"memcpy": 1532, "memset": 210, ...}

    Returns:
        ``{event: calls}``; with ``by``, ``{(event, key): calls}``.
    """
    table = _run(probes, AggregationSpec("count", by=by), duration, pid, command, filter)
    assert isinstance(table, CountTable)
    if by is None:
        return {row.event: row.count for row in table.rows}
    return {(row.event, row.key): row.count for row in table.rows}


def histogram(
    *probes: str | Probe,
    field: str,
    duration: float | None = None,
    pid: int | Sequence[int] | None = None,
    command: Sequence[str] | None = None,
    by: str | None = None,
    filter: str | None = None,
) -> HistogramSet:
    """Histogram an integer field of the probes in the kernel (``field`` as for ``--hist``:
    ``size`` or ``size:linear:0:4096:256``).

    Example::

        print(rawprobe.histogram("p:libc:malloc size=%di:u64", field="size", duration=5))
    """
    spec = AggregationSpec("hist", by=by, hist=parse_hist(field))
    result = _run(probes, spec, duration, pid, command, filter)
    assert isinstance(result, HistogramSet)
    return result


def latency(
    *probes: str | Probe,
    duration: float | None = None,
    pid: int | Sequence[int] | None = None,
    command: Sequence[str] | None = None,
    by: str | None = None,
    filter: str | None = None,
) -> HistogramSet:
    """Histogram of the time from entry to return of each probed function, in nanoseconds,
    measured in the kernel (give entry probes; the return probes are added).

    Example::

        hist = rawprobe.latency("p:./srv:handle", duration=2.0)
        print(hist)                      # bpftrace-style buckets
        hist["handle"].total             # calls measured
    """
    spec = AggregationSpec("hist", by=by, hist=HistSpec("latency"))
    result = _run(probes, spec, duration, pid, command, filter)
    assert isinstance(result, HistogramSet)
    return result
