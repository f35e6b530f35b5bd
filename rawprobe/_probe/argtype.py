"""How a fetched value is typed and printed: the one piece of the probe language that record
layouts and output formatting need at every start (a cached plan restores its layouts with it,
without the rest of :mod:`rawprobe._probe.fetchargs`)."""

from __future__ import annotations

from .._values import Record

__all__ = ["ArgType"]

_setattr = object.__setattr__


class ArgType(Record):
    """How a fetched value is typed and printed.

    Attributes:
        name: The type as written, normalized (``s32``, ``string``, ``b4@3/32``, ``u8[4]``).
        kind: ``int``, ``char``, ``string``, ``symbol`` or ``bitfield``.
        size: Bytes per element (strings: 0).
        signed: Printed as signed decimal.
        hex: Printed as hexadecimal (``x`` types).
        count: Array length, or ``None`` for a scalar.
        bit_width: Bitfields: width in bits.
        bit_offset: Bitfields: offset in bits from the container's least significant bit.
    """

    __slots__ = ("bit_offset", "bit_width", "count", "hex", "kind", "name", "signed", "size")

    name: str
    kind: str
    size: int
    signed: bool
    hex: bool
    count: int | None
    bit_width: int
    bit_offset: int

    def __init__(self, name: str, kind: str, size: int, signed: bool = False, hex: bool = False,
                 count: int | None = None, bit_width: int = 0, bit_offset: int = 0) -> None:
        _setattr(self, "name", name)
        _setattr(self, "kind", kind)
        _setattr(self, "size", size)
        _setattr(self, "signed", signed)
        _setattr(self, "hex", hex)
        _setattr(self, "count", count)
        _setattr(self, "bit_width", bit_width)
        _setattr(self, "bit_offset", bit_offset)

    def state(self) -> tuple[str, str, int, bool, bool, int | None, int, int]:
        """The fields as a plain tuple (``ArgType(*state)`` rebuilds it), for caches."""
        return (self.name, self.kind, self.size, self.signed, self.hex, self.count,
                self.bit_width, self.bit_offset)

    @property
    def is_string(self) -> bool:
        return self.kind == "string"

    def element(self) -> ArgType:
        """The type of one element of an array type."""
        return ArgType(
            self.name.split("[", 1)[0],
            self.kind,
            self.size,
            self.signed,
            self.hex,
            None,
            self.bit_width,
            self.bit_offset,
        )
