"""Source lines: where a line's code starts (``FILE:LINE``, ``FUNC:N``) and which lines of a
function have code, read from the units' line tables as perf probe reads them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ._errors import LineNotFoundError
from ._model import LineAddress, SourceLine
from ._unit import Scope, Unit, attribute

if TYPE_CHECKING:
    from ._info import DebugInfo

__all__ = ["Lines", "same_file"]


class Lines:
    """The source lines of one :class:`~rawprobe._dwarf.DebugInfo` (which holds its lock
    while these run)."""

    def __init__(self, info: DebugInfo) -> None:
        self._info = info

    def _representative_line(self, unit: Unit, address: int) -> tuple[str | None, int] | None:
        """The line perf attributes an address to (tools/perf/util/dwarf-aux.c,
        ``cu_find_lineinfo``): a function's declaration line at its entry, else the first
        ``is_stmt`` row at the address."""
        scope = unit.function_at(address)
        if scope is not None and scope.entry() == address:
            decl = attribute(scope.die, "DW_AT_decl_line")
            decl_file = attribute(scope.die, "DW_AT_decl_file")
            if decl is not None:
                return (unit.file_name(decl_file.value) if decl_file is not None else None,
                        int(decl.value))
        for row in unit.rows_at(address):
            if row.is_stmt and not row.end_sequence:
                return unit.file_name(row.file), row.line
        return None

    @staticmethod
    def line_at(unit: Unit, address: int) -> tuple[str | None, int] | None:
        """The line whose code holds ``address``: the last row of the line table at or before
        it (in its sequence)."""
        rows = unit.rows()
        index = bisect.bisect_right([row.address for row in rows], address) - 1
        while index >= 0:
            row = rows[index]
            if row.end_sequence:
                return None
            if row.line:
                return unit.file_name(row.file), row.line
            index -= 1
        return None

    def _unit_lines(self, unit: Unit, file: str, line: int) -> Iterator[int]:
        """Addresses where ``file:line`` starts in a unit (perf's ``die_walk_lines`` over a
        unit): ``is_stmt`` rows, function declaration lines at function entries, and inlined
        call sites at the inlined copies' entries."""
        files = unit.file_names()
        wanted = {index for index, name in enumerate(files) if name and same_file(name, file)}
        if not wanted:
            return
        for row in unit.rows():
            if row.line == line and row.file in wanted and row.is_stmt and not row.end_sequence:
                yield row.address
        for tree in unit.trees():
            for scope in tree.walk():
                if scope.kind == "block":
                    continue
                if scope.kind == "function":
                    decl_file = attribute(scope.die, "DW_AT_decl_file")
                    decl_line = attribute(scope.die, "DW_AT_decl_line")
                else:
                    decl_file = scope.die.attributes.get("DW_AT_call_file")
                    decl_line = scope.die.attributes.get("DW_AT_call_line")
                entry = scope.entry()
                if decl_file is not None and decl_line is not None and entry is not None and \
                        decl_file.value in wanted and decl_line.value == line:
                    yield entry

    def line_addresses(self, file: str, line: int) -> list[LineAddress]:
        """:meth:`DebugInfo.line_addresses`."""
        found: dict[int, LineAddress] = {}
        shared: list[int] = []
        known = False
        for unit in self._info._units_naming(file):
            known = True
            for address in self._unit_lines(unit, file, line):
                if address in found or address in shared:
                    continue
                represented = self._representative_line(unit, address)
                if represented is not None and represented[1] != line and \
                        represented[0] is not None and same_file(represented[0], file):
                    shared.append(address)
                    continue
                found[address] = LineAddress(self._full_name(unit, file), line, address,
                                             self._line_scope_name(unit, address, file, line))
        if found:
            return [found[a] for a in sorted(found)]
        if not known:
            raise LineNotFoundError(f"no source file {file!r} in the debug information of "
                                    f"{self._info.path}")
        raise LineNotFoundError(self._no_code_message(file, line, bool(shared)))

    @staticmethod
    def _line_scope_name(unit: Unit, address: int, file: str, line: int) -> str:
        """The function a line's code belongs to, as perf probe picks it (tools/perf/util/
        probe-finder.c, ``find_best_scope``): of the function and the inlined copies whose code
        contains the address, the one declared in that file closest above the line. The first
        statement of an inlined call is in the caller's line, not in the inlined function."""
        tree = unit.function_at(address)
        if tree is None:
            return "?"
        best, distance = tree, None
        scope: Scope | None = tree
        while scope is not None:
            if scope.kind != "block":
                decl_line = attribute(scope.die, "DW_AT_decl_line")
                decl_file = attribute(scope.die, "DW_AT_decl_file")
                name = unit.file_name(decl_file.value) if decl_file is not None else None
                if decl_line is not None and name is not None and same_file(name, file) and \
                        decl_line.value < line and (distance is None or
                                                    line - decl_line.value < distance):
                    best, distance = scope, line - decl_line.value
            scope = next((child for child in scope.children() if child.contains(address)), None)
        return best.name

    @staticmethod
    def _full_name(unit: Unit, file: str) -> str:
        for name in unit.file_names():
            if name and same_file(name, file):
                return name
        return file

    def _no_code_message(self, file: str, line: int, shared: bool) -> str:
        lines: set[int] = set()
        for unit in self._info._units_naming(file):
            wanted = {i for i, name in enumerate(unit.file_names())
                      if name and same_file(name, file)}
            lines.update(row.line for row in unit.rows() if row.file in wanted and row.is_stmt)
        before = max((n for n in lines if n < line), default=None)
        after = min((n for n in lines if n > line), default=None)
        near = " or ".join(f"{file}:{n}" for n in (before, after) if n is not None)
        reason = ("its code starts where another line's does" if shared
                  else "no code was generated for it")
        return f"{file}:{line} cannot be probed: {reason}" + (f"; try {near}" if near else "")

    def function_line(self, function: str, relative_line: int) -> list[LineAddress]:
        """:meth:`DebugInfo.function_line`."""
        if relative_line < 0:
            raise LineNotFoundError(f"{function}:{relative_line}: the line must be 0 or more")
        instances = self._info.functions(function)
        first = instances[0]
        if first.decl_line is None or first.decl_file is None:
            raise LineNotFoundError(f"the debug information does not say where {function} is "
                                    "declared")
        line = first.decl_line + relative_line
        try:
            candidates = self.line_addresses(first.decl_file, line)
        except LineNotFoundError:
            candidates = []
        inside = [c for c in candidates
                  if any(low <= c.address < high for i in instances for low, high in i.ranges)]
        if not inside:
            raise LineNotFoundError(
                f"{function}:{relative_line} ({first.decl_file}:{line}) has no code in "
                f"{function}; 'rawprobe list --lines' shows the lines that have")
        return inside

    def lines(self, function: str) -> list[SourceLine]:
        """:meth:`DebugInfo.lines`: the lines of the function's file, from the rows of its
        instances, that :meth:`line_addresses` places in the function itself."""
        scopes = self._info._functions.instance_scopes(function)
        names = {scope.name for scope in scopes}
        candidates: set[tuple[str, int]] = set()
        for scope in scopes:
            unit = scope.unit
            decl_index = attribute(scope.die, "DW_AT_decl_file")
            decl_file = unit.file_name(decl_index.value) if decl_index is not None else None
            decl_line = attribute(scope.die, "DW_AT_decl_line")
            if decl_file is not None and decl_line is not None:
                candidates.add((decl_file, int(decl_line.value)))
            for row in unit.rows():
                if not row.is_stmt or row.end_sequence or not scope.contains(row.address):
                    continue
                name = unit.file_name(row.file)
                if name is not None and (decl_file is None or same_file(name, decl_file)):
                    candidates.add((name, row.line))
        result = []
        for file, line in sorted(candidates, key=lambda item: (item[1], item[0])):
            try:
                found = self.line_addresses(file, line)
            except LineNotFoundError:
                continue  # its code starts where another line's does
            addresses = sorted(entry.address for entry in found if entry.function in names
                               and any(scope.contains(entry.address) for scope in scopes))
            if addresses:
                result.append(SourceLine(file, line, tuple(addresses)))
        return result

def same_file(full: str, asked: str) -> bool:
    """Whether ``asked`` names ``full``: equal, or its last path components."""
    if full == asked:
        return True
    full_parts = full.strip("/").split("/")
    asked_parts = [part for part in asked.split("/") if part not in ("", ".")]
    return bool(asked_parts) and full_parts[-len(asked_parts):] == asked_parts
