"""Decoding records on the hot path, and the events they become.

Each probe's record is the common header (``struct rp_header``) followed by its fields at the
offsets :mod:`rawprobe._compile` chose. The layout is declared with construct
(:meth:`RecordLayout.construct`) and compiled once into a :class:`struct.Struct`; fields that
need more than a struct member (strings, arrays, bitfields, faults) are converted by a small
function generated for that layout, so no per-record work runs in construct's interpreter.
"""

from __future__ import annotations

import copy
import struct
from collections.abc import Callable, Sequence
from typing import Any

import construct as c

from . import _bpfabi as abi
from ._compile import HEADER_SIZE, CompiledField, CompiledProbe
from ._fetchargs import ArgType

__all__ = ["Event", "RecordLayout", "decode_records"]

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

    def renamed(self, event: str) -> RecordLayout:
        """The same layout for another event name (sites of one probe word share layouts)."""
        twin = copy.copy(self)
        twin.event = event
        return twin

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


class Event:
    """One probe hit, as delivered.

    Attributes:
        event: The event name.
        ts_ns: When it happened, CLOCK_MONOTONIC nanoseconds (see :attr:`time_ns`).
        pid: Process id (thread group id).
        tid: Thread id.
        cpu: The CPU it ran on.
        values: The fetch-args' values, in order (``None`` where memory could not be read).
        faults: Bit i set when the i-th fetch slot could not be read.
        truncated: Bit i set when the i-th fetch slot's string was cut at ``--string-size``.
        stack: With stacks on, the user stack's return addresses, innermost first.
    """

    __slots__ = ("_comm", "cpu", "faults", "layout", "pid", "stack", "tid", "truncated",
                 "ts_ns", "values")

    def __init__(
        self,
        layout: RecordLayout,
        ts_ns: int,
        pid: int,
        tid: int,
        cpu: int,
        comm: bytes,
        values: tuple[Any, ...],
        faults: int,
        truncated: int,
    ) -> None:
        self.layout = layout
        self.ts_ns = ts_ns
        self.pid = pid
        self.tid = tid
        self.cpu = cpu
        self._comm = comm
        self.values = values
        self.faults = faults
        self.truncated = truncated
        self.stack: tuple[int, ...] | None = None

    @property
    def event(self) -> str:
        return self.layout.event

    @property
    def comm(self) -> str:
        """The task's command name."""
        return self._comm.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")

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


_HEADER_UNPACK = abi.HEADER_STRUCT.unpack_from


def decode_records(
    chunk: bytes, records: Sequence[tuple[int, int]], layouts: Sequence[RecordLayout | None]
) -> list[Event]:
    """Decode the records found in ``chunk`` (see :func:`rawprobe._ringbuf.split_records`).

    Args:
        chunk: Bytes copied from the ring buffer.
        records: ``(offset, length)`` of each record in ``chunk``.
        layouts: Layouts indexed by event id.
    """
    events: list[Event] = []
    append = events.append
    unpack_header = _HEADER_UNPACK
    for base, _length in records:
        ts_ns, pid, tid, event_id, cpu, faults, truncated, comm = unpack_header(chunk, base)
        layout = layouts[event_id]
        if layout is None:
            continue
        raw = layout.unpack_from(chunk, base + HEADER_SIZE)
        convert = layout.convert
        values = convert(raw, chunk, base) if convert is not None else raw
        if faults:
            values = layout.apply_faults(values, faults)
        event = Event(layout, ts_ns, pid, tid, cpu, comm, values, faults, truncated)
        if layout.has_stack:
            event.stack = _stack(chunk, base, layout.stack_offset)
        append(event)
    return events

