"""C types from DWARF type entries: names for people, and what the kernel should read.

A variable's ``DW_AT_type`` leads through typedefs and qualifiers (``const``, ``volatile``,
``restrict``, ``_Atomic``) to a base type, pointer, struct, union, enum or array (DWARF 5,
chapter 5 "Type Entries"). The kernel's uprobe tracer reads integers of 8 to 64 bits, signed
(``s``), unsigned (``u``) or hex (``x``), strings, bitfields ``b<width>@<offset>/<container>``
and arrays ``TYPE[N]`` (Documentation/trace/uprobetracer.rst).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._probe.fetchargs import MAX_ARRAY_LEN
from ._errors import TypeMismatchError

__all__ = [
    "BitField",
    "MemberInfo",
    "array_count",
    "byte_size",
    "c_type_name",
    "find_member",
    "is_character",
    "kernel_type",
    "perf_type_name",
    "strip_qualifiers",
    "strip_typedefs",
    "type_of",
]

_QUALIFIERS = frozenset({
    "DW_TAG_const_type", "DW_TAG_volatile_type", "DW_TAG_restrict_type",
    "DW_TAG_atomic_type", "DW_TAG_shared_type", "DW_TAG_immutable_type",
})
_POINTERS = frozenset({
    "DW_TAG_pointer_type", "DW_TAG_reference_type", "DW_TAG_rvalue_reference_type",
    "DW_TAG_ptr_to_member_type",
})
_AGGREGATES = {
    "DW_TAG_structure_type": "struct", "DW_TAG_union_type": "union",
    "DW_TAG_class_type": "class", "DW_TAG_enumeration_type": "enum",
}

# DWARF 5, 7.8 "Base Type Attribute Encodings"
DW_ATE_boolean = 0x02
DW_ATE_complex_float = 0x03
DW_ATE_float = 0x04
DW_ATE_signed = 0x05
DW_ATE_signed_char = 0x06
DW_ATE_unsigned = 0x07
DW_ATE_unsigned_char = 0x08
DW_ATE_decimal_float = 0x0F
DW_ATE_UTF = 0x10
DW_ATE_signed_fixed = 0x0D
_SIGNED = frozenset({DW_ATE_signed, DW_ATE_signed_char, DW_ATE_signed_fixed})
_FLOATS = frozenset({DW_ATE_float, DW_ATE_complex_float, DW_ATE_decimal_float})


def _attr_die(die: Any, name: str) -> Any | None:
    """The DIE an attribute refers to, following abstract origins and specifications."""
    current = die
    for _ in range(8):
        if name in current.attributes:
            return current.get_DIE_from_attribute(name)
        for link in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if link in current.attributes:
                current = current.get_DIE_from_attribute(link)
                break
        else:
            return None
    return None


def type_of(die: Any) -> Any | None:
    """The type DIE of a variable, member or function (None for ``void``)."""
    return _attr_die(die, "DW_AT_type")


def strip_qualifiers(type_die: Any | None) -> Any | None:
    """Skip ``const``/``volatile``/``restrict``/``_Atomic``; keep typedefs."""
    for _ in range(64):
        if type_die is None or type_die.tag not in _QUALIFIERS:
            return type_die
        type_die = type_of(type_die)
    return type_die


def strip_typedefs(type_die: Any | None) -> Any | None:
    """Skip qualifiers and typedefs: the type the value really has (perf's
    ``die_get_real_type``)."""
    for _ in range(64):
        type_die = strip_qualifiers(type_die)
        if type_die is None or type_die.tag != "DW_TAG_typedef":
            return type_die
        type_die = type_of(type_die)
    return type_die


def _name(die: Any) -> str | None:
    attribute = die.attributes.get("DW_AT_name")
    if attribute is None:
        return None
    value = attribute.value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def byte_size(type_die: Any | None) -> int | None:
    """Size of a type in bytes (arrays: the whole array), or None when unknown."""
    real = strip_typedefs(type_die)
    if real is None:
        return None
    size = real.attributes.get("DW_AT_byte_size")
    if size is not None and isinstance(size.value, int):
        return int(size.value)
    if real.tag in _POINTERS:
        return real.cu.header.address_size  # type: ignore[no-any-return]
    if real.tag == "DW_TAG_array_type":
        count = array_count(real)
        element = byte_size(type_of(real))
        if count is not None and element is not None:
            return count * element
    if real.tag == "DW_TAG_enumeration_type":
        return byte_size(type_of(real))
    return None


def array_count(array_die: Any) -> int | None:
    """Element count of the first dimension of an array type, or None (``int a[]``)."""
    for child in array_die.iter_children():
        if child.tag not in ("DW_TAG_subrange_type", "DW_TAG_enumeration_type"):
            continue
        count = child.attributes.get("DW_AT_count")
        if count is not None and isinstance(count.value, int):
            return int(count.value)
        upper = child.attributes.get("DW_AT_upper_bound")
        if upper is not None and isinstance(upper.value, int):
            lower = child.attributes.get("DW_AT_lower_bound")
            low = int(lower.value) if lower is not None else 0
            return int(upper.value) - low + 1
        return None
    return None


def _dimensions(array_die: Any) -> int:
    return sum(1 for child in array_die.iter_children() if child.tag == "DW_TAG_subrange_type")


def c_type_name(type_die: Any | None, depth: int = 0) -> str:
    """A type in C spelling: ``const char *``, ``struct outer *``, ``int [4]``, ``size_t``.

    Args:
        type_die: The type DIE (None for ``void``).
        depth: Recursion guard.

    Returns:
        The spelling.
    """
    if depth > 32:
        return "..."
    if type_die is None:
        return "void"
    tag = type_die.tag
    name = _name(type_die)
    if tag in ("DW_TAG_base_type", "DW_TAG_typedef", "DW_TAG_unspecified_type"):
        return name or "?"
    if tag in _AGGREGATES:
        return f"{_AGGREGATES[tag]} {name or '<anonymous>'}"
    if tag in _QUALIFIERS:
        words: set[str] = set()
        inner = type_die
        while inner is not None and inner.tag in _QUALIFIERS and len(words) < 8:
            words.add(inner.tag[len("DW_TAG_"):-len("_type")])
            inner = type_of(inner)
        word = " ".join(w for w in ("const", "volatile", "restrict", "atomic", "shared",
                                    "immutable") if w in words)
        inner_text = c_type_name(inner, depth + 1)
        if inner is not None and inner.tag in _POINTERS:
            return f"{inner_text} {word}"
        if inner is not None and inner.tag == "DW_TAG_array_type":
            # C has no qualified array: the qualifier is its elements' (a const char[4] is
            # described as const (char const [4]) by gcc), said once.
            element = inner_text.split(" [", 1)[0].split()
            if set(word.split()) <= set(element):
                return inner_text
        return f"{word} {inner_text}"
    if tag in _POINTERS:
        inner = type_of(type_die)
        pointee = strip_qualifiers(inner)
        if pointee is not None and pointee.tag == "DW_TAG_subroutine_type":
            return _function_text(pointee, "(*)", depth)
        inner_text = c_type_name(inner, depth + 1)
        mark = "&" if tag == "DW_TAG_reference_type" else "&&" if \
            tag == "DW_TAG_rvalue_reference_type" else "*"
        return inner_text + mark if inner_text.endswith(("*", "&")) else f"{inner_text} {mark}"
    if tag == "DW_TAG_array_type":
        counts = []
        for child in type_die.iter_children():
            if child.tag == "DW_TAG_subrange_type":
                count = _subrange_count(child)
                counts.append(f"[{count}]" if count is not None else "[]")
        return f"{c_type_name(type_of(type_die), depth + 1)} {''.join(counts)}"
    if tag == "DW_TAG_subroutine_type":
        return _function_text(type_die, "", depth)
    return name or tag[len("DW_TAG_"):]


def _subrange_count(subrange: Any) -> int | None:
    count = subrange.attributes.get("DW_AT_count")
    if count is not None and isinstance(count.value, int):
        return int(count.value)
    upper = subrange.attributes.get("DW_AT_upper_bound")
    if upper is not None and isinstance(upper.value, int):
        return int(upper.value) + 1
    return None


def _function_text(subroutine: Any, middle: str, depth: int) -> str:
    result = c_type_name(type_of(subroutine), depth + 1)
    params = [c_type_name(type_of(child), depth + 1) for child in subroutine.iter_children()
              if child.tag == "DW_TAG_formal_parameter"]
    if any(child.tag == "DW_TAG_unspecified_parameters" for child in subroutine.iter_children()):
        params.append("...")
    return f"{result} {middle}({', '.join(params) or 'void'})"


def perf_type_name(variable_die: Any) -> str:
    """A variable's type as ``perf probe -V`` prints it (tools/perf/util/dwarf-aux.c,
    ``die_get_typename``): qualifiers dropped, typedef names kept, arrays and pointers as
    ``T*``, ``(function_type)`` for a function, ``(unknown_type)`` when unnamed or ``void``."""
    text = _perf_type(variable_die, 0)
    return text if text is not None else "(unknown_type)"


def _perf_type(die: Any, depth: int) -> str | None:
    if depth > 32:
        return None
    real = strip_qualifiers(type_of(die))
    if real is None:
        return None
    if real.tag in ("DW_TAG_array_type", "DW_TAG_pointer_type"):
        inner = _perf_type(real, depth + 1)
        return None if inner is None else inner + "*"
    if real.tag == "DW_TAG_subroutine_type":
        return "(function_type)"
    name = _name(real)
    if name is None:
        return None
    prefix = {"DW_TAG_union_type": "union ", "DW_TAG_structure_type": "struct ",
              "DW_TAG_enumeration_type": "enum "}.get(real.tag, "")
    return prefix + name


def is_character(type_die: Any | None) -> bool:
    """Whether a type is a one-byte integer (``char``, ``signed``/``unsigned char``,
    ``int8_t``/``uint8_t``): what a string is made of."""
    real = strip_typedefs(type_die)
    if real is None or real.tag != "DW_TAG_base_type":
        return False
    encoding = real.attributes.get("DW_AT_encoding")
    return byte_size(real) == 1 and encoding is not None and encoding.value in (
        DW_ATE_signed_char, DW_ATE_unsigned_char, DW_ATE_signed, DW_ATE_unsigned)


def _integer_type(real: Any, what: str) -> str:
    """The kernel type of a base or enum type."""
    size = byte_size(real)
    if real.tag == "DW_TAG_enumeration_type":
        underlying = strip_typedefs(type_of(real))
        signed = underlying is not None and _is_signed(underlying)
    else:
        encoding = real.attributes.get("DW_AT_encoding")
        code = encoding.value if encoding is not None else None
        if code in _FLOATS:
            raise TypeMismatchError(
                f"{what} is floating-point ({c_type_name(real)}), which the kernel cannot "
                "format; give a type to see its bits (:x32 for float, :x64 for double)")
        signed = code in _SIGNED
    if size not in (1, 2, 4, 8):
        raise TypeMismatchError(
            f"{what} is a {size}-byte integer ({c_type_name(real)}); the kernel reads at most "
            "8 bytes: give a type (:x64) to read its low 8 bytes")
    return f"{'s' if signed else 'u'}{size * 8}"


def _is_signed(real: Any) -> bool:
    encoding = real.attributes.get("DW_AT_encoding")
    return encoding is not None and encoding.value in _SIGNED


def kernel_type(type_die: Any | None, what: str) -> str:
    """The kernel type to read a value of this C type as.

    Args:
        type_die: The value's type DIE.
        what: The expression, for messages.

    Returns:
        ``s8``..``s64`` for signed integers and signed enums, ``u8``..``u64`` for unsigned ones,
        ``bool`` and ``char``s (``char`` is ``s8`` or ``u8`` by its signedness), ``x64`` for
        pointers, ``ELEMENT[N]`` for arrays of those (N at most 64).

    Raises:
        TypeMismatchError: A struct or union without a member named, ``void``, a function,
            a floating-point number, an array of unknown length, a wider integer.
    """
    real = strip_typedefs(type_die)
    if real is None:
        raise TypeMismatchError(f"{what} has no type (void); give one, e.g. :x64")
    tag = real.tag
    if tag in _POINTERS:
        return "x64"
    if tag in ("DW_TAG_base_type", "DW_TAG_enumeration_type"):
        return _integer_type(real, what)
    if tag in ("DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_class_type"):
        members = [m for m in (_name(child) for child in real.iter_children()
                               if child.tag == "DW_TAG_member") if m]
        shown = ", ".join(members[:6]) + (", ..." if len(members) > 6 else "")
        example = f"{what}.{members[0] if members else 'x'}"
        raise TypeMismatchError(
            f"{what} is a {c_type_name(real)}; name a member ({example}"
            f"{' — members: ' + shown if shown else ''}), or give a type to read its first "
            "bytes (:x64)")
    if tag == "DW_TAG_array_type":
        count = array_count(real)
        if count is None:
            raise TypeMismatchError(f"{what} is an array of unknown length; index it "
                                    f"({what}[0]) or give a type (:s32[4])")
        if _dimensions(real) > 1:
            raise TypeMismatchError(f"{what} is a multi-dimensional array ({c_type_name(real)})"
                                    f"; index it ({what}[0])")
        if count > MAX_ARRAY_LEN:
            raise TypeMismatchError(f"{what} has {count} elements; the kernel reads arrays of "
                                    f"at most {MAX_ARRAY_LEN}: index it or give a shorter "
                                    "array type")
        element = strip_typedefs(type_of(real))
        if element is None or element.tag not in ("DW_TAG_base_type",
                                                   "DW_TAG_enumeration_type", *_POINTERS):
            raise TypeMismatchError(f"{what} is an array of {c_type_name(type_of(real))}; "
                                    f"index it ({what}[0])")
        return f"{kernel_type(element, what + '[0]')}[{count}]"
    if tag == "DW_TAG_subroutine_type":
        raise TypeMismatchError(f"{what} is a function, not a value")
    raise TypeMismatchError(f"{what} has a type the kernel cannot read ({c_type_name(real)})")


@dataclass(frozen=True)
class BitField:
    """Where a bitfield is: ``bit_offset`` bits into the struct, ``width`` bits wide."""

    bit_offset: int
    width: int


@dataclass(frozen=True)
class MemberInfo:
    """A member found in a struct or union.

    Attributes:
        die: The member's DIE.
        offset: Its byte offset from the start of the outer struct (anonymous members
            included).
        bitfield: Its bit position, for a bitfield.
    """

    die: Any
    offset: int
    bitfield: BitField | None


def _member_offset(member: Any) -> int:
    """``DW_AT_data_member_location``: a constant, or (DWARF 2) ``DW_OP_plus_uconst N``."""
    attribute = member.attributes.get("DW_AT_data_member_location")
    if attribute is None:
        return 0  # union members, and bitfields described by DW_AT_data_bit_offset alone
    value = attribute.value
    if isinstance(value, int):
        return value
    block = list(value)
    if block and block[0] == 0x23:  # DW_OP_plus_uconst
        result, shift = 0, 0
        for byte in block[1:]:
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return result
    raise TypeMismatchError(f"member {_name(member)!r} has a computed location, which rawprobe "
                            "cannot follow")


def _bitfield(member: Any, byte_offset: int) -> BitField | None:
    """A bitfield's position from the struct start in bits, little-endian (DWARF 5, 5.7.6:
    ``DW_AT_data_bit_offset``; DWARF 2/3's ``DW_AT_bit_offset`` counts from the most
    significant bit of a ``DW_AT_byte_size`` storage unit)."""
    size = member.attributes.get("DW_AT_bit_size")
    if size is None:
        return None
    width = int(size.value)
    data_bit_offset = member.attributes.get("DW_AT_data_bit_offset")
    if data_bit_offset is not None:
        return BitField(byte_offset * 8 + int(data_bit_offset.value), width)
    old = member.attributes.get("DW_AT_bit_offset")
    storage = member.attributes.get("DW_AT_byte_size")
    storage_bytes = int(storage.value) if storage is not None else byte_size(type_of(member))
    if old is None or storage_bytes is None:
        return BitField(byte_offset * 8, width)
    return BitField(byte_offset * 8 + storage_bytes * 8 - int(old.value) - width, width)


def find_member(struct_die: Any, name: str) -> MemberInfo | None:
    """A member of a struct or union by name, looking into anonymous members (perf's
    ``die_find_member``).

    Args:
        struct_die: The struct, union or class type (typedefs already stripped).
        name: The member's name.

    Returns:
        The member, or None.
    """
    for child in struct_die.iter_children():
        if child.tag != "DW_TAG_member" and not (
                child.tag == "DW_TAG_variable" and child.attributes.get("DW_AT_external")):
            continue
        offset = _member_offset(child)
        child_name = _name(child)
        if child_name == name:
            return MemberInfo(child, offset, _bitfield(child, offset))
        if child_name is None:
            inner = strip_typedefs(type_of(child))
            if inner is not None and inner.tag in ("DW_TAG_structure_type", "DW_TAG_union_type"):
                found = find_member(inner, name)
                if found is not None:
                    bitfield = found.bitfield
                    if bitfield is not None:
                        bitfield = BitField(bitfield.bit_offset + offset * 8, bitfield.width)
                    return MemberInfo(found.die, found.offset + offset, bitfield)
    return None


def member_names(struct_die: Any) -> list[str]:
    """Names of a struct's members, anonymous members' members included."""
    names: list[str] = []
    for child in struct_die.iter_children():
        if child.tag != "DW_TAG_member":
            continue
        child_name = _name(child)
        if child_name is not None:
            names.append(child_name)
        else:
            inner = strip_typedefs(type_of(child))
            if inner is not None and inner.tag in ("DW_TAG_structure_type", "DW_TAG_union_type"):
                names += member_names(inner)
    return names
