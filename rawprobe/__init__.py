"""rawprobe: a user-space dynamic tracer (uprobes, uretprobes, USDT) built on precompiled BPF.

The library the ``rawprobe`` command is built on::

    import rawprobe

    with rawprobe.Tracer() as tracer:
        tracer.add("r:/bin/bash:readline line=+0($retval):string")
        for event in tracer.events(timeout=5.0):
            print(event.pid, event.comm, event.args["line"])

    counts = rawprobe.count("p:libc:mem*", duration=2.0)        # {function: calls}
    print(rawprobe.latency("p:./srv:handle", duration=2.0))     # a histogram, in ns

Names are imported on first use, so ``import rawprobe`` stays cheap. Every error is a
:class:`RawprobeError`. A :class:`Tracer` is used from one thread at a time (its
:meth:`~Tracer.stop` may be called from any thread or a signal handler); run one tracer per
thread for parallel work.
"""

from __future__ import annotations

import importlib

from ._errors import (
    BpfObjectError,
    ClosedError,
    FetchArgError,
    FilterError,
    KernelFeatureError,
    LibbpfMissingError,
    NotElfError,
    PrivilegeError,
    ProbeSyntaxError,
    RawprobeError,
    SymbolNotFoundError,
    SysCallError,
    TargetNotFoundError,
    UsageError,
)
from ._version import __version__

# Not typing.TYPE_CHECKING: importing typing (and the re module it imports) would cost every
# start-up; mypy treats a variable of this name the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._census import ActiveProbe, Inventory, list_probes
    from ._census import clean_stale as clean_stale_probes
    from ._doctor import Check, can_trace, run_checks
    from ._host.privileges import check_tracing_privileges as check_privileges
    from ._output.format import EventFormatter, WallClock
    from ._output.tables import (
        Count,
        CountTable,
        Histogram,
        HistogramSet,
        SyscallTable,
        ValueRow,
        ValueTable,
    )
    from ._plan.events import Batch, Event
    from ._plan.listing import FunctionLines, SiteVariables, list_lines, list_variables
    from ._plan.session import SpanCounters
    from ._plan.sites import check_locations
    from ._probe.aggregations import AggregationSpec, HistSpec, parse_hist
    from ._probe.defaults import DEFAULT_RING_SIZE, DEFAULT_STRING_SIZE
    from ._probe.typed import Probe, Span, Uprobe, Uretprobe, Usdt
    from ._probe.words import ProbeSpec, parse_probe, split_place
    from ._quick import count, histogram, latency, stats
    from ._symbols import (
        Location,
        Symbol,
        TargetInfo,
        describe_target,
        find_target,
        list_functions,
        resolve_location,
    )
    from ._symbols.symbolize import AddressResolver
    from ._tracer import Tracer, TraceStats
    from ._usdt import UsdtNotFoundError, UsdtSite, list_usdt_probes

# Public name -> (module, name in it), imported on first use.
_LAZY = {
    "AddressResolver": ("._symbols.symbolize", "AddressResolver"),
    "AggregationSpec": ("._probe.aggregations", "AggregationSpec"),
    "Count": ("._output.tables", "Count"),
    "CountTable": ("._output.tables", "CountTable"),
    "Histogram": ("._output.tables", "Histogram"),
    "HistogramSet": ("._output.tables", "HistogramSet"),
    "ValueRow": ("._output.tables", "ValueRow"),
    "ValueTable": ("._output.tables", "ValueTable"),
    "SyscallTable": ("._output.tables", "SyscallTable"),
    "HistSpec": ("._probe.aggregations", "HistSpec"),
    "parse_hist": ("._probe.aggregations", "parse_hist"),
    "DEFAULT_RING_SIZE": ("._probe.defaults", "DEFAULT_RING_SIZE"),
    "DEFAULT_STRING_SIZE": ("._probe.defaults", "DEFAULT_STRING_SIZE"),
    "ActiveProbe": ("._census", "ActiveProbe"),
    "Inventory": ("._census", "Inventory"),
    "list_probes": ("._census", "list_probes"),
    "clean_stale_probes": ("._census", "clean_stale"),
    "Check": ("._doctor", "Check"),
    "run_checks": ("._doctor", "run_checks"),
    "can_trace": ("._doctor", "can_trace"),
    "EventFormatter": ("._output.format", "EventFormatter"),
    "WallClock": ("._output.format", "WallClock"),
    "check_privileges": ("._host.privileges", "check_tracing_privileges"),
    "ProbeSpec": ("._probe.words", "ProbeSpec"),
    "parse_probe": ("._probe.words", "parse_probe"),
    "split_place": ("._probe.words", "split_place"),
    "Probe": ("._probe.typed", "Probe"),
    "Uprobe": ("._probe.typed", "Uprobe"),
    "Uretprobe": ("._probe.typed", "Uretprobe"),
    "Usdt": ("._probe.typed", "Usdt"),
    "Span": ("._probe.typed", "Span"),
    "SpanCounters": ("._plan.session", "SpanCounters"),
    "check_locations": ("._plan.sites", "check_locations"),
    "count": ("._quick", "count"),
    "histogram": ("._quick", "histogram"),
    "latency": ("._quick", "latency"),
    "stats": ("._quick", "stats"),
    "Event": ("._plan.events", "Event"),
    "Batch": ("._plan.events", "Batch"),
    "FunctionLines": ("._plan.listing", "FunctionLines"),
    "SiteVariables": ("._plan.listing", "SiteVariables"),
    "list_lines": ("._plan.listing", "list_lines"),
    "list_variables": ("._plan.listing", "list_variables"),
    "Location": ("._symbols", "Location"),
    "Symbol": ("._symbols", "Symbol"),
    "TargetInfo": ("._symbols", "TargetInfo"),
    "describe_target": ("._symbols", "describe_target"),
    "find_target": ("._symbols", "find_target"),
    "list_functions": ("._symbols", "list_functions"),
    "resolve_location": ("._symbols", "resolve_location"),
    "Tracer": ("._tracer", "Tracer"),
    "TraceStats": ("._tracer", "TraceStats"),
    "UsdtNotFoundError": ("._usdt", "UsdtNotFoundError"),
    "UsdtSite": ("._usdt", "UsdtSite"),
    "list_usdt_probes": ("._usdt", "list_usdt_probes"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'rawprobe' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name, __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DEFAULT_RING_SIZE",
    "DEFAULT_STRING_SIZE",
    "ActiveProbe",
    "AddressResolver",
    "AggregationSpec",
    "Batch",
    "BpfObjectError",
    "Check",
    "ClosedError",
    "Count",
    "CountTable",
    "Event",
    "EventFormatter",
    "FetchArgError",
    "FilterError",
    "FunctionLines",
    "HistSpec",
    "Histogram",
    "HistogramSet",
    "Inventory",
    "KernelFeatureError",
    "LibbpfMissingError",
    "Location",
    "NotElfError",
    "PrivilegeError",
    "Probe",
    "ProbeSpec",
    "ProbeSyntaxError",
    "RawprobeError",
    "SiteVariables",
    "Span",
    "SpanCounters",
    "Symbol",
    "SymbolNotFoundError",
    "SysCallError",
    "SyscallTable",
    "TargetInfo",
    "TargetNotFoundError",
    "TraceStats",
    "Tracer",
    "Uprobe",
    "Uretprobe",
    "UsageError",
    "Usdt",
    "UsdtNotFoundError",
    "UsdtSite",
    "ValueRow",
    "ValueTable",
    "WallClock",
    "__version__",
    "can_trace",
    "check_locations",
    "check_privileges",
    "clean_stale_probes",
    "count",
    "describe_target",
    "find_target",
    "histogram",
    "latency",
    "list_functions",
    "list_lines",
    "list_probes",
    "list_usdt_probes",
    "list_variables",
    "parse_hist",
    "parse_probe",
    "resolve_location",
    "run_checks",
    "split_place",
    "stats",
]
