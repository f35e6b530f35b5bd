"""The planner: probe specs in, a :class:`~rawprobe._plan.session.Plan` out.

For each probe spec: find its file and open it once (:class:`~rawprobe._host.files.TargetFile`),
resolve its LOCATION to sites (symbols, offsets, globs, USDT notes), pass every site through
:func:`~rawprobe._plan.sites.check_site`, name the events, and compile each event's fetch-args,
filter and aggregation into the BPF configuration and record layout it runs with. The result is
one frozen :class:`~rawprobe._plan.session.PlannedEvent` per event id.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import RawprobeError, UsageError
from .._host.files import TargetFile
from .._probe.defaults import DEFAULT_STRING_SIZE
from . import plancache
from .events import RecordLayout
from .session import Plan, PlannedEvent

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from typing import Any

    from .._probe.aggregations import AggregationSpec
    from .._probe.fetchargs import FetchArg, Source
    from .._probe.filters import FilterExpr
    from .._probe.typed import Probe
    from .._probe.words import ProbeSpec
    from .sites import Site

# The parsers, the site checks and the compiler are imported where a word is planned: a plan
# from the cache (plancache) needs none of them.

__all__ = ["Planner", "check_locations"]


class _Compiled:
    """What the events of one probe word share: configuration, layout, key decoder."""

    __slots__ = ("config_id", "decoder", "layout", "reads_memory", "tally", "tally_only")

    def __init__(self, config_id: int, layout: RecordLayout, decoder: Any, reads_memory: bool,
                 tally: bool, tally_only: bool) -> None:
        self.config_id = config_id
        self.layout = layout
        self.decoder = decoder
        self.reads_memory = reads_memory
        self.tally = tally
        self.tally_only = tally_only


def _position_dependent(fetchargs: Sequence[FetchArg]) -> bool:
    """Whether a fetch depends on where the probe is (``@+OFFSET`` is relative to it)."""

    from .._probe.fetchargs import Deref, FileOffset

    def walk(source: Source) -> bool:
        if isinstance(source, FileOffset):
            return True
        return isinstance(source, Deref) and walk(source.inner)

    return any(walk(arg.source) for arg in fetchargs)


def _some(names: Sequence[str], shown: int = 5) -> str:
    """The first few names, and how many more."""
    text = ", ".join(names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def check_locations(
    path: str,
    locations: Sequence[Any],
    *,
    retprobe: bool = False,
    pids: Sequence[int] = (),
) -> list[str | None]:
    """Attach's verdict on resolved locations: why each would be refused, or None.

    Args:
        path: The file (as :func:`rawprobe.find_target` gives it).
        locations: :class:`rawprobe.Location` objects of that file.
        retprobe: For return probes.
        pids: With ``-p``, the traced processes.

    Returns:
        Per location, the reason :func:`~rawprobe._plan.sites.check_site` refuses it, or None.
    """
    from .._symbols import describe_target
    from .sites import Site, check_site

    target = TargetFile(path)
    try:
        go_evidence = describe_target(path).go_evidence or ""
        return [
            check_site(target, Site(location.symbol, location.file_offset,
                                    location.symbol_offset, location.size,
                                    kind="offset" if location.symbol is None else location.kind),
                       retprobe=retprobe, go_evidence=go_evidence, pids=pids)
            for location in locations
        ]
    finally:
        target.close()


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
        self._config_list: list[bytes] = []  # the same, by id
        self._compiled: dict[tuple[Any, ...], _Compiled] = {}
        self._names: set[str] = set()
        self._files: dict[str, TargetFile] = {}

    # -- probes ----------------------------------------------------------------------------

    def add(self, probe: str | ProbeSpec | Probe, filter_text: str | None = None) -> list[str]:
        """Plan every event of one probe: a probe word, a parsed spec, or a typed probe.

        Returns:
            The event names it produces (one per matched function).

        Raises:
            ProbeSyntaxError, FilterError: The filter is malformed or names an unknown field.
            TargetNotFoundError, NotElfError, SymbolNotFoundError, UsageError: Its place does
                not resolve, or a site is refused (and it was not one of a glob's).
        """
        key = self._cache_key(probe, filter_text)
        if key is not None:
            cached = self._add_cached(key)
            if cached is not None:
                return cached
        from .._probe.filters import parse_filter
        from .._probe.typed import Probe
        from .._probe.words import default_event_name, is_glob, parse_probe
        from .sites import check_site

        if isinstance(probe, Probe):
            spec = probe.spec()
        elif isinstance(probe, str):
            spec = parse_probe(probe)
        else:
            spec = probe
        first_event, first_warning = len(self.events), len(self.warnings)
        filter_expr = parse_filter(filter_text) if filter_text else None
        latency = self.aggregation is not None and self.aggregation.hist is not None and (
            self.aggregation.hist.is_latency
        )
        if latency and spec.kind != "p":
            raise UsageError(
                f"--hist latency measures from entry to return: give entry probes (p:), "
                f"not {spec.text!r}; the return probe is added for you"
            )
        target = self._open(spec)
        roles = ("entry", "return") if latency else ("",)
        glob = is_glob(spec.location)
        sites, go_evidence = self._sites(spec, target)
        accepted: list[Site] = []
        left_out: dict[str, list[str]] = {}
        for site in sites:
            refusal = next(
                (reason for role in roles if (reason := check_site(
                    target, site, retprobe=spec.retprobe or role == "return",
                    go_evidence=go_evidence, pids=self.pids, force=self.force)) is not None),
                None,
            )
            if refusal is not None:
                if not glob:
                    hint = "" if self.force else " (--force plants it anyway)"
                    if "kernel refuses" in refusal:
                        hint = ""
                    raise UsageError(f"refusing to probe {site.describe(target.path)}: "
                                     f"{refusal}{hint}")
                left_out.setdefault(refusal, []).append(site.symbol or hex(site.file_offset))
                continue
            accepted.append(site)
        self._warn(spec, accepted, left_out, glob)
        names: list[str] = []
        for site in accepted:
            name = default_event_name(spec, site.symbol, site.file_offset, target.path)
            # One word may name several sites (a USDT probe at several places); two words
            # may not share a name.
            if name not in names:
                self._check_name(name, spec.kind)
            for role in roles:
                self._plan_event(spec, site, target, name, role, filter_expr, filter_text, glob)
            self._names.add(name)
            if name not in names:
                names.append(name)
        if key is not None:
            self._store(key, spec, target, names, first_event, first_warning)
        return names

    def _check_name(self, name: str, kind: str) -> None:
        """One word may name several sites (a USDT probe at several places); two words may
        not share a name."""
        if name in self._names:
            raise UsageError(
                f"two probes are both named {name!r}: name one of them "
                f"({kind}:NAME TARGET:LOCATION ...)"
            )

    # -- the plan cache --------------------------------------------------------------------

    def _cache_key(self, probe: object, filter_text: str | None) -> tuple[Any, ...] | None:
        """What decides a word's plan besides its files (None: a typed probe, not cached)."""
        if not isinstance(probe, str):
            return None
        aggregation = self.aggregation
        hist = None if aggregation is None or aggregation.hist is None else (
            aggregation.hist.field, aggregation.hist.linear)
        shape = None if aggregation is None else (aggregation.kind, aggregation.by, hist,
                                                  aggregation.stack)
        import os

        return (plancache.fingerprint(), probe, filter_text, self.string_size, shape,
                self.stack, self.force, bool(self.pids),
                os.environ.get("RAWPROBE_DEBUG_ROOT"))

    def _add_cached(self, key: tuple[Any, ...]) -> list[str] | None:
        """Plan a word from the cache; None when there is no entry still true here."""
        entry = plancache.load(key)
        if entry is None:
            return None
        from .._symbols._target import find_target

        try:
            path = find_target(entry.target, self.pids[0] if self.pids else None)
            target = self._files.get(path) or TargetFile(path)
        except RawprobeError:
            return None  # planning it afresh says what is wrong
        fresh = entry.fresh(target)
        if fresh and self.pids:
            from .sites import maps_file

            fresh = not all(maps_file(pid, target) is False for pid in self.pids)
        if not fresh:
            if path not in self._files:
                target.close()
            return None
        for name in entry.names:
            self._check_name(name, entry.kind)
        self._files[path] = target
        decoder = None
        if self.aggregation is not None and self.aggregation.by is not None:
            from .aggregate import key_decoder

            decoder = key_decoder
        self.events += plancache.restore_events(
            entry, len(self.events), [self._config_id(config) for config in entry.configs],
            target, self.aggregation.by if self.aggregation is not None else None, decoder)
        self.warnings += entry.warnings
        self._names.update(entry.names)
        return list(entry.names)

    def _store(self, key: tuple[Any, ...], spec: ProbeSpec, target: TargetFile,
               names: list[str], first_event: int, first_warning: int) -> None:
        dependencies: list[tuple[str, tuple[int, ...]]] = []
        if spec.kind != "usdt":
            from .._symbols import open_index

            dependencies = [(path, tuple(identity)) for path, identity in
                            open_index(target.path, expect_key=target.key).dependencies]
        entry = plancache.capture(spec.kind, spec.target, target, dependencies,
                                  self.warnings[first_warning:], names,
                                  self.events[first_event:], self._config_list)
        if entry is not None:
            plancache.store(key, entry)

    def _config_id(self, config: bytes) -> int:
        config_id = self._configs.setdefault(config, len(self._configs))
        if config_id == len(self._config_list):
            self._config_list.append(config)
        return config_id

    def _open(self, spec: ProbeSpec) -> TargetFile:
        from .._symbols import find_target

        path = find_target(spec.target, self.pids[0] if self.pids else None)
        target = self._files.get(path)
        if target is None:
            target = self._files[path] = TargetFile(path)
        return target

    def _sites(self, spec: ProbeSpec, target: TargetFile) -> tuple[list[Site], str]:
        """The sites a spec names in ``target``, and why the file is a Go program (or "")."""
        if spec.kind == "usdt":
            from .._usdt import find_usdt_probes

            if spec.ref_ctr_offset is not None:
                raise UsageError(
                    f"{spec.text}: a USDT probe's semaphore comes from its note; drop the "
                    "(OFFSET) after the place"
                )
            from .sites import Site

            return [
                Site(probe.name, probe.file_offset, ref_ctr_offset=probe.semaphore_offset or 0,
                     usdt_args=probe.arguments, kind="usdt")
                for probe in find_usdt_probes(target.path, spec.location, expect_key=target.key)
            ], ""
        from .._symbols import describe_target, resolve_location
        from .sites import Site

        locations = resolve_location(target.path, spec.location, force=self.force,
                                     expect_key=target.key)
        if spec.ref_ctr_offset is not None:
            self._check_ref_ctr(spec, target)
        go_evidence = describe_target(target.path).go_evidence or ""
        return [
            Site(location.symbol, location.file_offset, location.symbol_offset, location.size,
                 spec.ref_ctr_offset or 0, None,
                 "offset" if location.symbol is None else location.kind, location.warning)
            for location in locations
        ], go_evidence

    def _check_ref_ctr(self, spec: ProbeSpec, target: TargetFile) -> None:
        """A reference counter the kernel raises must be a semaphore a USDT note names: any
        other word of the program's data would be incremented under its feet."""
        if self.force:
            return
        from .._usdt import semaphore_offsets

        if spec.ref_ctr_offset not in semaphore_offsets(target.path):
            raise UsageError(
                f"{spec.text}: ({spec.ref_ctr_offset:#x}) is not the file offset of a USDT "
                f"semaphore of {target.path} (see 'rawprobe list --usdt {target.path}'): the "
                "kernel would increment whatever is there while the probe is planted, changing "
                "the program's data; --force to do it anyway"
            )

    def _warn(self, spec: ProbeSpec, sites: Sequence[Site], left_out: dict[str, list[str]],
              glob: bool) -> None:
        ifuncs = [site.symbol or hex(site.file_offset) for site in sites
                  if site.kind == "ifunc" and site.symbol_offset == 0]
        for site in sites:
            if site.warning and not (glob and site.kind == "ifunc"):
                self.warnings.append(f"{site.symbol or spec.location}: {site.warning}")
        if glob and ifuncs:
            self.warnings.append(
                f"{len(ifuncs)} of the functions {spec.location} matches are indirect "
                f"functions (IFUNC) ({_some(ifuncs)}): their probes hit the resolver the "
                "dynamic linker runs once, not the calls; probe the implementations")
        for reason, symbols in left_out.items():
            self.warnings.append(f"{len(symbols)} of the functions {spec.location} matches "
                                 f"left out ({_some(symbols)}): {reason}")

    def _plan_event(
        self,
        spec: ProbeSpec,
        site: Site,
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
        retprobe = spec.retprobe or role == "return"
        at_entry = site.at_entry and not retprobe and self.stack
        fetchargs = spec.fetchargs
        if site.usdt_args is not None and not fetchargs:
            from .._usdt import default_fetchargs

            fetchargs = default_fetchargs(site.usdt_args)
        position = site.file_offset if _position_dependent(fetchargs) else None
        key = (fetchargs, role, retprobe, at_entry, site.usdt_args, filter_text, position)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(
                spec, site, name, role, retprobe, at_entry, fetchargs, filter_expr, filter_text)
        layout = compiled.layout if compiled.layout.event == name else (
            compiled.layout.renamed(name))
        self.events.append(PlannedEvent(
            event_id=len(self.events),
            config_id=compiled.config_id,
            path=target.path,
            kernel_path=target.kernel_path,
            file_offset=site.file_offset,
            retprobe=retprobe,
            ref_ctr_offset=site.ref_ctr_offset,
            fetchargs=fetchargs,
            layout=layout,
            reads_memory=compiled.reads_memory,
            tally=compiled.tally,
            tally_only=compiled.tally_only,
            usdt_args=site.usdt_args,
            role=role,
            from_glob=glob,
            at_entry=at_entry,
            filter=filter_expr if role != "return" else None,
            key_decoder=compiled.decoder,
        ))

    def _compile(self, spec: ProbeSpec, site: Site, name: str, role: str, retprobe: bool,
                 at_entry: bool, fetchargs: tuple[FetchArg, ...],
                 filter_expr: FilterExpr | None, filter_text: str | None) -> _Compiled:
        from . import abi
        from .aggregate import aggregation_config, key_decoder
        from .compile import compile_fetchargs
        from .filters import compile_filter

        aggregation = self.aggregation
        compiled = compile_fetchargs(
            fetchargs if role != "return" else (),
            word=spec.text,
            retprobe=retprobe,
            probe_file_offset=site.file_offset,
            string_size=self.string_size,
            usdt_args=site.usdt_args,
            stack=self.stack and aggregation is None,
        )
        compiled.at_entry = at_entry
        predicates: list[dict[str, object]] = []
        strings: list[bytes] = []
        if filter_expr is not None and role != "return":
            program = compile_filter(filter_expr, compiled, filter_text or "")
            predicates, strings = program.predicates, program.strings
        agg = decoder = None
        if aggregation is not None:
            agg = aggregation_config(aggregation, compiled, word=spec.text, role=role)
            decoder = key_decoder(aggregation.by, compiled.fields)
        config = compiled.config(predicates, strings, agg)
        # Stack maps are for non-sleepable programs only.
        reads_memory = compiled.reads_memory and not (
            aggregation is not None and aggregation.stack
        )
        tally = bool(agg and agg["action"] == abi.Action.TALLY)
        return _Compiled(self._config_id(config),
                         RecordLayout(name, compiled), decoder, reads_memory, tally,
                         tally and not predicates)

    # -- the result ------------------------------------------------------------------------

    def plan(self) -> Plan:
        """The plan of everything added so far.

        Raises:
            UsageError: No probes were added.
        """
        if not self.events:
            raise UsageError("no probes to attach")
        return Plan(tuple(self.events), tuple(self._configs), self.aggregation, self.stack,
                    self.string_size)

    def release_files(self) -> None:
        """Close the opened targets. A run keeps them open while its probes are planted: the
        kernel keeps ``/proc/self/fd/N`` as each probe's path, and ``rawprobe probes`` reads
        the file's name from that descriptor."""
        files, self._files = self._files, {}
        for target in files.values():
            target.close()
