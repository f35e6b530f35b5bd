"""What the debug information offers a probe, for ``rawprobe list --vars`` and ``--lines``
(what ``perf probe -V`` and ``perf probe -L`` show).

Both are asked the way a probe word is planned, so what they show is what a probe would see:
``list --vars ./main:add`` lists the variables at each site ``p:./main:add $vars`` would probe
(past the prologue, each inlined copy, each address of a source line), and what each compiles
to there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .._dwarf import DwarfError, Variable, require_debug_info
from .._errors import UsageError
from .._probe.words import default_event_name, parse_probe, quote_target
from .planner import Planner

__all__ = ["FunctionLines", "LineEntry", "SiteVariables", "list_lines", "list_variables"]


@dataclass(frozen=True)
class SiteVariables:
    """The variables one probe site sees.

    Attributes:
        event: The name a probe there gets.
        function: Whose variables they are (for an inlined copy, the inlined function).
        inlined_into: For an inlined copy, the function it is inlined into, else None.
        address: The site's address (ELF virtual address).
        file_offset: Its file offset, where the uprobe goes.
        site: The site as rawprobe describes it (``add+0x8 (/path:0x1139)``).
        source: The source file and line of the site's code, when known.
        variables: Every parameter and local in scope, readable there or not (each says).
        fetchargs: For each readable one, the kernel fetch-arg it compiles to
            (``%di:s32``); a variable whose type the kernel cannot read has none.
    """

    event: str
    function: str
    inlined_into: str | None
    address: int
    file_offset: int
    site: str
    source: tuple[str | None, int] | None
    variables: tuple[Variable, ...]
    fetchargs: dict[str, str]


def list_variables(
    target: str, location: str, *, pids: Sequence[int] = (), force: bool = False
) -> list[SiteVariables]:
    """The variables a probe at ``TARGET:LOCATION`` would see, site by site.

    Args:
        target: A path or library name.
        location: ``FUNC``, ``FUNC+OFFSET``, ``FILE:LINE``, ``FUNC:N`` or a glob.
        pids: Look the target up in these processes.
        force: Resolve what would otherwise be refused.

    Raises:
        NoDebugInfoError: The file has no debug information.
        DwarfError, SymbolNotFoundError, UsageError: The location does not resolve.
    """
    word = f"p:{quote_target(target)}:{location} $vars"
    spec = parse_probe(word)
    if spec.retprobe:
        raise UsageError(f"{target}:{location}: --vars lists what an entry probe sees; a "
                         "return probe sees $retval and globals (@name)")
    planner = Planner(pids=pids, force=force)
    try:
        opened, placements = planner.placements(spec)
        info = require_debug_info(opened.path, expect_key=opened.key)
        result = []
        for placement in placements:
            address = placement.address
            if address is None:  # pragma: no cover - $vars always places by DWARF
                continue
            variables = info.variables_at(address, placement.function)
            fetchargs = {}
            for variable in variables:
                if not variable.available:
                    continue
                try:
                    compiled = info.compile(variable.name, address, function=placement.function)
                except DwarfError:
                    continue
                fetchargs[variable.name] = f"{compiled.fetcharg}:{compiled.type}"
            copy = next((instance for instance in info.inlined_at(address)
                         if instance.name == placement.function
                         and instance.entry_address == address), None)
            site = placement.site
            result.append(SiteVariables(
                event=default_event_name(spec, placement.event_symbol, site.file_offset,
                                         opened.path, placement.name_offset),
                function=placement.function or (site.symbol or "?"),
                inlined_into=copy.caller if copy is not None else None,
                address=address,
                file_offset=site.file_offset,
                site=site.describe(opened.path),
                source=info.line_at(address),
                variables=tuple(variables),
                fetchargs=fetchargs,
            ))
        return result
    finally:
        planner.release_files()


@dataclass(frozen=True)
class LineEntry:
    """A source line of a function that has code.

    Attributes:
        file: The source file.
        line: The line number.
        relative: N of ``FUNC:N`` (lines after the one declaring the function).
        addresses: Where its code starts (ELF virtual addresses).
        file_offsets: The same, as file offsets.
    """

    file: str
    line: int
    relative: int | None
    addresses: tuple[int, ...]
    file_offsets: tuple[int, ...]


@dataclass(frozen=True)
class FunctionLines:
    """The probe-able lines of a function (what ``perf probe -L FUNC`` marks).

    Attributes:
        path: The probed file.
        function: The function.
        decl_file: The file declaring it, when known.
        decl_line: The line declaring it (``FUNC:0``), when known.
        lines: Its lines that have code, in order.
    """

    path: str
    function: str
    decl_file: str | None
    decl_line: int | None
    lines: tuple[LineEntry, ...]


def list_lines(target: str, function: str, *, pid: int | None = None) -> FunctionLines:
    """The lines of ``function`` a probe can name (``FILE:LINE``, ``FUNC:N``).

    Raises:
        NoDebugInfoError: The file has no debug information.
        FunctionNotFoundError: No such function (close names are suggested).
    """
    from .._symbols import find_target

    path = find_target(target, pid)
    info = require_debug_info(path)
    instances = info.functions(function)
    first = next((i for i in instances if not i.inlined), instances[0])
    entries = []
    for source_line in info.lines(function):
        relative = None
        if first.decl_line is not None and first.decl_file is not None and \
                source_line.file == first.decl_file:
            relative = source_line.line - first.decl_line
        entries.append(LineEntry(
            source_line.file, source_line.line, relative, source_line.addresses,
            tuple(info.file_offset(address) for address in source_line.addresses)))
    return FunctionLines(path, first.name, first.decl_file, first.decl_line, tuple(entries))
