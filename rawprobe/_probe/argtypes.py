"""Types of fetched values, as the kernel's uprobe_events writes them after a fetch-arg's ``:``
(Documentation/trace/uprobetracer.rst, "Types"): ``s8``..``s64``, ``u8``..``u64``, ``x8``..``x64``,
``char``, ``string``/``ustring`` (and bpftrace's ``str``), ``symbol``,
``b<width>@<offset>/<container-bits>``, and arrays ``TYPE[N]``.
"""

from __future__ import annotations

import re

from .._errors import FetchArgError
from .argtype import ArgType

__all__ = ["DEFAULT_TYPE", "MAX_ARRAY_LEN", "STRING_TYPE", "ArgType", "c_integer", "parse_type"]

MAX_ARRAY_LEN = 64  # kernel/trace/trace_probe.h: MAX_ARRAY_LEN

_INT_TYPE = re.compile(r"([sux])(8|16|32|64)")
_BITFIELD_TYPE = re.compile(r"b(\d+)@(\d+)/(8|16|32|64)")
_KERNEL_ONLY_TYPES = ("symstr", "%pd", "%pD")


def c_integer(text: str) -> int:
    """An integer as C (and the kernel's kstrtol with base 0) reads it: ``0x`` hexadecimal,
    a leading ``0`` octal, otherwise decimal; an optional sign.

    Raises:
        ValueError: Not such a number (``08``, say).
    """
    digits = text.lstrip("+-")
    negative = text.startswith("-")
    if digits[:2] in ("0x", "0X"):
        value = int(digits[2:], 16)
    elif len(digits) > 1 and digits.startswith("0"):
        value = int(digits[1:], 8)
    else:
        value = int(digits, 10)
    return -value if negative else value


def parse_type(text: str, word: str = "", column: int = 0) -> ArgType:
    """Parse a TYPE (the part after ``:``).

    Raises:
        FetchArgError: Unknown type or bad array length.
    """
    base, count = text, None
    array = re.fullmatch(r"(.+)\[(\d+)\]", text)
    if array:
        base, count = array.group(1), int(array.group(2))
        if not 0 < count <= MAX_ARRAY_LEN:
            raise FetchArgError(
                f"array length {count} out of range 1..{MAX_ARRAY_LEN}", word, column
            )
    if base == "str":
        base = "string"
    name = base + (f"[{count}]" if count is not None else "")
    match = _INT_TYPE.fullmatch(base)
    if match:
        letter, bits = match.group(1), int(match.group(2))
        return ArgType(name, "int", bits // 8, letter == "s", letter == "x", count)
    if base == "char":
        return ArgType(name, "char", 1, count=count)
    if base in ("string", "ustring"):
        return ArgType(name, "string", 0, count=count)
    if base == "symbol":
        return ArgType(name, "symbol", 8, hex=True, count=count)
    match = _BITFIELD_TYPE.fullmatch(base)
    if match:
        width, offset, container = (int(g) for g in match.groups())
        if width == 0 or width + offset > container:
            raise FetchArgError(
                f"bitfield {base}: {width} bits at bit {offset} do not fit in {container} bits",
                word,
                column,
            )
        return ArgType(
            name, "bitfield", container // 8, count=count, bit_width=width, bit_offset=offset
        )
    if base in _KERNEL_ONLY_TYPES:
        raise FetchArgError(f"type {base!r} applies to kernel probes only", word, column)
    raise FetchArgError(
        f"unknown type {base!r}: use s8..s64, u8..u64, x8..x64, char, string, ustring, symbol, "
        "b<width>@<offset>/<size>, or TYPE[N]",
        word,
        column,
    )


DEFAULT_TYPE = parse_type("x64")
STRING_TYPE = parse_type("string")
