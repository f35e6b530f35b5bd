"""One-call measurements: count calls, or histogram (or sum up: stats) a value or a latency,
for a while."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._output.tables import CountTable, HistogramSet, Result, SyscallTable, ValueTable
from ._probe.aggregations import LATENCY, AggregationSpec, HistSpec, parse_hist
from ._probe.typed import Probe
from ._tracer import Tracer

__all__ = ["count", "histogram", "latency", "stats"]

Keys = str | Sequence[str] | None  # one key, "comm,size", or several


def _keys(by: Keys) -> str | tuple[str, ...] | None:
    return by if by is None or isinstance(by, str) else tuple(by)


def _run(
    probes: Sequence[str | Probe],
    spec: AggregationSpec,
    duration: float | None,
    pid: int | Sequence[int] | None,
    command: Sequence[str] | None,
    filter: str | None,
) -> Result:
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
    by: Keys = None,
    filter: str | None = None,
) -> dict[Any, int]:
    """Count the calls of each probe in the kernel, for ``duration`` seconds or until the
    ``pid`` processes or the ``command`` end.

    Example::

        rawprobe.count("p:libc:mem*", duration=2.0)   # {"memcpy": 1532, "memset": 210, ...}

    Returns:
        ``{event: calls}``; with ``by``, ``{(event, key): calls}`` (the key a tuple when
        grouped by several keys).
    """
    table = _run(probes, AggregationSpec("count", by=_keys(by)), duration, pid, command,
                 filter)
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
    by: Keys = None,
    filter: str | None = None,
) -> HistogramSet:
    """Histogram an integer field of the probes in the kernel (``field`` as for ``--hist``:
    ``size`` or ``size:linear:0:4096:256``).

    Example::

        print(rawprobe.histogram("p:libc:malloc size=%di:u64", field="size", duration=5))
    """
    spec = AggregationSpec("hist", by=_keys(by), hist=parse_hist(field))
    result = _run(probes, spec, duration, pid, command, filter)
    assert isinstance(result, HistogramSet)
    return result


def latency(
    *probes: str | Probe,
    duration: float | None = None,
    pid: int | Sequence[int] | None = None,
    command: Sequence[str] | None = None,
    by: Keys = None,
    filter: str | None = None,
) -> HistogramSet:
    """Histogram of the time from entry to return of each probed function, in nanoseconds,
    measured in the kernel (give entry probes; the return probes are added).

    Example::

        hist = rawprobe.latency("p:./srv:handle", duration=2.0)
        print(hist)                      # bpftrace-style buckets
        hist["handle"].total             # calls measured
    """
    spec = AggregationSpec("hist", by=_keys(by), hist=HistSpec(LATENCY))
    result = _run(probes, spec, duration, pid, command, filter)
    assert isinstance(result, HistogramSet)
    return result


def stats(
    *probes: str | Probe,
    field: str,
    duration: float | None = None,
    pid: int | Sequence[int] | None = None,
    command: Sequence[str] | None = None,
    by: Keys = None,
    filter: str | None = None,
) -> ValueTable:
    """Count, sum, minimum, maximum and mean of an integer field of the probes, computed in
    the kernel (``field="latency"``: entry to return of each probed function, in ns).

    Example::

        table = rawprobe.stats("p:libc:malloc size=%di:u64", field="size", by="comm",
                               duration=5)
        table.as_dict()[("malloc", "make")]["mean"]
    """
    spec = AggregationSpec("stats", by=_keys(by), field=field)
    result = _run(probes, spec, duration, pid, command, filter)
    assert isinstance(result, ValueTable)
    return result
