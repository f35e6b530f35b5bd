"""A probed file's functions as the debug information describes them: by name, through an
index of every unit, and as :class:`FunctionInstance` values (where perf probe plants a function
probe, each inlined copy).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._errors import FunctionNotFoundError
from ._model import FunctionInstance
from ._scan import NameIndex, scan
from ._unit import Scope, attribute, die_name, linkage_name

if TYPE_CHECKING:
    from ._info import DebugInfo

__all__ = ["GLOB", "Functions"]

GLOB = re.compile(r"[*?\[]")
_STT_FUNC, _STT_GNU_IFUNC = 2, 10


class Functions:
    """The functions of one :class:`~rawprobe._dwarf.DebugInfo` (which holds its lock while
    these run)."""

    def __init__(self, info: DebugInfo) -> None:
        self._info = info
        self._scan: NameIndex | None = None

    @property
    def index(self) -> NameIndex | None:
        """The name index, if it was built."""
        return self._scan

    def scanned(self) -> NameIndex:
        """The name index of every unit (one fast pass, see ``_scan``), built once."""
        if self._scan is None:
            def raw(section: Any) -> bytes:
                return section.stream.getvalue() if section is not None else b""

            dwarf = self._info._dwarf
            index = scan(raw(dwarf.debug_info_sec), raw(dwarf.debug_abbrev_sec),
                         raw(dwarf.debug_str_sec), raw(dwarf.debug_line_str_sec),
                         raw(dwarf.debug_str_offsets_sec))
            # What the pass could not name or read, pyelftools reads.
            for unit_offset, die_offset, function, kind in index.unresolved:
                die = dwarf.get_DIE_from_refaddr(die_offset)
                for name in {die_name(die), linkage_name(die)} - {None}:
                    assert name is not None
                    index.functions.setdefault(name, []).append(
                        (unit_offset, die_offset, kind, function))
            for unit_offset in index.skipped_units:
                unit = self._info._unit(unit_offset)
                for tree in unit.trees():
                    for scope in tree.walk():
                        if scope.kind == "block":
                            continue
                        for name in {die_name(scope.die), linkage_name(scope.die)} - {None}:
                            assert name is not None
                            index.functions.setdefault(name, []).append(
                                (unit_offset, scope.die.offset, scope.kind,
                                 scope.real_function.die.offset))
                for name, dies in unit.globals().items():
                    index.variables.setdefault(name, []).extend(
                        (unit_offset, die.offset, "DW_AT_location" in die.attributes)
                        for die in dies)
            self._scan = index
        return self._scan

    def _scopes_named(self, names: Sequence[str]) -> list[Scope]:
        index = self.scanned()
        scopes = []
        for name in names:
            for unit_offset, die_offset, _, function in index.functions.get(name, ()):
                scope = self._info._unit(unit_offset).scope_of(function, die_offset)
                if scope is not None:
                    scopes.append(scope)
        return scopes

    def instance(self, scope: Scope) -> FunctionInstance:
        unit = scope.unit
        entry = scope.entry()
        if entry is None:
            entry = scope.ranges[0][0]
        probe = entry
        if scope.kind == "function" and not unit.optimized:
            probe = self._post_prologue(scope, entry)
        decl_file = attribute(scope.die, "DW_AT_decl_file")
        decl_line = attribute(scope.die, "DW_AT_decl_line")
        call_file = scope.die.attributes.get("DW_AT_call_file")
        call_line = scope.die.attributes.get("DW_AT_call_line")
        return FunctionInstance(
            name=die_name(scope.die) or "<anonymous>",
            linkage_name=linkage_name(scope.die),
            entry_address=entry,
            probe_address=probe,
            ranges=tuple(scope.ranges),
            inlined=scope.kind == "inlined",
            caller=scope.real_function.name if scope.kind == "inlined" else None,
            decl_file=unit.file_name(decl_file.value) if decl_file is not None else None,
            decl_line=int(decl_line.value) if decl_line is not None else None,
            call_file=unit.file_name(call_file.value) if call_file is not None else None,
            call_line=int(call_line.value) if call_line is not None else None,
        )

    @staticmethod
    def _post_prologue(scope: Scope, entry: int) -> int:
        """Where perf probe puts a function probe in an unoptimized unit (tools/perf/util/
        dwarf-aux.c, ``die_skip_prologue`` and ``die_get_postprologue_addr``): the entry when
        its line-table row is marked ``prologue_end`` (clang marks it), else the next row's
        address — unless that is past the function (``DW_AT_high_pc``; a function described
        by ``DW_AT_ranges`` keeps its entry)."""
        high_pc = scope.die.attributes.get("DW_AT_high_pc")
        if high_pc is None or not scope.ranges:
            return entry
        high = scope.ranges[0][1]
        rows = scope.unit.rows()
        at_entry = scope.unit.rows_at(entry)
        if not at_entry:
            return entry
        index = rows.index(at_entry[0])
        if at_entry[0].prologue_end or index + 1 >= len(rows):
            return entry
        following = rows[index + 1].address
        return following if following < high else entry

    def instance_scopes(self, name: str) -> list[Scope]:
        """The scopes of a function's instances (see :meth:`functions`)."""
        index = self.scanned().functions
        if GLOB.search(name):
            scopes = self._scopes_named([key for key in sorted(index)
                                         if fnmatch.fnmatchcase(key, name)])
        else:
            scopes = self._scopes_named([name])
        seen: set[int] = set()
        result = []
        for scope in sorted(scopes, key=lambda s: (s.kind != "function", s.die.offset)):
            if scope.die.offset in seen or _redundant_instance(scope):
                continue
            seen.add(scope.die.offset)
            result.append(scope)
        if not result and not GLOB.search(name):
            result = self.scopes_by_symbol(name)
        if not result:
            close = difflib.get_close_matches(name, list(index), n=5, cutoff=0.6)
            raise FunctionNotFoundError(repr(name), self._info.path, close)
        return result

    def scopes_by_symbol(self, name: str) -> list[Scope]:
        """Functions the symbol table names differently from the DWARF (``malloc`` is
        ``__libc_malloc`` there, an alias of the same address), as perf probe finds them."""
        result: list[Scope] = []
        for table in self._info._symbol_tables():
            for value, kind in table.get(name, ()):
                if kind not in (_STT_FUNC, _STT_GNU_IFUNC):
                    continue
                tree = self._info._function_scope_at(value)
                if tree is not None and tree.entry() == value and tree not in result:
                    result.append(tree)
            if result:
                break
        return result


def _redundant_instance(scope: Scope) -> bool:
    """perf skips an inlined copy whose call site is the inlined function's own declaration
    (tools/perf/util/dwarf-aux.c, ``__die_walk_instances_cb``: "Ignore redundant instances")."""
    if scope.kind != "inlined":
        return False
    call_line = scope.die.attributes.get("DW_AT_call_line")
    call_file = scope.die.attributes.get("DW_AT_call_file")
    decl_line = attribute(scope.die, "DW_AT_decl_line")
    decl_file = attribute(scope.die, "DW_AT_decl_file")
    return (call_line is not None and decl_line is not None and call_file is not None and
            decl_file is not None and call_line.value == decl_line.value and
            call_file.value == decl_file.value)
