"""A trace event's ``format`` file, parsed, and the construct layout of its records.

The file (kernel/trace/trace_events.c, f_show()) lists each field as

    field:TYPE NAME;	offset:N;	size:N;	signed:0|1;

common fields first (``common_type``, ``common_flags``, ``common_preempt_count``,
``common_pid``), then the event's own. A probe event's fields are packed with no alignment
(kernel/trace/trace_probe.c, traceprobe_define_arg_fields()): a ``u64`` may sit at offset 17.
Strings are ``__data_loc char[] NAME``: a ``u32`` holding ``(length << 16) | offset`` of the bytes
from the start of the record; an array of N strings is ``__data_loc char[][N] NAME`` with N of
them; an array of integers is ``u8 NAME[]`` with ``size`` covering every element.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._errors import KernelFeatureError

__all__ = ["EventFormat", "FormatField", "parse_format"]

_FIELD = re.compile(
    r"field:(?P<decl>[^;]+);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);"
    r"\s*signed:(?P<signed>\d+);"
)
_NAME = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<array>\[[^\]]*\])?$")
# Element sizes of the types probe events use (the fetch types' "fmttype", trace_probe.h).
_TYPE_SIZES = {
    "u8": 1, "s8": 1, "char": 1, "unsigned char": 1,
    "u16": 2, "s16": 2, "short": 2, "unsigned short": 2,
    "u32": 4, "s32": 4, "int": 4, "unsigned int": 4,
    "u64": 8, "s64": 8, "long": 8, "unsigned long": 8,
}


@dataclass(frozen=True)
class FormatField:
    """One field of an event record.

    Attributes:
        name: The field name.
        type: Its C type as the file spells it (``u64``, ``__data_loc char[]``).
        offset: Byte offset from the start of the record (the common fields included).
        size: Bytes it takes (all elements of an array).
        signed: Whether the kernel declares it signed.
        data_loc: A ``__data_loc``: ``count`` u32 words, each ``(length << 16) | offset``.
        count: Elements of an array (data_loc words or integers), or ``None`` for a scalar.
    """

    name: str
    type: str
    offset: int
    size: int
    signed: bool
    data_loc: bool = False
    count: int | None = None

    @property
    def element_size(self) -> int:
        return self.size // (self.count or 1)


@dataclass(frozen=True)
class EventFormat:
    """A parsed ``format`` file.

    Attributes:
        name: The event name.
        id: The event's type number (also the ``common_type`` of its records).
        fields: Every field, common ones included, in file order.
    """

    name: str
    id: int
    fields: tuple[FormatField, ...]

    def field(self, name: str) -> FormatField:
        """The field called ``name``.

        Raises:
            KernelFeatureError: No such field (the kernel laid the event out unexpectedly).
        """
        for f in self.fields:
            if f.name == name:
                return f
        raise KernelFeatureError(f"event {self.name} has no field {name!r} in its format file")


def parse_format(text: str) -> EventFormat:
    """Parse the text of an event's ``format`` file.

    Raises:
        KernelFeatureError: Text that is not a format file.
    """
    name = event_id = None
    fields: list[FormatField] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("name:"):
            name = stripped[5:].strip()
        elif stripped.startswith("ID:"):
            event_id = int(stripped[3:])
        elif stripped.startswith("field:"):
            fields.append(_parse_field(stripped))
    if name is None or event_id is None or not fields:
        raise KernelFeatureError("not an event format file (no name, ID or fields)")
    return EventFormat(name, event_id, tuple(fields))


def _parse_field(line: str) -> FormatField:
    match = _FIELD.match(line)
    if not match:
        raise KernelFeatureError(f"cannot parse event format line {line!r}")
    decl = match.group("decl").strip()
    offset, size = int(match.group("offset")), int(match.group("size"))
    signed = match.group("signed") == "1"
    name_match = _NAME.search(decl)
    if not name_match:
        raise KernelFeatureError(f"cannot find the field name in {decl!r}")
    name = name_match.group("name")
    type_text = decl[: name_match.start()].strip()
    if type_text.startswith("__data_loc"):
        # "__data_loc char[] s" holds one word; "__data_loc char[][2] ss" an array of them.
        count = size // 4 if re.search(r"\]\s*\[\d+\]$", type_text) else None
        return FormatField(name, type_text, offset, size, signed, data_loc=True, count=count)
    count = None
    if name_match.group("array") is not None:
        element = _TYPE_SIZES.get(type_text)
        if element is None:
            raise KernelFeatureError(f"unknown element type {type_text!r} of array {name}")
        count = size // element
    return FormatField(name, type_text, offset, size, signed, count=count)
