"""The debug information of one probed file: functions, variables, source lines.

:class:`DebugInfo` answers what a probe word needs from DWARF, the way perf probe answers it
(tools/perf/util/probe-finder.c and dwarf-aux.c), so that rawprobe and perf read the same values:

- a function's instances (its out-of-line body and every inlined copy) and where perf probe
  puts a function probe (after the prologue in an unoptimized unit);
- the parameters and variables in scope at an address, and whether each can be read there;
- a variable expression (``o->in->x``) compiled into the kernel fetch-arg that reads it;
- the addresses where a source line's code starts.

Everything is read lazily: a question about one address reads the unit (``.debug_aranges``
says which) and the one function containing it. Questions by name (:meth:`functions`, globals of
other units) use an index of every unit built by one fast pass over ``.debug_info``
(``_scan``); questions by source file read the line tables of the units that name the file.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from .._errors import RawprobeError
from ._arch import DwarfArch
from ._cfi import FrameTable
from ._elf import ElfFile, LoadSegment
from ._errors import (
    DwarfError,
    FunctionNotFoundError,
    LineNotFoundError,
    NotAvailableError,
    TypeMismatchError,
    VariableNotFoundError,
)
from ._expr import Index, Member, VariableExpression, parse_expression
from ._location import (
    CONSTANT,
    EvaluationContext,
    FileAddress,
    ImplicitLocation,
    Load,
    Location,
    MemoryLocation,
    Register,
    RegisterLocation,
    Unavailable,
    Value,
    evaluate,
    memory_text,
    value_text,
)
from ._model import CompiledVariable, FunctionInstance, LineAddress, SourceLine, Variable
from ._scan import NameIndex, scan
from ._types import (
    array_count,
    byte_size,
    c_type_name,
    find_member,
    is_character,
    kernel_type,
    member_names,
    perf_type_name,
    strip_typedefs,
    type_of,
)
from ._unit import Scope, Unit, attribute, die_name, die_ranges, linkage_name

__all__ = ["MAX_DEREFERENCES", "DebugInfo"]

MAX_DEREFERENCES = 8  # rawprobe's BPF side (RP_MAX_DEREF) and a sane bound for the kernel's
_GLOB = re.compile(r"[*?\[]")
_KERNEL_TYPE = re.compile(
    r"(?:[sux](?:8|16|32|64)|char|string|ustring|symbol|b\d+@\d+/\d+)(?:\[\d+\])?")
_POINTER_TAGS = ("DW_TAG_pointer_type", "DW_TAG_reference_type", "DW_TAG_rvalue_reference_type")


_F = TypeVar("_F", bound=Callable[..., Any])


def _guarded(method: _F) -> _F:
    """Turn what a damaged or unusual DWARF makes pyelftools raise into a :class:`DwarfError`
    naming the file, so bad input never ends in a traceback."""

    @functools.wraps(method)
    def wrapper(self: DebugInfo, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except RawprobeError:
            raise
        except Exception as error:  # pyelftools raises many kinds
            raise DwarfError(
                f"{self.debug_path}: its debug information is damaged or uses something "
                f"rawprobe cannot read ({type(error).__name__}: {error}); rebuild the program "
                "or reinstall its debug package") from error

    return wrapper  # type: ignore[return-value]


class _Resolved:
    """A variable expression part way through: where the object is, and its type."""

    __slots__ = ("bitfield", "location", "type_die")

    def __init__(self, location: Location, type_die: Any | None) -> None:
        self.location = location
        self.type_die = type_die
        self.bitfield: tuple[int, int] | None = None  # (bit offset, width) from the location


class DebugInfo:
    """DWARF of one probed file, opened with :func:`rawprobe._dwarf.open_debug_info`.

    Attributes:
        path: The probed file.
        debug_path: The file the DWARF was read from (``path`` itself, or a separate debug file).
        source: ``self``, ``build-id`` or ``debuglink``: how ``debug_path`` was found.
    """

    def __init__(self, target: ElfFile, debug: ElfFile, source: str, arch: DwarfArch) -> None:
        self.path = target.path
        self.debug_path = debug.path
        self.source = source
        self._target = target
        self._debug = debug
        self._arch = arch
        self._dwarf: Any = debug.elf.get_dwarf_info(relocate_dwarf_sections=False)
        self._segments: list[LoadSegment] = target.load_segments()
        # Call frame information: the probed file's .eh_frame first (a separate debug file
        # keeps only an empty, SHT_NOBITS, copy), then the debug file's .debug_frame.
        cfi_sources = []
        for elf_file in dict.fromkeys((target, debug)):
            if elf_file.has_section(".eh_frame") or elf_file.has_section(".debug_frame"):
                cfi_sources.append(elf_file.elf.get_dwarf_info(relocate_dwarf_sections=False)
                                   if elf_file is not debug else self._dwarf)
        self._frames = FrameTable(cfi_sources)
        self._lock = threading.RLock()
        self._units: dict[int, Unit] = {}
        self._aranges: Any = None
        self._unit_ranges: list[tuple[int, int, int]] | None = None
        self._scan: NameIndex | None = None
        self._compiled: dict[tuple[str, int, bool, str | None, str | None], CompiledVariable] = {}

    def close(self) -> None:
        """Close the files (the object must not be used afterwards)."""
        self._target.close()
        if self._debug is not self._target:
            self._debug.close()

    def __repr__(self) -> str:
        return f"DebugInfo({self.path!r}, from {self.source} {self.debug_path!r})"

    # -- units ------------------------------------------------------------------------------

    def _unit(self, cu_offset: int, cu: Any = None) -> Unit:
        unit = self._units.get(cu_offset)
        if unit is None:
            hints = self._scan.units.get(cu_offset, (None, None)) if self._scan else (None, None)
            unit = Unit(cu if cu is not None else self._dwarf.get_CU_at(cu_offset), *hints)
            self._units[cu_offset] = unit
        return unit

    def _iter_units(self) -> Iterator[Unit]:
        for cu in self._dwarf.iter_CUs():
            yield self._unit(cu.cu_offset, cu)

    def _units_naming(self, file: str) -> Iterator[Unit]:
        """The units whose line table names a source file (read through the name index, so
        the others' DIEs are not read)."""
        self._scanned()
        for unit in self._iter_units():
            if any(name and _same_file(name, file) for name in unit.file_names()):
                yield unit

    def _unit_at(self, address: int) -> Unit | None:
        """The unit whose code contains ``address``: ``.debug_aranges`` says, for the units it
        lists (gcc lists all of them); the units' own ranges say for the others (clang emits
        no ``.debug_aranges`` by default)."""
        if self._unit_ranges is None:
            listed: set[int] = set()
            try:
                self._aranges = self._dwarf.get_aranges()
                if self._aranges is not None:
                    # Units without code have an empty set, which the public entries omit;
                    # should pyelftools drop this method, the except below copes (slower).
                    listed = {entry.info_offset
                              for entry in self._aranges._get_entries(need_empty=True)}
            except Exception:  # damaged aranges: the units' own ranges, then
                self._aranges = None
            table = []
            for cu in self._dwarf.iter_CUs():
                if cu.cu_offset in listed:
                    continue
                unit = self._unit(cu.cu_offset)
                table += [(low, high, cu.cu_offset) for low, high in die_ranges(unit.top, unit)]
            table.sort()
            self._unit_ranges = table
        if self._aranges is not None:
            offset = self._aranges.cu_offset_at_addr(address)
            if offset is not None:
                return self._unit(offset)
        for low, high, offset in self._unit_ranges:
            if low <= address < high:
                return self._unit(offset)
        return None

    def _function_scope_at(self, address: int) -> Scope | None:
        unit = self._unit_at(address)
        return None if unit is None else unit.function_at(address)

    def _scope_at(self, address: int, function: str | None = None) -> Scope:
        """The scope whose variables a probe at ``address`` sees.

        Without ``function``: the concrete function containing the address, as perf probe
        takes it for an address (its walk then also enters the lexical blocks and inlined
        copies there). With ``function``: the innermost instance of that function containing
        the address — an inlined copy, for a probe on one — or the concrete function when a
        symbol of that name is its entry (``malloc`` for ``__libc_malloc``).
        """
        tree = self._function_scope_at(address)
        if tree is None:
            raise FunctionNotFoundError(f"containing address {address:#x}", self.path)
        if function is None:
            return tree
        innermost = tree.innermost(address)
        scope: Scope | None = innermost
        while scope is not None:
            if scope.kind != "block" and function in (die_name(scope.die),
                                                      linkage_name(scope.die)):
                return scope
            scope = scope.parent
        if tree in self._scopes_by_symbol(function):
            return tree
        raise FunctionNotFoundError(
            f"{function!r} at address {address:#x} (the code there belongs to "
            f"{innermost.function_scope.name})", self.path)

    # -- functions --------------------------------------------------------------------------

    def _scanned(self) -> NameIndex:
        """The name index of every unit (one fast pass, see ``_scan``), built once."""
        if self._scan is None:
            def raw(section: Any) -> bytes:
                return section.stream.getvalue() if section is not None else b""

            dwarf = self._dwarf
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
                unit = self._unit(unit_offset)
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
        index = self._scanned()
        scopes = []
        for name in names:
            for unit_offset, die_offset, _, function in index.functions.get(name, ()):
                scope = self._unit(unit_offset).scope_of(function, die_offset)
                if scope is not None:
                    scopes.append(scope)
        return scopes

    def _instance(self, scope: Scope) -> FunctionInstance:
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

    @_guarded
    def functions(self, name: str, inlined: bool = True) -> list[FunctionInstance]:
        """The instances of a function: its out-of-line body and (``inlined``) each inlined
        copy, as perf probe finds them for ``FUNC``.

        Finding inlined copies needs the name index of every unit, built once by a fast pass
        (libc: about a second); without ``inlined``, a function the symbol table names is
        found through its symbol at once.

        Args:
            name: The function's name or linkage name, or a glob (``mem*``).
            inlined: Include inlined copies.

        Returns:
            The instances, out-of-line ones first, each once.

        Raises:
            FunctionNotFoundError: No function of that name; close names are suggested.
        """
        with self._lock:
            if not inlined and not _GLOB.search(name):
                scopes = self._scopes_by_symbol(name)
                if scopes:
                    return [self._instance(scope) for scope in scopes]
            scopes = [scope for scope in self._instance_scopes(name)
                      if inlined or scope.kind == "function"]
            if not scopes:
                raise FunctionNotFoundError(
                    f"{name!r} out of line (it has inlined copies only; ask for those)", self.path)
            return [self._instance(scope) for scope in scopes]

    @_guarded
    def function_at(self, address: int) -> FunctionInstance | None:
        """The out-of-line function whose code contains ``address`` (e.g. a symbol's value).

        Args:
            address: An ELF virtual address.

        Returns:
            Its instance, or None when no function with debug information contains it.
        """
        with self._lock:
            scope = self._function_scope_at(address)
            return None if scope is None else self._instance(scope)

    @_guarded
    def inlined_at(self, address: int) -> list[FunctionInstance]:
        """The inlined copies whose code contains ``address``, outermost first."""
        with self._lock:
            tree = self._function_scope_at(address)
            if tree is None:
                return []
            result = []
            scope: Scope | None = tree.innermost(address)
            while scope is not None and scope.parent is not None:
                if scope.kind == "inlined":
                    result.append(self._instance(scope))
                scope = scope.parent
            return result[::-1]

    # -- variables --------------------------------------------------------------------------

    def _context(self, scope: Scope, address: int) -> EvaluationContext:
        unit = scope.unit
        function = scope.real_function

        def cfa() -> Value:
            rule = self._frames.cfa_rule(address)
            if rule is None:
                raise Unavailable(f"the call frame information gives no frame address at "
                                  f"{address:#x}")
            register = self._arch.register_name(rule[0])
            if register is None:
                raise Unavailable(f"the frame address at {address:#x} is relative to DWARF "
                                  f"register {rule[0]}, which a uprobe cannot read")
            return Value(Register(register), rule[1])

        def frame_base() -> Value:
            attr = function.die.attributes.get("DW_AT_frame_base")
            if attr is None:
                raise Unavailable(f"{function.name} has no frame base (DW_AT_frame_base)")
            ops = self._expression_at(attr, function.die, unit, address)
            inner = EvaluationContext(self._arch.register_name, _no_frame_base, cfa,
                                      lambda i: int(self._dwarf.get_addr(unit.cu, i)), False)
            location = evaluate(ops, inner)
            if isinstance(location, RegisterLocation):
                return Value(Register(location.register))
            if isinstance(location, MemoryLocation):
                return location.address
            return location.value

        def base_type(offset: int) -> tuple[int, int] | None:
            die = unit.cu.get_DIE_from_refaddr(unit.cu.cu_offset + offset)
            size = die.attributes.get("DW_AT_byte_size")
            encoding = die.attributes.get("DW_AT_encoding")
            if die.tag != "DW_TAG_base_type" or size is None or encoding is None:
                return None
            return int(size.value), int(encoding.value)

        return EvaluationContext(
            register_name=self._arch.register_name,
            frame_base=frame_base,
            cfa=cfa,
            address_index=lambda i: int(self._dwarf.get_addr(unit.cu, i)),
            at_function_entry=address == function.entry(),
            base_type=base_type,
        )

    def _location_entries(self, attr: Any, die: Any, unit: Unit) -> list[tuple[int, int, Any]]:
        """A location list as (low, high, expression bytes); (-1, -1, ...) is a default entry."""
        from elftools.dwarf.locationlists import BaseAddressEntry, LocationEntry, LocationParser

        parser = LocationParser(self._dwarf.location_lists())
        entries = parser.parse_from_attribute(attr, unit.version, die)
        base = unit.base_address
        result = []
        for entry in entries:
            if isinstance(entry, BaseAddressEntry):
                base = entry.base_address
            elif isinstance(entry, LocationEntry):
                low, high = entry.begin_offset, entry.end_offset
                if low >= 0 and not entry.is_absolute:
                    low, high = low + base, high + base
                result.append((int(low), int(high), entry.loc_expr))
        return result

    def _expression_at(self, attr: Any, die: Any, unit: Unit, address: int) -> list[Any]:
        """The location expression of an attribute that applies at ``address``, parsed."""
        if attr.form == "DW_FORM_exprloc" or attr.form.startswith("DW_FORM_block"):
            return unit.expr_parser.parse_expr(attr.value)  # type: ignore[no-any-return]
        default = None
        for low, high, expression in self._location_entries(attr, die, unit):
            if low == -1:
                default = expression
            elif low <= address < high:
                return unit.expr_parser.parse_expr(expression)  # type: ignore[no-any-return]
        if default is not None:
            return unit.expr_parser.parse_expr(default)  # type: ignore[no-any-return]
        raise Unavailable("optimized out here")

    def _readable_ranges(self, die: Any, scope: Scope) -> list[tuple[int, int]]:
        """Where a variable's location list gives a location rawprobe can read."""
        attr = die.attributes.get("DW_AT_location")
        if attr is None or attr.form == "DW_FORM_exprloc" or attr.form.startswith("DW_FORM_block"):
            return []
        ranges: list[tuple[int, int]] = []
        for low, high, expression in self._location_entries(attr, die, scope.unit):
            if low < 0 or high <= low:
                continue
            try:
                ops = scope.unit.expr_parser.parse_expr(expression)
                location = evaluate(ops, self._context(scope, low))
                _check_readable(location)
            except (Unavailable, KeyError, IndexError, ValueError):
                continue
            if ranges and ranges[-1][1] == low:
                ranges[-1] = (ranges[-1][0], high)
            else:
                ranges.append((low, high))
        return ranges

    def _locate(self, die: Any, scope: Scope, address: int) -> Location:
        """Where a variable is at ``address``.

        Raises:
            Unavailable: It cannot be read there.
        """
        unit = scope.unit
        attrs = die.attributes
        const = attrs.get("DW_AT_const_value")
        if const is not None:
            # perf probe reads these as an immediate (convert_variable_location).
            value = const.value
            if isinstance(value, int):
                return ImplicitLocation(Value(CONSTANT, value))
            if isinstance(value, list | bytes) and len(value) <= 8:
                return ImplicitLocation(Value(CONSTANT, int.from_bytes(bytes(value), "little")))
            raise Unavailable("it is a constant too large for a fetch-arg")
        attr = attrs.get("DW_AT_location")
        if attr is None:
            if attribute(die, "DW_AT_external") is not None or \
                    "DW_AT_declaration" in attrs:
                return self._global_location(die_name(die) or "", unit, scope, address)
            raise Unavailable("optimized out (the compiler kept no location for it)")
        try:
            ops = self._expression_at(attr, die, unit, address)
        except (KeyError, IndexError, ValueError) as error:
            raise Unavailable(f"its location expression cannot be decoded ({error})") from None
        try:
            return evaluate(ops, self._context(scope, address))
        except (KeyError, IndexError, ValueError) as error:
            raise Unavailable(f"its location expression cannot be decoded ({error})") from None

    def _global_location(self, name: str, unit: Unit, scope: Scope, address: int) -> Location:
        """An ``extern`` variable declared here and defined elsewhere: its definition in this
        unit, else its symbol's address, else its definition in another unit."""
        for other_unit, die in self._find_globals(name, unit, everywhere=False):
            if "DW_AT_location" in die.attributes:
                return self._locate_static(die, other_unit, scope, address)
        for elf_file in (self._debug, self._target):
            for value, kind in elf_file.symbols().get(name, ()):
                if kind == 6:  # STT_TLS
                    raise Unavailable("it is a thread-local variable, whose address a uprobe "
                                      "cannot compute")
                if kind == 1:  # STT_OBJECT
                    return MemoryLocation(Value(FileAddress(value)))
        for unit_offset, die_offset, has_location in self._scanned().variables.get(name, ()):
            if has_location and unit_offset != unit.cu.cu_offset:
                die = self._dwarf.get_DIE_from_refaddr(die_offset)
                return self._locate_static(die, self._unit(unit_offset), scope, address)
        raise Unavailable("it is declared here but defined elsewhere, and no symbol or "
                          "debug information says where")

    def _locate_static(self, die: Any, unit: Unit, scope: Scope, address: int) -> Location:
        attr = die.attributes["DW_AT_location"]
        ops = self._expression_at(attr, die, unit, address)
        context = self._context(scope, address)
        context.address_index = lambda i: int(self._dwarf.get_addr(unit.cu, i))
        return evaluate(ops, context)

    def _variable(self, die: Any, scope: Scope, address: int, kind: str) -> Variable:
        type_die = type_of(die)
        try:
            location = self._locate(die, scope, address)
            _check_readable(location)
            available, reason, ranges = True, "", []
        except Unavailable as error:
            available, reason = False, error.reason
            ranges = self._readable_ranges(die, scope)
        ranges = _clip(ranges, scope.ranges)
        decl_line = attribute(die, "DW_AT_decl_line")
        return Variable(
            location=self._location_text(die, scope, address),
            name=die_name(die) or "<anonymous>",
            kind=kind,  # type: ignore[arg-type]
            type_text=c_type_name(type_die),
            perf_type_text=perf_type_name(die),
            available=available,
            reason=reason,
            available_ranges=tuple(ranges),
            decl_line=int(decl_line.value) if decl_line is not None else None,
        )

    def _location_text(self, die: Any, scope: Scope, address: int) -> str:
        const = die.attributes.get("DW_AT_const_value")
        if const is not None:
            return f"DW_AT_const_value {const.value}"
        attr = die.attributes.get("DW_AT_location")
        if attr is None:
            return ""
        try:
            ops = self._expression_at(attr, die, scope.unit, address)
        except (Unavailable, KeyError, IndexError, ValueError):
            return ""
        return "; ".join(" ".join([op.op_name, *(str(arg) for arg in op.args
                                                  if not isinstance(arg, list))])
                         for op in ops)

    @staticmethod
    def _visible(
        scope: Scope, address: int, into_inlined: bool = True
    ) -> Iterator[tuple[Any, Scope]]:
        """Parameters and variables seen from ``address`` in ``scope``'s function instance, in
        DIE order: perf's walk (tools/perf/util/probe-finder.c, ``collect_variables_cb``)
        goes into every inner scope whose code contains the address — lexical blocks and, with
        ``into_inlined``, copies of other functions inlined there."""

        def walk(current: Scope) -> Iterator[tuple[Any, Scope]]:
            for item in current.items:
                if isinstance(item, Scope):
                    if item.contains(address) and (into_inlined or item.kind == "block"):
                        yield from walk(item)
                elif die_name(item) is not None:
                    yield item, current

        yield from walk(scope.function_scope)

    @_guarded
    def variables_at(self, address: int, function: str | None = None) -> list[Variable]:
        """The parameters and locals in scope at an address, readable there or not.

        Args:
            address: The probe address (ELF virtual address).
            function: Whose variables: by default the concrete function containing the
                address, with those of blocks and inlined copies there (as perf probe lists
                them); the name of an inlined function for that copy's own. Pass
                :attr:`FunctionInstance.name` for a function probe and
                :attr:`LineAddress.function` for a line probe.

        Returns:
            Variables in declaration order (parameters first, as the debug information lists
            them); each says whether it can be read at ``address``, and if not, why and where
            it can.

        Raises:
            FunctionNotFoundError: No function with debug information contains the address.
        """
        with self._lock:
            scope = self._scope_at(address, function)
            return [
                self._variable(die, owner, address,
                               "parameter" if die.tag == "DW_TAG_formal_parameter" else "local")
                for die, owner in self._visible(scope, address)
            ]

    @_guarded
    def params(self, address: int, function: str | None = None) -> list[Variable]:
        """What ``$params`` expands to: the readable parameters at ``address``."""
        return [v for v in self.variables_at(address, function)
                if v.available and v.kind == "parameter"]

    @_guarded
    def vars(self, address: int, function: str | None = None) -> list[Variable]:
        """What ``$vars`` expands to: the readable parameters and locals at ``address``."""
        return [v for v in self.variables_at(address, function) if v.available]

    # -- globals ----------------------------------------------------------------------------

    def _find_globals(self, name: str, unit: Unit, everywhere: bool) -> list[tuple[Unit, Any]]:
        """Top-level variables named ``name``: this unit's, then (``everywhere``) any unit's,
        definitions (with a location) before declarations."""
        found = [(unit, die) for die in unit.globals().get(name, ())]
        if everywhere and not found:
            # Not even declared here: the other units' (an extern declared here is found
            # through the symbol table by _locate, without reading every unit).
            for unit_offset, die_offset, _ in self._scanned().variables.get(name, ()):
                if unit_offset != unit.cu.cu_offset:
                    other = self._unit(unit_offset)
                    found.append((other, self._dwarf.get_DIE_from_refaddr(die_offset)))
        found.sort(key=lambda item: "DW_AT_location" not in item[1].attributes)
        return found

    # -- compiling --------------------------------------------------------------------------

    @_guarded
    def compile(
        self,
        expression: str,
        address: int,
        retprobe: bool = False,
        cast: str | None = None,
        function: str | None = None,
    ) -> CompiledVariable:
        """Translate a variable expression into the kernel fetch-arg that reads it.

        Args:
            expression: ``a``, ``o->in->x``, ``req->path``, ``a[3]``, ``@counter``,
                ``@config.limit``, ``$retval``, ``$retval->len``.
            address: The probe address (ELF virtual address): a function's
                :attr:`FunctionInstance.probe_address`, a source line's address, or (for a
                return probe) the function's entry.
            retprobe: Whether this is a return probe: then only ``$retval`` and globals can
                be read.
            cast: The ``:TYPE`` given by the user, if any: ``string``/``ustring`` (read the
                string a ``char *`` points to, or a ``char[]``), ``s``/``u``/``x`` (change the
                signedness or show in hex, keeping the width), or any kernel type, used as is.
            function: Whose variables (see :meth:`variables_at`): the
                :attr:`FunctionInstance.name` of a function probe, the
                :attr:`LineAddress.function` of a line probe.

        Returns:
            The fetch-arg and the type to read it as.

        Raises:
            ExpressionSyntaxError: The expression does not parse.
            VariableNotFoundError: No such variable in scope (close names are suggested).
            NotAvailableError: The variable exists but cannot be read at ``address`` (the
                error names the ranges where it can).
            TypeMismatchError: The accessors do not fit the types, or the type cannot be read.
            FunctionNotFoundError: No function with debug information contains ``address``.
        """
        key = (expression, address, retprobe, cast, function)
        with self._lock:
            cached = self._compiled.get(key)
            if cached is None:
                cached = self._compile(parse_expression(expression), address, retprobe, cast,
                                       function)
                self._compiled[key] = cached
            return cached

    def _compile(
        self,
        parsed: VariableExpression,
        address: int,
        retprobe: bool,
        cast: str | None,
        function: str | None,
    ) -> CompiledVariable:
        if cast is not None and cast not in ("s", "u", "x") and not _KERNEL_TYPE.fullmatch(cast):
            raise TypeMismatchError(f"{cast!r} is not a kernel type (s8..s64, u8..u64, x8..x64, "
                                    "char, string, ustring, symbol, b<w>@<o>/<c>, TYPE[N]) nor "
                                    "s, u or x")
        scope = self._scope_at(address, function)
        where = f"{address:#x} in {scope.function_scope.name}"
        if parsed.kind == "retval":
            resolved = self._retval(scope, address, retprobe, where)
        elif parsed.kind == "global":
            resolved = self._resolve_global(parsed.name, scope, address, where)
        else:
            if retprobe:
                raise DwarfError(
                    f"{parsed.name!r}: a return probe sees the function's result ($retval) and "
                    "globals (@name); parameters and locals are gone by then, so read them in "
                    "an entry probe")
            resolved = self._resolve_name(parsed.name, scope, address, where)
        text = parsed.name if parsed.kind != "retval" else "$retval"
        for accessor in parsed.accessors:
            resolved = self._access(resolved, accessor, text, parsed.text)
            text += str(accessor)
        fetcharg, kernel, type_text = self._finish(resolved, parsed.text, cast, address, where)
        depth = fetcharg.count("(") + (1 if fetcharg.startswith("@") else 0)
        if depth > MAX_DEREFERENCES:
            raise TypeMismatchError(
                f"{parsed.text} needs {depth} memory reads; a fetch-arg may nest at most "
                f"{MAX_DEREFERENCES}")
        return CompiledVariable(parsed.text, parsed.field_name, fetcharg, kernel, type_text,
                                address, depth)

    def _retval(self, scope: Scope, address: int, retprobe: bool, where: str) -> _Resolved:
        function = scope.real_function
        if not retprobe:
            raise DwarfError("$retval is the result of a function: use it in a return probe "
                             f"(r:... or ...%return) on {function.name}")
        if address != function.entry():
            raise DwarfError(f"$retval needs a return probe on a function's entry; {address:#x} "
                             f"is inside {function.name}")
        result_type = type_of(function.die)
        real = strip_typedefs(result_type)
        if real is None:
            raise TypeMismatchError(f"{function.name} returns nothing (void)")
        if real.tag not in (*_POINTER_TAGS, "DW_TAG_base_type", "DW_TAG_enumeration_type"):
            raise TypeMismatchError(f"{function.name} returns a {c_type_name(result_type)}, "
                                    "which is not in one register")
        size = byte_size(real) or 8
        encoding = real.attributes.get("DW_AT_encoding")
        if size > 8 or (encoding is not None and encoding.value in (0x03, 0x04, 0x0F)):
            raise TypeMismatchError(f"{function.name} returns a {c_type_name(result_type)}, "
                                    "which is not in the integer return register")
        return _Resolved(ImplicitLocation(Value(Register("$retval"))), result_type)

    def _resolve_name(self, name: str, scope: Scope, address: int, where: str) -> _Resolved:
        """A bare name: the innermost declaration in scope, else a global of the unit (perf's
        ``find_variable``)."""
        best = None
        for die, owner in self._visible(scope, address, into_inlined=False):
            if die_name(die) == name:
                best = (die, owner)  # later (inner) declarations shadow earlier ones
        if best is None:
            # perf probe also finds a variable of a function inlined at the address.
            best = next(((die, owner) for die, owner in self._visible(scope, address)
                         if die_name(die) == name), None)
        if best is not None:
            die, owner = best
            return self._resolved_variable(die, owner, address, name, where)
        for unit, die in self._find_globals(name, scope.unit, everywhere=False):
            return self._resolved_variable(die, scope, address, name, where, unit)
        names = sorted({die_name(die) or "" for die, _ in self._visible(scope, address)}
                       | set(scope.unit.globals()))
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
        raise VariableNotFoundError(name, where, close,
                                    f"'rawprobe list --vars' shows what is there; a global of "
                                    f"another file is @{name}" if not close else "")

    def _resolve_global(self, name: str, scope: Scope, address: int, where: str) -> _Resolved:
        for unit, die in self._find_globals(name, scope.unit, everywhere=True):
            return self._resolved_variable(die, scope, address, "@" + name, where, unit)
        names = list(scope.unit.globals())
        if self._scan is not None:
            names += list(self._scan.variables)
        raise VariableNotFoundError("@" + name, self.path,
                                    difflib.get_close_matches(name, names, n=5, cutoff=0.6))

    def _resolved_variable(
        self, die: Any, scope: Scope, address: int, name: str, where: str,
        unit: Unit | None = None,
    ) -> _Resolved:
        try:
            if unit is not None and unit is not scope.unit and "DW_AT_location" in die.attributes:
                location = self._locate_static(die, unit, scope, address)
            else:
                location = self._locate(die, scope, address)
        except Unavailable as error:
            ranges = _clip(self._readable_ranges(die, scope), scope.ranges) if unit is None \
                else []
            raise NotAvailableError(name, where, error.reason, ranges) from None
        return _Resolved(location, type_of(die))

    def _access(self, resolved: _Resolved, accessor: Any, text: str, whole: str) -> _Resolved:
        if resolved.bitfield is not None:
            raise TypeMismatchError(f"{text} is a bitfield; nothing can follow it in {whole}")
        real = strip_typedefs(resolved.type_die)
        type_text = c_type_name(resolved.type_die)
        if isinstance(accessor, Index):
            if real is not None and real.tag == "DW_TAG_array_type":
                element = type_of(real)
                count = array_count(real)
                if count is not None and accessor.index >= count:
                    raise TypeMismatchError(f"{text}{accessor} is past the end of {text} "
                                            f"({type_text})")
                address = _address_of(resolved.location, text)
            elif real is not None and real.tag in _POINTER_TAGS:
                element = type_of(real)
                address = _value_of(resolved.location)
            else:
                raise TypeMismatchError(f"{text} is a {type_text}, not an array or a pointer, "
                                        f"so {text}{accessor} means nothing")
            size = byte_size(element)
            if size is None:
                raise TypeMismatchError(f"{text} points to {c_type_name(element)}, whose size is "
                                        "unknown, so it cannot be indexed")
            return _Resolved(MemoryLocation(address.plus(size * accessor.index)), element)
        assert isinstance(accessor, Member)
        if real is not None and real.tag in _POINTER_TAGS:
            if not accessor.arrow:
                raise TypeMismatchError(f"{text} is a pointer ({type_text}): write "
                                        f"{text}->{accessor.name}")
            target = strip_typedefs(type_of(real))
            base = _value_of(resolved.location)
        else:
            if accessor.arrow:
                raise TypeMismatchError(f"{text} is not a pointer ({type_text}): write "
                                        f"{text}.{accessor.name}")
            target = real
            base = _address_of(resolved.location, text)
        if target is None or target.tag not in ("DW_TAG_structure_type", "DW_TAG_union_type",
                                                "DW_TAG_class_type"):
            what = c_type_name(target) if target is not None else "void"
            raise TypeMismatchError(f"{text} {'points to' if accessor.arrow else 'is'} "
                                    f"{what}, not a struct or union")
        member = find_member(target, accessor.name)
        if member is None:
            names = member_names(target)
            close = difflib.get_close_matches(accessor.name, names, n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else \
                f" (members: {', '.join(names[:12])})" if names else ""
            raise TypeMismatchError(f"{c_type_name(target)} has no member "
                                    f"{accessor.name!r}{hint}")
        member_type = type_of(member.die)
        if member.bitfield is not None:
            result = _Resolved(MemoryLocation(base), member_type)
            result.bitfield = (member.bitfield.bit_offset, member.bitfield.width)
            return result
        return _Resolved(MemoryLocation(base.plus(member.offset)), member_type)

    def _finish(
        self, resolved: _Resolved, text: str, cast: str | None, address: int, where: str
    ) -> tuple[str, str, str]:
        """(fetch-arg, kernel type, C type) of a resolved expression."""
        file_offset = self._file_offset_function(address)
        type_text = c_type_name(resolved.type_die)
        location = resolved.location
        if resolved.bitfield is not None and cast is None:
            assert isinstance(location, MemoryLocation)
            bit_offset, width = resolved.bitfield
            first_byte = bit_offset // 8
            for size in (1, 2, 4, 8):
                if bit_offset + width <= (first_byte + size) * 8:
                    break
            else:
                raise TypeMismatchError(f"{text} is a bitfield that spans more than 8 bytes")
            fetch = memory_text(location.address.plus(first_byte), file_offset)
            if fetch is None:
                raise NotAvailableError(text, where, "its address cannot be expressed")
            kernel = f"b{width}@{bit_offset - first_byte * 8}/{size * 8}"
            return fetch, kernel, type_text
        if cast in ("string", "ustring"):
            real = strip_typedefs(resolved.type_die)
            if real is not None and real.tag == "DW_TAG_pointer_type" and \
                    is_character(type_of(real)):
                string_address = _value_of(location)
            elif real is not None and real.tag == "DW_TAG_array_type" and \
                    is_character(type_of(real)):
                string_address = _address_of(location, text)
            else:
                raise TypeMismatchError(f"{text} is a {type_text}; :{cast} needs a char pointer "
                                        "or a char array")
            fetch = memory_text(string_address, file_offset)
            if fetch is None:
                raise NotAvailableError(text, where, "the string's address cannot be expressed "
                                        f"({string_address.describe()})")
            return fetch, cast, type_text
        if cast is None or cast in ("s", "u", "x"):
            kernel = kernel_type(resolved.type_die, text)
            if cast is not None:
                kernel = re.sub(r"^[sux]", cast, kernel)
            if kernel.endswith("]") and not isinstance(location, MemoryLocation):
                raise NotAvailableError(text, where, "an array must be in memory to be read whole")
        else:
            kernel = cast
        fetch = _fetch_text(location, file_offset)
        if fetch is None:
            raise NotAvailableError(text, where, _why_not_readable(location))
        if isinstance(location, ImplicitLocation) and location.value.bits < 64:
            digits = re.match(r"[sux](\d+)$", kernel)
            if digits is None or int(digits.group(1)) > location.value.bits:
                raise NotAvailableError(text, where, f"only the low {location.value.bits} bits "
                                        f"of its value are known ({location.value.describe()}); "
                                        f"read it as :u{location.value.bits} or narrower")
        return fetch, kernel, type_text

    def _file_offset_function(self, address: int) -> Callable[[int], int]:
        """vaddr → the N of ``@+N`` for a probe at ``address``: the kernel reads at the probed
        instruction's run-time address minus its file offset, plus N (kernel/trace/
        trace_uprobe.c, ``translate_user_vaddr``), so N = vaddr - (p_vaddr - p_offset) of the
        segment holding the probe."""
        for segment in self._segments:
            if segment.contains(address):
                delta = segment.vaddr - segment.offset
                return lambda vaddr: vaddr - delta
        raise DwarfError(f"{address:#x} is in no loadable segment of {self.path}")

    # -- source lines -----------------------------------------------------------------------

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

    def _unit_lines(self, unit: Unit, file: str, line: int) -> Iterator[int]:
        """Addresses where ``file:line`` starts in a unit (perf's ``die_walk_lines`` over a
        unit): ``is_stmt`` rows, function declaration lines at function entries, and inlined
        call sites at the inlined copies' entries."""
        files = unit.file_names()
        wanted = {index for index, name in enumerate(files) if name and _same_file(name, file)}
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

    @_guarded
    def line_addresses(self, file: str, line: int) -> list[LineAddress]:
        """Where the code of a source line starts (``file:line`` probes).

        Args:
            file: The source file: a path, or its last components (``main.c``, ``src/main.c``).
            line: The line number.

        Returns:
            One entry per address, in address order. An address where the code of an earlier
            line starts as well is left out, as perf probe does ("This line is sharing the
            address with other lines").

        Raises:
            LineNotFoundError: No code for that line; the message names the closest lines
                that have code.
        """
        with self._lock:
            found: dict[int, LineAddress] = {}
            shared: list[int] = []
            known = False
            for unit in self._units_naming(file):
                known = True
                for address in self._unit_lines(unit, file, line):
                    if address in found or address in shared:
                        continue
                    represented = self._representative_line(unit, address)
                    if represented is not None and represented[1] != line and \
                            represented[0] is not None and _same_file(represented[0], file):
                        shared.append(address)
                        continue
                    found[address] = LineAddress(self._full_name(unit, file), line, address,
                                                 self._line_scope_name(unit, address, file, line))
            if found:
                return [found[a] for a in sorted(found)]
            if not known:
                raise LineNotFoundError(f"no source file {file!r} in the debug information of "
                                        f"{self.path}")
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
                if decl_line is not None and name is not None and _same_file(name, file) and \
                        decl_line.value < line and (distance is None or
                                                    line - decl_line.value < distance):
                    best, distance = scope, line - decl_line.value
            scope = next((child for child in scope.children() if child.contains(address)), None)
        return best.name

    @staticmethod
    def _full_name(unit: Unit, file: str) -> str:
        for name in unit.file_names():
            if name and _same_file(name, file):
                return name
        return file

    def _no_code_message(self, file: str, line: int, shared: bool) -> str:
        lines: set[int] = set()
        for unit in self._units_naming(file):
            wanted = {i for i, name in enumerate(unit.file_names())
                      if name and _same_file(name, file)}
            lines.update(row.line for row in unit.rows() if row.file in wanted and row.is_stmt)
        before = max((n for n in lines if n < line), default=None)
        after = min((n for n in lines if n > line), default=None)
        near = " or ".join(f"{file}:{n}" for n in (before, after) if n is not None)
        reason = ("its code starts where another line's does" if shared
                  else "no code was generated for it")
        return f"{file}:{line} cannot be probed: {reason}" + (f"; try {near}" if near else "")

    @_guarded
    def function_line(self, function: str, relative_line: int) -> list[LineAddress]:
        """``FUNC:N``: line N of a function counted from the line that declares it (perf
        probe's relative line: ``FUNC:0`` is the line with the function's name, ``FUNC:1``
        the next one), in every instance of the function.

        Args:
            function: The function's name.
            relative_line: N, 0 or more.

        Returns:
            The addresses of that line inside the function's instances.

        Raises:
            FunctionNotFoundError: No such function.
            LineNotFoundError: No code for that line inside the function.
        """
        if relative_line < 0:
            raise LineNotFoundError(f"{function}:{relative_line}: the line must be 0 or more")
        instances = self.functions(function)
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

    def _instance_scopes(self, name: str) -> list[Scope]:
        """The scopes of a function's instances (see :meth:`functions`)."""
        index = self._scanned().functions
        if _GLOB.search(name):
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
        if not result and not _GLOB.search(name):
            result = self._scopes_by_symbol(name)
        if not result:
            close = difflib.get_close_matches(name, list(index), n=5, cutoff=0.6)
            raise FunctionNotFoundError(repr(name), self.path, close)
        return result

    def _scopes_by_symbol(self, name: str) -> list[Scope]:
        """Functions the symbol table names differently from the DWARF (``malloc`` is
        ``__libc_malloc`` there, an alias of the same address), as perf probe finds them."""
        result: list[Scope] = []
        for elf_file in (self._debug, self._target):
            for value, kind in elf_file.symbols().get(name, ()):
                if kind not in (2, 10):  # STT_FUNC, STT_GNU_IFUNC
                    continue
                tree = self._function_scope_at(value)
                if tree is not None and tree.entry() == value and tree not in result:
                    result.append(tree)
            if result:
                break
        return result

    @_guarded
    def lines(self, function: str) -> list[SourceLine]:
        """The source lines of a function that have code, with where each starts (what
        ``perf probe -L`` marks as probe-able).

        Args:
            function: The function's name.

        Returns:
            Lines in order, each with its addresses across the function's instances (code of
            other functions inlined into it left out).

        Raises:
            FunctionNotFoundError: No such function.
        """
        with self._lock:
            by_line: dict[tuple[str, int], set[int]] = {}
            for scope in self._instance_scopes(function):
                unit = scope.unit
                tree = scope.real_function
                decl_index = attribute(scope.die, "DW_AT_decl_file")
                decl_file = unit.file_name(decl_index.value) if decl_index is not None else None
                for row in unit.rows():
                    if not row.is_stmt or row.end_sequence or not scope.contains(row.address):
                        continue
                    if tree.innermost(row.address).function_scope is not scope:
                        continue  # another function inlined here
                    name = unit.file_name(row.file)
                    if name is None or (decl_file is not None and not _same_file(name, decl_file)):
                        continue
                    by_line.setdefault((name, row.line), set()).add(row.address)
            return [SourceLine(file, line, tuple(sorted(addresses)))
                    for (file, line), addresses in sorted(by_line.items(),
                                                          key=lambda item: item[0][1])]


def _clip(
    ranges: Sequence[tuple[int, int]], scope: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The parts of ``ranges`` inside ``scope``: a location list may reach past the scope of
    its variable, which can be named only inside it."""
    return sorted((max(low, scope_low), min(high, scope_high))
                  for low, high in ranges for scope_low, scope_high in scope
                  if low < scope_high and scope_low < high)


def _no_frame_base() -> Value:
    raise Unavailable("the frame base refers to itself")


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


def _same_file(full: str, asked: str) -> bool:
    """Whether ``asked`` names ``full``: equal, or its last path components."""
    if full == asked:
        return True
    full_parts = full.strip("/").split("/")
    asked_parts = [part for part in asked.split("/") if part not in ("", ".")]
    return bool(asked_parts) and full_parts[-len(asked_parts):] == asked_parts


def _value_of(location: Location) -> Value:
    """The value of an object (a pointer, to follow it)."""
    if isinstance(location, MemoryLocation):
        return Value(Load(location.address))
    if isinstance(location, RegisterLocation):
        return Value(Register(location.register))
    return location.value


def _address_of(location: Location, text: str) -> Value:
    """The address of an object in memory (a struct or array, to reach into it)."""
    if isinstance(location, MemoryLocation):
        return location.address
    where = f"%{location.register}" if isinstance(location, RegisterLocation) else \
        "no memory (its value is computed)"
    raise TypeMismatchError(f"{text} is held in {where}, not in memory, so its members and "
                            "elements cannot be read (perf probe: \"Structure on a register is "
                            "not supported yet\")")


def _fetch_text(location: Location, file_offset: Callable[[int], int]) -> str | None:
    if isinstance(location, MemoryLocation):
        return memory_text(location.address, file_offset)
    if isinstance(location, RegisterLocation):
        return "%" + location.register
    return value_text(location.value, file_offset)


def _why_not_readable(location: Location) -> str:
    if isinstance(location, ImplicitLocation):
        return (f"its value is computed ({location.value.describe()}), not stored, and a "
                "fetch-arg cannot compute it")
    if isinstance(location, MemoryLocation):
        return f"its address ({location.address.describe()}) cannot be expressed"
    return "it is not readable"


def _check_readable(location: Location) -> None:
    """Raise :class:`Unavailable` unless the location renders as a fetch-arg (what ``perf
    probe -V`` calls available)."""
    if _fetch_text(location, lambda vaddr: vaddr) is None:
        raise Unavailable(_why_not_readable(location))
