"""Decoding records on the hot path, and the events they become.

Each probe's record is the common header (``struct rp_header``) followed by its fields at the
offsets :mod:`rawprobe._plan.compile` chose. The layout is declared with construct
(:meth:`RecordLayout.construct`) and compiled once into a :class:`struct.Struct`; fields that
need more than a struct member (strings, arrays, bitfields, faults) are converted by a small
function generated for that layout, so no per-record work runs in construct's interpreter.
"""

from __future__ import annotations

import copy
import struct
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import construct as c

from .._probe.fetchargs import ArgType
from . import abi
from .compile import HEADER_SIZE, CompiledField, CompiledProbe

__all__ = ["Event", "RecordLayout"]

_CONSTRUCTS = {(1, False): c.Int8ul, (2, False): c.Int16ul, (4, False): c.Int32ul,
               (8, False): c.Int64ul, (1, True): c.Int8sl, (2, True): c.Int16sl,
               (4, True): c.Int32sl, (8, True): c.Int64sl}


def _member(arg_type: ArgType) -> tuple[int, bool]:
    if arg_type.kind == "string":
        return 4, False  # data_loc
    return arg_type.size, arg_type.kind == "int" and arg_type.signed


class RecordLayout:
    """How one probe's records are laid out and decoded.

    Attributes:
        event: The event name records of this layout carry.
        fields: The fetch-args, in order.
        names: Their names.
    """

    def __init__(self, event: str, compiled: CompiledProbe) -> None:
        self.event = event
        self.fields: tuple[CompiledField, ...] = tuple(compiled.fields)
        self.names: tuple[str, ...] = tuple(f.name for f in compiled.fields)
        self.fixed_size = compiled.fixed_size
        self.has_symbols = any(f.type.kind == "symbol" for f in compiled.fields)
        self.stack_offset = compiled.stack_offset
        self.has_stack = compiled.stack_offset >= 0
        self.construct = self._declare()
        self.struct = abi.compile_struct(self.construct)
        self.unpack_from = self.struct.unpack_from
        self.convert = self._generate_converter()
        self._slot_names = self._slots()
        # The header and the fields in one struct: a record is one unpack.
        self.record_struct = struct.Struct(
            abi.HEADER_STRUCT.format + self.struct.format.lstrip("<"))
        self.unpack_record = self.record_struct.unpack_from
        self.nvalues = len(self.fields)
        self.plain = self.convert is None and not self.has_stack
        self.event_class = self._event_class()

    def renamed(self, event: str) -> RecordLayout:
        """The same layout for another event name (sites of one probe word share layouts)."""
        twin = copy.copy(self)
        twin.event = event
        twin.event_class = twin._event_class()
        return twin

    def with_stack(self) -> RecordLayout:
        """The same layout, its events carrying a user stack that comes from elsewhere than
        the record (a perf sample's callchain, for the tracefs backend)."""
        if self.has_stack:
            return self
        twin = copy.copy(self)
        twin.has_stack = True
        twin.plain = False
        twin.event_class = twin._event_class()
        return twin

    def _event_class(self) -> type[Event]:
        return type("Event", (Event,), {"__slots__": (), "layout": self})

    def slow_event(self, raw: tuple[Any, ...], chunk: bytes, base: int) -> Event:
        """An event from a record that needs more than its unpacked tuple: strings, arrays,
        bitfields, unreadable fields, a stack."""
        head, fields = raw[:_H], raw[_H:]
        values = self.convert(fields, chunk, base) if self.convert is not None else fields
        faults = head[5]
        if faults:
            values = self.apply_faults(values, faults)
        tail = (_stack(chunk, base, self.stack_offset),) if self.has_stack else ()
        return tuple.__new__(self.event_class, (*head, *values, *tail))

    def _declare(self) -> c.Struct:
        """The construct declaration of the fields after the header (padding included)."""
        members: list[Any] = []
        position = HEADER_SIZE
        for f in self.fields:
            if f.offset < 0:
                continue
            if f.offset > position:
                members.append(c.Padding(f.offset - position))
            size, signed = _member(f.type)
            count = len(f.slots) if f.type.kind == "string" else (f.type.count or 1)
            scalar = _CONSTRUCTS[(size, signed)]
            members.append(f.name / (c.Array(count, scalar) if f.type.count else scalar))
            position = f.offset + size * count
        return c.Struct(*members)

    def _generate_converter(self) -> Callable[..., tuple[Any, ...]] | None:
        """Generate ``convert(raw, chunk, base)`` for the fields a struct alone cannot decode.

        Returns ``None`` when the unpacked tuple already is the values (integers only).
        """
        parts: list[str] = []
        index = 0
        needed = False
        for f in self.fields:
            kind, count = f.type.kind, f.type.count
            if f.offset < 0:
                parts.append(repr(f.constant))
                needed = True
                continue
            if kind == "string":
                n = len(f.slots)
                if count is None:
                    parts.append(f"_string(chunk, base, raw[{index}])")
                else:
                    parts.append(
                        f"tuple(_string(chunk, base, v) for v in raw[{index}:{index + n}])"
                    )
                index += n
                needed = True
                continue
            n = count or 1
            if kind == "bitfield":
                mask = (1 << f.type.bit_width) - 1
                shift = f.type.bit_offset
                if count is None:
                    parts.append(f"(raw[{index}] >> {shift}) & {mask}")
                else:
                    parts.append(
                        f"tuple((v >> {shift}) & {mask} for v in raw[{index}:{index + n}])"
                    )
                needed = True
            elif kind == "char":
                parts.append(f"chr(raw[{index}])" if count is None
                             else f"tuple(map(chr, raw[{index}:{index + n}]))")
                needed = True
            elif count is not None:
                parts.append(f"raw[{index}:{index + n}]")
                needed = True
            else:
                parts.append(f"raw[{index}]")
            index += n
        if not needed:
            return None
        source = "def convert(raw, chunk, base):\n    return (" + ", ".join(parts) + ",)\n"
        namespace: dict[str, Any] = {"_string": _string}
        exec(compile(source, f"<rawprobe record {self.event}>", "exec"), namespace)
        return namespace["convert"]  # type: ignore[no-any-return]

    def _slots(self) -> list[tuple[int, int, int | None]]:
        """(field index, slot bit, element index or None) for fault attribution."""
        result: list[tuple[int, int, int | None]] = []
        for index, f in enumerate(self.fields):
            for element, slot in enumerate(f.slots):
                is_array = f.type.kind == "string" and f.type.count is not None
                result.append((index, slot, element if is_array else None))
        return result

    def apply_faults(self, values: tuple[Any, ...], faults: int) -> tuple[Any, ...]:
        """Replace the values of fields (or string-array elements) that faulted with None."""
        result = list(values)
        for index, slot, element in self._slot_names:
            if faults >> slot & 1:
                if element is None:
                    result[index] = None
                else:
                    items = list(result[index])
                    items[element] = None
                    result[index] = tuple(items)
        return tuple(result)

    def fault_names(self, faults: int) -> list[str]:
        names: list[str] = []
        for index, slot, _element in self._slot_names:
            if faults >> slot & 1 and self.names[index] not in names:
                names.append(self.names[index])
        return names


def _string(chunk: bytes, base: int, data_loc: int) -> str:
    length = data_loc >> 16
    if not length:
        return ""
    start = base + (data_loc & 0xFFFF)
    # The length counts the NUL that bpf_probe_read_user_str() always writes.
    return chunk[start : start + length - 1].decode("utf-8", "backslashreplace")


def _stack(chunk: bytes, base: int, offset: int) -> tuple[int, ...]:
    """The stack a record carries: a data_loc to up to RP_STACK_DEPTH 64-bit addresses."""
    data_loc = int.from_bytes(chunk[base + offset : base + offset + 4], "little")
    length, start = data_loc >> 16, base + (data_loc & 0xFFFF)
    count = length // 8
    return struct.unpack_from(f"<{count}Q", chunk, start) if count else ()


_H = 8  # header members ahead of the values in an Event tuple


class Event(tuple[Any, ...]):
    """One probe hit, as delivered: an immutable record.

    Attributes:
        event: The event name.
        ts_ns: When it happened, CLOCK_MONOTONIC nanoseconds.
        pid: Process id (thread group id).
        tid: Thread id.
        cpu: The CPU it ran on.
        comm: The task's command name.
        values: The fetch-args' values, in order (``None`` where memory could not be read).
        args: The same by name (a dict built on each access: prefer :attr:`values` in loops).
        faults: Bit i set when the i-th fetch slot could not be read.
        truncated: Bit i set when the i-th fetch slot's string was cut at the string size.
        stack: With stacks on, the user stack's return addresses, innermost first.
        layout: The record layout (names and types of the fields).

    An event is a tuple of a class made for its layout: the ring buffer's bytes become one
    with a single struct unpack, which is what lets the reader decode millions a second. Build
    one with :meth:`make`.
    """

    __slots__ = ()
    layout: RecordLayout  # set on the class made for each layout

    ts_ns = property(itemgetter(0))
    pid = property(itemgetter(1))
    tid = property(itemgetter(2))
    event_id = property(itemgetter(3))
    cpu = property(itemgetter(4))
    faults = property(itemgetter(5))
    truncated = property(itemgetter(6))
    _comm = property(itemgetter(7))

    @classmethod
    def make(
        cls,
        layout: RecordLayout,
        ts_ns: int,
        pid: int,
        tid: int,
        cpu: int,
        comm: bytes,
        values: tuple[Any, ...],
        faults: int = 0,
        truncated: int = 0,
        stack: tuple[int, ...] | None = None,
        event_id: int = 0,
    ) -> Event:
        """An event of ``layout`` from its parts (for backends and tests)."""
        tail = (stack,) if layout.has_stack else ()
        return tuple.__new__(layout.event_class, (ts_ns, pid, tid, event_id, cpu, faults,
                                                  truncated, comm, *values, *tail))

    def with_value(self, index: int, value: Any) -> Event:
        """This event with its ``index``-th value replaced (one a backend fills in: a
        streamed span's duration)."""
        position = _H + index
        return tuple.__new__(type(self), (*self[:position], value, *self[position + 1 :]))

    @property
    def event(self) -> str:
        return self.layout.event

    @property
    def values(self) -> tuple[Any, ...]:
        return self[_H : _H + self.layout.nvalues]

    @property
    def stack(self) -> tuple[int, ...] | None:
        return self[-1] if self.layout.has_stack else None

    @property
    def comm(self) -> str:
        """The task's command name."""
        return self._comm.split(b"\0", 1)[0].decode(  # type: ignore[no-any-return]
            "utf-8", "backslashreplace")

    @property
    def args(self) -> dict[str, Any]:
        """The fetch-args by name (built on each access; prefer :attr:`values` in loops)."""
        return dict(zip(self.layout.names, self.values, strict=True))

    @property
    def fault_names(self) -> list[str]:
        """Names of the fields that could not be read."""
        return self.layout.fault_names(self.faults) if self.faults else []

    def __repr__(self) -> str:
        return (
            f"Event({self.event!r}, pid={self.pid}, tid={self.tid}, comm={self.comm!r}, "
            f"args={self.args!r})"
        )
