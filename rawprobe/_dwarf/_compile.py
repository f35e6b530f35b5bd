"""Variable expressions (``o->in->x``, ``@config.limit``, ``$retval``) compiled into the kernel
fetch-args that read them, following the types of the debug information.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import (
    DwarfError,
    NotAvailableError,
    TypeMismatchError,
    VariableNotFoundError,
)
from ._expr import Index, Member, VariableExpression, parse_expression
from ._location import (
    ImplicitLocation,
    Load,
    Location,
    MemoryLocation,
    Register,
    RegisterLocation,
    Unavailable,
    Value,
    memory_text,
)
from ._model import CompiledVariable
from ._types import (
    array_count,
    byte_size,
    c_type_name,
    find_member,
    is_character,
    kernel_type,
    member_names,
    strip_typedefs,
    type_of,
)
from ._unit import Scope, Unit, die_name
from ._variables import Variables, clip, fetch_text, why_not_readable

if TYPE_CHECKING:
    from ._info import DebugInfo

__all__ = ["MAX_DEREFERENCES", "Compiler"]

MAX_DEREFERENCES = 8  # rawprobe's BPF side (RP_MAX_DEREF) and a sane bound for the kernel's
_KERNEL_TYPE = re.compile(
    r"(?:[sux](?:8|16|32|64)|char|string|ustring|symbol|b\d+@\d+/\d+)(?:\[\d+\])?")
_POINTER_TAGS = ("DW_TAG_pointer_type", "DW_TAG_reference_type", "DW_TAG_rvalue_reference_type")


class _Resolved:
    """A variable expression part way through: where the object is, and its type."""

    __slots__ = ("bitfield", "location", "type_die")

    def __init__(self, location: Location, type_die: Any | None) -> None:
        self.location = location
        self.type_die = type_die
        self.bitfield: tuple[int, int] | None = None  # (bit offset, width) from the location


class Compiler:
    """Compiles variable expressions for one :class:`~rawprobe._dwarf.DebugInfo`, and
    remembers what it compiled."""

    def __init__(self, info: DebugInfo, variables: Variables) -> None:
        self._info = info
        self._variables = variables
        self._compiled: dict[tuple[str, int, bool, str | None, str | None], CompiledVariable] = {}

    def compile(
        self,
        expression: str,
        address: int,
        retprobe: bool = False,
        cast: str | None = None,
        function: str | None = None,
    ) -> CompiledVariable:
        """:meth:`DebugInfo.compile`, remembered."""
        key = (expression, address, retprobe, cast, function)
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
        scope = self._info._scope_at(address, function)
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
            raise TypeMismatchError(f"{function.name} returns {c_type_name(result_type)}, "
                                    "which is not in one register")
        size = byte_size(real) or 8
        encoding = real.attributes.get("DW_AT_encoding")
        if size > 8 or (encoding is not None and encoding.value in (0x03, 0x04, 0x0F)):
            raise TypeMismatchError(f"{function.name} returns {c_type_name(result_type)}, "
                                    "which is not in the integer return register")
        return _Resolved(ImplicitLocation(Value(Register("$retval"))), result_type)

    def _resolve_name(self, name: str, scope: Scope, address: int, where: str) -> _Resolved:
        """A bare name: the innermost declaration in scope, else a global of the unit (perf's
        ``find_variable``)."""
        best = None
        for die, owner in self._variables.visible(scope, address, into_inlined=False):
            if die_name(die) == name:
                best = (die, owner)  # later (inner) declarations shadow earlier ones
        if best is None:
            # perf probe also finds a variable of a function inlined at the address.
            best = next(((die, owner) for die, owner in self._variables.visible(scope, address)
                         if die_name(die) == name), None)
        if best is not None:
            die, owner = best
            return self._resolved_variable(die, owner, address, name, where)
        for unit, die in self._variables.find_globals(name, scope.unit, everywhere=False):
            return self._resolved_variable(die, scope, address, name, where, unit)
        names = sorted({die_name(die) or "" for die, _ in self._variables.visible(scope, address)}
                       | set(scope.unit.globals()))
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
        raise VariableNotFoundError(name, where, close,
                                    f"'rawprobe list --vars' shows what is there; a global of "
                                    f"another file is @{name}" if not close else "")

    def _resolve_global(self, name: str, scope: Scope, address: int, where: str) -> _Resolved:
        for unit, die in self._variables.find_globals(name, scope.unit, everywhere=True):
            return self._resolved_variable(die, scope, address, "@" + name, where, unit)
        names = list(scope.unit.globals())
        index = self._info._functions.index
        if index is not None:
            names += list(index.variables)
        raise VariableNotFoundError("@" + name, self._info.path,
                                    difflib.get_close_matches(name, names, n=5, cutoff=0.6))

    def _resolved_variable(
        self, die: Any, scope: Scope, address: int, name: str, where: str,
        unit: Unit | None = None,
    ) -> _Resolved:
        try:
            if unit is not None and unit is not scope.unit and "DW_AT_location" in die.attributes:
                location = self._variables.locate_static(die, unit, scope, address)
            else:
                location = self._variables.locate(die, scope, address)
        except Unavailable as error:
            ranges = [] if unit is not None else \
                clip(self._variables.readable_ranges(die, scope), scope.ranges)
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
                raise TypeMismatchError(f"{text} ({type_text}) is not an array or a pointer, "
                                        f"so {text}{accessor} means nothing")
            size = byte_size(element)
            if size is None:
                raise TypeMismatchError(f"{text} points to {c_type_name(element)}, whose size is "
                                        "unknown, so it cannot be indexed")
            return _Resolved(MemoryLocation(address.plus(size * accessor.index)), element)
        assert isinstance(accessor, Member)
        pointer = real is not None and real.tag in _POINTER_TAGS
        target = strip_typedefs(type_of(real)) if pointer else real
        if target is None or target.tag not in ("DW_TAG_structure_type", "DW_TAG_union_type",
                                                "DW_TAG_class_type"):
            what = c_type_name(target) if target is not None else "void"
            raise TypeMismatchError(f"{text} {'points to' if pointer else 'is'} {what}, not a "
                                    f"struct or union, so {text}{accessor} means nothing")
        if pointer and not accessor.arrow:
            raise TypeMismatchError(f"{text} is a pointer ({type_text}): write "
                                    f"{text}->{accessor.name}")
        if not pointer and accessor.arrow:
            raise TypeMismatchError(f"{text} is not a pointer ({type_text}): write "
                                    f"{text}.{accessor.name}")
        base = _value_of(resolved.location) if pointer else \
            _address_of(resolved.location, text)
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
                raise TypeMismatchError(f"{text} ({type_text}) is not a string: :{cast} needs "
                                        "a char pointer or a char array")
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
        fetch = fetch_text(location, file_offset)
        if fetch is None:
            raise NotAvailableError(text, where, why_not_readable(location))
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
        for segment in self._info._segments:
            if segment.contains(address):
                delta = segment.vaddr - segment.offset
                return lambda vaddr: vaddr - delta
        raise DwarfError(f"{address:#x} is in no loadable segment of {self._info.path}")


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
