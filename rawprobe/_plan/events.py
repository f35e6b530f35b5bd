"""Decoding records on the hot path, and the events they become.

Each probe's record is the common header (``struct rp_header``) followed by its fields at the
offsets :mod:`rawprobe._plan.compile` chose. The layout is declared with construct
(:attr:`RecordLayout.construct`, made on first use) and decoded by one :class:`struct.Struct`
whose format follows from the same fields (a test holds the two together); fields that need
more than a struct member (strings, arrays, bitfields, faults) are converted by a small function
generated for that layout, so no per-record work runs in construct's interpreter. A plan from
the cache restores its layouts from plain values (:meth:`RecordLayout.state`,
:meth:`RecordLayout.restore`), without construct or the fetch-arg compiler.
"""

from __future__ import annotations

import gc
import struct
from itertools import repeat
from operator import itemgetter

from .._probe.argtype import ArgType
from .._values import Record
from . import abi

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    import construct as c

    from .compile import CompiledProbe

    _FieldState = tuple[str, tuple[Any, ...], int, tuple[int, ...], str | None]
    LayoutState = tuple[str, int, int, tuple[_FieldState, ...]]

__all__ = ["HEADER_COLUMNS", "Batch", "CompiledField", "Event", "RecordLayout", "no_collection"]

_INT_FORMATS = {1: "b", 2: "h", 4: "l", 8: "q"}  # struct's letters; upper case: unsigned


class CompiledField(Record):
    """Where one fetch-arg lives in the record and how to decode it.

    Attributes:
        name: The field name.
        type: Its type.
        offset: Offset of its fixed part in the record (``-1`` for a constant).
        slots: Indexes of the ``rp_field`` entries filling it (their fault bits).
        constant: The value of a string constant (``\\"TEXT"``), which takes no record space.
    """

    __slots__ = ("constant", "name", "offset", "slots", "type")

    name: str
    type: ArgType
    offset: int
    slots: tuple[int, ...]
    constant: str | None

    def __init__(self, name: str, type: ArgType, offset: int, slots: tuple[int, ...],
                 constant: str | None = None) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "slots", slots)
        object.__setattr__(self, "constant", constant)


def _member(arg_type: ArgType) -> tuple[int, bool, int]:
    """A field's struct member: bytes per element, signed, and how many elements are in the
    record (a string takes a 4-byte data_loc)."""
    if arg_type.kind == "string":
        return 4, False, arg_type.count or 1
    return arg_type.size, arg_type.kind == "int" and arg_type.signed, arg_type.count or 1


class RecordLayout:
    """How one probe's records are laid out and decoded.

    Attributes:
        event: The event name records of this layout carry.
        fields: The fetch-args, in order.
        names: Their names.
        fast_path: Whether a line of its records is made from the header and the fields
            alone (a system call's is not: it is written as strace writes it).
    """

    fast_path = True

    def __init__(self, event: str, compiled: CompiledProbe) -> None:
        self._setup(event, tuple(compiled.fields), compiled.fixed_size, compiled.stack_offset)

    @classmethod
    def restore(cls, state: LayoutState) -> RecordLayout:
        """The layout that :meth:`state` described."""
        event, fixed_size, stack_offset, fields = state
        layout = cls.__new__(cls)
        layout._setup(event, tuple(
            CompiledField(name, ArgType(*arg_type), offset, tuple(slots), constant)
            for name, arg_type, offset, slots, constant in fields), fixed_size, stack_offset)
        return layout

    def state(self) -> LayoutState:
        """The layout as plain values (for the plan cache; :meth:`restore` rebuilds it)."""
        return (self.event, self.fixed_size, self.stack_offset, tuple(
            (f.name, f.type.state(), f.offset, f.slots, f.constant) for f in self.fields))

    def _setup(self, event: str, fields: tuple[CompiledField, ...], fixed_size: int,
               stack_offset: int) -> None:
        self.event = event
        self.fields = fields
        self.names: tuple[str, ...] = tuple(f.name for f in fields)
        self.fixed_size = fixed_size
        self.has_symbols = any(f.type.kind == "symbol" for f in fields)
        self.stack_offset = stack_offset
        self.has_stack = stack_offset >= 0
        self.struct = struct.Struct(self._struct_format())
        self.unpack_from = self.struct.unpack_from
        self.convert = self._generate_converter()
        self._slot_names = self._slots()
        # The header and the fields in one struct: a record is one unpack.
        self.record_struct = struct.Struct(abi.HEADER_FORMAT + self.struct.format.lstrip("<"))
        self.unpack_record = self.record_struct.unpack_from
        self.nvalues = len(self.fields)
        self.plain = self.convert is None and not self.has_stack
        self.event_class = self._event_class()
        self._row_structs: dict[int, struct.Struct] = {}

    def row_struct(self, stride: int) -> struct.Struct:
        """The struct of one framed record ``stride`` bytes long: the ring's 8-byte framing,
        the header and the fields, and the padding up to ``stride`` (an event's members, in
        an event's order)."""
        found = self._row_structs.get(stride)
        if found is None:
            padding = stride - _FRAMING - self.record_struct.size
            if padding < 0:
                raise ValueError(f"a {stride}-byte record cannot hold a {self.event} record")
            found = self._row_structs[stride] = struct.Struct(
                f"<{_FRAMING}x{self.record_struct.format.lstrip('<')}{padding}x")
        return found

    def renamed(self, event: str) -> RecordLayout:
        """The same layout for another event name (sites of one probe word share layouts)."""
        twin = self._twin()
        twin.event = event
        twin.event_class = twin._event_class()
        twin._row_structs = {}
        return twin

    def with_stack(self) -> RecordLayout:
        """The same layout, its events carrying a user stack that comes from elsewhere than
        the record (a perf sample's callchain, for the tracefs backend)."""
        if self.has_stack:
            return self
        twin = self._twin()
        twin.has_stack = True
        twin.plain = False
        twin.event_class = twin._event_class()
        twin._row_structs = {}
        return twin

    def _twin(self) -> RecordLayout:
        twin = type(self).__new__(type(self))
        twin.__dict__.update(self.__dict__)
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

    @property
    def construct(self) -> c.Struct:
        """The construct declaration of the fields after the header (padding included)."""
        import construct as c

        scalars = {(1, False): c.Int8ul, (2, False): c.Int16ul, (4, False): c.Int32ul,
                   (8, False): c.Int64ul, (1, True): c.Int8sl, (2, True): c.Int16sl,
                   (4, True): c.Int32sl, (8, True): c.Int64sl}
        members: list[Any] = []
        position = abi.HEADER_SIZE
        for f in self.fields:
            if f.offset < 0:
                continue
            if f.offset > position:
                members.append(c.Padding(f.offset - position))
            size, signed, count = _member(f.type)
            scalar = scalars[(size, signed)]
            members.append(f.name / (c.Array(count, scalar) if f.type.count else scalar))
            position = f.offset + size * count
        return c.Struct(*members)

    def _struct_format(self) -> str:
        """The struct format ``abi.compile_struct`` makes of :attr:`construct`, written without
        construct."""
        parts = ["<"]
        position = abi.HEADER_SIZE
        for f in self.fields:
            if f.offset < 0:
                continue
            if f.offset > position:
                parts.append(f"{f.offset - position}x")
            size, signed, count = _member(f.type)
            letter = _INT_FORMATS[size] if signed else _INT_FORMATS[size].upper()
            parts.append(f"{count}{letter}" if f.type.count else letter)
            position = f.offset + size * count
        return "".join(parts)

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


class Event(tuple):  # type: ignore[type-arg]  # tuple[Any, ...], without typing at run time
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


_FRAMING = 8  # the ring buffer's record header (u32 len, u32 pg_off) ahead of each record
# Columns every batch has, before its fields: (name, offset in a framed record, memoryview
# format); comm is 16 bytes at offset 40.
HEADER_COLUMNS = (("ts_ns", _FRAMING, "Q"), ("pid", _FRAMING + 8, "I"),
                  ("tid", _FRAMING + 12, "I"), ("cpu", _FRAMING + 20, "I"))
_COMM_OFFSET = _FRAMING + 32
_VIEW_FORMATS = {(1, True): "b", (2, True): "h", (4, True): "i", (8, True): "q",
                 (1, False): "B", (2, False): "H", (4, False): "I", (8, False): "Q"}


class Batch:
    """Events in the order they were recorded: what a reader decodes in one pass, and what a
    tool that wants columns reads.

    A batch of one layout's fixed-size records holds them as the ring buffer had them
    (``stride`` bytes each, its framing included) and decodes them when asked, all at once:
    into events (one ``struct.iter_unpack``), rows, or columns (strided views of the bytes,
    no copy). Other batches hold their events, decoded one by one; a batch whose
    :attr:`layout` is None mixes several layouts.

    Attributes:
        layout: The events' layout (None: several).
        count: How many events.
    """

    __slots__ = ("_data", "_events", "_stride", "count", "layout")

    def __init__(self, layout: RecordLayout | None, events: list[Event]) -> None:
        self.layout = layout
        self.count = len(events)
        self._events: list[Event] | None = events
        self._data: memoryview | None = None
        self._stride = 0

    @classmethod
    def of_records(cls, layout: RecordLayout, data: memoryview, stride: int) -> Batch:
        """A batch of ``layout``'s records, each ``stride`` bytes (framing included), fixed
        size, no fault bits: every member a struct member."""
        batch = cls.__new__(cls)
        batch.layout = layout
        batch.count = len(data) // stride
        batch._events = None
        batch._data = data
        batch._stride = stride
        return batch

    @property
    def records(self) -> tuple[memoryview, int] | None:
        """``(bytes, stride)`` of a batch of fixed-size records as the ring had them (None
        for a batch of decoded events)."""
        return None if self._data is None else (self._data, self._stride)

    def rows(self) -> Sequence[tuple[Any, ...]]:
        """The events as tuples of an event's members (header, then values), without the
        event class: what formatting needs, decoded at the least cost."""
        if self._events is not None:
            return self._events
        assert self._data is not None and self.layout is not None
        with no_collection():
            return list(self.layout.row_struct(self._stride).iter_unpack(self._data))

    def events(self) -> list[Event]:
        """The events (decoded on first use)."""
        if self._events is None:
            assert self._data is not None and self.layout is not None
            rows = self.layout.row_struct(self._stride).iter_unpack(self._data)
            with no_collection():
                self._events = list(map(tuple.__new__, repeat(self.layout.event_class), rows))
        return self._events

    def column(self, name: str) -> Sequence[Any]:
        """One column: ``ts_ns``, ``pid``, ``tid``, ``cpu``, ``comm`` or a field of the
        layout. Of fixed-size records, an integer column is a read-only strided view of the
        records (a sequence of ints; ``list(...)``, ``.tolist()``, ``numpy.asarray`` take it
        as it is); other columns are lists.

        Raises:
            KeyError: No such column (or a batch of several layouts).
        """
        layout = self.layout
        if layout is None:
            raise KeyError(f"{name}: a batch of several layouts has no columns")
        if self._data is None:
            index = _column_index(layout, name)
            events = self._events or []
            if name == "comm":
                return [event.comm for event in events]
            return [event[index] for event in events]
        data, stride = self._data, self._stride
        for header_name, offset, view in HEADER_COLUMNS:
            if header_name == name:
                return _strided(data, stride, offset, view)
        if name == "comm":
            comms = struct.Struct(f"<{_COMM_OFFSET}x16s{stride - _COMM_OFFSET - 16}x")
            return list(map(_COMMS.__getitem__, map(_FIRST, comms.iter_unpack(data))))
        index = _column_index(layout, name) - _H
        field = layout.fields[index]
        size, signed, _count = _member(field.type)
        return _strided(data, stride, _FRAMING + field.offset, _VIEW_FORMATS[(size, signed)])

    def columns(self) -> dict[str, Sequence[Any]]:
        """Every column by name: ``ts_ns``, ``pid``, ``tid``, ``cpu``, ``comm``, then the
        layout's fields (see :meth:`column`)."""
        if self.layout is None:
            raise KeyError("a batch of several layouts has no columns")
        names = [name for name, _offset, _view in HEADER_COLUMNS] + ["comm"]
        return {name: self.column(name) for name in [*names, *self.layout.names]}

    def split(self) -> list[Batch]:
        """A batch per layout (a batch of one layout is itself), each in recorded order."""
        if self.layout is not None:
            return [self]
        by_layout: dict[int, list[Event]] = {}
        layouts: dict[int, RecordLayout] = {}
        for event in self._events or []:
            key = id(event.layout)
            layouts.setdefault(key, event.layout)
            by_layout.setdefault(key, []).append(event)
        return [Batch(layouts[key], events) for key, events in by_layout.items()]


class _CommNames(dict):  # type: ignore[type-arg]
    """A task's comm (16 bytes, NUL-padded) -> its text, decoded once per distinct comm."""

    def __missing__(self, raw: bytes) -> str:
        if len(self) > 4096:  # comms are few; a workload that makes many costs a decode each
            self.clear()
        text = self[raw] = raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
        return text


_COMMS = _CommNames()
_FIRST = itemgetter(0)


def _column_index(layout: RecordLayout, name: str) -> int:
    """Where a column is in an event tuple."""
    positions = {"ts_ns": 0, "pid": 1, "tid": 2, "cpu": 4, "comm": 7}
    if name in positions:
        return positions[name]
    try:
        return _H + layout.names.index(name)
    except ValueError:
        raise KeyError(f"{layout.event} has no field {name!r}") from None


def _strided(data: memoryview, stride: int, offset: int, view: str) -> memoryview:
    """Every ``stride``-th item of ``data`` from byte ``offset``, viewed as ``view``."""
    size = struct.calcsize(view)
    typed: memoryview = data.cast(view)  # type: ignore[call-overload]
    return typed[offset // size::stride // size]


class no_collection:  # lower case: used as a function, ``with no_collection():``
    """Hold off Python's cyclic garbage collector while a batch of events is made.

    Events are tuples of numbers, bytes and strings: they cannot be in a reference cycle, but
    as instances of a tuple subclass the collector tracks them, and a batch of thousands made
    in one go sets it off every 700 allocations to walk the very events being made (it
    halves the decoding rate). Reference counting frees them as before. (A class, not a
    generator-based context manager: a reader enters it once per read, a few dozen records
    each when it keeps up, and contextlib's machinery cost as much as decoding them.)
    """

    __slots__ = ("_held",)

    def __enter__(self) -> None:
        self._held = gc.isenabled()
        if self._held:
            gc.disable()

    def __exit__(self, *exc_info: object) -> None:
        if self._held:
            gc.enable()
