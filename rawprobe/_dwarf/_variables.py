"""Where a variable is at an address: location expressions and lists evaluated in the probed
function's frame, the variables in scope there, and whether each can be read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ._location import (
    CONSTANT,
    EvaluationContext,
    FileAddress,
    ImplicitLocation,
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
from ._model import Variable
from ._types import c_type_name, perf_type_name, type_of
from ._unit import Scope, Unit, attribute, die_name

if TYPE_CHECKING:
    from ._info import DebugInfo

__all__ = ["Variables", "check_readable", "clip", "fetch_text", "why_not_readable"]

_STT_OBJECT, _STT_TLS = 1, 6


class Variables:
    """The variables of one :class:`~rawprobe._dwarf.DebugInfo` (which holds its lock while
    these run)."""

    def __init__(self, info: DebugInfo) -> None:
        self._info = info
        self._register_name = info._arch.dwarf_registers.get

    def context(self, scope: Scope, address: int) -> EvaluationContext:
        unit = scope.unit
        function = scope.real_function

        def cfa() -> Value:
            rule = self._info._frames.cfa_rule(address)
            if rule is None:
                raise Unavailable(f"the call frame information gives no frame address at "
                                  f"{address:#x}")
            register = self._register_name(rule[0])
            if register is None:
                raise Unavailable(f"the frame address at {address:#x} is relative to DWARF "
                                  f"register {rule[0]}, which a uprobe cannot read")
            return Value(Register(register), rule[1])

        def frame_base() -> Value:
            attr = function.die.attributes.get("DW_AT_frame_base")
            if attr is None:
                raise Unavailable(f"{function.name} has no frame base (DW_AT_frame_base)")
            ops = self.expression_at(attr, function.die, unit, address)
            inner = EvaluationContext(self._register_name, _no_frame_base, cfa,
                                      lambda i: int(self._info._dwarf.get_addr(unit.cu, i)), False)
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
            register_name=self._register_name,
            frame_base=frame_base,
            cfa=cfa,
            address_index=lambda i: int(self._info._dwarf.get_addr(unit.cu, i)),
            at_function_entry=address == function.entry(),
            base_type=base_type,
        )

    def _location_entries(self, attr: Any, die: Any, unit: Unit) -> list[tuple[int, int, Any]]:
        """A location list as (low, high, expression bytes); (-1, -1, ...) is a default entry."""
        from elftools.dwarf.locationlists import BaseAddressEntry, LocationEntry, LocationParser

        parser = LocationParser(self._info._dwarf.location_lists())
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

    def expression_at(self, attr: Any, die: Any, unit: Unit, address: int) -> list[Any]:
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

    def readable_ranges(self, die: Any, scope: Scope) -> list[tuple[int, int]]:
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
                location = evaluate(ops, self.context(scope, low))
                check_readable(location)
            except (Unavailable, KeyError, IndexError, ValueError):
                continue
            if ranges and ranges[-1][1] == low:
                ranges[-1] = (ranges[-1][0], high)
            else:
                ranges.append((low, high))
        return ranges

    def locate(self, die: Any, scope: Scope, address: int) -> Location:
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
            ops = self.expression_at(attr, die, unit, address)
        except (KeyError, IndexError, ValueError) as error:
            raise Unavailable(f"its location expression cannot be decoded ({error})") from None
        try:
            return evaluate(ops, self.context(scope, address))
        except (KeyError, IndexError, ValueError) as error:
            raise Unavailable(f"its location expression cannot be decoded ({error})") from None

    def _global_location(self, name: str, unit: Unit, scope: Scope, address: int) -> Location:
        """An ``extern`` variable declared here and defined elsewhere: its definition in this
        unit, else its symbol's address, else its definition in another unit."""
        for other_unit, die in self.find_globals(name, unit, everywhere=False):
            if "DW_AT_location" in die.attributes:
                return self.locate_static(die, other_unit, scope, address)
        for table in self._info._symbol_tables():
            for value, kind in table.get(name, ()):
                if kind == _STT_TLS:
                    raise Unavailable("it is a thread-local variable, whose address a uprobe "
                                      "cannot compute")
                if kind == _STT_OBJECT:
                    return MemoryLocation(Value(FileAddress(value)))
        index = self._info._functions.scanned()
        for unit_offset, die_offset, has_location in index.variables.get(name, ()):
            if has_location and unit_offset != unit.cu.cu_offset:
                die = self._info._dwarf.get_DIE_from_refaddr(die_offset)
                return self.locate_static(die, self._info._unit(unit_offset), scope, address)
        raise Unavailable("it is declared here but defined elsewhere, and no symbol or "
                          "debug information says where")

    def locate_static(self, die: Any, unit: Unit, scope: Scope, address: int) -> Location:
        attr = die.attributes["DW_AT_location"]
        ops = self.expression_at(attr, die, unit, address)
        context = self.context(scope, address)
        context.address_index = lambda i: int(self._info._dwarf.get_addr(unit.cu, i))
        return evaluate(ops, context)

    def variable(self, die: Any, scope: Scope, address: int, kind: str) -> Variable:
        type_die = type_of(die)
        try:
            location = self.locate(die, scope, address)
            check_readable(location)
            available, reason, ranges = True, "", []
        except Unavailable as error:
            available, reason = False, error.reason
            ranges = self.readable_ranges(die, scope)
        ranges = clip(ranges, scope.ranges)
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
            ops = self.expression_at(attr, die, scope.unit, address)
        except (Unavailable, KeyError, IndexError, ValueError):
            return ""
        return "; ".join(" ".join([op.op_name, *(str(arg) for arg in op.args
                                                  if not isinstance(arg, list))])
                         for op in ops)

    @staticmethod
    def visible(
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

    def variables_at(self, scope: Scope, address: int) -> list[Variable]:
        """The variables seen from ``address`` in ``scope`` (:meth:`DebugInfo.variables_at`)."""
        return [
            self.variable(die, owner, address,
                          "parameter" if die.tag == "DW_TAG_formal_parameter" else "local")
            for die, owner in self.visible(scope, address)
        ]

    def find_globals(self, name: str, unit: Unit, everywhere: bool) -> list[tuple[Unit, Any]]:
        """Top-level variables named ``name``: this unit's, then (``everywhere``) any unit's,
        definitions (with a location) before declarations."""
        found = [(unit, die) for die in unit.globals().get(name, ())]
        if everywhere and not found:
            # Not even declared here: the other units' (an extern declared here is found
            # through the symbol table by _locate, without reading every unit).
            index = self._info._functions.scanned()
            for unit_offset, die_offset, _ in index.variables.get(name, ()):
                if unit_offset != unit.cu.cu_offset:
                    other = self._info._unit(unit_offset)
                    found.append((other, self._info._dwarf.get_DIE_from_refaddr(die_offset)))
        found.sort(key=lambda item: "DW_AT_location" not in item[1].attributes)
        return found


def clip(
    ranges: Sequence[tuple[int, int]], scope: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The parts of ``ranges`` inside ``scope``: a location list may reach past the scope of
    its variable, which can be named only inside it."""
    return sorted((max(low, scope_low), min(high, scope_high))
                  for low, high in ranges for scope_low, scope_high in scope
                  if low < scope_high and scope_low < high)


def _no_frame_base() -> Value:
    raise Unavailable("the frame base refers to itself")


def fetch_text(location: Location, file_offset: Callable[[int], int]) -> str | None:
    if isinstance(location, MemoryLocation):
        return memory_text(location.address, file_offset)
    if isinstance(location, RegisterLocation):
        return "%" + location.register
    return value_text(location.value, file_offset)


def why_not_readable(location: Location) -> str:
    if isinstance(location, ImplicitLocation):
        return (f"its value is computed ({location.value.describe()}), not stored, and a "
                "fetch-arg cannot compute it")
    if isinstance(location, MemoryLocation):
        return f"its address ({location.address.describe()}) cannot be expressed"
    return "it is not readable"


def check_readable(location: Location) -> None:
    """Raise :class:`Unavailable` unless the location renders as a fetch-arg (what ``perf
    probe -V`` calls available)."""
    if fetch_text(location, lambda vaddr: vaddr) is None:
        raise Unavailable(why_not_readable(location))
