"""Planning kernel-side words (``tp:``, ``sys:``) into planned events, for the planner.

:mod:`.kernel` lays their records out; this module decides what each event does with a hit:
stream it, aggregate it (through the same ``struct rp_aggregation`` a uprobe's hits use), or
add it to the per-system-call totals of ``rawprobe syscalls``.
"""

from __future__ import annotations

from typing import Any

from .._errors import UsageError
from .._probe.aggregations import AggregationSpec
from .._probe.filters import FilterExpr
from .._probe.words import ProbeSpec
from . import abi
from .aggregate import KeyPart, aggregation_config, key_decoder, key_layout, value_signed
from .filters import compile_filter
from .kernel import KernelEvent, filter_names, syscall_events, tracepoint_events
from .session import PlannedEvent

__all__ = ["KernelPlanner"]


class KernelPlanner:
    """Plans the ``tp:`` and ``sys:`` words of one planner.

    Args:
        aggregation: The planner's aggregation (``syscalls`` for per-system-call totals).
        stack: Record (or group by) the user stack.
        string_size: Bytes kept of each string.
        configs: The planner's BPF configurations, by bytes: each event's is added there.
    """

    def __init__(self, aggregation: AggregationSpec | None, *, stack: bool, string_size: int,
                 configs: dict[bytes, int]) -> None:
        self.aggregation = aggregation
        self.summary = aggregation is not None and aggregation.kind == "syscalls"
        self.stack = stack and aggregation is None
        self.string_size = string_size
        self._configs = configs
        self._catalog: Any = None  # the running kernel's system calls, read once
        self._shaped: dict[tuple[Any, ...], bytes] = {}  # configurations by shape, filter, agg

    def plan(self, spec: ProbeSpec, filter_expr: FilterExpr | None, filter_text: str | None,
             *, first_id: int) -> tuple[list[PlannedEvent], list[str]]:
        """The events of one word (numbered from ``first_id``), and warnings about it.

        Raises:
            UsageError: The word does not go with the aggregation, or names nothing.
        """
        aggregation = self.aggregation
        if spec.kind == "tp":
            if self.summary:
                raise UsageError(f"per-system-call totals count sys: probes, not {spec.text!r}")
            if aggregation is not None and aggregation.measures_latency:
                raise UsageError(f"latency: {spec.text!r} is a tracepoint, which has no "
                                 "duration; latencies are for p: and sys: probes")
            events, warnings = tracepoint_events(spec, string_size=self.string_size,
                                                 stack=self.stack)
        else:
            if self.summary and aggregation is not None and (
                    aggregation.keys not in ((), ("pid",)) or aggregation.stack):
                raise UsageError("per-system-call totals group by pid only")
            if self._catalog is None:
                from .._syscalls import load_catalog

                self._catalog = load_catalog(exit_ids=False)
            # Totals read memory only for what their filter compares.
            captures = sorted(filter_names(filter_expr)) if self.summary else None
            events, warnings = syscall_events(spec, self._catalog, string_size=self.string_size,
                                              stack=self.stack, captures_for=captures)
        planned = [self._event(spec, event, first_id + index, filter_expr, filter_text)
                   for index, event in enumerate(events)]
        return planned, warnings

    def _event(self, spec: ProbeSpec, event: KernelEvent, event_id: int,
               filter_expr: FilterExpr | None, filter_text: str | None) -> PlannedEvent:
        aggregation, summary = self.aggregation, self.summary
        compiled = event.compiled
        predicates: list[dict[str, object]] = []
        strings: list[bytes] = []
        if filter_expr is not None:
            program = compile_filter(filter_expr, compiled, filter_text or "")
            predicates, strings = program.predicates, program.strings
        agg: dict[str, object] | None = None
        parts: tuple[KeyPart, ...] = ()
        measured = aggregation
        if aggregation is not None:
            if summary and aggregation.hist is not None:
                measured = AggregationSpec("hist", by=aggregation.by, hist=aggregation.hist)
            if summary and aggregation.hist is None:
                agg = {"action": abi.Action.TALLY}
            else:
                assert measured is not None
                parts = key_layout(measured.keys, compiled, word=spec.text)
                agg = aggregation_config(measured, compiled, word=spec.text, parts=parts,
                                         duration=event.kind == "syscall")
        # System calls of one shape share their configuration: building one takes a while.
        key = None if event.shape is None else (event.shape, filter_text, repr(agg))
        config = self._shaped.get(key) if key is not None else None
        if config is None:
            config = compiled.config(predicates, strings, agg)
            if key is not None:
                self._shaped[key] = config
        tally = not summary and bool(agg and agg["action"] == abi.Action.TALLY)
        tally_only = tally and not predicates
        return PlannedEvent(
            event_id=event_id,
            config_id=self._configs.setdefault(config, len(self._configs)),
            path=event.description,
            kernel_path="",
            file_offset=0,
            retprobe=False,
            ref_ctr_offset=0,
            fetchargs=spec.fetchargs,
            layout=event.layout,
            reads_memory=False,
            tally=tally,
            tally_only=tally_only,
            filter=filter_expr,
            key_decoder=key_decoder(parts),
            key_parts=parts,
            value_signed=value_signed(measured, compiled),
            kind=event.kind,
            tracepoint_id=event.tracepoint_id,
            syscall_nr=event.syscall_nr,
            syscall_flags=self._syscall_flags(event, bool(predicates), tally_only),
        )

    def _syscall_flags(self, event: KernelEvent, filtered: bool, tally_only: bool) -> int:
        """How the system call programs treat the event (``abi.SysFlag``); 0: a tracepoint."""
        if event.kind != "syscall":
            return 0
        flags = abi.SysFlag.TRACED | event.syscall_flags
        aggregation = self.aggregation
        if self.summary:
            assert aggregation is not None
            flags |= abi.SysFlag.SUMMARY
            if filtered or aggregation.hist is not None:
                flags |= abi.SysFlag.RECORD
            if aggregation.keys == ("pid",):
                flags |= abi.SysFlag.BY_PID
        elif tally_only:
            flags |= abi.SysFlag.TALLY
        else:
            flags |= abi.SysFlag.RECORD
        return flags
