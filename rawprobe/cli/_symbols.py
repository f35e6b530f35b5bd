"""``rawprobe list`` and ``rawprobe resolve``: the symbol resolver's command-line face.

The functions here print results and return an exit status; errors are raised (as
:class:`rawprobe.RawprobeError`) for ``main()`` to report.
"""

from __future__ import annotations

from rawprobe import (
    Location,
    Symbol,
    UsageError,
    check_locations,
    describe_target,
    find_target,
    list_functions,
    parse_probe,
    resolve_location,
    split_place,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from rawprobe import TargetInfo

__all__ = ["run_list", "run_resolve"]

_RETURN_SUFFIX = "%return"
_NAME_COLUMN_MAX = 60


def _symbol_json(symbol: Symbol, path: str) -> dict[str, Any]:
    return {
        "name": symbol.name,
        "file_offset": symbol.file_offset,
        "address": symbol.address,
        "size": symbol.size,
        "source": symbol.source,
        "kind": symbol.kind,
        "versioned_name": symbol.versioned_name,
        "version": symbol.version,
        "default_version": symbol.default_version,
        "binding": symbol.binding,
        "aliases": list(symbol.aliases),
        "demangled": symbol.demangled,
        "sources": list(symbol.sources),
        "warning": symbol.warning,
        "path": path,
    }


def _location_json(location: Location) -> dict[str, Any]:
    derivation = location.derivation
    return {
        "name": location.symbol,
        "file_offset": location.file_offset,
        "address": location.address,
        "size": location.size,
        "source": location.source,
        "kind": location.kind,
        "symbol_offset": location.symbol_offset,
        "versioned_name": location.versioned_name,
        "version": location.version,
        "default_version": location.default_version,
        "aliases": list(location.aliases),
        "demangled": location.demangled,
        "sources": list(location.sources),
        "warning": location.warning,
        "path": location.path,
        "uprobe": location.kernel_place,
        "derivation": derivation.as_dict() if derivation is not None else None,
    }


def _sources_text(info: TargetInfo) -> str:
    parts = [f"{source} {path}" for source, path in info.debug_sources]
    return "; symbols also from " + ", ".join(parts) if parts else ""


def run_list(
    target: str,
    pattern: str | None,
    *,
    pid: int | None,
    json_output: bool,
    out: TextIO,
) -> int:
    """``rawprobe list TARGET [GLOB]``: the probe-able functions with their file offsets.

    Args:
        target: A path or library name (see :func:`rawprobe._symbols.find_target`).
        pattern: A glob over function names (bare, versioned or demangled), or None for all.
        pid: Look the target up in this process (its mappings and root).
        json_output: Print one JSON array of objects instead of a table.
        out: Where to print.

    Returns:
        0 when functions were listed, 1 when none matched.

    Raises:
        RawprobeError: The target cannot be found or read.
    """
    path = find_target(target, pid)
    symbols = list_functions(path, pattern or "*")
    if json_output:
        import json

        json.dump([_symbol_json(symbol, path) for symbol in symbols], out, indent=None)
        out.write("\n")
        return 0 if symbols else 1
    info = describe_target(path)
    if not symbols:
        what = f"matching {pattern!r} " if pattern and pattern != "*" else ""
        hint = "" if info.function_count else (
            " (it is stripped: install its debug symbols, or probe by 0xOFFSET)"
        )
        out.write(f"no functions {what}in {path}{hint}\n")
        return 1
    # Fixed-width columns first and the name last: C++ names can be hundreds of characters.
    header = ("FILE_OFFSET", "ADDRESS", "SIZE", "SOURCE", "KIND", "NAME", "ALIASES")
    rows = [
        (
            f"{symbol.file_offset:#x}",
            f"{symbol.address:#x}",
            str(symbol.size),
            symbol.source,
            symbol.kind,
            symbol.demangled or symbol.versioned_name,
            ", ".join(symbol.aliases),
        )
        for symbol in symbols
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(5)]
    widths.append(min(max(len(row[5]) for row in [header, *rows]), _NAME_COLUMN_MAX))
    for row in [header, *rows]:
        cells = [
            cell.rjust(widths[column]) if column < 3 else cell.ljust(widths[column])
            for column, cell in enumerate(row[:6])
        ]
        text = "  ".join(cells)
        out.write((text + "  " + row[6] if row[6] else text.rstrip()) + "\n")
    build_id = f" (build-id {info.build_id})" if info.build_id else ""
    out.write(
        f"{len(symbols)} of {info.function_count} functions in {path}{build_id}"
        f"{_sources_text(info)}\n"
    )
    return 0


def _explain(location: Location, info: TargetInfo, out: TextIO) -> None:
    def line(label: str, text: str) -> None:
        out.write(f"  {label:<14}{text}\n")

    debug_files = dict(info.debug_sources)
    title = location.demangled or location.versioned_name or "(no symbol)"
    out.write(f"{title}\n")
    build_id = f"  (build-id {info.build_id})" if info.build_id else ""
    line("file", f"{location.path}{build_id}")
    derivation = location.derivation
    if location.symbol is not None:
        detail = f"{location.kind}, size {location.size}" if location.size else location.kind
        line("symbol", f"{location.versioned_name}  ({detail})")
        if location.demangled:
            line("mangled", location.symbol)
        if location.aliases:
            line("also named", ", ".join(location.aliases))
        found = [
            f"{source} {debug_files[source]}" if source in debug_files else source
            for source in location.sources
        ]
        line("found in", "; ".join(found) if location.source != "offset" else
             "given as a file offset; symbol from " + "; ".join(found))
    if derivation is None:
        line("file offset", f"{location.file_offset:#x} (given)")
    elif location.source == "offset":
        line("file offset", f"{location.file_offset:#x} (given)")
        line(
            "PT_LOAD",
            f"p_vaddr {derivation.segment_vaddr:#x}, p_offset {derivation.segment_offset:#x} "
            "(the executable segment holding it)",
        )
        line(
            "address",
            f"{location.file_offset:#x} - {derivation.segment_offset:#x} + "
            f"{derivation.segment_vaddr:#x} = {location.address:#x}",
        )
        if location.symbol is not None:
            line("in function", f"{location.symbol}+{location.symbol_offset:#x}")
    else:
        symbol_value = location.address - location.symbol_offset
        line("symbol value", f"{symbol_value:#x}  (st_value of {location.symbol})")
        line("+ offset", f"{location.symbol_offset:#x}")
        line("= address", f"{location.address:#x}")
        line(
            "PT_LOAD",
            f"p_vaddr {derivation.segment_vaddr:#x}, p_offset {derivation.segment_offset:#x} "
            "(the executable segment holding the address)",
        )
        line(
            "file offset",
            f"{location.address:#x} - {derivation.segment_vaddr:#x} + "
            f"{derivation.segment_offset:#x} = {location.file_offset:#x}",
        )
    if derivation is not None:
        if derivation.section_file_offset is None:
            line("cross-check", "none possible (no section headers)")
        else:
            verdict = "agrees" if derivation.agrees else "DISAGREES"
            line(
                "cross-check",
                f"section {derivation.section_name}: {derivation.address:#x} - "
                f"{derivation.section_address:#x} (sh_addr) + {derivation.section_offset:#x} "
                f"(sh_offset) = {derivation.section_file_offset:#x}, {verdict}",
            )
    line("uprobe", location.kernel_place)
    if location.warning:
        line("warning", location.warning)


def run_resolve(
    probe_place: str,
    *,
    pid: int | None,
    json_output: bool,
    force: bool,
    out: TextIO,
) -> int:
    """``rawprobe resolve TARGET:LOCATION``: where a probe goes, and how that was worked out.

    Args:
        probe_place: ``TARGET:LOCATION``, optionally ending in ``%return`` (a return probe, which
            Go programs refuse).
        pid: Look the target up in this process (its mappings and root).
        json_output: Print one JSON object per resolved location (one per line).
        force: Accept what would otherwise be refused (see ``resolve_location``).
        out: Where to print.

    Returns:
        0.

    Raises:
        RawprobeError: Bad syntax, unknown target or symbol, or a refused offset.
    """
    # A source line (FILE:LINE, FUNC:N) keeps its colon, and takes no %return.
    line = parse_probe(f"p:{probe_place.strip()}").source_line
    target, location = split_place(probe_place.strip())
    retprobe = location.endswith(_RETURN_SUFFIX)
    if retprobe:
        location = location[: -len(_RETURN_SUFFIX)]
    path = find_target(target, pid)
    if line is not None:
        # FILE:LINE, FUNC:N: where the line's code starts, as a probe would go, each then
        # resolved as the file offset it is.
        from rawprobe import list_variables

        sites = list_variables(path, location, pids=(pid,) if pid is not None else (),
                               force=force)
        locations = [resolve_location(path, hex(site.file_offset), force=force)[0]
                     for site in sites]
    else:
        locations = resolve_location(path, location, force=force)
    verdicts = check_locations(path, locations, retprobe=retprobe,
                               pids=(pid,) if pid is not None else ())
    if json_output:
        import json

        for resolved, refusal in zip(locations, verdicts, strict=True):
            row = _location_json(resolved)
            row["refused"] = refusal
            out.write(json.dumps(row) + "\n")
    else:
        info = describe_target(path)
        for number, (resolved, refusal) in enumerate(zip(locations, verdicts, strict=True)):
            if number:
                out.write("\n")
            _explain(resolved, info, out)
            _verdict_line(refusal, force, out)
        if len(locations) > 1:
            out.write(f"\n{len(locations)} functions match {location!r}\n")
    # Attach's verdict: a single location it would refuse is an error there too.
    if len(locations) == 1 and verdicts[0] is not None and not force:
        raise UsageError(f"attach would refuse to probe {location}: {verdicts[0]} (--force "
                         "plants it anyway)")
    return 0


def _verdict_line(refusal: str | None, force: bool, out: TextIO) -> None:
    if refusal is None:
        verdict = "accepted"
    elif force:
        verdict = f"refused without --force: {refusal}"
    else:
        verdict = f"refused: {refusal}"
    out.write(f"  {'attach':<14}{verdict}\n")
