"""The planner: probe specs in, a :class:`~rawprobe._plan.session.Plan` out.

For each probe spec: find its file and open it once (:class:`~rawprobe._host.files.TargetFile`),
resolve its LOCATION to sites (symbols, offsets, globs, USDT notes), pass every site through
:func:`~rawprobe._plan.sites.check_site`, name the events, and compile each event's fetch-args,
filter and aggregation into the BPF configuration and record layout it runs with. The result is
one frozen :class:`~rawprobe._plan.session.PlannedEvent` per event id.

Kernel-side probes (``tp:``, ``sys:``) have no file and no site: :mod:`.kernel` compiles their
events (one per tracepoint or system call), and their filters and aggregations are compiled
here as a uprobe's are.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import _log
from .._errors import SymbolNotFoundError, UsageError
from .._host.files import TargetFile
from .._probe.defaults import DEFAULT_STRING_SIZE
from . import abi, plancache
from .events import RecordLayout
from .placement import Placement, plain_placements
from .session import Plan, PlannedEvent
from .sites import Site, check_site, site_warnings, sites_of

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from typing import Any

    from .._probe.aggregations import LATENCY, AggregationSpec
    from .._probe.fetchargs import DebugVariable, Deref, FetchArg, FileOffset, Source
    from .._probe.filters import FilterExpr, parse_filter
    from .._probe.typed import Probe, Span
    from .._probe.words import ProbeSpec, default_event_name, is_glob, parse_probe
    from .aggregate import (
        KeyPart,
        SpanMatch,
        aggregation_config,
        key_decoder,
        key_layout,
        match_field,
        value_signed,
    )
    from .compile import CompiledProbe, compile_fetchargs
    from .filters import compile_filter
    from .kernelplan import KernelPlanner

__all__ = ["Planner"]


def _import_planning() -> None:
    """Import what planning a word afresh takes (the parsers, the compiler, the aggregation
    layouts: tens of milliseconds), once; a word planned from the cache needs none of it."""
    names = globals()
    if "_LATENCY_ARG" in names:
        return
    from .._probe.aggregations import LATENCY
    from .._probe.argtypes import parse_type
    from .._probe.fetchargs import DebugVariable, Deref, FetchArg, FileOffset, Immediate
    from .._probe.filters import parse_filter
    from .._probe.typed import Probe, Span
    from .._probe.words import default_event_name, is_glob, parse_probe
    from .aggregate import (
        SpanMatch,
        aggregation_config,
        key_decoder,
        key_layout,
        match_field,
        value_signed,
    )
    from .compile import compile_fetchargs
    from .filters import compile_filter

    names.update(
        LATENCY=LATENCY, DebugVariable=DebugVariable, Deref=Deref, FetchArg=FetchArg,
        FileOffset=FileOffset, parse_filter=parse_filter, Probe=Probe, Span=Span,
        default_event_name=default_event_name, is_glob=is_glob, parse_probe=parse_probe,
        SpanMatch=SpanMatch, aggregation_config=aggregation_config, key_decoder=key_decoder,
        key_layout=key_layout, match_field=match_field, value_signed=value_signed,
        compile_fetchargs=compile_fetchargs, compile_filter=compile_filter,
        # What a streamed span's END fetches besides its own fields: a placeholder the BPF
        # program (or the tracefs backend) overwrites with the span's duration.
        _LATENCY_ARG=FetchArg(LATENCY, Immediate(0), parse_type("u64"), "\\0:u64", 0))


class _Compiled:
    """What the events of one probe word share: configuration, layout, key decoder."""

    __slots__ = ("config_id", "decoder", "layout", "parts", "reads_memory", "tally",
                 "tally_only", "value_signed")

    def __init__(self, config_id: int, layout: RecordLayout, decoder: Any, reads_memory: bool,
                 tally: bool, tally_only: bool, parts: tuple[KeyPart, ...],
                 value_signed: bool) -> None:
        self.config_id = config_id
        self.layout = layout
        self.decoder = decoder
        self.reads_memory = reads_memory
        self.tally = tally
        self.tally_only = tally_only
        self.parts = parts
        self.value_signed = value_signed


class _SpanPlan:
    """The span a planner measures: how START and END match, and its key's layout."""

    __slots__ = ("layout", "match")

    def __init__(self, match: SpanMatch, layout: tuple[KeyPart, ...]) -> None:
        self.match = match
        self.layout = layout


def _spec_of(probe: str | ProbeSpec | Probe) -> ProbeSpec:
    if isinstance(probe, Probe):
        return probe.spec()
    if isinstance(probe, str):
        return parse_probe(probe)
    return probe


def _position_dependent(fetchargs: Sequence[FetchArg]) -> bool:
    """Whether a fetch depends on where the probe is (``@+OFFSET`` is relative to it)."""

    def walk(source: Source) -> bool:
        if isinstance(source, FileOffset):
            return True
        return isinstance(source, Deref) and walk(source.inner)

    return any(walk(arg.source) for arg in fetchargs)


class Planner:
    """Turns probe specs into planned events.

    Args:
        pids: With ``-p``, the traced processes (targets are looked up in them, and a file
            they do not map is refused).
        string_size: Bytes kept per string, NUL included.
        aggregation: How the events aggregate (None: they stream).
        stack: Events carry the user stack, or aggregations group by it.
        force: Plant what :func:`~rawprobe._plan.sites.check_site` would refuse.
    """

    def __init__(
        self,
        *,
        pids: Sequence[int] = (),
        string_size: int = DEFAULT_STRING_SIZE,
        aggregation: AggregationSpec | None = None,
        stack: bool = False,
        force: bool = False,
    ) -> None:
        if aggregation is not None and stack and not aggregation.stack:
            import dataclasses

            aggregation = dataclasses.replace(aggregation, stack=True)
        self.pids = tuple(pids)
        self.string_size = string_size
        self.aggregation = aggregation
        self.stack = stack or (aggregation is not None and aggregation.stack)
        self.force = force
        self.warnings: list[str] = []  # what a user should know about the probes added
        self.events: list[PlannedEvent] = []
        self._configs: dict[bytes, int] = {}
        self._compiled: dict[tuple[Any, ...], _Compiled] = {}
        self._names: set[str] = set()
        self._files: dict[str, TargetFile] = {}
        self._span: _SpanPlan | None = None
        self._kernel: KernelPlanner | None = None  # tp: and sys: words, planned there
        self.debug_info_used = False  # the last word's places or fetches came from DWARF

    # -- probes ----------------------------------------------------------------------------

    def add(self, probe: str | ProbeSpec | Probe | Span,
            filter_text: str | None = None) -> list[str]:
        """Plan every event of one probe: a probe word, a parsed spec, a typed probe, or a
        :class:`~rawprobe._probe.typed.Span` (its START's events, then its END's).

        Returns:
            The event names it produces (one per matched function).

        Raises:
            ProbeSyntaxError, FilterError: The filter is malformed or names an unknown field.
            TargetNotFoundError, NotElfError, SymbolNotFoundError: Its place does not resolve.
            UsageError: A site is refused (and it was not one of a glob's), or a span is
                mixed with other probes.
        """
        key = plancache.cache_key(self, probe, filter_text)
        if key is not None:
            cached = plancache.plan_cached(self, key)
            if cached is not None:
                return cached
        _import_planning()
        planned, names, span = len(self.events), set(self._names), self._span
        warned, self.debug_info_used = len(self.warnings), False
        try:
            if isinstance(probe, Span):
                return self._add_span(probe, filter_text)
            spec = _spec_of(probe)  # parsed once: the plan cache keeps what it planned to
            added = self._add(spec, filter_text)
        except BaseException:
            # What this probe added goes: the planner is as it was before.
            del self.events[planned:]
            self._names, self._span = names, span
            raise
        if key is not None and not self.debug_info_used:
            plancache.remember(self, key, spec, planned, warned, added)
        return added

    def _add(self, probe: str | ProbeSpec | Probe, filter_text: str | None) -> list[str]:
        if self._span is not None:
            raise UsageError("a span is measured on its own: add no other probes with it")
        spec = _spec_of(probe)
        filter_expr = parse_filter(filter_text) if filter_text else None
        if spec.kernel:
            return self._add_kernel(spec, filter_expr, filter_text)
        if self.aggregation is not None and self.aggregation.kind == "syscalls":
            raise UsageError(f"per-system-call totals count sys: probes, not {spec.text!r}")
        latency = self.aggregation is not None and self.aggregation.measures_latency
        if latency and spec.kind != "p":
            raise UsageError(
                f"latency measures from entry to return: give entry probes (p:), "
                f"not {spec.text!r}; the return probe is added for you (or measure "
                "between two probes with --span START END)"
            )
        roles = ("start", "end") if latency else ("",)
        target, sites, glob = self._accepted(spec, roles)
        return self._plan_sites(spec, target, sites, glob, roles, filter_expr, filter_text)

    def _add_span(self, span: Span, filter_text: str | None) -> list[str]:
        """Plan a span: START's events, then END's, sharing span id 0."""
        if self.events:
            raise UsageError("a span is measured on its own: add no other probes with it")
        start, end = _spec_of(span.start), _spec_of(span.end)
        for spec in (start, end):
            if spec.kernel:
                raise UsageError(f"--span measures between two uprobes, not {spec.text!r} (a "
                                 "system call's own duration is sys: with --hist latency)")
        filter_expr = parse_filter(filter_text) if filter_text else None
        starts = self._accepted(start, ("",))
        ends = self._accepted(end, ("",))
        if not starts[1] or not ends[1]:
            raise UsageError(f"--span: {(start if not starts[1] else end).text!r} matches no "
                             "function that can be probed")
        first_start, first_end = starts[1][0], ends[1][0]
        start_fields = self._fields(start, first_start.site, first_start.fetchargs, "start",
                                    span.key)
        end_fields = self._fields(end, first_end.site, first_end.fetchargs, "end", span.key)
        keys = self.aggregation.keys if self.aggregation is not None else ()
        layout = key_layout(keys, end_fields, start_fields, word=end.text) if keys else ()
        self._span = _SpanPlan(SpanMatch(0, span.key), layout)
        return [
            *self._plan_sites(start, *starts, ("start",), filter_expr, filter_text),
            *self._plan_sites(end, *ends, ("end",), filter_expr, filter_text),
        ]

    def _accepted(self, spec: ProbeSpec, roles: Sequence[str]
                  ) -> tuple[TargetFile, list[Placement], bool]:
        """The target of a spec and the sites of it that pass check_site (for every role:
        a latency pair's return probe too); a refused site fails the word unless it is one of
        a glob's (then it is left out with a warning)."""
        target = self._open(spec)
        glob = is_glob(spec.location)
        placements, go_evidence = self._placements(spec, target, latency="end" in roles)
        accepted: list[Placement] = []
        left_out: dict[str, list[str]] = {}
        for placement in placements:
            refusal = next(
                (reason for role in roles if (reason := check_site(
                    target, placement.return_site or placement.site if role == "end"
                    else placement.site, retprobe=spec.retprobe or role == "end",
                    go_evidence=go_evidence, pids=self.pids, force=self.force)) is not None),
                None,
            )
            site = placement.site
            if refusal is not None:
                if not glob:
                    hint = "" if self.force else " (--force plants it anyway)"
                    if "kernel refuses" in refusal:
                        hint = ""
                    raise UsageError(f"refusing to probe {site.describe(target.path)}: "
                                     f"{refusal}{hint}")
                left_out.setdefault(refusal, []).append(site.symbol or hex(site.file_offset))
                continue
            accepted.append(placement)
        self.warnings += site_warnings(spec, [placement.site for placement in accepted],
                                       left_out, glob)
        return target, accepted, glob

    def _plan_sites(self, spec: ProbeSpec, target: TargetFile, placements: Sequence[Placement],
                    glob: bool, roles: Sequence[str], filter_expr: FilterExpr | None,
                    filter_text: str | None) -> list[str]:
        """Name the placements' events and plan one per role of each."""
        names: list[str] = []
        for placement in placements:
            site = placement.site
            name = default_event_name(spec, placement.event_symbol, site.file_offset,
                                      target.path, placement.name_offset)
            # One word may name several sites (a USDT probe at several places); two words
            # may not share a name.
            if name in self._names and name not in names:
                raise UsageError(
                    f"two probes are both named {name!r}: name one of them "
                    f"({spec.kind}:NAME TARGET:LOCATION ...)"
                )
            for role in roles:
                pair_end = role == "end" and self._span is None
                self._plan_event(spec, placement.return_site or site if pair_end
                                 else site, placement.fetchargs, target, name, role,
                                 filter_expr, filter_text, glob)
            self._names.add(name)
            if name not in names:
                names.append(name)
        return names

    def placements(self, spec: ProbeSpec) -> tuple[TargetFile, list[Placement]]:
        """Where a word's probes would go and what each would read (before
        :func:`~rawprobe._plan.sites.check_site`): what ``rawprobe list --vars`` shows."""
        _import_planning()
        target = self._open(spec)
        return target, self._placements(spec, target, latency=False)[0]

    def _placements(self, spec: ProbeSpec, target: TargetFile,
                    latency: bool) -> tuple[list[Placement], str]:
        """Where a word's probes go and what each reads, and why the file is a Go program
        (or "")."""
        from .._symbols import describe_target

        if spec.source_line is not None:
            self.debug_info_used = True
            from .variables import debug_placements

            return debug_placements(spec, target, (), force=self.force, latency=latency,
                                    warnings=self.warnings), \
                describe_target(target.path).go_evidence or ""
        try:
            sites, go_evidence = sites_of(spec, target, force=self.force)
        except SymbolNotFoundError:
            from .variables import inlined_only_placements

            inlined = inlined_only_placements(spec, target, force=self.force,
                                              warnings=self.warnings)
            if inlined is None:
                raise
            self.debug_info_used = True
            return inlined, describe_target(target.path).go_evidence or ""
        if spec.kind == "usdt" or not any(isinstance(arg.source, DebugVariable)
                                          for arg in spec.fetchargs):
            return plain_placements(spec, sites), go_evidence
        self.debug_info_used = True
        from .variables import debug_placements

        return debug_placements(spec, target, sites, force=self.force, latency=latency,
                                warnings=self.warnings), go_evidence

    def _open(self, spec: ProbeSpec) -> TargetFile:
        from .._symbols import find_target

        path = find_target(spec.target, self.pids[0] if self.pids else None)
        target = self._files.get(path)
        if target is None:
            target = self._files[path] = TargetFile(path)
        return target

    def _fetchargs(self, spec: ProbeSpec, site: Site, base: tuple[FetchArg, ...], role: str,
                   paired: bool) -> tuple[FetchArg, ...]:
        """What a site's event fetches: a USDT probe without fetch-args reads every argument;
        a latency pair's return (``paired``) fetches nothing; a streamed span's END also gets
        ``latency`` (filled with the duration by the BPF program, or the tracefs backend).
        ``base`` is what the word asks for at that site (its debug variables placed there)."""
        if role == "end" and paired:
            return ()
        fetchargs = base
        if site.usdt_args is not None and not fetchargs:
            from .._usdt import default_fetchargs

            fetchargs = default_fetchargs(site.usdt_args)
        if role == "end" and self.aggregation is None:
            if any(arg.name == LATENCY for arg in fetchargs):
                raise UsageError(f"{spec.text}: a streamed span's END gets a field named "
                                 f"{LATENCY} (its duration): rename the one it fetches")
            latency: FetchArg = globals()["_LATENCY_ARG"]  # made by _import_planning()
            fetchargs = (*fetchargs, latency)
        return fetchargs

    def _fields(self, spec: ProbeSpec, site: Site, base: tuple[FetchArg, ...], role: str,
                match: str) -> CompiledProbe:
        """A site's fields, compiled (what a span's key layout is decided from)."""
        compiled = compile_fetchargs(
            self._fetchargs(spec, site, base, role, paired=False), word=spec.text,
            retprobe=spec.retprobe,
            probe_file_offset=site.file_offset, string_size=self.string_size,
            usdt_args=site.usdt_args)
        if match != "tid":
            match_field(match, compiled, spec.text)
        return compiled

    def _plan_event(
        self,
        spec: ProbeSpec,
        site: Site,
        fetchargs: tuple[FetchArg, ...],
        target: TargetFile,
        name: str,
        role: str,
        filter_expr: FilterExpr | None,
        filter_text: str | None,
        glob: bool,
    ) -> None:
        """Plan one uprobe of a site (a latency measurement takes two: entry and return).

        Sites of one probe word share their layout and configuration unless a fetch depends
        on the site's own offset (``@+OFFSET``, USDT arguments), so a glob over thousands of
        functions compiles them once.
        """
        span = self._span
        retprobe = spec.retprobe or (role == "end" and span is None)
        at_entry = site.at_entry and not retprobe and self.stack
        base = fetchargs
        fetchargs = self._fetchargs(spec, site, base, role, paired=span is None)
        position = site.file_offset if _position_dependent(base) else None
        # A latency pair's return reads nothing itself, but its key's layout is its entry's.
        key = (base, fetchargs, role, retprobe, at_entry, site.usdt_args, filter_text, position)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(
                spec, site, name, role, retprobe, at_entry, base, fetchargs, filter_expr,
                filter_text)
        layout = compiled.layout if compiled.layout.event == name else (
            compiled.layout.renamed(name))
        span_id = -1
        if span is not None:
            span_id = span.match.span_id
        elif role:  # a latency pair: the entry's event id
            span_id = len(self.events) - (role == "end")
        self.events.append(PlannedEvent(
            event_id=len(self.events),
            config_id=compiled.config_id,
            path=target.path,
            kernel_path=target.kernel_path,
            file_offset=site.file_offset,
            retprobe=retprobe,
            ref_ctr_offset=site.ref_ctr_offset,
            # The return half of a latency measurement reads nothing (it is compiled so).
            fetchargs=fetchargs if role != "return" else (),
            layout=layout,
            reads_memory=compiled.reads_memory,
            tally=compiled.tally,
            tally_only=compiled.tally_only,
            usdt_args=site.usdt_args,
            role=role,
            from_glob=glob,
            at_entry=at_entry,
            filter=filter_expr if role != "end" else None,
            key_decoder=compiled.decoder,
            key_parts=compiled.parts,
            span_id=span_id,
            match=span.match.match if span is not None else "tid",
            value_signed=compiled.value_signed,
        ))
        if _log.enabled(_log.INFO):
            semaphore = f", semaphore at {site.ref_ctr_offset:#x}" if site.ref_ctr_offset else ""
            _log.info("%s: %s at %s%s", name, "a return probe" if retprobe else "an entry probe",
                      site.describe(target.path), semaphore)

    def _key_parts(self, spec: ProbeSpec, site: Site, base: tuple[FetchArg, ...], role: str,
                   compiled: CompiledProbe) -> tuple[KeyPart, ...]:
        """The grouping key's layout for one event: a span's is decided once for the span; a
        latency pair's from its entry's fields (read there) and its return's (none)."""
        keys = self.aggregation.keys if self.aggregation is not None else ()
        if not keys:
            return ()
        if self._span is not None:
            return self._span.layout
        if role == "start":
            return key_layout(keys, compile_fetchargs(()), compiled, word=spec.text)
        if role == "end":
            entry = self._fields(spec, site, base, "start", "tid")
            return key_layout(keys, compiled, entry, word=spec.text)
        return key_layout(keys, compiled, word=spec.text)

    def _compile(self, spec: ProbeSpec, site: Site, name: str, role: str, retprobe: bool,
                 at_entry: bool, base: tuple[FetchArg, ...], fetchargs: tuple[FetchArg, ...],
                 filter_expr: FilterExpr | None, filter_text: str | None) -> _Compiled:
        aggregation = self.aggregation
        compiled = compile_fetchargs(
            fetchargs,
            word=spec.text,
            retprobe=retprobe,
            probe_file_offset=site.file_offset,
            string_size=self.string_size,
            usdt_args=site.usdt_args,
            stack=self.stack and aggregation is None and role != "start",
        )
        compiled.at_entry = at_entry
        predicates: list[dict[str, object]] = []
        strings: list[bytes] = []
        if filter_expr is not None and role != "end":
            program = compile_filter(filter_expr, compiled, filter_text or "")
            predicates, strings = program.predicates, program.strings
        agg = None
        parts: tuple[KeyPart, ...] = ()
        if aggregation is not None or role:
            parts = self._key_parts(spec, site, base, role, compiled)
            match = self._span.match if self._span is not None else (
                SpanMatch(abi.SPAN_PAIRED) if role else None)
            agg = aggregation_config(aggregation, compiled, word=spec.text, parts=parts,
                                     role=role, span=match)
        config = compiled.config(predicates, strings, agg)
        # Stack maps are for non-sleepable programs only.
        reads_memory = compiled.reads_memory and not (
            aggregation is not None and aggregation.stack
        )
        tally = bool(agg and agg["action"] == abi.Action.TALLY)
        return _Compiled(self._configs.setdefault(config, len(self._configs)),
                         RecordLayout(name, compiled), key_decoder(parts), reads_memory, tally,
                         tally and not predicates, parts,
                         value_signed(aggregation, compiled))

    # -- kernel-side probes ----------------------------------------------------------------

    def _add_kernel(self, spec: ProbeSpec, filter_expr: FilterExpr | None,
                    filter_text: str | None) -> list[str]:
        """Plan the events of a ``tp:`` or ``sys:`` word: one per tracepoint or system call."""
        if self._kernel is None:
            from .kernelplan import KernelPlanner

            self._kernel = KernelPlanner(self.aggregation, stack=self.stack,
                                         string_size=self.string_size, configs=self._configs)
        events, warnings = self._kernel.plan(spec, filter_expr, filter_text,
                                             first_id=len(self.events))
        self.warnings += warnings
        for event in events:
            if event.name in self._names:
                raise UsageError(f"two probes are both named {event.name!r} ({spec.text!r} "
                                 "and another): name the other one (p:NAME TARGET:LOCATION)")
            self._names.add(event.name)
        self.events += events
        return [event.name for event in events]

    # -- what the plan cache reads and restores --------------------------------------------

    @property
    def has_span(self) -> bool:
        return self._span is not None

    @property
    def names(self) -> set[str]:
        """The event names planned so far."""
        return self._names

    def opened(self, path: str) -> TargetFile | None:
        """The target already opened for ``path``, if any."""
        return self._files.get(path)

    def configs(self) -> list[bytes]:
        """The configurations so far, by id."""
        return list(self._configs)

    def config_id(self, config: bytes) -> int:
        """The id of a configuration (a new one gets the next)."""
        return self._configs.setdefault(config, len(self._configs))

    def adopt(self, target: TargetFile, events: Sequence[PlannedEvent],
              warnings: Sequence[str]) -> None:
        """Take a word's events as the plan cache restored them, in ``target``."""
        self._files.setdefault(target.path, target)
        self.events += events
        self.warnings += warnings
        self._names.update(event.name for event in events)

    # -- the result ------------------------------------------------------------------------

    def plan(self) -> Plan:
        """The plan of everything added so far.

        Raises:
            UsageError: No probes were added.
        """
        if not self.events:
            raise UsageError("no probes to attach")
        return Plan(tuple(self.events), tuple(self._configs), self.aggregation, self.stack,
                    self.string_size,
                    tuple((path, target.key) for path, target in self._files.items()))

    def release_files(self) -> None:
        """Close the opened targets. A run keeps them open while its probes are planted: the
        kernel keeps ``/proc/self/fd/N`` as each probe's path, and ``rawprobe probes`` reads
        the file's name from that descriptor."""
        files, self._files = self._files, {}
        for target in files.values():
            target.close()
