"""``rawprobe list --vars TARGET:LOCATION`` and ``rawprobe list --lines TARGET:FUNC``: what the
debug information offers a probe (``perf probe -V`` and ``perf probe -L``).

``--vars`` text: per probe site a header (the site, its source line, the event a probe there
gets), then one line per variable in scope: kind, C type, name, and the fetch-arg it compiles
to, or why it cannot be read there and where it can. ``--json``: an array of sites, each
``{"event", "function", "inlined_into", "address", "file_offset", "site", "file", "line",
"variables": [{"name", "kind", "type", "perf_type", "available", "reason",
"readable_ranges", "location", "fetcharg"}]}``.

``--lines`` text: the function's source from its declaration (perf's ``-L``), each line with
code numbered ``N`` (for ``FUNC:N``) and ``LINE`` (for ``FILE:LINE``); without the source file
at hand, the lines with code and their file offsets. ``--json``: ``{"path", "function",
"decl_file", "decl_line", "lines": [{"file", "line", "relative", "addresses",
"file_offsets"}]}``.
"""

from __future__ import annotations

import json
from typing import TextIO

from rawprobe import UsageError, split_place

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rawprobe import FunctionLines, SiteVariables

__all__ = ["run_list_lines", "run_list_vars"]

_MAX_SOURCE_LINES = 2000


def _place(place: str, option: str) -> tuple[str, str]:
    try:
        return split_place(place.strip())
    except UsageError:
        raise UsageError(f"{option} takes TARGET:LOCATION (for example ./main:add or "
                         f"./main:main.c:27), not {place!r}") from None


def _site_object(site: SiteVariables) -> dict[str, object]:
    file, line = site.source if site.source is not None else (None, None)
    return {
        "event": site.event,
        "function": site.function,
        "inlined_into": site.inlined_into,
        "address": site.address,
        "file_offset": site.file_offset,
        "site": site.site,
        "file": file,
        "line": line,
        "variables": [{
            "name": variable.name,
            "kind": variable.kind,
            "type": variable.type_text,
            "perf_type": variable.perf_type_text,
            "available": variable.available,
            "reason": variable.reason or None,
            "readable_ranges": [list(pair) for pair in variable.available_ranges],
            "location": variable.location or None,
            "fetcharg": site.fetchargs.get(variable.name),
        } for variable in site.variables],
    }


def run_list_vars(place: str, *, pid: int | None, json_output: bool, force: bool,
                  out: TextIO) -> int:
    """``rawprobe list --vars TARGET:LOCATION``.

    Returns:
        0 (an error is raised for a place that does not resolve).
    """
    from rawprobe import list_variables

    target, location = _place(place, "--vars")
    sites = list_variables(target, location, pids=[pid] if pid is not None else [],
                           force=force)
    if json_output:
        json.dump([_site_object(site) for site in sites], out)
        out.write("\n")
        return 0
    for number, site in enumerate(sites):
        if number:
            out.write("\n")
        what = site.function + (f" inlined into {site.inlined_into}" if site.inlined_into
                                else "")
        source = f", {site.source[0] or '?'}:{site.source[1]}" if site.source else ""
        out.write(f"{what} at {site.site}{source} (event {site.event})\n")
        if not site.variables:
            out.write("  no variables in scope\n")
        types = max((len(v.type_text) for v in site.variables), default=0)
        names = max((len(v.name) for v in site.variables), default=0)
        for variable in site.variables:
            head = f"  {variable.kind:<9}  {variable.type_text:<{types}}  {variable.name:<{names}}"
            fetch = site.fetchargs.get(variable.name)
            if fetch is not None:
                out.write(f"{head}  {fetch}\n")
                continue
            if variable.available:
                out.write(f"{head}  (its type cannot be read whole: name a member or give "
                          ":TYPE)\n")
                continue
            where = ", ".join(f"{low:#x}-{high:#x}" for low, high in
                              variable.available_ranges[:4])
            readable = f"; readable at {where}" if where else ""
            out.write(f"{head}  (not here: {variable.reason}{readable})\n")
    return 0


def run_list_lines(place: str, *, pid: int | None, json_output: bool, out: TextIO) -> int:
    """``rawprobe list --lines TARGET:FUNC``.

    Returns:
        0 when the function has lines with code, 1 when it has none.
    """
    from rawprobe import list_lines

    target, function = _place(place, "--lines")
    lines = list_lines(target, function, pid=pid)
    if json_output:
        json.dump({
            "path": lines.path,
            "function": lines.function,
            "decl_file": lines.decl_file,
            "decl_line": lines.decl_line,
            "lines": [{"file": entry.file, "line": entry.line, "relative": entry.relative,
                       "addresses": list(entry.addresses),
                       "file_offsets": list(entry.file_offsets)} for entry in lines.lines],
        }, out)
        out.write("\n")
        return 0 if lines.lines else 1
    if not lines.lines:
        out.write(f"no line of {lines.function} has code in {lines.path}\n")
        return 1
    source = _source_text(lines)
    file = lines.decl_file or lines.lines[0].file
    out.write(f"{lines.function} in {file} ({lines.path}): probe a line as "
              f"{lines.function}:N or {file.rsplit('/', 1)[-1]}:LINE\n")
    out.write(f"{'N':>5} {'LINE':>6}\n")
    by_line = {entry.line: entry for entry in lines.lines if entry.file == file}
    if source is None or not by_line:
        for entry in lines.lines:
            relative = "" if entry.relative is None else str(entry.relative)
            offsets = ", ".join(f"{offset:#x}" for offset in entry.file_offsets)
            out.write(f"{relative:>5} {entry.line:>6}  {entry.file}  at {offsets}\n")
        return 0
    first = lines.decl_line or min(by_line)
    for number in range(first, max(by_line) + 1):
        text = source[number - 1] if number - 1 < len(source) else ""
        code = by_line.get(number)
        if code is None:
            out.write(f"{'':>5} {'':>6}  {text}\n")
        else:
            relative = "" if code.relative is None else str(code.relative)
            out.write(f"{relative:>5} {number:>6}  {text}\n")
    return 0


def _source_text(lines: FunctionLines) -> list[str] | None:
    """The source file's lines, when it is at hand (the path the debug information names)."""
    file = lines.decl_file or (lines.lines[0].file if lines.lines else None)
    if file is None:
        return None
    try:
        with open(file, encoding="utf-8", errors="replace") as stream:
            text = stream.read(_MAX_SOURCE_LINES * 200)
    except OSError:
        return None
    return [line.expandtabs(8) for line in text.splitlines()]
