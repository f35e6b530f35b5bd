"""Probe words that name the debug information, planned: where they go, and what they read.

A word may name variables of the probed program (``a``, ``o->in->x``, ``@counter``,
``$params``; :class:`~rawprobe._probe.fetchargs.DebugVariable`) or a source line
(``main.c:27``, ``add:3``). Each becomes, at each of its probe sites, the kernel fetch-args it
stands for, compiled from the file's DWARF (:mod:`rawprobe._dwarf`), so that everything after
the planner (the BPF configuration, the tracefs rendering, filters, ``--json`` types) sees only
the kernel's fetch-arg language. Where the probe goes follows perf probe:

- a function probe that reads parameters or locals goes after the function's prologue when its
  unit is built without optimization (the variables' locations are only valid from there on);
  its return probe (``--hist latency``) stays at the entry;
- a function inlined somewhere is probed at each inlined copy too, each copy's variables read
  where that copy keeps them (not for return probes: an inlined copy does not return);
- a source line is probed where its code starts (``is_stmt`` rows of the line table).

A site where a variable cannot be read (optimized out there, say) is left out with a warning
naming where the variable can be read; when no site is left, the error says it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .._dwarf import DebugInfo, DwarfError, open_debug_info, reads_locals, require_debug_info
from .._errors import FetchArgError, UsageError
from .._host.files import TargetFile
from .._probe.fetchargs import DebugVariable, FetchArg, parse_fetcharg
from .._probe.words import ProbeSpec, is_glob
from .placement import Placement, fallbacks, plain_placements
from .sites import Site

__all__ = ["Placement", "debug_placements", "inlined_only_placements", "plain_placements"]


class _Planner:
    """Placements of one word in one file, and what was left out and why."""

    def __init__(self, spec: ProbeSpec, target: TargetFile, info: DebugInfo, force: bool,
                 warnings: list[str]) -> None:
        self.spec = spec
        self.target = target
        self.info = info
        self.force = force
        self.warnings = warnings
        self.reads_locals = any(
            isinstance(arg.source, DebugVariable) and reads_locals(arg.source.expression)
            for arg in spec.fetchargs)
        self.left_out: list[tuple[str, DwarfError]] = []

    def site_at(self, address: int) -> Site:
        """The site of an address, named by the symbol table as ``0xOFFSET`` would be (so it
        is checked as any offset is)."""
        from .._symbols import resolve_location

        file_offset = self.info.file_offset(address)
        (location,) = resolve_location(self.target.path, hex(file_offset), force=self.force,
                                       expect_key=self.target.key)
        return Site(location.symbol, location.file_offset, location.symbol_offset,
                    location.size, kind="offset" if location.symbol is None else location.kind,
                    warning=location.warning)

    def place(self, what: str, address: int, function: str | None, event_symbol: str | None,
              site: Site | None = None, return_site: Site | None = None,
              name_offset: int = 0) -> Placement | None:
        """A placement at ``address`` (``site`` when it is known already), or None when a
        variable cannot be read there (kept in :attr:`left_out`)."""
        try:
            fetchargs = self.compile(address, function)
        except DwarfError as error:
            self.left_out.append((what, error))
            return None
        if site is None:
            site = self.site_at(address)
        return Placement(site, event_symbol, fetchargs, return_site, address, function,
                         name_offset)

    def compile(self, address: int, function: str | None) -> tuple[FetchArg, ...]:
        """The word's fetch-args at ``address``, debug variables compiled there."""
        spec, info = self.spec, self.info
        taken = {arg.name for arg in spec.fetchargs
                 if not (isinstance(arg.source, DebugVariable) and arg.source.expands)}
        result: list[FetchArg] = []
        for arg in spec.fetchargs:
            source = arg.source
            if not isinstance(source, DebugVariable):
                result.append(arg)
                continue
            if source.expands:
                result += self.expand(arg, source, address, function, taken)
                continue
            try:
                compiled = info.compile(source.expression, address, spec.retprobe,
                                        source.cast, function)
            except DwarfError:
                if source.fallback is None:
                    raise
                result.append(dataclasses.replace(arg, source=source.fallback))
                continue
            result.append(self.kernel_arg(arg, arg.name, compiled.fetcharg, compiled.type))
        return tuple(result)

    def expand(self, arg: FetchArg, source: DebugVariable, address: int,
               function: str | None, taken: set[str]) -> list[FetchArg]:
        """``$params`` or ``$vars``: each readable variable once (an inner one shadows an
        outer one of its name; a field the word names itself wins)."""
        info = self.info
        variables = info.params(address, function) if source.expression == "$params" else \
            info.vars(address, function)
        result = []
        for variable in variables:
            if variable.name in taken:
                continue
            taken.add(variable.name)
            try:
                compiled = info.compile(variable.name, address, self.spec.retprobe, None,
                                        function)
            except DwarfError as error:
                self.warnings.append(f"{source.expression} at {address:#x}: {variable.name} "
                                     f"left out: {error}")
                continue
            result.append(self.kernel_arg(arg, variable.name, compiled.fetcharg, compiled.type))
        return result

    def kernel_arg(self, arg: FetchArg, name: str, fetcharg: str, kind: str) -> FetchArg:
        text = f"{name}={fetcharg}:{kind}"
        try:
            parsed = parse_fetcharg(text, 1, word=text, retprobe=self.spec.retprobe)
        except FetchArgError as error:
            raise UsageError(f"{arg.text} reads as the fetch-arg {text}, which rawprobe "
                             f"cannot fetch: {error.message}") from None
        return dataclasses.replace(parsed, column=arg.column)

    def finish(self, placements: list[Placement | None]) -> list[Placement]:
        """The placements kept; a warning for those left out, or the error when none is
        left."""
        kept = [placement for placement in placements if placement is not None]
        if self.left_out and not kept:
            raise self.left_out[0][1]
        for what, error in self.left_out:
            self.warnings.append(f"{self.spec.text}: {what} left out: {error}")
        return kept


def debug_placements(
    spec: ProbeSpec,
    target: TargetFile,
    sites: Sequence[Site],
    *,
    force: bool,
    latency: bool,
    warnings: list[str],
) -> list[Placement]:
    """The placements of a word that uses the debug information.

    Args:
        spec: The word.
        target: Its file, opened.
        sites: The sites its LOCATION resolved to through the symbol table (none for a source
            line).
        force: Plant what would otherwise be refused (see :func:`~rawprobe._symbols.
            resolve_location`).
        latency: Return probes are added (``--hist latency``): inlined copies, which do not
            return, are left out.
        warnings: Where to say what was left out.

    Raises:
        NoDebugInfoError: The file has no debug information, and the word needs it.
        DwarfError: A variable or line the debug information does not have, or cannot be read
            anywhere the word probes.
    """
    if not spec.uses_debug_info:
        info = open_debug_info(target.path, expect_key=target.key)
        if info is None:
            return plain_placements(spec, sites)
    else:
        info = require_debug_info(target.path, expect_key=target.key)
    planner = _Planner(spec, target, info, force, warnings)
    line = spec.source_line
    if line is not None:
        if latency:
            raise UsageError(f"{spec.text}: --hist latency times function calls; a source "
                             "line has no return to time")
        found = info.line_addresses(line.file, line.line) if line.file is not None else \
            info.function_line(line.function or "", line.line)
        return planner.finish([
            planner.place(f"{line} at {found_line.address:#x}", found_line.address,
                          found_line.function,
                          f"{line.function or found_line.function}_L{line.line}")
            for found_line in found])
    placements: list[Placement | None] = []
    seen: set[int] = set()
    for site in sites:
        placements += _function_site(planner, site, latency, seen, glob=is_glob(spec.location))
    return planner.finish(placements)


def _function_site(planner: _Planner, site: Site, latency: bool, seen: set[int],
                   glob: bool) -> list[Placement | None]:
    """A symbol's site, moved past the prologue where perf probe moves it, and the inlined
    copies of its function."""
    info, spec = planner.info, planner.spec
    address = info.address_of(site.file_offset)
    what = site.symbol or hex(site.file_offset)
    if address is None:  # pragma: no cover - resolve_location put it in a code segment
        return [Placement(site, site.symbol, fallbacks(spec.fetchargs),
                          name_offset=site.symbol_offset)]
    if site.symbol_offset or site.kind not in ("func", "ifunc"):
        # SYMBOL+OFFSET: what is in scope there, as perf probe reads it.
        return [planner.place(what, address, None, site.symbol, site,
                              name_offset=site.symbol_offset)]
    instance = info.function_at(address)
    if instance is None or instance.entry_address != address:
        if not spec.uses_debug_info:
            return [Placement(site, site.symbol, fallbacks(spec.fetchargs))]
        planner.left_out.append((what, DwarfError(
            f"no debug information describes the function {what} of {info.path}" +
            ("" if glob else "; install its debug package, or rebuild it with -g"))))
        return [None]
    result: list[Placement | None] = []
    if instance.entry_address not in seen:
        seen.add(instance.entry_address)
        probe = instance.probe_address if planner.reads_locals and not spec.retprobe else \
            instance.entry_address
        moved = None if probe == address else planner.site_at(probe)
        result.append(planner.place(what, probe, instance.name, site.symbol, moved or site,
                                    site if moved is not None else None))
    if spec.retprobe or not spec.uses_debug_info:
        return result
    copies = [copy for copy in info.functions(instance.name) if copy.inlined]
    if latency:
        if copies:
            planner.warnings.append(f"{spec.text}: {len(copies)} inlined copies of "
                                    f"{instance.name} left out: --hist latency times calls, "
                                    "and an inlined copy is not called")
        return result
    for copy in copies:
        if copy.entry_address in seen:
            continue
        seen.add(copy.entry_address)
        result.append(planner.place(f"{instance.name} inlined in {copy.caller} at "
                                    f"{copy.entry_address:#x}", copy.entry_address, copy.name,
                                    site.symbol))
    return result


def inlined_only_placements(
    spec: ProbeSpec, target: TargetFile, *, force: bool, warnings: list[str]
) -> list[Placement] | None:
    """A function the symbol table does not name, because every call to it was inlined:
    its inlined copies, when the debug information knows them; None when it does not.
    """
    if spec.retprobe or is_glob(spec.location) or spec.source_line is not None:
        return None
    info = open_debug_info(target.path, expect_key=target.key)
    if info is None:
        return None
    try:
        copies = [copy for copy in info.functions(spec.location) if copy.inlined]
    except DwarfError:
        return None
    if not copies:
        return None
    planner = _Planner(spec, target, info, force, warnings)
    return planner.finish([
        planner.place(f"{copy.name} inlined in {copy.caller} at {copy.entry_address:#x}",
                      copy.entry_address, copy.name, spec.location)
        for copy in copies])
