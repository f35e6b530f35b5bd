"""One compilation unit's debug information, read lazily through pyelftools.

A unit (``DW_TAG_compile_unit``) holds the functions of one source file: each concrete function
(``DW_TAG_subprogram`` with code) is the root of a tree of scopes — lexical blocks
(``DW_TAG_lexical_block``) and inlined copies of other functions
(``DW_TAG_inlined_subroutine``) — each with its parameters and variables (DWARF 5, chapter 3).
The tree of a function is built the first time an address inside it is asked about; nothing
else in the unit is read until needed, so one probe in libc reads one function, not libc.
"""

from __future__ import annotations

import bisect
import functools
import posixpath
from collections.abc import Iterator
from typing import Any

__all__ = ["LineRow", "Scope", "Unit", "attribute", "die_name", "die_ranges", "entry_pc"]

_FOLLOW = ("DW_AT_abstract_origin", "DW_AT_specification")
_VARIABLE_TAGS = frozenset({"DW_TAG_formal_parameter", "DW_TAG_variable"})


def attribute(die: Any, name: str, follow: bool = True) -> Any | None:
    """A DIE's attribute, else (``follow``) its abstract origin's or specification's.

    Args:
        die: The DIE.
        name: ``DW_AT_...``.
        follow: Look through ``DW_AT_abstract_origin`` and ``DW_AT_specification`` (what libdw's
            ``dwarf_attr_integrate`` does).

    Returns:
        The pyelftools ``AttributeValue``, or None.
    """
    current = die
    for _ in range(8):
        value = current.attributes.get(name)
        if value is not None or not follow:
            return value
        for link in _FOLLOW:
            if link in current.attributes:
                current = current.get_DIE_from_attribute(link)
                break
        else:
            return None
    return None


def die_name(die: Any) -> str | None:
    """A DIE's name, through abstract origins and specifications."""
    value = attribute(die, "DW_AT_name")
    if value is None:
        return None
    raw = value.value
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def linkage_name(die: Any) -> str | None:
    """A DIE's linkage (symbol) name, when it has one."""
    value = attribute(die, "DW_AT_linkage_name") or attribute(die, "DW_AT_MIPS_linkage_name")
    if value is None:
        return None
    raw = value.value
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def die_ranges(die: Any, unit: Unit) -> list[tuple[int, int]]:
    """The code of a DIE: ``DW_AT_low_pc``/``DW_AT_high_pc`` or ``DW_AT_ranges`` (DWARF 5,
    2.17), as ``[low, high)`` pairs in the order the DIE lists them; empty when it has none."""
    attrs = die.attributes
    low = attrs.get("DW_AT_low_pc")
    high = attrs.get("DW_AT_high_pc")
    if low is not None and high is not None:
        end = high.value if high.form.startswith("DW_FORM_addr") else low.value + high.value
        return [(int(low.value), int(end))] if end > low.value else []
    ranges = attrs.get("DW_AT_ranges")
    if ranges is None:
        return []
    return unit.range_list(int(ranges.value))


def entry_pc(die: Any, unit: Unit) -> int | None:
    """A function's entry address: ``DW_AT_entry_pc``, else ``DW_AT_low_pc``, else the start of
    its first range (perf's ``die_entrypc``, tools/perf/util/dwarf-aux.c)."""
    attrs = die.attributes
    entry = attrs.get("DW_AT_entry_pc")
    low = attrs.get("DW_AT_low_pc")
    if entry is not None:
        if entry.form.startswith("DW_FORM_addr"):
            return int(entry.value)
        base = low.value if low is not None else None
        if base is None:
            first = die_ranges(die, unit)
            base = first[0][0] if first else None
        if base is not None:  # DWARF 5, 2.18: a constant is an offset from the base address
            return int(base) + int(entry.value)
    if low is not None:
        return int(low.value)
    first = die_ranges(die, unit)
    return first[0][0] if first else None


class Scope:
    """A function, an inlined copy of one, or a lexical block, with what it declares.

    Attributes:
        die: Its DIE.
        unit: The unit it is in.
        kind: ``function`` (a concrete subprogram), ``inlined`` or ``block``.
        ranges: Its code, ``[low, high)`` pairs.
        parent: The enclosing scope (None for a function).
        items: Its parameters and variables (DIEs) and its inner scopes, in DIE order.
    """

    __slots__ = ("die", "items", "kind", "parent", "ranges", "unit")

    def __init__(self, die: Any, unit: Unit, kind: str, parent: Scope | None) -> None:
        self.die = die
        self.unit = unit
        self.kind = kind
        self.parent = parent
        self.ranges = die_ranges(die, unit)
        self.items: list[Any] = []

    def __repr__(self) -> str:
        return f"Scope({self.kind} {self.name!r} at {self.die.offset:#x})"

    @property
    def name(self) -> str:
        """The function's name (a block's: its function's)."""
        if self.kind == "block":
            return self.function_scope.name
        return die_name(self.die) or "<anonymous>"

    def contains(self, address: int) -> bool:
        """Whether ``address`` is in the scope's code."""
        return any(low <= address < high for low, high in self.ranges)

    @property
    def function_scope(self) -> Scope:
        """The innermost function or inlined copy this scope is part of (itself if one)."""
        scope = self
        while scope.kind == "block" and scope.parent is not None:
            scope = scope.parent
        return scope

    @property
    def real_function(self) -> Scope:
        """The concrete function whose frame this code runs in."""
        scope = self
        while scope.parent is not None:
            scope = scope.parent
        return scope

    def children(self) -> Iterator[Scope]:
        """Inner scopes, in order."""
        return (item for item in self.items if isinstance(item, Scope))

    def variables(self) -> Iterator[Any]:
        """Parameter and variable DIEs declared directly in this scope, in order."""
        return (item for item in self.items if not isinstance(item, Scope))

    def walk(self) -> Iterator[Scope]:
        """This scope and every scope inside it."""
        yield self
        for child in self.children():
            yield from child.walk()

    def innermost(self, address: int) -> Scope:
        """The innermost scope inside this one whose code contains ``address``."""
        scope = self
        while True:
            for child in scope.children():
                if child.contains(address):
                    scope = child
                    break
            else:
                return scope

    def entry(self) -> int | None:
        """The entry address of a function or inlined copy."""
        return entry_pc(self.die, self.unit)


def _build(scope: Scope, depth: int = 0) -> None:
    if depth > 64:
        return
    for child in scope.die.iter_children():
        tag = child.tag
        if tag in _VARIABLE_TAGS:
            scope.items.append(child)
        elif tag in ("DW_TAG_lexical_block", "DW_TAG_inlined_subroutine"):
            inner = Scope(child, scope.unit,
                          "block" if tag == "DW_TAG_lexical_block" else "inlined", scope)
            _build(inner, depth + 1)
            if inner.ranges:
                scope.items.append(inner)
            else:
                # A scope without code declares nothing readable, but gcc sometimes leaves a
                # block with an empty range list around inlined copies that do have code.
                for grandchild in inner.children():
                    grandchild.parent = scope
                    scope.items.append(grandchild)


class LineRow:
    """One row of a line table (DWARF 5, 6.2.2)."""

    __slots__ = ("address", "end_sequence", "file", "is_stmt", "line", "prologue_end")

    def __init__(self, state: Any) -> None:
        self.address: int = state.address
        self.file: int = state.file
        self.line: int = state.line
        self.is_stmt: bool = bool(state.is_stmt)
        self.end_sequence: bool = bool(state.end_sequence)
        self.prologue_end: bool = bool(state.prologue_end)


class Unit:
    """One compilation unit; its DIEs are read only when asked about.

    Args:
        cu: The pyelftools ``CompileUnit`` (its header is read, not its DIEs).
        stmt_list: The offset of its line table, when already known (then listing its files
            reads no DIE).
        comp_dir: Its compilation directory, when already known.
    """

    def __init__(self, cu: Any, stmt_list: int | None = None, comp_dir: str | None = None
                 ) -> None:
        self.cu = cu
        self.version: int = cu.header.version
        self.dwarf = cu.dwarfinfo
        self._stmt_list = stmt_list
        self._comp_dir = comp_dir
        self._functions: list[tuple[int, int, Any]] | None = None
        self._function_starts: list[int] = []
        self._trees: dict[int, Scope] = {}
        self._all_trees: list[Scope] | None = None
        self._rows: list[LineRow] | None = None
        self._row_addresses: list[int] = []
        self._files: list[str] | None = None
        self._optimized: bool | None = None
        self._globals: dict[str, list[Any]] | None = None
        self._expr_parser: Any = None

    def __repr__(self) -> str:
        return f"Unit({self.name!r} at {self.cu.cu_offset:#x})"

    @functools.cached_property
    def top(self) -> Any:
        """The unit's DIE (``DW_TAG_compile_unit``)."""
        return self.cu.get_top_DIE()

    @functools.cached_property
    def base_address(self) -> int:
        """The unit's base address (``DW_AT_low_pc``) for range and location lists."""
        low = self.top.attributes.get("DW_AT_low_pc")
        return int(low.value) if low is not None else 0

    @functools.cached_property
    def name(self) -> str:
        """The unit's primary source file, as the compiler was given it."""
        return die_name(self.top) or "<unknown>"

    @functools.cached_property
    def comp_dir(self) -> str:
        """The compilation directory (``DW_AT_comp_dir``), "" when not recorded."""
        if self._comp_dir is not None:
            return self._comp_dir
        comp_dir = self.top.attributes.get("DW_AT_comp_dir")
        return _text(comp_dir.value) if comp_dir is not None else ""

    @property
    def expr_parser(self) -> Any:
        """A pyelftools ``DWARFExprParser`` for this unit's address size."""
        if self._expr_parser is None:
            from elftools.dwarf.dwarf_expr import DWARFExprParser

            self._expr_parser = DWARFExprParser(self.cu.structs)
        return self._expr_parser

    def range_list(self, offset: int) -> list[tuple[int, int]]:
        """A range list (``.debug_ranges`` or ``.debug_rnglists``) as ``[low, high)`` pairs."""
        from elftools.dwarf.ranges import BaseAddressEntry

        lists = self.dwarf.range_lists()
        if lists is None:
            return []
        base = self.base_address
        result = []
        for entry in lists.get_range_list_at_offset(offset, cu=self.cu):
            if isinstance(entry, BaseAddressEntry):
                base = entry.base_address
                continue
            low, high = entry.begin_offset, entry.end_offset
            if not entry.is_absolute:
                low, high = low + base, high + base
            if high > low:
                result.append((int(low), int(high)))
        return result

    # -- functions --------------------------------------------------------------------------

    def _subprograms(self, parent: Any, depth: int = 0) -> Iterator[Any]:
        for child in parent.iter_children():
            if child.tag == "DW_TAG_subprogram":
                yield child
            elif child.tag == "DW_TAG_namespace" and depth < 16:
                yield from self._subprograms(child, depth + 1)

    def _index_functions(self) -> list[tuple[int, int, Any]]:
        if self._functions is None:
            table = []
            for die in self._subprograms(self.top):
                if "DW_AT_declaration" in die.attributes:
                    continue
                for low, high in die_ranges(die, self):
                    table.append((low, high, die))
            table.sort(key=lambda item: item[0])
            self._functions = table
            self._function_starts = [low for low, _, _ in table]
        return self._functions

    def function_dies(self) -> list[Any]:
        """Every concrete function (a subprogram with code) of the unit, once each."""
        seen: dict[int, Any] = {}
        for _, _, die in self._index_functions():
            seen.setdefault(die.offset, die)
        return list(seen.values())

    def abstract_functions(self) -> Iterator[Any]:
        """Subprograms without code of their own (inline functions' abstract instances)."""
        for die in self._subprograms(self.top):
            if "DW_AT_low_pc" not in die.attributes and "DW_AT_ranges" not in die.attributes:
                yield die

    def tree(self, function_die: Any) -> Scope:
        """The scope tree of a concrete function (built once)."""
        tree = self._trees.get(function_die.offset)
        if tree is None:
            tree = Scope(function_die, self, "function", None)
            _build(tree)
            self._trees[function_die.offset] = tree
        return tree

    def scope_of(self, function_offset: int, die_offset: int) -> Scope | None:
        """The scope of DIE ``die_offset`` in the tree of the function at
        ``function_offset``."""
        tree = self.tree(self.cu.get_DIE_from_refaddr(function_offset))
        return next((scope for scope in tree.walk() if scope.die.offset == die_offset), None)

    def function_at(self, address: int) -> Scope | None:
        """The concrete function whose code contains ``address``."""
        table = self._index_functions()
        index = bisect.bisect_right(self._function_starts, address) - 1
        # Ranges of different functions do not overlap, but a function's cold part may sit
        # before another function; look back a little for the one that contains the address.
        for low, high, die in reversed(table[max(0, index - 8): index + 1]):
            if low <= address < high:
                return self.tree(die)
        return None

    def trees(self) -> list[Scope]:
        """The scope trees of every concrete function (reads the whole unit)."""
        if self._all_trees is None:
            self._all_trees = [self.tree(die) for die in self.function_dies()]
        return self._all_trees

    # -- globals ----------------------------------------------------------------------------

    def globals(self) -> dict[str, list[Any]]:
        """Variables declared at the unit's top level (and in namespaces), by name."""
        if self._globals is None:
            table: dict[str, list[Any]] = {}

            def visit(parent: Any, depth: int) -> None:
                for child in parent.iter_children():
                    if child.tag == "DW_TAG_variable":
                        name = die_name(child)
                        if name is not None:
                            table.setdefault(name, []).append(child)
                    elif child.tag == "DW_TAG_namespace" and depth < 16:
                        visit(child, depth + 1)

            visit(self.top, 0)
            self._globals = table
        return self._globals

    # -- files and lines --------------------------------------------------------------------

    def _line_program(self) -> Any | None:
        if self._stmt_list is not None:
            # pyelftools' own line_program_for_CU would read the unit's DIE (and its whole
            # abbreviation table) only to learn this offset.
            parse = getattr(self.dwarf, "_parse_line_program_at_offset", None)
            if parse is not None:
                return parse(self._stmt_list, self.cu.structs)
        if "DW_AT_stmt_list" not in self.top.attributes:
            return None
        return self.dwarf.line_program_for_CU(self.cu)

    def file_names(self) -> list[str]:
        """The line table's file names, full paths where the table says so, indexed as
        ``DW_AT_decl_file`` and line rows index them (0-based in DWARF 5, 1-based before)."""
        if self._files is None:
            program = self._line_program()
            files: list[str] = []
            if program is not None:
                version = program["version"]
                directories = [_text(d) for d in program["include_directory"]]
                if version < 5:
                    # DWARF 4, 6.2.4: directory 0 is the compilation directory, not listed,
                    # and file indexes start at 1.
                    directories = [self.comp_dir, *directories]
                    files.append("")
                elif not directories:
                    directories = [self.comp_dir]
                # Every directory is relative to the compilation directory (entry 0).
                base = directories[0]
                for entry in program["file_entry"]:
                    name = _text(entry.name)
                    index = entry.dir_index
                    directory = directories[index] if 0 <= index < len(directories) else ""
                    if index != 0 and directory and not posixpath.isabs(directory):
                        directory = posixpath.join(base, directory)
                    if not posixpath.isabs(name) and directory:
                        name = posixpath.join(directory, name)
                    files.append(posixpath.normpath(name) if name else name)
            self._files = files
        return self._files

    def file_name(self, index: int | None) -> str | None:
        """The file a ``DW_AT_decl_file``/``DW_AT_call_file`` index or a line row names."""
        if index is None:
            return None
        files = self.file_names()
        return files[index] if 0 <= index < len(files) and files[index] else None

    def rows(self) -> list[LineRow]:
        """The line table, sorted by address as libdw's ``dwarf_getsrclines`` sorts it: by
        address, an end of sequence before a row at the same address, else in table order."""
        if self._rows is None:
            program = self._line_program()
            rows = []
            if program is not None:
                rows = [LineRow(entry.state) for entry in program.get_entries()
                        if entry.state is not None]
            order = sorted(range(len(rows)),
                           key=lambda i: (rows[i].address, not rows[i].end_sequence, i))
            self._rows = [rows[i] for i in order]
            self._row_addresses = [row.address for row in self._rows]
        return self._rows

    def rows_at(self, address: int) -> list[LineRow]:
        """The line-table rows at exactly ``address``, in table order."""
        rows = self.rows()
        start = bisect.bisect_left(self._row_addresses, address)
        stop = bisect.bisect_right(self._row_addresses, address, lo=start)
        return rows[start:stop]

    # -- how it was built -------------------------------------------------------------------

    @property
    def optimized(self) -> bool:
        """Whether perf probe takes the unit for an optimized build: some parameter or
        variable has a location list in ``DW_FORM_sec_offset`` form (tools/perf/util/
        dwarf-aux.c, ``die_is_optimized_target``). A DWARF 5 location list that clang refers
        to by index (``DW_FORM_loclistx``) does not count there, so perf takes clang's
        optimized DWARF 5 units for unoptimized ones; rawprobe follows perf, so that both put
        a function probe at the same address."""
        if self._optimized is None:
            self._optimized = False
            for die in self.cu.iter_DIEs():
                if die.tag in _VARIABLE_TAGS:
                    location = die.attributes.get("DW_AT_location")
                    if location is not None and location.form == "DW_FORM_sec_offset":
                        self._optimized = True
                        break
        return self._optimized

    def producer(self) -> str:
        """``DW_AT_producer``: the compiler and its options, when recorded."""
        value = self.top.attributes.get("DW_AT_producer")
        return _text(value.value) if value is not None else ""


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
